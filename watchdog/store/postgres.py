"""The production store: PostgreSQL through a psycopg connection pool, shared by replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from watchdog.errors import StoreError
from watchdog.store.codec import Row
from watchdog.store.sql import SqlStore


class _Tx:
    def __init__(self, conn: psycopg.AsyncConnection[Row]) -> None:
        self._conn = conn

    async def run(self, statement: str, params: Row | None = None) -> list[Row]:
        cursor = await self._conn.execute(statement, params)
        return await cursor.fetchall() if cursor.description else []

    async def run_many(self, statement: str, rows: Sequence[Row]) -> None:
        async with self._conn.cursor() as cursor:
            await cursor.executemany(statement, rows)


class PostgresBackend:
    dialect = "postgres"

    def __init__(self, dsn: str, max_size: int = 10, connect_timeout: float = 10.0) -> None:
        self._connect_timeout = connect_timeout
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection[Row]] = AsyncConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            open=False,
            timeout=connect_timeout,  # a connection within this, or a StoreError that says so
            kwargs={"row_factory": dict_row, "autocommit": True},
        )
        self._opening = asyncio.Lock()
        self._opened = False

    async def _open(self) -> None:
        # Once, whoever comes first: the pool's own wait must never run twice at once.
        async with self._opening:
            if not self._opened:
                await self._pool.open(wait=True, timeout=self._connect_timeout)
                self._opened = True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_Tx]:
        try:
            await self._open()
            async with self._pool.connection() as conn, conn.transaction():
                yield _Tx(conn)
        except PoolTimeout as exc:
            raise StoreError(f"postgres: no connection within {self._connect_timeout:g}s") from exc
        except psycopg.Error as exc:
            # The server's own message says what failed; the DSN is never part of it.
            detail = exc.diag.message_primary or str(exc).partition("\n")[0] or "no detail"
            raise StoreError(f"postgres: {type(exc).__name__}: {detail}") from exc

    async def close(self) -> None:
        await self._pool.close()


def postgres_store(dsn: str, connect_timeout: float = 10.0) -> SqlStore:
    return SqlStore(PostgresBackend(dsn, connect_timeout=connect_timeout))
