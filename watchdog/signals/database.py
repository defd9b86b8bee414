"""The database: the ``migration_failed`` signal, and the checks verification runs (connectivity,
row counts against a baseline, applied migration versions).

Every query runs on its own short connection, inside a read-only transaction whose statements
stop at the caller's timeout on the server (lock waits at half of it, so a read stuck behind a
migration's lock says so), so the watchdog can never write to, or hold up, the database it
watches. ``psycopg.Error`` never leaves this module; no message carries the DSN or its password.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict

from watchdog.errors import ConfigError, SignalError
from watchdog.model import Deployment, Reading
from watchdog.settings import Database
from watchdog.signals.base import Failure, Probe, ProbeError

_METRIC = "migration_failed"
_SOURCE = "database"
_NEWEST = 5  # the runbook's "ORDER BY version DESC LIMIT 5"
_TIMEOUTS = (errors.QueryCanceled, errors.LockNotAvailable, errors.ConnectionTimeout)

_Connection = psycopg.AsyncConnection[tuple[Any, ...]]


class DatabaseSignal:
    """Reads ``migration_failed`` for one target (a SignalSource).

    1 when the deploy event said the migration failed, or when the announced migration version
    is still not in the migrations table once ``migration_grace`` has passed since deployed-at;
    0 when it is there, or when no migration was announced. A version still missing within the
    grace period gives no reading and a ``NO_DATA`` error: the migration may still be running,
    so the table cannot yet say it failed, and a 0 would claim it did not.
    """

    name = _SOURCE

    def __init__(self, database: Database, timeout: timedelta) -> None:
        self._database = database
        self._timeout = timeout

    async def read(self, deployment: Deployment, at: datetime) -> Probe:
        version = deployment.migration_version
        if deployment.migration_failed or version is None:
            return _reading(at, deployment.migration_failed)
        table = self._database.migrations_table
        try:
            dsn = self._database.dsn.reveal()
            applied = await _is_applied(dsn, table, version, self._timeout)
        except ConfigError as exc:
            return _error(Failure.CONFIG, str(exc))
        except psycopg.Error as exc:
            failure = Failure.TIMEOUT if isinstance(exc, _TIMEOUTS) else Failure.DATABASE
            return _error(failure, _describe(exc, dsn))
        grace_ends = deployment.deployed_at + self._database.migration_grace
        if applied or at >= grace_ends:
            return _reading(at, not applied)
        return _error(
            Failure.NO_DATA,
            f"migration {version} is not in {table} yet; it counts as failed if still missing"
            f" at {grace_ends.isoformat()}",
        )


@dataclass(frozen=True)
class Connectivity:
    """Whether the database answered, and why not when it did not."""

    ok: bool
    error: str | None = None


async def connected(dsn: str, timeout: timedelta) -> Connectivity:
    """Connect and run ``SELECT 1``. Raises ConfigError only for a DSN that cannot be parsed."""
    try:
        async with _read_only(dsn, timeout) as conn:
            await conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return Connectivity(ok=False, error=_describe(exc, dsn))
    return Connectivity(ok=True)


async def row_counts(dsn: str, tables: Sequence[str], timeout: timedelta) -> dict[str, int]:
    """Rows in each table (``name`` or ``schema.name``), counted in one snapshot.

    A table that does not exist is left out, so that ``integrity_problems`` reports a dropped
    table as gone rather than this call failing. Raises SignalError, or ConfigError for a DSN
    that cannot be parsed.
    """
    async with _translated(dsn), _read_only(dsn, timeout) as conn:
        quoted = {_table(name).as_string(conn): name for name in tables}
        cur = await conn.execute(
            "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass(t) IS NOT NULL",
            [list(quoted)],
        )
        present = [quoted[row[0]] for row in await cur.fetchall()]
        if not present:
            return {}
        counts = sql.SQL(", ").join(
            sql.SQL("(SELECT count(*) FROM {})").format(_table(name)) for name in present
        )
        cur = await conn.execute(sql.SQL("SELECT {}").format(counts))
        row = await cur.fetchone()
    assert row is not None  # a SELECT without FROM returns exactly one row
    return {name: int(count) for name, count in zip(present, row, strict=True)}


async def applied_versions(dsn: str, table: str, timeout: timedelta) -> list[str]:
    """The five newest versions in the migrations table, newest first (the runbook's check).

    Only ``version`` is selected: hosted Supabase projects may add columns of their own.
    Raises SignalError, or ConfigError for a DSN that cannot be parsed.
    """
    query = sql.SQL("SELECT version FROM {} ORDER BY version DESC LIMIT {}")
    async with _translated(dsn), _read_only(dsn, timeout) as conn:
        cur = await conn.execute(query.format(_table(table), sql.Literal(_NEWEST)))
        return [str(row[0]) for row in await cur.fetchall()]


def integrity_problems(
    baseline: Mapping[str, int], now: Mapping[str, int], tolerance: float
) -> list[str]:
    """One sentence per baseline table whose row count moved by more than ``tolerance``
    (relative, either way) or that is gone. Pure, so verification can be replayed and tested."""
    allowed = f"tolerance {tolerance * 100:g} %"
    problems = []
    for table, before in baseline.items():
        after = now.get(table)
        if after is None:
            problems.append(f"{table}: table is gone (had {before:,} rows)")
        elif before == 0 and after != 0:
            problems.append(f"{table}: 0 → {after:,} rows (was empty, {allowed})")
        elif before != 0 and abs(after - before) / before > tolerance:
            change = (after - before) / before * 100
            problems.append(f"{table}: {before:,} → {after:,} rows ({change:+.1f} %, {allowed})")
    return problems


async def _is_applied(dsn: str, table: str, version: str, timeout: timedelta) -> bool:
    query = sql.SQL("SELECT version FROM {} WHERE version = %s").format(_table(table))
    async with _read_only(dsn, timeout) as conn:
        cur = await conn.execute(query, [version])
        return await cur.fetchone() is not None


@asynccontextmanager
async def _read_only(dsn: str, timeout: timedelta) -> AsyncIterator[_Connection]:
    """A connection inside a read-only transaction with server-side statement and lock
    timeouts (``SET LOCAL``, which also works through transaction-mode poolers)."""
    try:
        conninfo_to_dict(dsn)
        valid = True
    except psycopg.Error:
        valid = False  # raised outside: libpq's message quotes the DSN, maybe its password
    if not valid:
        raise ConfigError("the database DSN is not a valid PostgreSQL connection string")
    seconds = timeout.total_seconds()
    conn = await psycopg.AsyncConnection.connect(dsn, connect_timeout=max(2, math.ceil(seconds)))
    async with conn:
        await conn.set_read_only(True)
        async with conn.transaction():
            await conn.execute(
                "SELECT set_config('statement_timeout', %s, true),"
                " set_config('lock_timeout', %s, true)",
                [_millis(seconds), _millis(seconds / 2)],
            )
            yield conn


@asynccontextmanager
async def _translated(dsn: str) -> AsyncIterator[None]:
    try:
        yield
    except psycopg.Error as exc:
        raise SignalError(_SOURCE, _describe(exc, dsn)) from exc


def _millis(seconds: float) -> str:
    return str(max(1, round(seconds * 1000)))  # 0 would mean no timeout at all


def _table(name: str) -> sql.Identifier:
    """``schema.table`` as two quoted identifiers, ``table`` as one."""
    return sql.Identifier(*name.split("."))


def _describe(exc: psycopg.Error, dsn: str) -> str:
    """The error on one line, with the DSN and its password blanked out should they appear."""
    text = " ".join(str(exc).split())
    password = conninfo_to_dict(dsn).get("password")
    for secret in (dsn, password):
        if secret:
            text = text.replace(str(secret), "***")
    return text


def _reading(at: datetime, failed: bool) -> Probe:
    return Probe(readings=(Reading(at=at, metric=_METRIC, value=float(failed)),))


def _error(failure: Failure, message: str) -> Probe:
    return Probe(errors=(ProbeError(_SOURCE, failure, message, metric=_METRIC),))
