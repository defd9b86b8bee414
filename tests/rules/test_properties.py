"""Properties the engine must keep for any readings, not only the table's."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.rules.build import DEPLOY, RULES, TICK, at
from watchdog.model import Reading, Verdict
from watchdog.rules import decide


@st.composite
def recordings(draw: st.DrawFn) -> tuple[list[Reading], int]:
    """Tick-aligned readings of a few series, some ticks missing, and the tick to decide at."""
    ticks = draw(st.integers(min_value=1, max_value=14))
    readings: list[Reading] = []
    for tick in range(1, ticks + 1):
        if draw(st.booleans()) or draw(st.booleans()):
            rate = draw(
                st.sampled_from([0.0, 0.0004, 0.003, 0.006, 0.008, 0.012, 0.03, 0.08])
                | st.floats(0, 0.2)
            )
            samples = draw(st.sampled_from([0, 40, 300, 3000, 50_000]))
            readings.append(Reading(at(tick), "error_rate", rate, samples=samples))
        if draw(st.integers(0, 3)) == 0:
            readings.append(
                Reading(
                    at(tick), "flow", draw(st.sampled_from([0.0, 1.0])), labels={"flow": "auth"}
                )
            )
        if draw(st.integers(0, 3)) == 0:
            readings.append(
                Reading(
                    at(tick), "health", draw(st.sampled_from([0.0, 1.0])), labels={"check": "api"}
                )
            )
        if draw(st.integers(0, 5)) == 0:
            readings.append(
                Reading(
                    at(tick),
                    "flag_error_rate",
                    draw(st.floats(0, 0.2)),
                    labels={"flag": "new_checkout"},
                    samples=draw(st.sampled_from([30, 3000])),
                )
            )
    now = draw(st.integers(min_value=1, max_value=ticks + 2))
    return readings, now


@settings(max_examples=400, deadline=None)
@given(recordings(), st.floats(min_value=1.0, max_value=4.0))
def test_raising_the_error_rate_never_softens_a_rollback(
    recording: tuple[list[Reading], int], factor: float
) -> None:
    readings, now = recording
    before = decide(RULES, DEPLOY, readings, at(now), TICK)
    raised = [
        replace(r, value=min(1.0, r.value * factor)) if r.metric == "error_rate" else r
        for r in readings
    ]
    after = decide(RULES, DEPLOY, raised, at(now), TICK)
    if before.verdict is Verdict.ROLLBACK:
        assert after.verdict is Verdict.ROLLBACK, (before.explanation, after.explanation)


@settings(max_examples=400, deadline=None)
@given(recordings(), st.data())
def test_a_missing_reading_never_creates_a_rollback(
    recording: tuple[list[Reading], int], data: st.DataObject
) -> None:
    readings, now = recording
    if not readings:
        return
    gone = data.draw(st.integers(0, len(readings) - 1))
    with_gap = readings[:gone] + readings[gone + 1 :]
    if decide(RULES, DEPLOY, with_gap, at(now), TICK).verdict is Verdict.ROLLBACK:
        full = decide(RULES, DEPLOY, readings, at(now), TICK)
        assert full.verdict is Verdict.ROLLBACK, full.explanation


@settings(max_examples=200, deadline=None)
@given(recordings(), st.randoms(use_true_random=False))
def test_the_engine_is_deterministic_and_ignores_input_order(
    recording: tuple[list[Reading], int], rnd: random.Random
) -> None:
    readings, now = recording
    first = decide(RULES, DEPLOY, readings, at(now), TICK)
    assert decide(RULES, DEPLOY, readings, at(now), TICK) == first
    shuffled = list(readings)
    rnd.shuffle(shuffled)
    assert decide(RULES, DEPLOY, shuffled, at(now), TICK) == first
