"""One watch, tick by tick on a manual clock, against the whole sandbox: a clean deploy closes
healthy; a bad one is rolled back once and verified; a blind one closes inconclusive without
acting; a dry run acts on nothing; a resumed watch carries on where it stopped."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from tests.conftest import REPO, T0
from tests.providers.helpers import advancing_sleep, refused_url
from watchdog.clock import ManualClock
from watchdog.model import Deployment, Verdict
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.settings import LoadedConfig, load_config
from watchdog.store.records import Outcome, WatchState
from watchdog.store.sql import SqlStore
from watchdog.summary import watch_summary
from watchdog.watch import Watch, target_context

TICK = timedelta(seconds=15)
WINDOW = timedelta(minutes=2)
DEPLOY = Deployment(
    "backend", "dep-2", T0, previous_id="dep-1", release=BAD_RELEASE, previous_release=GOOD_RELEASE
)


def configured(tmp_path: Path, sandbox: stack.Stack, sentry_url: str | None = None) -> LoadedConfig:
    text = sandbox.config(tmp_path, interval="15s", window="2m")
    if sentry_url:
        text = text.replace(sandbox.urls["sentry"], sentry_url)
    path = tmp_path / "watchdog.yaml"
    path.write_text(text)
    return load_config(path)


@asynccontextmanager
async def watching(
    config: LoadedConfig, store: SqlStore, clock: ManualClock, *, dry_run: bool = False
) -> AsyncIterator[Watch]:
    async with target_context(
        config.settings, config.rules, store, clock, "backend", sleep=advancing_sleep(clock)
    ) as ctx:
        yield await Watch.start(ctx, DEPLOY, window=WINDOW, interval=TICK, dry_run=dry_run)


async def run_out(
    watch: Watch,
    sandbox: stack.Stack,
    clock: ManualClock,
    traffic: toyapp.Traffic,
    ticks: int = 100,
) -> list[Verdict]:
    """Tick until the watch closes: each tick, a tick's worth of traffic first."""
    verdicts = []
    for _ in range(ticks):
        if watch.closed:
            break
        clock.advance(TICK)
        traffic.pump()
        decision = await watch.tick()
        assert decision is not None
        verdicts.append(decision.verdict)
    return verdicts


def traffic_for(sandbox: stack.Stack, clock: ManualClock) -> toyapp.Traffic:
    return toyapp.Traffic(
        sandbox.app,
        sandbox.log,
        clock,
        project=stack.PROJECT,
        environment="production",
        per_second=40,
    )


async def test_a_clean_deploy_closes_healthy_when_the_window_ends(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # the new release is fine after all
    async with watching(configured(tmp_path, sandbox), store, clock) as watch:
        verdicts = await run_out(watch, sandbox, clock, traffic_for(sandbox, clock))
    assert set(verdicts) == {Verdict.NONE}
    assert len(verdicts) == 8  # 2 minutes of 15 s ticks
    assert (watch.record.state, watch.record.outcome) == (WatchState.CLOSED, Outcome.HEALTHY)
    assert sandbox.backend.received() == []


async def test_an_error_spike_is_rolled_back_once_and_verified(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    async with watching(configured(tmp_path, sandbox), store, clock) as watch:
        verdicts = await run_out(watch, sandbox, clock, traffic_for(sandbox, clock))
        summary = await watch_summary(store, watch.ctx.settings, watch.record)
    assert verdicts[-1] is Verdict.ROLLBACK
    assert len(verdicts) == 2  # held for 2 readings, then acted at once
    assert watch.record.outcome is Outcome.ROLLED_BACK
    assert summary["verdict"] == "rolled_back"
    assert summary["rule"] in {"critical-flow-broken", "error-rate-critical"}
    assert summary["actions"][0]["status"] == "done"
    assert summary["verification"]["passed"] is True
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE
    readings = await store.readings(watch.record.id)
    assert {r.metric for r in readings} >= {"error_rate", "health", "flow"}


async def test_a_blind_watch_closes_inconclusive_and_never_acts(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    sandbox.app.set_faults(toyapp.Faults(error_fraction=0.05), BAD_RELEASE)  # errors unseen
    config = configured(tmp_path, sandbox, sentry_url=refused_url())
    async with watching(config, store, clock) as watch:
        verdicts = await run_out(watch, sandbox, clock, traffic_for(sandbox, clock))
    assert Verdict.INCONCLUSIVE in verdicts
    assert Verdict.ROLLBACK not in verdicts
    assert watch.record.outcome is Outcome.INCONCLUSIVE
    assert sandbox.backend.received() == []
    errors = await store.probe_errors(watch.record.id)
    assert errors
    assert "sentry" in {e.source for _, e in errors}


async def test_a_dry_run_decides_but_acts_on_nothing(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    async with watching(configured(tmp_path, sandbox), store, clock, dry_run=True) as watch:
        await run_out(watch, sandbox, clock, traffic_for(sandbox, clock))
    assert watch.record.outcome is Outcome.WOULD_ROLL_BACK
    assert watch.record.explanation
    assert sandbox.backend.received() == []
    assert sandbox.app.live == BAD_RELEASE


async def test_a_held_watch_decides_but_does_not_act(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    async with watching(configured(tmp_path, sandbox), store, clock) as watch:
        await store.hold_watch(watch.record.id)  # through the API, or another replica
        verdicts = await run_out(watch, sandbox, clock, traffic_for(sandbox, clock))
    assert Verdict.ROLLBACK in verdicts
    assert len(verdicts) == 8  # it watched the whole window
    assert watch.record.outcome is Outcome.WOULD_ROLL_BACK
    assert sandbox.backend.received() == []
    assert sandbox.app.live == BAD_RELEASE


async def test_a_resumed_watch_keeps_its_readings_and_rolls_back_once(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    config = configured(tmp_path, sandbox)
    traffic = traffic_for(sandbox, clock)
    async with watching(config, store, clock) as first:
        await run_out(first, sandbox, clock, traffic, ticks=1)  # then the daemon dies
    (record,) = await store.open_watches()
    assert len(await store.readings(record.id)) > 0
    before = len(await store.readings(record.id))
    async with target_context(
        config.settings, config.rules, store, clock, "backend", sleep=advancing_sleep(clock)
    ) as ctx:
        again = await Watch.start(ctx, DEPLOY, window=WINDOW, interval=TICK, dry_run=False)
        assert again.record.id == record.id  # announcing it again finds the same watch
        resumed = await Watch.resume(ctx, record)
        await run_out(resumed, sandbox, clock, traffic)
    assert resumed.record.outcome is Outcome.ROLLED_BACK
    assert len(await store.readings(record.id)) > before
    assert sandbox.backend.count("rollback") == 1


async def test_a_full_rollback_decided_on_the_drill_target_rolls_back_only_that_target(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    # The shipped rules, with the broken login calling for a full rollback.
    rules = (REPO / "config" / "rules.yaml").read_text()
    block = "    for: 2\n    verdict: rollback\n    urgency: immediate\n"
    start = rules.index("  - name: critical-flow-broken")
    at = rules.index(block, start) + len(block)
    (tmp_path / "rules.yaml").write_text(rules[:at] + "    scope: full\n" + rules[at:])
    text = sandbox.config(tmp_path, interval="15s", window="2m")
    text = re.sub(r"(?m)^rules: .*$", f"rules: {tmp_path / 'rules.yaml'}", text)
    path = tmp_path / "drilled.yaml"
    path.write_text(text + "drills: {target: backend}\n")
    config = load_config(path)
    async with watching(config, store, clock) as watch:
        await run_out(watch, sandbox, clock, traffic_for(sandbox, clock))
    rule = "critical-flow-broken"
    assert (watch.record.rule, watch.record.outcome) == (rule, Outcome.ROLLED_BACK)
    assert [a.target for a in await store.actions(watch.record.id)] == ["backend"]
    assert sandbox.backend.count("rollback") == 1
