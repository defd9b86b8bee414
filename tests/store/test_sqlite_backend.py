"""The SQLite store shares its file with other processes (``watchdog ack``, ``watchdog
rollback``): while one of them holds the write lock, the daemon's writes wait for it without
stopping the daemon, and a write that gives up or is cancelled leaves the store usable."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from watchdog.errors import StoreError
from watchdog.store.records import Lease
from watchdog.store.sql import SqlStore
from watchdog.store.sqlite import SqliteBackend

from .test_store_contract import T0

TTL = timedelta(seconds=30)


@pytest.fixture
def other_process(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to ``state.db``, as a CLI in another process would hold it; start a
    write with ``BEGIN IMMEDIATE`` to hold the write lock."""
    conn = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    yield conn
    conn.close()


async def test_a_write_waits_for_another_process_while_the_daemon_keeps_running(
    store: SqlStore, other_process: sqlite3.Connection
) -> None:
    other_process.execute("BEGIN IMMEDIATE")
    write = asyncio.create_task(store.acquire_lease("watch/a", "daemon", TTL, T0))
    ticked = asyncio.Event()

    async def tick() -> None:
        ticked.set()

    other_task = asyncio.create_task(tick())
    await ticked.wait()  # the loop runs other tasks while the write waits
    assert not write.done()
    await other_task

    other_process.execute("COMMIT")
    assert await write == Lease("watch/a", "daemon", 1, T0 + TTL)
    assert await store.leases() == [Lease("watch/a", "daemon", 1, T0 + TTL)]


async def test_a_write_cancelled_while_it_waits_writes_nothing_and_the_store_goes_on(
    store: SqlStore, other_process: sqlite3.Connection
) -> None:
    other_process.execute("BEGIN IMMEDIATE")
    write = asyncio.create_task(store.acquire_lease("watch/a", "daemon", TTL, T0))
    await asyncio.sleep(0)  # the write starts and finds the database locked
    write.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await write
    other_process.execute("COMMIT")

    assert await store.leases() == []
    assert await store.acquire_lease("watch/b", "daemon", TTL, T0) is not None
    other_process.execute("BEGIN IMMEDIATE")  # the store holds no write lock behind it
    other_process.execute("COMMIT")


async def test_a_write_that_waits_longer_than_the_busy_timeout_fails_naming_the_file(
    tmp_path: Path, other_process: sqlite3.Connection
) -> None:
    store = SqlStore(SqliteBackend(tmp_path / "state.db", busy_timeout=0.01))
    await store.migrate()
    other_process.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match=r"^sqlite .*state\.db: database is locked"):
        await store.acquire_lease("watch/a", "daemon", TTL, T0)
    other_process.execute("COMMIT")

    assert await store.acquire_lease("watch/a", "daemon", TTL, T0) is not None
    await store.close()
