"""Schema upgrades in place: a database written by the version-1 schema keeps its data through
``migrate()`` and gains what version 2 brings, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from watchdog.model import Reading
from watchdog.store import codec
from watchdog.store.postgres import PostgresBackend
from watchdog.store.records import NotificationRecord, WatchState
from watchdog.store.schema import MIGRATIONS
from watchdog.store.sql import Backend, SqlStore
from watchdog.store.sqlite import SqliteBackend

from .test_store_contract import DEP, T0, new_watch, rollback_action

MakeBackend = Callable[[], Backend]


@pytest.fixture(params=["sqlite", "postgres"])
def make_backend(request: pytest.FixtureRequest, tmp_path: Path) -> MakeBackend:
    if request.param == "sqlite":
        return lambda: SqliteBackend(tmp_path / "state.db")
    dsn = request.getfixturevalue("pg_dsn")
    return lambda: PostgresBackend(dsn)


async def _insert(backend: Backend, table: str, row: codec.Row) -> None:
    columns = ", ".join(row)
    values = ", ".join(f"%({c})s" for c in row)
    async with backend.transaction() as tx:
        await tx.run(f"INSERT INTO {table} ({columns}) VALUES ({values})", row)


async def _versions(backend: Backend) -> list[int]:
    async with backend.transaction() as tx:
        rows = await tx.run("SELECT version FROM schema_version ORDER BY version")
    return [row["version"] for row in rows]


async def test_a_version_1_database_upgrades_in_place_and_keeps_its_data(
    make_backend: MakeBackend,
) -> None:
    # A database as the version-1 watchdog left it, written with version 1's columns.
    old = make_backend()
    async with old.transaction() as tx:
        await tx.run("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in MIGRATIONS[old.dialect][0]:
            await tx.run(statement)
        await tx.run("INSERT INTO schema_version (version) VALUES (1)")
    watch = new_watch(explanation="still watching")
    reading = Reading(T0 + timedelta(seconds=15), "error_rate", 0.02, samples=3000)
    action = rollback_action(watch_id=watch.id)
    watch_row = codec.watch_row(watch)
    del watch_row["incident_report"]
    await _insert(old, "deployments", codec.deployment_row(DEP))
    await _insert(old, "watches", watch_row)
    await _insert(old, "readings", codec.reading_row(watch.id, reading))
    await _insert(old, "actions", codec.action_row(action))
    await old.close()

    store = SqlStore(make_backend())
    try:
        await store.migrate()

        assert await store.deployment("backend", "dep-2") == DEP
        assert await store.watch(watch.id) == watch
        assert await store.readings(watch.id) == [reading]
        assert await store.unfinished_actions() == [action]
        assert await store.open_watch(new_watch()) == watch  # still the one open watch

        reported = replace(watch, state=WatchState.CLOSED, incident_report="incidents/x.md")
        lease = await store.acquire_lease(
            f"watch:{watch.id}", "replica-a", timedelta(minutes=1), T0
        )
        assert lease is not None
        await store.update_watch(reported, fence=lease)
        await store.set_incident_report(watch.id, "incidents/x.md")
        assert await store.watch(watch.id) == reported
        note = NotificationRecord(
            "n1", f"{watch.id}:closed:slack", watch.id, "closed", "slack", {}, T0, T0
        )
        assert await store.queue_notification(note)
        assert await store.due_notifications(T0) == [note]
        assert await store.remember_delivery("render", "d-1", T0)
        await store.add_latency_samples("backend", "api", T0, [0.1])
        assert await store.latency_samples("backend", T0) == {"api": [(T0, 0.1)]}
    finally:
        await store.close()
    backend = make_backend()
    assert await _versions(backend) == [1, 2]
    await backend.close()


async def test_replicas_starting_together_migrate_once(make_backend: MakeBackend) -> None:
    stores = [SqlStore(make_backend()) for _ in range(3)]
    try:
        await asyncio.gather(*(store.migrate() for store in stores))
        assert await stores[0].save_deployment(DEP)
    finally:
        for store in stores:
            await store.close()
    backend = make_backend()
    assert await _versions(backend) == [1, 2]
    await backend.close()
