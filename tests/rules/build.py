"""Literal readings at tick times, for table tests of the engine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchdog.model import Deployment, Reading
from watchdog.settings import load_rules

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
TICK = timedelta(seconds=15)
DEPLOY = Deployment(target="backend", id="dep-2", deployed_at=T0, previous_id="dep-1")
RULES = load_rules(Path(__file__).parents[2] / "config" / "rules.yaml")


def at(tick: int) -> datetime:
    """The time of tick ``tick`` (tick 1 is 15 s after the deploy)."""
    return T0 + tick * TICK


def err(tick: int, rate: float, samples: int = 3000) -> Reading:
    return Reading(at(tick), "error_rate", rate, samples=samples)


def errs(rates: list[float], samples: int = 3000, start: int = 1) -> list[Reading]:
    return [err(start + i, rate, samples) for i, rate in enumerate(rates)]


def metric(
    tick: int, name: str, value: float, samples: int | None = None, **labels: str
) -> Reading:
    return Reading(at(tick), name, value, labels=labels, samples=samples)


def healthy_background(ticks: range) -> list[Reading]:
    """A healthy error rate on every tick, so the watch is not blind."""
    return [err(t, 0.0004) for t in ticks]
