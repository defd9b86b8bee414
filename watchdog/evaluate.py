"""``watchdog evaluate``: replay a readings file through the rules and show every decision."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from watchdog.durations import format_duration, format_elapsed
from watchdog.model import Decision, Deployment, Verdict
from watchdog.readings import load_readings
from watchdog.rules.replay import Replay, infer_interval, replay
from watchdog.rules.schema import RuleSet

DEFAULT_INTERVAL = timedelta(seconds=15)


@dataclass(frozen=True)
class Evaluation:
    deployment: Deployment
    interval: timedelta
    replay: Replay

    @property
    def exit_code(self) -> int:
        """0 when the deploy ends healthy (verdict none), 1 for anything that needs people."""
        return 0 if self.replay.final.verdict is Verdict.NONE else 1


def evaluate(
    rules: RuleSet, readings_path: Path, deployed_at: datetime | None, interval: timedelta | None
) -> Evaluation:
    recorded = load_readings(readings_path)
    start = deployed_at or recorded.deployed_at or min(r.at for r in recorded.readings)
    deployment = Deployment(
        target="(recorded)", id=recorded.deployment_id or readings_path.stem, deployed_at=start
    )
    tick = interval or infer_interval(recorded.readings, DEFAULT_INTERVAL)
    return Evaluation(deployment, tick, replay(rules, deployment, recorded.readings, tick))


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def decision_json(decision: Decision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": _iso(decision.at),
        "verdict": str(decision.verdict),
        "rule": decision.rule,
        "explanation": decision.explanation,
    }
    if decision.flag:
        out["flag"] = decision.flag
    if decision.scope:
        out["scope"] = str(decision.scope)
    if decision.urgency:
        out["urgency"] = decision.urgency
    if decision.deadline:
        out["deadline"] = _iso(decision.deadline)
    return out


def write_json(result: Evaluation, out: TextIO) -> None:
    for decision in result.replay.decisions:
        out.write(json.dumps(decision_json(decision)) + "\n")
    out.write(json.dumps({"final": decision_json(result.replay.final)}) + "\n")


def write_text(result: Evaluation, out: TextIO) -> None:
    dep = result.deployment
    out.write(
        f"deployment {dep.id}, deployed {dep.deployed_at:%Y-%m-%d %H:%M:%S %Z}, "
        f"ticks every {format_duration(result.interval)}\n"
    )
    previous: tuple[Verdict, str | None] | None = None
    for decision in result.replay.decisions:
        offset = format_elapsed(decision.at - dep.deployed_at)
        same = previous == (decision.verdict, decision.rule)
        previous = (decision.verdict, decision.rule)
        label = f"{decision.verdict}" + (f" [{decision.rule}]" if decision.rule else "")
        line = f"  {decision.at:%H:%M:%S}  +{offset:<7} {label:<34}"
        out.write(line + ("  (unchanged)\n" if same else f"  {decision.explanation}\n"))
    final = result.replay.final
    rule = f" by {final.rule}" if final.rule else ""
    offset = format_elapsed(final.at - dep.deployed_at)
    out.write(
        f"final: {final.verdict}{rule} at {final.at:%H:%M:%S} (+{offset}): {final.explanation}\n"
    )
