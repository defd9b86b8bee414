"""What the store keeps, beyond the model's nouns: a watch, an action, a notification, a
lease."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any


class WatchState(StrEnum):
    """A watch's life: baseline → observing → (acting → verifying) → closed."""

    BASELINE = "baseline"
    OBSERVING = "observing"
    ACTING = "acting"
    VERIFYING = "verifying"
    CLOSED = "closed"


class Outcome(StrEnum):
    """How a watch ended (the summary's ``verdict``)."""

    HEALTHY = "healthy"
    MONITOR = "monitor"
    INCONCLUSIVE = "inconclusive"
    ROLLED_BACK = "rolled_back"
    FLAG_DISABLED = "flag_disabled"
    WOULD_ROLL_BACK = "would_roll_back"
    ROLLBACK_FAILED = "rollback_failed"
    SUPERSEDED = "superseded"


class ActionStatus(StrEnum):
    """Recorded *intended* before anything is sent, *done* or *failed* after."""

    INTENDED = "intended"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class WatchRecord:
    id: str
    target: str
    deployment_id: str
    state: WatchState
    started_at: datetime
    closes_at: datetime
    interval: timedelta
    dry_run: bool = False
    held: bool = False
    outcome: Outcome | None = None
    rule: str | None = None
    decided_at: datetime | None = None
    closed_at: datetime | None = None
    acknowledged_at: datetime | None = None
    baseline: Mapping[str, int] = field(default_factory=dict)  # integrity row counts at start
    verification: tuple[tuple[str, bool, str], ...] | None = None  # (check, passed, detail)
    explanation: str | None = None  # why it closed the way it did
    incident_report: str | None = None  # path of the post-mortem written for it


@dataclass(frozen=True)
class ActionRecord:
    """One rollback or flag change. ``key`` is its idempotency key: the store refuses a second
    action with the same key, so a deployment is rolled back at most once, ever."""

    id: str
    key: str
    watch_id: str | None
    target: str
    deployment_id: str
    kind: str  # rollback | disable_flag | enable_flag
    provider: str
    to: str | None
    status: ActionStatus
    started_at: datetime
    reason: str = ""
    to_release: str | None = None
    finished_at: datetime | None = None
    error: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def seconds(self) -> float | None:
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class Lease:
    """Who owns ``name`` (e.g. one watch) until ``expires_at``. ``token`` grows by one each
    time the lease changes hands, so a write fenced by an older token is refused."""

    name: str
    owner: str
    token: int
    expires_at: datetime


class NotificationStatus(StrEnum):
    """Queued *pending*, then *sent*, or *failed* for good once no retry is left."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True)
class NotificationRecord:
    """One message queued in the store before it is sent (the outbox). ``key`` is its
    idempotency key, e.g. ``f"{watch_id}:rollback_executed:slack"``: queued once, ever.
    ``attempts`` counts the tries that failed; ``last_error`` says why the last one did."""

    id: str
    key: str
    watch_id: str | None
    kind: str
    notifier: str
    payload: Mapping[str, Any]
    created_at: datetime
    due_at: datetime
    status: NotificationStatus = NotificationStatus.PENDING
    attempts: int = 0
    sent_at: datetime | None = None
    last_error: str | None = None
