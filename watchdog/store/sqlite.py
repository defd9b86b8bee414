"""The embedded store: one SQLite file in WAL mode, for a single replica.

sqlite3 blocks, so every transaction runs in a worker thread, one at a time, on one connection.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from watchdog.errors import StoreError
from watchdog.store.codec import Row
from watchdog.store.sql import SqlStore

_PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _params(row: Row | None) -> dict[str, Any]:
    # Times are ISO text in UTC, always the same form, so comparing and sorting the text
    # compares the times (isoformat writes microseconds only when there are some, and
    # "+00:00" sorts before ".000001+00:00").
    return {
        k: v.astimezone(UTC).isoformat() if isinstance(v, datetime) else v
        for k, v in (row or {}).items()
    }


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def run(self, statement: str, params: Row | None = None) -> list[Row]:
        return await asyncio.to_thread(self._run, statement, params)

    def _run(self, statement: str, params: Row | None) -> list[Row]:
        cursor = self._conn.execute(_PLACEHOLDER.sub(r":\1", statement), _params(params))
        columns = [c[0] for c in cursor.description or ()]
        return [dict(zip(columns, values, strict=True)) for values in cursor.fetchall()]

    async def run_many(self, statement: str, rows: Sequence[Row]) -> None:
        await asyncio.to_thread(
            self._conn.executemany, _PLACEHOLDER.sub(r":\1", statement), [_params(r) for r in rows]
        )


class SqliteBackend:
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = asyncio.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA busy_timeout=5000")
            self._conn = conn
        return self._conn

    @staticmethod
    def _begin(conn: sqlite3.Connection) -> None:
        # A caller cancelled while its BEGIN or ROLLBACK ran in the worker thread leaves the
        # transaction open behind it; nobody else holds the lock, so end it here.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        async with self._lock:
            try:
                conn = await asyncio.to_thread(self._connect)
                await asyncio.to_thread(self._begin, conn)
                try:
                    yield _Tx(conn)
                except BaseException:
                    await asyncio.to_thread(conn.execute, "ROLLBACK")
                    raise
                await asyncio.to_thread(conn.execute, "COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"sqlite {self._path}: {exc}") from exc

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.to_thread(self._conn.close)
            self._conn = None


def sqlite_store(path: Path) -> SqlStore:
    return SqlStore(SqliteBackend(path))
