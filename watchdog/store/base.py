"""The StateStore seam. Both implementations pass one contract suite (tests/store/).

Every method raises ``watchdog.errors.StoreError`` when the store cannot read or write; the
database driver's own errors never escape an implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from watchdog.errors import StoreError
from watchdog.model import Decision, Deployment, Reading
from watchdog.signals.base import ProbeError
from watchdog.store.records import (
    ActionRecord,
    ActionStatus,
    Lease,
    NotificationRecord,
    WatchRecord,
)


class LeaseLost(StoreError):
    """A write fenced by a lease this replica no longer holds (it expired and another replica
    took it over): nothing was written, and the replica must stop working on what it guards."""


@dataclass(frozen=True)
class RaisedSignal:
    """An outside signal raised against a deployment (``POST /api/signals``): ``kind`` is the
    metric it sets, e.g. ``security_alert``."""

    target: str
    deployment_id: str
    kind: str
    detail: str
    raised_at: datetime


class StateStore(Protocol):
    """Everything the watchdog must remember across restarts."""

    async def migrate(self) -> None:
        """Create or upgrade the schema to the current version (run at start)."""

    async def close(self) -> None: ...

    async def save_deployment(self, deployment: Deployment) -> bool:
        """Remember a deployment; False when (target, id) was already known (nothing changes)."""

    async def deployment(self, target: str, deployment_id: str) -> Deployment | None: ...

    async def open_watch(self, watch: WatchRecord) -> WatchRecord:
        """Store a new watch. A watch of the same deployment that is still open is returned
        instead, so announcing a deploy twice watches it once."""

    async def watch(self, watch_id: str) -> WatchRecord | None: ...

    async def open_watches(self, target: str | None = None) -> list[WatchRecord]:
        """Watches not closed yet (of ``target`` only, when given), oldest first: what a
        restarted daemon resumes."""

    async def recent_watches(self, limit: int) -> list[WatchRecord]:
        """The newest watches, open or closed."""

    async def update_watch(self, watch: WatchRecord, fence: Lease | None = None) -> None:
        """Replace the stored watch with ``watch`` (same id), except ``held``,
        ``acknowledged_at`` and ``incident_report``, which only their own methods set. With
        a ``fence``, only while that lease still has the same owner and token; else raise
        LeaseLost, writing nothing."""

    async def acknowledge_watch(self, watch_id: str, at: datetime) -> WatchRecord | None:
        """People took the watch over at ``at`` (the first time counts); None when unknown."""

    async def hold_watch(self, watch_id: str) -> WatchRecord | None:
        """No automatic action on the open watch from now on; None when no such open watch."""

    async def set_incident_report(self, watch_id: str, path: str) -> None:
        """Remember where the watch's post-mortem was written."""

    async def add_tick(
        self,
        watch_id: str,
        readings: Sequence[Reading],
        errors: Sequence[ProbeError],
        decision: Decision,
        fence: Lease | None = None,
    ) -> WatchRecord:
        """Record one tick together: its readings, its probe errors (at ``decision.at``) and
        its decision, fenced as update_watch. Returns the watch as stored now, so the tick
        sees a hold or an ack that came through any replica. StoreError for an unknown
        watch."""

    async def readings(self, watch_id: str) -> list[Reading]: ...

    async def probe_errors(self, watch_id: str) -> list[tuple[datetime, ProbeError]]: ...

    async def decisions(self, watch_id: str) -> list[Decision]: ...

    async def begin_action(self, action: ActionRecord, fence: Lease | None = None) -> ActionRecord:
        """Record an action as intended before anything is sent. When an action with the same
        ``key`` exists, nothing is written and the existing one is returned: callers compare
        ids to know whether they may act. With a ``fence``, only while that lease still has
        the same owner and token and has not expired at ``action.started_at``; else raise
        LeaseLost, writing nothing."""

    async def finish_action(
        self,
        action_id: str,
        status: ActionStatus,
        finished_at: datetime,
        error: str | None = None,
        notes: Sequence[str] = (),
    ) -> ActionRecord: ...

    async def actions(self, watch_id: str) -> list[ActionRecord]: ...

    async def rolled_back(self, target: str) -> set[str]:
        """Deployments of ``target`` a rollback was ever attempted from: known bad, so never a
        deployment to go back to."""

    async def rolled_back_to(self, target: str) -> set[str]:
        """Releases of ``target`` a rollback by this watchdog went back to."""

    async def unfinished_actions(self) -> list[ActionRecord]:
        """Actions still *intended*: a crash came between sending and recording the result;
        each must be reconciled by asking the provider, never by sending again."""

    async def raise_signal(
        self, target: str, deployment_id: str, kind: str, detail: str, at: datetime
    ) -> None:
        """Remember an outside signal against a deployment, announced yet or not."""

    async def raised_signals(self, target: str, deployment_id: str) -> list[RaisedSignal]:
        """The signals raised against a deployment, oldest first."""

    async def acquire_lease(
        self, name: str, owner: str, ttl: timedelta, now: datetime
    ) -> Lease | None:
        """Take ``name`` for ``owner`` until ``now + ttl`` when nobody holds it or its holder's
        lease expired (``expires_at <= now``), or renew it when ``owner`` holds it already.
        None when another owner holds it unexpired. Atomic: of replicas racing, one wins.
        The token grows by one when the lease changes hands and stays on renewal."""

    async def renew_leases(
        self, names: Sequence[str], owner: str, ttl: timedelta, now: datetime
    ) -> list[Lease]:
        """Extend to ``now + ttl`` each of ``names`` that ``owner`` still holds, expired or
        not (nobody took it) but not released; the leases renewed, by name. One statement for
        every lease a replica holds, where acquire_lease would take one each."""

    async def release_lease(self, name: str, owner: str) -> None:
        """Expire ``owner``'s lease on ``name`` now, whatever the caller's clock: it is listed
        as expiring at 1970-01-01 and keeps its token. Someone else's is left alone."""

    async def leases(self, prefix: str = "") -> list[Lease]:
        """The leases whose name starts with ``prefix``, expired or not, by name."""

    async def queue_notification(self, n: NotificationRecord) -> bool:
        """Queue a notification to send; False when one with the same ``key`` was queued
        already (nothing changes)."""

    async def due_notifications(self, now: datetime, limit: int = 50) -> list[NotificationRecord]:
        """Pending notifications due at ``now`` (``due_at <= now``), oldest created first."""

    async def notification_sent(self, notification_id: str, at: datetime) -> None:
        """Mark it sent at ``at``. Raises StoreError when there is no such notification."""

    async def notification_failed(
        self, notification_id: str, error: str, retry_at: datetime | None
    ) -> None:
        """Count a failed try: due again at ``retry_at``, or failed for good when it is None.
        Raises StoreError when there is no such notification."""

    async def notifications(self, watch_id: str) -> list[NotificationRecord]:
        """The notifications of a watch, oldest created first."""

    async def remember_delivery(self, source: str, delivery_id: str, at: datetime) -> bool:
        """True the first time a webhook delivery (``source``, ``delivery_id``) is seen; False
        for a redelivery, which must then be ignored."""

    async def delivered(self, source: str, delivery_id: str) -> bool:
        """Whether (``source``, ``delivery_id``) was remembered: asked before acting on a
        delivery, which is remembered only once it was acted on."""

    async def add_latency_samples(
        self, target: str, check: str, at: datetime, seconds: Sequence[float]
    ) -> None:
        """Remember one tick's latency probe durations of ``check``."""

    async def latency_samples(
        self, target: str, since: datetime
    ) -> dict[str, list[tuple[datetime, float]]]:
        """Each check's (tick time, seconds) at or after ``since``, oldest first, in the order
        they were added within a tick."""

    async def prune_latency(self, target: str, before: datetime) -> None:
        """Forget ``target``'s latency samples taken before ``before``."""
