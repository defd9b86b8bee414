"""Replaying recorded readings through the engine, as a watch would have seen them tick by tick."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from statistics import median

from watchdog.model import Decision, Deployment, Reading, Verdict
from watchdog.rules.engine import decide
from watchdog.rules.schema import RuleSet


@dataclass(frozen=True)
class Replay:
    decisions: list[Decision]
    final: Decision


def infer_interval(readings: Sequence[Reading], default: timedelta) -> timedelta:
    """The tick interval a recording was made at: the median gap between successive readings
    of one series; ``default`` when no series has two readings."""
    times: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}
    for reading in readings:
        key = (reading.metric, tuple(sorted(reading.labels.items())))
        times.setdefault(key, []).append(reading.at.timestamp())
    gaps = [
        b - a
        for series in times.values()
        for a, b in zip(sorted(series), sorted(series)[1:], strict=False)
        if b > a
    ]
    return timedelta(seconds=median(gaps)) if gaps else default


def replay(
    rules: RuleSet, deployment: Deployment, readings: Sequence[Reading], interval: timedelta
) -> Replay:
    """One decision at each reading time from the deploy on, and the one the watch ends with:
    the first rollback (the watch acts and stops), else the first flag to disable, else the
    decision at the last tick; a recording with no reading of the metric the watch must see
    ends inconclusive, never healthy."""
    times = sorted({r.at for r in readings if r.at >= deployment.deployed_at})
    decisions = [decide(rules, deployment, readings, at, interval) for at in times]
    for verdict in (Verdict.ROLLBACK, Verdict.DISABLE_FLAG):
        acted = next((d for d in decisions if d.verdict is verdict), None)
        if acted is not None:
            return Replay(decisions, acted)
    watched = rules.inconclusive.metric
    last = decisions[-1] if decisions else None
    if last is None or not any(r.metric == watched for r in readings):
        at = last.at if last else deployment.deployed_at
        return Replay(
            decisions,
            Decision(
                verdict=Verdict.INCONCLUSIVE,
                at=at,
                explanation=f"no {watched} reading in the whole watch → inconclusive, not healthy",
            ),
        )
    return Replay(decisions, last)
