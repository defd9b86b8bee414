"""One contract, every StateStore: the same tests run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from watchdog.errors import StoreError
from watchdog.model import Decision, Deployment, Reading, Scope, Verdict
from watchdog.signals.base import Failure, ProbeError
from watchdog.store.base import LeaseLost, RaisedSignal
from watchdog.store.postgres import postgres_store
from watchdog.store.records import (
    ActionRecord,
    ActionStatus,
    Lease,
    NotificationRecord,
    NotificationStatus,
    Outcome,
    WatchRecord,
    WatchState,
)
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


Opener = Callable[[], SqlStore]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens a new store on the test's one database, as another replica (or process) would."""
    if request.param == "sqlite":
        return lambda: sqlite_store(tmp_path / "state.db")
    dsn = request.getfixturevalue("pg_dsn")
    return lambda: postgres_store(dsn)


@pytest.fixture
async def store(open_store: Opener) -> AsyncIterator[SqlStore]:
    made = open_store()
    await made.migrate()
    yield made
    await made.close()


@pytest.fixture
async def replica(store: SqlStore, open_store: Opener) -> AsyncIterator[SqlStore]:
    """A second store on the same database as ``store``, with its own connection(s)."""
    made = open_store()
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


async def test_open_watches_of_one_target(store: SqlStore) -> None:
    web = replace(DEP, target="web")
    for deployment in (DEP, web):
        await store.save_deployment(deployment)
    backend_watch = await store.open_watch(new_watch())
    web_watch = await store.open_watch(new_watch(target="web"))
    assert await store.open_watches("web") == [web_watch]
    assert await store.open_watches("backend") == [backend_watch]
    assert await store.open_watches("nowhere") == []


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
        incident_report="incidents/2026-01-28-rollback-backend-error-rate.md",
    )
    await store.hold_watch(watch.id)  # before it closes: a closed watch cannot be held
    await store.update_watch(changed)
    await store.acknowledge_watch(watch.id, T0 + timedelta(minutes=4))
    await store.set_incident_report(
        watch.id, "incidents/2026-01-28-rollback-backend-error-rate.md"
    )
    assert await store.watch(watch.id) == changed


async def test_readings_errors_and_decisions_round_trip_in_order(store: SqlStore) -> None:
    await store.save_deployment(DEP)
    watch = await store.open_watch(new_watch())
    tick1 = [Reading(T0 + timedelta(seconds=15), "error_rate", 0.001, samples=2900)]
    tick2 = [
        Reading(T0 + timedelta(seconds=30), "error_rate", 0.02, samples=3000),
        Reading(T0 + timedelta(seconds=30), "flow", 0.0, {"flow": "auth"}),
    ]
    error = ProbeError("sentry", Failure.TIMEOUT, "no answer within 10s", "error_rate")
    first = Decision(Verdict.NONE, T0 + timedelta(seconds=15), "error_rate 0.1 % → none")
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
    assert await store.add_tick(watch.id, tick1, [error], first) == watch
    assert await store.add_tick(watch.id, tick2, [], decision) == watch
    assert await store.readings(watch.id) == tick1 + tick2
    assert await store.probe_errors(watch.id) == [(T0 + timedelta(seconds=15), error)]
    assert await store.decisions(watch.id) == [first, decision]


async def test_a_tick_sees_a_hold_and_an_ack_made_since(store: SqlStore) -> None:
    await store.save_deployment(DEP)
    watch = await store.open_watch(new_watch())
    await store.hold_watch(watch.id)
    await store.acknowledge_watch(watch.id, T0 + timedelta(minutes=2))
    seen = await store.add_tick(watch.id, [], [], Decision(Verdict.NONE, T0, "ok"))
    assert seen.held
    assert seen.acknowledged_at == T0 + timedelta(minutes=2)


async def test_a_tick_of_an_unknown_watch_is_a_store_error(store: SqlStore) -> None:
    reading = Reading(T0, "error_rate", 0.02, samples=3000)
    with pytest.raises(StoreError):
        await store.add_tick("nope", [reading], [], Decision(Verdict.NONE, T0, "ok"))
    assert await store.readings("nope") == []


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


SECOND = timedelta(seconds=1)
TTL = timedelta(seconds=45)


async def test_a_lease_is_taken_renewed_and_refused_to_others(store: SqlStore) -> None:
    taken = await store.acquire_lease("watch:w1", "replica-a", TTL, T0)
    assert taken == Lease("watch:w1", "replica-a", 1, T0 + TTL)
    assert await store.acquire_lease("watch:w1", "replica-b", TTL, T0 + 10 * SECOND) is None
    renewed = await store.acquire_lease("watch:w1", "replica-a", TTL, T0 + 15 * SECOND)
    assert renewed == Lease("watch:w1", "replica-a", 1, T0 + 15 * SECOND + TTL)
    assert await store.acquire_lease("watch:w1", "replica-b", TTL, T0 + TTL) is None
    assert await store.leases() == [renewed]


async def test_an_expired_lease_changes_hands_and_its_token_grows(store: SqlStore) -> None:
    first = await store.acquire_lease("watch:w1", "replica-a", TTL, T0)
    assert first is not None
    taken_over = await store.acquire_lease("watch:w1", "replica-b", TTL, first.expires_at)
    assert taken_over == Lease("watch:w1", "replica-b", 2, first.expires_at + TTL)
    assert await store.acquire_lease("watch:w1", "replica-a", TTL, first.expires_at) is None
    back = await store.acquire_lease("watch:w1", "replica-a", TTL, taken_over.expires_at)
    assert back is not None
    assert back.token == 3


async def test_lease_expiry_is_exact_below_a_second(store: SqlStore) -> None:
    # SQLite compares times as text: "12:00:00+00:00" must sort before "12:00:00.5+00:00".
    short = timedelta(milliseconds=500)
    await store.acquire_lease("watch:w1", "replica-a", short, T0)
    assert await store.acquire_lease("watch:w1", "replica-b", TTL, T0) is None
    almost = T0 + short - timedelta(microseconds=1)
    assert await store.acquire_lease("watch:w1", "replica-b", TTL, almost) is None
    taken = await store.acquire_lease("watch:w1", "replica-b", TTL, T0 + short)
    assert taken is not None
    assert (taken.owner, taken.token) == ("replica-b", 2)


async def test_a_released_lease_is_free_at_once_but_only_its_owner_releases_it(
    store: SqlStore,
) -> None:
    await store.acquire_lease("watch:w1", "replica-a", TTL, T0)
    await store.release_lease("watch:w1", "replica-b")
    assert await store.acquire_lease("watch:w1", "replica-b", TTL, T0 + SECOND) is None
    await store.release_lease("watch:w1", "replica-a")
    taken = await store.acquire_lease("watch:w1", "replica-b", TTL, T0 + SECOND)
    assert taken == Lease("watch:w1", "replica-b", 2, T0 + SECOND + TTL)


async def test_a_replica_renews_every_lease_it_still_holds_at_once(store: SqlStore) -> None:
    for name in ("watch:w1", "watch:w2", "watch:w3", "watch:w4"):
        assert await store.acquire_lease(name, "replica-a", TTL, T0) is not None
    await store.release_lease("watch:w2", "replica-a")  # its watch closed
    assert await store.acquire_lease("watch:w3", "replica-b", TTL, T0 + TTL) is not None
    later = T0 + 2 * TTL  # w1 and w4 expired, but nobody took them

    renewed = await store.renew_leases(
        ["watch:w1", "watch:w2", "watch:w3", "watch:w4", "watch:w5"], "replica-a", TTL, later
    )

    assert [(x.name, x.token, x.expires_at) for x in renewed] == [
        ("watch:w1", 1, later + TTL),
        ("watch:w4", 1, later + TTL),
    ]
    assert await store.acquire_lease("watch:w1", "replica-b", TTL, later + SECOND) is None
    assert (await store.leases("watch:w3"))[0].owner == "replica-b"
    assert await store.renew_leases([], "replica-a", TTL, later) == []


async def test_leases_are_listed_by_an_exact_prefix(store: SqlStore) -> None:
    for name in ("watch:b", "watch:a", "WATCH:c", "w%x", "scheduler"):
        await store.acquire_lease(name, "replica-a", TTL, T0)
    assert [lease.name for lease in await store.leases("watch:")] == ["watch:a", "watch:b"]
    assert [lease.name for lease in await store.leases("w%")] == ["w%x"]
    assert len(await store.leases()) == 5


async def test_a_lease_needs_a_positive_ttl(store: SqlStore) -> None:
    with pytest.raises(ValueError, match="lease 'watch:w1': ttl must be positive"):
        await store.acquire_lease("watch:w1", "replica-a", timedelta(0), T0)


async def test_of_two_replicas_racing_for_a_lease_exactly_one_wins(
    store: SqlStore, replica: SqlStore
) -> None:
    for round_ in range(30):
        name = f"watch:{round_}"
        a, b = await asyncio.gather(
            store.acquire_lease(name, "replica-a", TTL, T0),
            replica.acquire_lease(name, "replica-b", TTL, T0),
        )
        assert [lease for lease in (a, b) if lease is not None] == await store.leases(name)
        assert (a is None) != (b is None), (a, b)
        # ...and again when the winner's lease has run out: one takes it over, token + 1.
        a, b = await asyncio.gather(
            store.acquire_lease(name, "replica-c", TTL, T0 + TTL),
            replica.acquire_lease(name, "replica-d", TTL, T0 + TTL),
        )
        (winner,) = [lease for lease in (a, b) if lease is not None]
        assert winner.token == 2
        assert await store.leases(name) == [winner]


async def test_an_action_fenced_by_a_lease_lost_is_refused_and_not_written(
    store: SqlStore,
) -> None:
    await store.save_deployment(DEP)
    watch = await store.open_watch(new_watch())
    mine = await store.acquire_lease(f"watch:{watch.id}", "replica-a", TTL, T0)
    assert mine is not None
    assert await store.acquire_lease(mine.name, "replica-b", TTL, mine.expires_at) is not None

    with pytest.raises(LeaseLost, match="no longer held by 'replica-a' with token 1"):
        await store.begin_action(rollback_action(watch_id=watch.id), fence=mine)
    with pytest.raises(LeaseLost):
        await store.update_watch(replace(watch, state=WatchState.ACTING), fence=mine)
    reading = Reading(T0, "error_rate", 0.02, samples=3000)
    with pytest.raises(LeaseLost):
        await store.add_tick(watch.id, [reading], [], Decision(Verdict.NONE, T0, "ok"), mine)

    assert await store.readings(watch.id) == []
    assert await store.decisions(watch.id) == []
    assert await store.actions(watch.id) == []
    assert await store.unfinished_actions() == []
    assert await store.watch(watch.id) == watch


async def test_an_action_is_refused_once_the_lease_expired_even_if_nobody_took_it(
    store: SqlStore,
) -> None:
    mine = await store.acquire_lease("watch:w1", "replica-a", TTL, T0)
    assert mine is not None
    late = rollback_action(started_at=mine.expires_at)
    with pytest.raises(LeaseLost):
        await store.begin_action(late, fence=mine)
    assert await store.unfinished_actions() == []
    in_time = rollback_action(started_at=mine.expires_at - SECOND)
    assert (await store.begin_action(in_time, fence=mine)).id == in_time.id


async def test_writes_fenced_by_a_lease_held_go_through(store: SqlStore) -> None:
    await store.save_deployment(DEP)
    watch = await store.open_watch(new_watch())
    mine = await store.acquire_lease(f"watch:{watch.id}", "replica-a", TTL, T0)
    assert mine is not None
    acting = replace(watch, state=WatchState.ACTING, decided_at=T0 + SECOND)
    await store.update_watch(acting, fence=mine)
    action = await store.begin_action(
        rollback_action(watch_id=watch.id, started_at=T0 + SECOND), fence=mine
    )
    assert await store.watch(watch.id) == acting
    assert await store.actions(watch.id) == [action]


async def test_two_replicas_racing_to_act_on_one_deployment_record_one_action(
    store: SqlStore, replica: SqlStore
) -> None:
    for round_ in range(30):
        key = f"rollback:backend:dep-{round_}"
        a, b = await asyncio.gather(
            store.begin_action(rollback_action(key=key)),
            replica.begin_action(rollback_action(key=key)),
        )
        assert a == b
    assert len(await store.unfinished_actions()) == 30


def notification(**changes: object) -> NotificationRecord:
    queued = NotificationRecord(
        id=uuid.uuid4().hex,
        key="w1:rollback_executed:slack",
        watch_id="w1",
        kind="rollback_executed",
        notifier="slack",
        payload={"text": "rolled back", "blocks": [{"type": "section", "n": 1}]},
        created_at=T0,
        due_at=T0,
    )
    return replace(queued, **changes)  # type: ignore[arg-type]


async def test_a_notification_is_queued_once_per_key(store: SqlStore) -> None:
    first = notification()
    assert await store.queue_notification(first) is True
    assert await store.queue_notification(notification(payload={"text": "again"})) is False
    assert await store.notifications("w1") == [first]


async def test_due_notifications_are_the_pending_ones_oldest_first(store: SqlStore) -> None:
    later = notification(key="w1:b", created_at=T0 + 2 * SECOND, due_at=T0)
    earlier = notification(key="w1:a", created_at=T0 + SECOND, due_at=T0 + SECOND)
    not_yet = notification(key="w1:c", created_at=T0, due_at=T0 + 10 * SECOND)
    sent = notification(key="w1:d", created_at=T0)
    for queued in (later, earlier, not_yet, sent):
        await store.queue_notification(queued)
    await store.notification_sent(sent.id, T0 + SECOND)

    assert await store.due_notifications(T0 + SECOND) == [earlier, later]
    assert await store.due_notifications(T0 + SECOND, limit=1) == [earlier]
    assert [n.id for n in await store.due_notifications(T0 + 10 * SECOND)] == [
        not_yet.id,
        earlier.id,
        later.id,
    ]


async def test_a_failed_notification_is_retried_then_given_up(store: SqlStore) -> None:
    queued = notification()
    await store.queue_notification(queued)
    retry_at = T0 + 30 * SECOND
    await store.notification_failed(queued.id, "slack: HTTP 503", retry_at)
    assert await store.due_notifications(T0 + 29 * SECOND) == []
    retried = replace(queued, due_at=retry_at, attempts=1, last_error="slack: HTTP 503")
    assert await store.due_notifications(retry_at) == [retried]

    await store.notification_failed(queued.id, "slack: HTTP 404", None)
    assert await store.due_notifications(T0 + timedelta(days=1)) == []
    assert await store.notifications("w1") == [
        replace(retried, status=NotificationStatus.FAILED, attempts=2, last_error="slack: HTTP 404")
    ]


async def test_a_sent_notification_is_not_due_again(store: SqlStore) -> None:
    queued = notification()
    await store.queue_notification(queued)
    await store.notification_failed(queued.id, "timed out", T0 + SECOND)
    await store.notification_sent(queued.id, T0 + 2 * SECOND)
    assert await store.due_notifications(T0 + timedelta(days=1)) == []
    (stored,) = await store.notifications("w1")
    assert (stored.status, stored.sent_at, stored.attempts) == (
        NotificationStatus.SENT,
        T0 + 2 * SECOND,
        1,
    )


async def test_an_unknown_notification_is_a_store_error(store: SqlStore) -> None:
    with pytest.raises(StoreError, match="no notification 'nope'"):
        await store.notification_sent("nope", T0)
    with pytest.raises(StoreError, match="no notification 'nope'"):
        await store.notification_failed("nope", "x", None)


async def test_a_webhook_delivery_is_seen_once(store: SqlStore) -> None:
    assert await store.remember_delivery("github", "d-1", T0) is True
    assert await store.remember_delivery("github", "d-1", T0 + SECOND) is False
    assert await store.remember_delivery("vercel", "d-1", T0) is True


async def test_latency_samples_are_kept_per_target_and_check_in_order(store: SqlStore) -> None:
    minute = timedelta(minutes=1)
    await store.add_latency_samples("backend", "api", T0 - 2 * minute, [0.3, 0.1, 0.2])
    await store.add_latency_samples("backend", "web", T0 - 2 * minute, [0.9])
    await store.add_latency_samples("backend", "api", T0 - minute, [0.4])
    await store.add_latency_samples("backend", "api", T0, [])
    await store.add_latency_samples("frontend", "api", T0 - minute, [5.0])

    assert await store.latency_samples("backend", T0 - 2 * minute) == {
        "api": [
            (T0 - 2 * minute, 0.3),
            (T0 - 2 * minute, 0.1),
            (T0 - 2 * minute, 0.2),
            (T0 - minute, 0.4),
        ],
        "web": [(T0 - 2 * minute, 0.9)],
    }
    assert await store.latency_samples("backend", T0 - minute) == {"api": [(T0 - minute, 0.4)]}

    await store.prune_latency("backend", T0 - minute)
    assert await store.latency_samples("backend", T0 - timedelta(hours=1)) == {
        "api": [(T0 - minute, 0.4)]
    }
    assert await store.latency_samples("frontend", T0 - timedelta(hours=1)) == {
        "api": [(T0 - minute, 5.0)]
    }


async def test_a_watch_writing_its_state_never_undoes_a_hold_an_ack_or_a_report(
    store: SqlStore,
) -> None:
    await store.save_deployment(DEP)
    stale = await store.open_watch(new_watch())
    held = await store.hold_watch(stale.id)
    acked = await store.acknowledge_watch(stale.id, T0 + timedelta(minutes=1))
    again = await store.acknowledge_watch(stale.id, T0 + timedelta(minutes=9))
    await store.set_incident_report(stale.id, "incidents/2026-01-28-rollback-backend-x.md")
    assert held is not None
    assert held.held
    assert acked is not None
    assert again is not None
    assert again.acknowledged_at == acked.acknowledged_at == T0 + timedelta(minutes=1)
    await store.update_watch(replace(stale, state=WatchState.CLOSED, outcome=Outcome.HEALTHY))
    stored = await store.watch(stale.id)
    assert stored is not None
    assert (stored.state, stored.held, stored.acknowledged_at, stored.incident_report) == (
        WatchState.CLOSED,
        True,
        T0 + timedelta(minutes=1),
        "incidents/2026-01-28-rollback-backend-x.md",
    )
    assert await store.hold_watch(stale.id) is None  # closed: nothing left to hold
    assert await store.acknowledge_watch("nope", T0) is None


async def test_a_call_cancelled_mid_transaction_leaves_the_store_usable(
    store: SqlStore,
) -> None:
    # A probe timeout cancels a source that is reading the store: later calls must not find a
    # transaction left open behind it.
    for delay in (0, 0.0005, 0.001, 0.002, 0.005):
        task = asyncio.create_task(store.open_watches())
        await asyncio.sleep(delay)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await store.open_watches() == []
