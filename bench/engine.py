"""Engine throughput: 1,000 watches × 40 readings each, every watch decided at its last tick.

Run: .venv/bin/python bench/engine.py   (prints one table)

A "rule evaluation" is one rule applied to one watch's readings at one moment; a decision
applies every rule of config/rules.yaml plus the blind check.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import print_table

from watchdog.model import Deployment, Reading
from watchdog.rules import decide
from watchdog.settings import load_rules

WATCHES = 1_000
READINGS = 40
TICK = timedelta(seconds=15)
T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
RULES = load_rules(Path(__file__).parents[1] / "config" / "rules.yaml")


def watch(rnd: random.Random) -> tuple[Deployment, list[Reading]]:
    """40 readings over 10 ticks: error rate, users, latency and a flow, like a real target."""
    deployment = Deployment("backend", f"dep-{rnd.randrange(10**6)}", T0)
    readings = []
    base = rnd.choice([0.0004, 0.004, 0.008, 0.02])
    for tick in range(1, READINGS // 4 + 1):
        at = T0 + tick * TICK
        readings += [
            Reading(at, "error_rate", base * rnd.uniform(0.8, 1.2), samples=rnd.randrange(3000)),
            Reading(at, "users_affected", rnd.uniform(0, 0.05), samples=500),
            Reading(at, "latency_change", rnd.uniform(-0.1, 0.7), {"check": "api"}),
            Reading(at, "flow", float(rnd.random() > 0.02), {"flow": "auth"}),
        ]
    return deployment, readings


def main() -> None:
    rnd = random.Random(7)
    watches = [watch(rnd) for _ in range(WATCHES)]
    now = T0 + (READINGS // 4) * TICK
    rounds, started = 0, time.perf_counter()
    while time.perf_counter() - started < 5 or rounds < 2:
        for deployment, readings in watches:
            decide(RULES, deployment, readings, now, TICK)
        rounds += 1
    elapsed = time.perf_counter() - started
    decisions = rounds * WATCHES
    rules = len(RULES.rules)
    print_table(
        "Engine throughput, every rule of config/rules.yaml",
        ["watches", "readings each", "rules", "decisions/s", "rule evaluations/s", "µs/decision"],
        [
            [
                f"{WATCHES:,}",
                f"{READINGS}",
                f"{rules}",
                f"{decisions / elapsed:,.0f}",
                f"{decisions * rules / elapsed:,.0f}",
                f"{elapsed / decisions * 1e6:,.1f}",
            ]
        ],
    )


if __name__ == "__main__":
    main()
