"""What the store keeps, beyond the model's nouns: a watch, an action, a notification."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


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
