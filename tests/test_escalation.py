"""The escalation chain, driven by a manual clock through the real daemon: each level is paged
in the Slack stand-in at its time, never twice, across a daemon restart, until an ack."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from tests.conftest import Runner
from tests.notify.story import rolled_back
from tests.test_api import WITH_TOKEN, running
from watchdog.clock import ManualClock
from watchdog.notify.escalation import due_steps
from watchdog.sandbox import stack
from watchdog.settings import EscalationStep, LoadedConfig, load_config
from watchdog.store.sql import SqlStore

CHAIN = """escalation:
  - {name: on-call, after: 0m, mention: "<!subteam^S0ONCALL>"}
  - {name: team-lead, after: 5m, mention: "<@U0LEAD>"}
  - {name: cto, after: 20m, mention: "<@U0CTO>"}
"""
MENTIONS = ["<!subteam^S0ONCALL>", "<@U0LEAD>", "<@U0CTO>"]


def with_chain(tmp_path: Path, sandbox: stack.Stack) -> LoadedConfig:
    path = tmp_path / "escalating.yaml"
    path.write_text(sandbox.config(tmp_path, interval="15s", window="2m") + WITH_TOKEN + CHAIN)
    return load_config(path)


def paged(sandbox: stack.Stack) -> list[str]:
    """The mentions paged so far, in order (one per escalation message)."""
    return [
        mention
        for message in sandbox.channel.messages()
        for mention in MENTIONS
        if mention in str(message.get("text", ""))
    ]


async def test_the_chain_pages_each_level_at_its_time_across_a_restart_until_acked(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    story = await rolled_back(store)
    decided = story.watch.decided_at
    assert decided is not None
    config = with_chain(tmp_path, sandbox)

    async def at(offset: timedelta) -> list[str]:
        clock.set(decided + offset)
        await daemon.follow_up()
        return paged(sandbox)

    async with running(config, store, clock) as daemon:
        await daemon.start()
        assert await at(timedelta(seconds=1)) == MENTIONS[:1]  # on-call at once
        assert await at(timedelta(minutes=4, seconds=59)) == MENTIONS[:1]
        assert await at(timedelta(minutes=5)) == MENTIONS[:2]  # on-call had their 5 minutes
    async with running(config, store, clock) as daemon:  # a restart forgets nothing
        await daemon.start()
        assert await at(timedelta(minutes=6)) == MENTIONS[:2]  # and repeats nothing
        clock.set(decided + timedelta(minutes=12))
        acked = await daemon.ack(story.watch.id)
        assert acked.acknowledged_at == decided + timedelta(minutes=12)
        assert await at(timedelta(minutes=25)) == MENTIONS[:2]  # the CTO is never paged


async def test_an_unacknowledged_incident_reaches_the_last_level_after_a_restart(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    story = await rolled_back(store)
    decided = story.watch.decided_at
    assert decided is not None
    config = with_chain(tmp_path, sandbox)
    async with running(config, store, clock) as daemon:
        await daemon.start()
        clock.set(decided + timedelta(seconds=1))
        await daemon.follow_up()
    # Down for half an hour: every level now due is paged once, in order.
    async with running(config, store, clock) as daemon:
        await daemon.start()
        clock.set(decided + timedelta(minutes=30))
        await daemon.follow_up()
        await daemon.follow_up()
    assert paged(sandbox) == MENTIONS


def test_due_steps_counts_every_level_from_the_incidents_start() -> None:
    start = datetime.fromisoformat("2026-01-28T12:00:00+00:00")
    chain = [
        EscalationStep(name="on-call", after=timedelta(0), mention="a"),
        EscalationStep(name="lead", after=timedelta(minutes=5), mention="b"),
    ]
    names = [s.name for s in due_steps(chain, start, None, set(), start + timedelta(minutes=5))]
    assert names == ["on-call", "lead"]
    assert due_steps(chain, start, None, {"on-call", "lead"}, start + timedelta(hours=1)) == []
    assert due_steps(chain, start, start, set(), start + timedelta(hours=1)) == []


async def test_watchdog_ack_stops_the_chain_from_the_command_line(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, run_watchdog: Runner
) -> None:
    story = await rolled_back(store)
    path = tmp_path / "escalating.yaml"
    with_chain(tmp_path, sandbox)
    done = await asyncio.to_thread(run_watchdog, "ack", story.watch.id, "--config", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{story.watch.id}: acknowledged at ")
    record = await store.watch(story.watch.id)
    assert record is not None
    assert record.acknowledged_at is not None
    unknown = await asyncio.to_thread(run_watchdog, "ack", "nope", "--config", str(path))
    assert (unknown.returncode, unknown.stderr) == (1, "watchdog: no watch nope\n")


def test_a_drill_day_the_scheduler_cannot_read_fails_config_check(
    tmp_path: Path, sandbox: stack.Stack, run_watchdog: Runner
) -> None:
    path = tmp_path / "drills.yaml"
    path.write_text(
        sandbox.config(tmp_path) + 'drills: {target: backend, schedule: "last fry 15:00"}\n'
    )
    done = run_watchdog("config", "check", "--config", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"watchdog: {path}:")
    assert "drills.schedule: expected '<day> HH:MM'" in done.stderr
    assert "'last fry 15:00'" in done.stderr
