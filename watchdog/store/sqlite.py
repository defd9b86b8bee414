"""The embedded store: one SQLite file in WAL mode, for a single replica.

Statements run on the event loop's thread, one transaction at a time on one connection: in
WAL mode each takes well under a millisecond once BEGIN IMMEDIATE holds the write lock, far
less than a hop to a worker thread and back costs on a busy loop. Only that BEGIN can wait
long, when another process (a ``watchdog ack`` on the same file) holds the write lock; it
then waits in a worker thread so that the daemon keeps running.
"""

from __future__ import annotations

import asyncio
import functools
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import stamina

from watchdog.errors import StoreError
from watchdog.store.codec import Row
from watchdog.store.sql import SqlStore

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")

_T = TypeVar("_T")


def _locked(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    )


def _params(row: Row | None) -> dict[str, Any]:
    # Times are ISO text in UTC, always the same form, so comparing and sorting the text
    # compares the times (isoformat writes microseconds only when there are some, and
    # "+00:00" sorts before ".000001+00:00").
    return {
        k: v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v
        for k, v in (row or {}).items()
    }


class _Tx:
    """Runs each statement at once: the transaction holds the write lock already, so in WAL
    mode nothing waits (``run`` is async only because the Tx protocol is)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def run(self, statement: str, params: Row | None = None) -> list[Row]:
        cursor = self._conn.execute(_PLACEHOLDER.sub(r":\1", statement), _params(params))
        columns = [c[0] for c in cursor.description or ()]
        return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]

    async def run_many(self, statement: str, rows: Sequence[Row]) -> None:
        self._conn.executemany(_PLACEHOLDER.sub(r":\1", statement), [_params(r) for r in rows])


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: Path, busy_timeout: float = 5.0) -> None:
        """``busy_timeout``: seconds a transaction waits for another process's write lock
        before it fails."""
        self._path = path
        self._busy_timeout_ms = round(busy_timeout * 1000)
        self._lock = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None
        # Work on the connection running in a worker thread. A caller cancelled while it
        # waits leaves the thread running, and the connection is the thread's until it ends.
        self._thread: asyncio.Future[Any] | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self._path,
                timeout=self._busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,
            )
            # Switching a new file to WAL needs it alone: a process opening it at the same
            # moment is refused at once (SQLite skips the busy wait, as it could deadlock).
            for attempt in stamina.retry_context(
                on=_locked, attempts=10, wait_initial=0.01, wait_max=0.5
            ):
                with attempt:
                    conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            # From here on only BEGIN IMMEDIATE can find the database busy, and it must not
            # wait on the loop's thread (see _begin).
            conn.execute("PRAGMA busy_timeout=0")
            self._conn = conn
        return self._conn

    def _begin_when_free(self, conn: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE, waiting up to the busy timeout for the write lock (in a thread)."""
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        try:
            conn.execute("BEGIN IMMEDIATE")
        finally:
            conn.execute("PRAGMA busy_timeout=0")

    async def _off_loop(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` on the connection in a worker thread, for what may wait long."""
        thread = asyncio.get_running_loop().run_in_executor(None, work)
        self._thread = thread
        await asyncio.wait([thread])  # a cancelled caller leaves the thread to _settle
        self._thread = None
        return thread.result()

    async def _settle(self) -> None:
        """Wait for the thread a cancelled caller left running; its error was that caller's."""
        if self._thread is not None:
            await asyncio.wait([self._thread])
            self._thread.exception()  # retrieved, so that asyncio does not log it
            self._thread = None

    async def _begin(self) -> sqlite3.Connection:
        await self._settle()
        conn = self._conn
        if conn is None:
            conn = await self._off_loop(self._connect)
        # A cancelled caller's BEGIN, or a COMMIT that failed, leaves a transaction open
        # behind it; nobody else holds the lock, so end it here.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _locked(exc):
                raise
            await self._off_loop(functools.partial(self._begin_when_free, conn))
        return conn

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        async with self._lock:
            try:
                conn = await self._begin()
                try:
                    yield _Tx(conn)
                except BaseException:
                    if conn.in_transaction:  # a full disk or an I/O error ends it already
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite {self._path}: {exc}") from exc

    async def close(self) -> None:
        async with self._lock:
            await self._settle()
            if self._conn is not None:
                # Closing the last connection checkpoints the WAL into the file: no place
                # for the loop's thread.
                await asyncio.to_thread(self._conn.close)
                self._conn = None


def sqlite_store(path: Path) -> SqlStore:
    return SqlStore(SqliteBackend(path))
