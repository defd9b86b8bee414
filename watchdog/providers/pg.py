"""Talking to the watched app's own PostgreSQL: one short connection per operation, inside one
transaction with server-side lock and statement timeouts, secrets kept out of every message.
Shared by the migrations provider and the SQL flag switch."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from watchdog.errors import ConfigError
from watchdog.secrets import Secret

Connection = psycopg.AsyncConnection[tuple[Any, ...]]


def identifier(name: str) -> sql.Identifier:
    """``table`` or ``schema.table`` (as settings.TABLE_NAME admits) as quoted identifiers."""
    return sql.Identifier(*name.split("."))


@contextlib.asynccontextmanager
async def transaction(
    dsn: Secret, lock_timeout: timedelta, statement_timeout: timedelta, *, read_only: bool = False
) -> AsyncIterator[Connection]:
    """A new connection in one transaction with ``SET LOCAL`` lock and statement timeouts;
    committed when the block ends, rolled back when it raises. ConfigError for an unset or
    unparsable DSN; psycopg errors are the caller's to translate (with ``describe``)."""
    value = dsn.reveal()
    try:
        conninfo_to_dict(value)
    except psycopg.Error:  # libpq's message quotes the DSN, maybe its password
        raise ConfigError("the database DSN is not a valid PostgreSQL connection string") from None
    async with await psycopg.AsyncConnection.connect(value, connect_timeout=10) as conn:
        await conn.set_read_only(read_only)
        ms = [
            sql.Literal(max(1, t // timedelta(milliseconds=1)))
            for t in (lock_timeout, statement_timeout)
        ]  # at least 1: 0 would mean no timeout at all
        await conn.execute(
            sql.SQL("SET LOCAL lock_timeout = {}; SET LOCAL statement_timeout = {}").format(*ms)
        )
        yield conn


async def columns(conn: Connection, table: sql.Identifier) -> set[str]:
    """The columns of ``table`` as this connection's queries resolve it; none when missing."""
    query = "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0"
    cur = await conn.execute(query + " AND NOT attisdropped", [table.as_string(conn)])
    return {str(row[0]) for row in await cur.fetchall()}


def describe(exc: psycopg.Error, dsn: Secret) -> str:
    """The error on one line, with the DSN and its password blanked out should they appear."""
    text, value = " ".join(str(exc).split()), dsn.reveal()
    for secret in (value, conninfo_to_dict(value).get("password")):
        text = text.replace(str(secret), "***") if secret else text
    return text
