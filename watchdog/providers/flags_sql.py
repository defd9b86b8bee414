"""The runbook's "Feature Flag Emergency Disable", Method 1: SQL on the flags table.

``psycopg.Error`` never leaves this module; no message or log carries the DSN or its password.
"""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from datetime import timedelta

import psycopg
import structlog
from psycopg import errors, sql

from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.flags import OFF, ON, FlagState, Values, show
from watchdog.providers.pg import Connection, columns, describe, identifier, transaction
from watchdog.settings import SqlFlags

log = structlog.get_logger("watchdog.providers.flags")

# A kill switch must not queue behind a long transaction, nor hang on a slow database.
_LOCK_TIMEOUT = timedelta(seconds=5)
_STATEMENT_TIMEOUT = timedelta(seconds=30)
_TIME_COLUMNS = ("changed_at", "created_at")


class SqlFlagSwitch:
    """Method 1: UPDATE the flags table and read it back, in one transaction.

    When the audit table exists it gets a row, in a savepoint (a failing audit row leaves the
    change in place, with a note): each of these columns it has: ``flag_key``, ``action``
    (``disabled``/``enabled``, the words the runbook's migration allows), ``reason``,
    ``previous_value`` and ``new_value`` (JSON of the two values), ``changed_at``/``created_at``
    (now). ``enable`` restores the values recorded before the newest disable (``previous_value``
    of its audit row, ours or the migration's trigger's); without one it turns the flag fully on.
    """

    name = "flags-sql"

    def __init__(self, config: SqlFlags) -> None:
        self._config = config
        self._table = identifier(config.table)
        self._audit = identifier(config.audit_table)

    async def disable(self, key: str, reason: str) -> FlagState:
        return await self._change(key, reason, "disabled")

    async def enable(self, key: str, reason: str) -> FlagState:
        return await self._change(key, reason, "enabled")

    async def state(self, key: str) -> FlagState:
        try:
            async with self._transaction(read_only=True) as conn:
                return FlagState(key, *await self._values(conn, key))
        except psycopg.Error as exc:
            raise self._error(exc, key) from exc

    async def check(self) -> None:
        query = "SELECT flag_key, enabled_globally, rollout_percentage FROM {} LIMIT 1"
        try:
            async with self._transaction(read_only=True) as conn:
                await conn.execute(sql.SQL(query).format(self._table))
        except psycopg.Error as exc:
            raise self._error(exc, None) from exc

    async def _change(self, key: str, reason: str, action: str) -> FlagState:
        update = "UPDATE {} SET enabled_globally = %s, rollout_percentage = %s, updated_at = NOW()"
        committing = False
        try:
            async with self._transaction() as conn:
                before = await self._values(conn, key, lock=True)
                audit = await columns(conn, self._audit)
                target, notes = (
                    (OFF, []) if action == "disabled" else (await self._recorded(conn, key, audit))
                )
                query = sql.SQL(update + " WHERE flag_key = %s").format(self._table)
                await conn.execute(query, [*target, key])
                if (after := await self._values(conn, key)) != target:
                    problem = f"{key} reads {show(after)} after the update: nothing changed"
                    raise RollbackError(self.name, key, problem, reached=False)
                row = {
                    "flag_key": key,
                    "action": action,
                    "reason": reason,
                    "previous_value": _json(before),
                    "new_value": _json(after),
                }
                notes += await self._write_audit(conn, row, audit)
                committing = True
                await conn.commit()
        except psycopg.Error as exc:
            text = describe(exc, self._config.dsn)
            if committing:
                problem = f"COMMIT failed: {text}; the flag may or may not have changed"
                raise RollbackError(self.name, key, problem) from exc
            raise RollbackError(self.name, key, f"{text}; nothing changed", reached=False) from exc
        log.info(f"flags.{action}", switch=self.name, key=key, reason=reason, values=after)
        return FlagState(key, *after, notes=tuple(notes))

    async def _values(self, conn: Connection, key: str, *, lock: bool = False) -> Values:
        query = "SELECT enabled_globally, rollout_percentage FROM {} WHERE flag_key = %s"
        query += " FOR UPDATE" if lock else ""
        cur = await conn.execute(sql.SQL(query).format(self._table), [key])
        row = await cur.fetchone()
        if row is None:
            problem = f"no flag {key!r} in {self._config.table} (or row-level security hides it)"
            raise RollbackError(self.name, key, f"{problem}: nothing changed", reached=False)
        return bool(row[0]), int(row[1] or 0)

    async def _recorded(
        self, conn: Connection, key: str, audit: set[str]
    ) -> tuple[Values, list[str]]:
        """The values from before the newest disable, when the audit table recorded them."""
        when = next((column for column in _TIME_COLUMNS if column in audit), None)
        if when and {"flag_key", "action", "previous_value"} <= audit:
            query = sql.SQL(
                "SELECT action, previous_value::text, {when}::text FROM {audit} WHERE flag_key = %s"
                " AND action IN ('disabled', 'enabled') ORDER BY {when} DESC LIMIT 1"
            ).format(when=sql.Identifier(when), audit=self._audit)
            row = await (await conn.execute(query, [key])).fetchone()
            values = _parse(row[1]) if row and row[0] == "disabled" else None
            if row and values:
                return values, [f"restored {show(values)}, as before the disable at {row[2]}"]
        table = self._config.audit_table
        return ON, [f"no values from before a disable in {table}: turned fully on"]

    async def _write_audit(
        self, conn: Connection, row: dict[str, str], audit: set[str]
    ) -> list[str]:
        if "flag_key" not in audit:
            return [f"no audit row: {self._config.audit_table} does not exist"]
        names = [column for column in [*row, *_TIME_COLUMNS] if column in audit]
        values = (sql.SQL("NOW()") if n in _TIME_COLUMNS else sql.Placeholder(n) for n in names)
        query = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            self._audit, sql.SQL(", ").join(map(sql.Identifier, names)), sql.SQL(", ").join(values)
        )
        try:
            async with conn.transaction():  # a savepoint: the audit row must not undo the change
                await conn.execute(query, row)
        except psycopg.Error as exc:
            return [f"audit row not written: {describe(exc, self._config.dsn)}"]
        return []

    def _transaction(self, *, read_only: bool = False) -> AbstractAsyncContextManager[Connection]:
        return transaction(self._config.dsn, _LOCK_TIMEOUT, _STATEMENT_TIMEOUT, read_only=read_only)

    def _error(self, exc: psycopg.Error, key: str | None) -> Exception:
        """A read's error: a missing table or column is the configuration's."""
        text = describe(exc, self._config.dsn)
        if isinstance(exc, errors.UndefinedTable | errors.UndefinedColumn):
            return ConfigError(f"{self.name}: table {self._config.table}: {text}")
        return RollbackError(self.name, key, text, reached=False)


def _json(values: Values) -> str:
    return json.dumps({"enabled_globally": values[0], "rollout_percentage": values[1]})


def _parse(text: str | None) -> Values | None:
    """The two values of an audit row's JSON (a whole row, for the migration's trigger)."""
    try:
        value = json.loads(text or "null")
        on, rollout = value["enabled_globally"], value["rollout_percentage"]
    except (ValueError, TypeError, KeyError):
        return None
    return (on, rollout) if isinstance(on, bool) and isinstance(rollout, int) else None
