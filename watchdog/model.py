"""The nouns every part of the watchdog shares: plain frozen dataclasses, no behaviour beyond
what keeps them valid."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Verdict(StrEnum):
    """What the rule engine says to do, worst first (the order is the precedence)."""

    ROLLBACK = "rollback"
    DISABLE_FLAG = "disable_flag"
    INCONCLUSIVE = "inconclusive"
    MONITOR = "monitor"
    NONE = "none"

    @property
    def severity(self) -> int:
        """Higher is worse: rollback 4 … none 0."""
        return len(_VERDICT_ORDER) - 1 - _VERDICT_ORDER.index(self)


_VERDICT_ORDER = list(Verdict)


class Scope(StrEnum):
    """What a rollback covers: the applications, the database, or both (apps first)."""

    APPLICATION = "application"
    DATABASE = "database"
    FULL = "full"


# Every label set read so far: as many as the config names checks, flows and flags.
_LABELS: dict[frozenset[tuple[str, str]], Mapping[str, str]] = {}


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None:
        raise ValueError(f"{name} must carry a time zone, found {value.isoformat()}")


@dataclass(frozen=True, slots=True)
class Deployment:
    """What a deploy event carries. ``deployed_at`` starts the watch window."""

    target: str
    id: str
    deployed_at: datetime
    previous_id: str | None = None
    release: str | None = None
    previous_release: str | None = None
    commit: str | None = None
    migration_version: str | None = None
    migration_failed: bool = False

    @property
    def sentry_release(self) -> str | None:
        """The release Sentry knows this deploy by: given by the deploy event, else the commit."""
        return self.release or self.commit

    def __post_init__(self) -> None:
        _aware("deployed_at", self.deployed_at)


@dataclass(frozen=True, slots=True)
class Reading:
    """One measurement. A signal that could not be read yields no Reading at all."""

    at: datetime
    metric: str
    value: float
    labels: Mapping[str, str] = field(default_factory=dict)
    samples: int | None = None

    def __post_init__(self) -> None:
        _aware("at", self.at)
        # A watch keeps every reading of its window, a thousand watches some 320,000 of
        # them: readings with the same labels share one dict (half of a reading's memory).
        key = frozenset(self.labels.items())
        object.__setattr__(self, "labels", _LABELS.setdefault(key, dict(self.labels)))

    def describe(self) -> str:
        """``flow{flow=auth}``: the metric with its labels, for messages."""
        if not self.labels:
            return self.metric
        inner = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))
        return f"{self.metric}{{{inner}}}"


@dataclass(frozen=True, slots=True)
class Decision:
    """The engine's answer at one moment, with the rule and the readings behind it."""

    verdict: Verdict
    at: datetime
    explanation: str
    rule: str | None = None
    evidence: tuple[Reading, ...] = ()
    urgency: str | None = None
    deadline: datetime | None = None
    scope: Scope | None = None
    flag: str | None = None
    escalate: bool = False
    also_fired: tuple[str, ...] = ()
