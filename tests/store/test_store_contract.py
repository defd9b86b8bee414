"""One contract, every StateStore: the same tests run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watchdog.errors import StoreError
from watchdog.model import Decision, Deployment, Reading, Scope, Verdict
from watchdog.signals.base import Failure, ProbeError
from watchdog.store.base import RaisedSignal
from watchdog.store.postgres import postgres_store
from watchdog.store.records import ActionRecord, ActionStatus, Outcome, WatchRecord, WatchState
from watchdog.store.sql import SqlStore
from watchdog.store.sqlite import sqlite_store

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
DEP = Deployment(
    "backend",
    "dep-2",
    T0,
    previous_id="dep-1",
    release="abc",
    previous_release="def",
    commit="abc",
    migration_version="20260128",
)


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        made = sqlite_store(tmp_path / "state.db")
    else:
        made = postgres_store(request.getfixturevalue("pg_dsn"))
    await made.migrate()
    yield made
    await made.close()


def new_watch(**changes: object) -> WatchRecord:
    watch = WatchRecord(
        id=uuid.uuid4().hex,
        target="backend",
        deployment_id="dep-2",
        state=WatchState.OBSERVING,
        started_at=T0,
        closes_at=T0 + timedelta(minutes=10),
        interval=timedelta(seconds=15),
    )
    return replace(watch, **changes)  # type: ignore[arg-type]


def rollback_action(**changes: object) -> ActionRecord:
    action = ActionRecord(
        id=uuid.uuid4().hex,
        key="rollback:backend:dep-2",
        watch_id=None,
        target="backend",
        deployment_id="dep-2",
        kind="rollback",
        provider="render",
        to="dep-1",
        status=ActionStatus.INTENDED,
        started_at=T0 + timedelta(minutes=2),
        reason="error rate",
    )
    return replace(action, **changes)  # type: ignore[arg-type]


async def test_migrate_twice_is_harmless(store: SqlStore) -> None:
    await store.migrate()
    assert await store.save_deployment(DEP)


async def test_a_deployment_is_saved_once(store: SqlStore) -> None:
    assert await store.save_deployment(DEP) is True
    assert await store.save_deployment(replace(DEP, release="other")) is False
    assert await store.deployment("backend", "dep-2") == DEP
    assert await store.deployment("backend", "nope") is None


async def test_one_open_watch_per_deployment(store: SqlStore) -> None:
    await store.save_deployment(DEP)
    first = await store.open_watch(new_watch())
    again = await store.open_watch(new_watch())
    assert again.id == first.id
    assert [w.id for w in await store.open_watches()] == [first.id]
    await store.update_watch(
        replace(
            first,
            state=WatchState.CLOSED,
            outcome=Outcome.HEALTHY,
            closed_at=T0 + timedelta(minutes=10),
        )
    )
    assert await store.open_watches() == []
    later = await store.open_watch(new_watch(started_at=T0 + timedelta(hours=1)))
    assert later.id != first.id
    assert [w.id for w in await store.recent_watches(5)] == [later.id, first.id]


async def test_a_watch_round_trips_every_field(store: SqlStore) -> None:
    await store.save_deployment(DEP)
    watch = await store.open_watch(new_watch(dry_run=True))
    changed = replace(
        watch,
        state=WatchState.CLOSED,
        held=True,
        outcome=Outcome.ROLLED_BACK,
        rule="error-rate-critical",
        decided_at=T0 + timedelta(minutes=2),
        closed_at=T0 + timedelta(minutes=3),
        acknowledged_at=T0 + timedelta(minutes=4),
        baseline={"appointments": 1000, "contacts": 400},
        verification=(("health api", True, ""), ("error rate", False, "1.2 % over 3,000")),
        explanation="error_rate 2 % → rollback, immediate",
    )
    await store.update_watch(changed)
    assert await store.watch(watch.id) == changed


async def test_readings_errors_and_decisions_round_trip_in_order(store: SqlStore) -> None:
    await store.save_deployment(DEP)
    watch = await store.open_watch(new_watch())
    tick2 = [
        Reading(T0 + timedelta(seconds=30), "error_rate", 0.02, samples=3000),
        Reading(T0 + timedelta(seconds=30), "flow", 0.0, {"flow": "auth"}),
    ]
    tick1 = [Reading(T0 + timedelta(seconds=15), "error_rate", 0.001, samples=2900)]
    error = ProbeError("sentry", Failure.TIMEOUT, "no answer within 10s", "error_rate")
    await store.add_readings(watch.id, tick2, [], T0 + timedelta(seconds=30))
    await store.add_readings(watch.id, tick1, [error], T0 + timedelta(seconds=15))
    assert await store.readings(watch.id) == tick1 + tick2
    assert await store.probe_errors(watch.id) == [(T0 + timedelta(seconds=15), error)]
    decision = Decision(
        Verdict.ROLLBACK,
        T0 + timedelta(seconds=30),
        "error_rate 2 % → rollback",
        rule="error-rate-critical",
        evidence=tuple(tick2[:1]),
        urgency="immediate",
        deadline=T0 + timedelta(minutes=10),
        scope=Scope.APPLICATION,
        also_fired=("error-rate-high",),
    )
    await store.add_decision(watch.id, decision)
    assert await store.decisions(watch.id) == [decision]


async def test_a_deployment_is_rolled_back_at_most_once(store: SqlStore) -> None:
    first = await store.begin_action(rollback_action())
    second = await store.begin_action(rollback_action())
    assert second.id == first.id
    assert await store.unfinished_actions() == [first]
    done = await store.finish_action(
        first.id, ActionStatus.DONE, T0 + timedelta(minutes=3), notes=["auto-deploy turned off"]
    )
    assert done.status is ActionStatus.DONE
    assert done.seconds == 60
    assert done.notes == ("auto-deploy turned off",)
    assert await store.unfinished_actions() == []
    third = await store.begin_action(rollback_action())
    assert third == done


async def test_actions_of_a_watch(store: SqlStore) -> None:
    await store.save_deployment(DEP)
    watch = await store.open_watch(new_watch())
    action = await store.begin_action(rollback_action(watch_id=watch.id))
    failed = await store.finish_action(
        action.id, ActionStatus.FAILED, T0 + timedelta(minutes=7), error="render: HTTP 500"
    )
    assert await store.actions(watch.id) == [failed]


async def test_an_unreachable_postgres_is_a_store_error_without_the_password() -> None:
    store = postgres_store(
        "postgresql://watchdog:sup3rs3cret@127.0.0.1:1/state", connect_timeout=0.5
    )
    with pytest.raises(StoreError) as info:
        await store.migrate()
    assert "sup3rs3cret" not in str(info.value)
    assert str(info.value) == "postgres: no connection within 0.5s"
    await store.close()


async def test_a_store_that_cannot_write_says_so(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()  # a directory where the file should be
    store = sqlite_store(tmp_path / "state.db")
    with pytest.raises(StoreError, match=r"^sqlite .*state.db: unable to open database file"):
        await store.migrate()
    await store.close()


async def test_a_statement_error_rolls_the_transaction_back(store: SqlStore) -> None:
    await store.save_deployment(DEP)
    with pytest.raises(StoreError):
        await store.open_watch(new_watch(target="unknown-target"))  # foreign key fails
    assert await store.open_watches() == []


async def test_rolled_back_lists_the_deployments_acted_on(store: SqlStore) -> None:
    assert await store.rolled_back("backend") == set()
    action = await store.begin_action(rollback_action())
    await store.finish_action(action.id, ActionStatus.FAILED, T0, error="x")
    assert await store.rolled_back("backend") == {"dep-2"}
    assert await store.rolled_back("frontend") == set()


async def test_raised_signals_are_kept_per_deployment_oldest_first(store: SqlStore) -> None:
    later, earlier = T0 + timedelta(minutes=2), T0 + timedelta(minutes=1)
    await store.raise_signal("backend", "dep-2", "security_alert", "secret in bundle", later)
    await store.raise_signal("backend", "dep-2", "security_alert", "CVE-2026-0001", earlier)
    await store.raise_signal("backend", "dep-3", "security_alert", "other deploy", T0)
    await store.raise_signal("frontend", "dep-2", "security_alert", "other target", T0)
    assert await store.raised_signals("backend", "dep-2") == [
        RaisedSignal("backend", "dep-2", "security_alert", "CVE-2026-0001", earlier),
        RaisedSignal("backend", "dep-2", "security_alert", "secret in bundle", later),
    ]
    assert await store.raised_signals("backend", "dep-1") == []


async def test_a_signal_may_name_a_deployment_before_it_is_announced(store: SqlStore) -> None:
    await store.raise_signal("backend", "dep-2", "security_alert", "found early", T0)
    assert await store.deployment("backend", "dep-2") is None
    assert await store.save_deployment(DEP)
    assert [s.detail for s in await store.raised_signals("backend", "dep-2")] == ["found early"]


async def test_rolled_back_to_lists_the_releases_gone_back_to(store: SqlStore) -> None:
    action = await store.begin_action(rollback_action(to_release="good-sha"))
    assert await store.rolled_back_to("backend") == set()  # not done yet
    await store.finish_action(action.id, ActionStatus.DONE, T0)
    assert await store.rolled_back_to("backend") == {"good-sha"}
