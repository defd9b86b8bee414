"""The StateStore seam. Both implementations pass one contract suite (tests/store/).

Every method raises ``watchdog.errors.StoreError`` when the store cannot read or write; the
database driver's own errors never escape an implementation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from watchdog.model import Decision, Deployment, Reading
from watchdog.signals.base import ProbeError
from watchdog.store.records import ActionRecord, ActionStatus, WatchRecord


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

    async def open_watches(self) -> list[WatchRecord]:
        """Watches not closed yet, oldest first: what a restarted daemon resumes."""

    async def recent_watches(self, limit: int) -> list[WatchRecord]:
        """The newest watches, open or closed."""

    async def update_watch(self, watch: WatchRecord) -> None:
        """Replace the stored watch with ``watch`` (same id)."""

    async def add_readings(
        self,
        watch_id: str,
        readings: Sequence[Reading],
        errors: Sequence[ProbeError],
        at: datetime,
    ) -> None:
        """Record one tick's readings and probe errors together."""

    async def readings(self, watch_id: str) -> list[Reading]: ...

    async def probe_errors(self, watch_id: str) -> list[tuple[datetime, ProbeError]]: ...

    async def add_decision(self, watch_id: str, decision: Decision) -> None: ...

    async def decisions(self, watch_id: str) -> list[Decision]: ...

    async def begin_action(self, action: ActionRecord) -> ActionRecord:
        """Record an action as intended before anything is sent. When an action with the same
        ``key`` exists, nothing is written and the existing one is returned: callers compare
        ids to know whether they may act."""

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
