"""The runbook's "Manual SQL Rollback" made safe, and its "Verify Database Rollback".

A deployment here is a migration version. Every applied version newer than the target is undone,
newest first, by its down script (``<rollback_dir>/<version>.sql`` or ``<version>_<name>.sql``)
and its row deleted, in one transaction under the configured timeouts: all or nothing. No SQL
runs unless every script is there and none ends the transaction itself, and ``backup_check``
(when set) exited 0. Never ``supabase db reset``. ``psycopg.Error`` never leaves this module, and
no message or log carries the DSN or its password.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import shutil
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import structlog
from psycopg import errors, sql

from watchdog.clock import Clock
from watchdog.errors import ConfigError, RollbackError, SignalError
from watchdog.providers.base import ProviderDeployment, Rollback
from watchdog.providers.pg import Connection, columns, describe, identifier, transaction
from watchdog.secrets import Secret
from watchdog.settings import SqlMigrationsProvider

log = structlog.get_logger("watchdog.providers.migrations")

_NAME = "sql-migrations"
# Comments, string literals and dollar-quoted bodies: where BEGIN or COMMIT ends nothing.
_NOT_CODE = re.compile(r"--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|(\$\w*\$).*?\1", re.S)
_ENDS_TRANSACTION = {"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"}
_CATALOG = """
SELECT 'table ' || table_schema || '.' || table_name FROM information_schema.tables
 WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
UNION SELECT 'function ' || routine_schema || '.' || routine_name FROM information_schema.routines
 WHERE routine_schema NOT IN ('pg_catalog', 'information_schema')"""


@dataclass(frozen=True)
class MigrationRollback(Rollback):
    """Also names what the down scripts removed (``"table public.feature_flags"``,
    ``"function public.is_feature_enabled"``), for ``verify_removed``."""

    removed: tuple[str, ...] = ()


class SqlMigrationRollback:
    """Rolls the database back to an applied migration version by running down scripts."""

    name = _NAME

    def __init__(self, config: SqlMigrationsProvider, clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._table = identifier(config.migrations_table)
        try:
            self._backup = shlex.split(config.backup_check or "")
        except ValueError as exc:
            raise ConfigError(f"{_NAME}: backup_check: {exc}") from None

    async def check(self) -> None:
        """Read the migrations table; find rollback_dir and the backup_check command."""
        directory, command = self._config.rollback_dir, self._backup[:1]
        if not directory.is_dir():
            raise ConfigError(f"{_NAME}: rollback_dir {directory} is not a directory")
        if command and shutil.which(command[0]) is None:
            raise ConfigError(f"{_NAME}: backup_check command {command[0]!r} not found")
        await self._read("LIMIT 1")

    async def live(self) -> ProviderDeployment:
        """The newest applied version."""
        if not (newest := await self._read("ORDER BY version DESC LIMIT 1")):
            raise RollbackError(_NAME, None, f"{self._config.migrations_table} is empty")
        return self._deployment(newest[0][0], live=True)

    async def known_good(self, before: ProviderDeployment) -> ProviderDeployment | None:
        """The newest applied version older than ``before`` (``ORDER BY version DESC``)."""
        rows = await self._read("WHERE version < %s ORDER BY version DESC LIMIT 1", before.id)
        return self._deployment(rows[0][0], live=False) if rows else None

    async def is_serving(self, to: ProviderDeployment) -> bool:
        newest = await self._read("ORDER BY version DESC LIMIT 1")
        return bool(newest) and newest[0][0] == to.id

    async def rollback(self, to: ProviderDeployment, reason: str) -> MigrationRollback:
        """Undo every version newer than ``to``. Refuses with nothing run (``reached=False``)
        when ``to`` is not applied, a down script is missing or ends the transaction itself,
        or backup_check fails; an SQL error rolls it all back (``reached=False`` too: nothing
        changed). Only a failed COMMIT leaves the outcome unknown."""
        rows = await self._read("WHERE version >= %s ORDER BY version DESC", to.id)
        if not rows or rows[-1][0] != to.id:
            raise RollbackError(_NAME, to.id, f"version {to.id} is not applied", reached=False)
        if len(rows) == 1:
            return MigrationRollback(to=to, notes=(f"nothing newer than {to.id} is applied",))
        versions = [version for version, _ in rows[:-1]]
        scripts = [self._script(to.id, version, name) for version, name in rows[:-1]]
        await self._backup_check(to.id)
        removed = await self._run(to.id, versions, scripts)
        log.info("migrations.rolled_back", to=to.id, versions=versions, reason=reason)
        note = f"reverted {', '.join(versions)} with {', '.join(p.name for p, _ in scripts)}"
        return MigrationRollback(to=to, notes=(note,), removed=removed)

    async def wait_live(self, rollback: Rollback, timeout: timedelta) -> None:
        """Nothing to wait for: the rollback's transaction has committed."""

    def _script(self, to: str, version: str, name: str | None) -> tuple[Path, str]:
        directory = self._config.rollback_dir
        names = [f"{version}.sql", *([f"{version}_{name}.sql"] if name else [])]
        found = [directory / n for n in names if Path(n).name == n and (directory / n).is_file()]
        if len(found) != 1:  # none, or two that could both be meant
            problem = f"no down script for {version} in {directory}: refusing; roll back by hand"
            if found:
                problem = f"both {found[0].name} and {found[1].name} undo {version}: refusing"
            raise RollbackError(_NAME, to, problem, reached=False)
        text = found[0].read_text()
        words = {s.split()[0].upper() for s in _NOT_CODE.sub(" ", text).split(";") if s.split()}
        if words & _ENDS_TRANSACTION:
            problem = f"{found[0].name} ends the transaction itself: remove BEGIN/COMMIT from it"
            raise RollbackError(_NAME, to, f"{problem}; refusing", reached=False)
        return found[0], text

    async def _backup_check(self, to: str) -> None:
        """Run backup_check (no shell); anything but exit 0 stops the rollback before SQL."""
        if not self._backup:
            return
        pipe = asyncio.subprocess
        try:
            process = await asyncio.create_subprocess_exec(
                *self._backup, stdin=pipe.DEVNULL, stdout=pipe.PIPE, stderr=pipe.STDOUT
            )
            try:
                output = (await process.communicate())[0].decode(errors="replace")
            finally:
                if process.returncode is None:  # cancelled: leave no child behind
                    process.kill()
                    await process.wait()
            problem = f"exited {process.returncode}: {' '.join(output.split())[-200:]}"
        except OSError as exc:
            problem = f"cannot run ({exc.strerror})"
        else:
            if process.returncode == 0:
                return
        problem = f"backup_check {self._backup[0]!r} {problem}; no SQL was run"
        raise RollbackError(_NAME, to, problem, reached=False)

    async def _run(
        self, to: str, versions: list[str], scripts: list[tuple[Path, str]]
    ) -> tuple[str, ...]:
        """Run the scripts and delete the versions in one transaction; what they removed."""
        config, table = self._config, self._config.migrations_table
        lock = "SELECT version::text FROM {} WHERE version > %s ORDER BY version DESC FOR UPDATE"
        delete = sql.SQL("DELETE FROM {} WHERE version = %s").format(self._table)
        step = "connecting"
        try:
            async with transaction(config.dsn, config.lock_timeout, config.statement_timeout) as c:
                step = f"locking the rows of {table}"
                cur = await c.execute(sql.SQL(lock).format(self._table), [to])
                if [row[0] for row in await cur.fetchall()] != versions:
                    problem = f"{table} changed while preparing; nothing changed"
                    raise RollbackError(_NAME, to, problem, reached=False)
                before = await _catalog(c)
                for version, (path, text) in zip(versions, scripts, strict=True):
                    step = f"running {path.name}"
                    await c.execute(text.encode())
                    step = f"deleting {version} from {table}"
                    await c.execute(delete, [version])
                removed = tuple(sorted(before - await _catalog(c)))
                step = "COMMIT"
                await c.commit()
        except psycopg.Error as exc:
            outcome = "nothing changed (the transaction was rolled back)"
            if step == "COMMIT":
                outcome = (
                    f"the rollback may or may not have happened: look for {versions} in {table}"
                )
            problem = f"{step} failed: {describe(exc, config.dsn)}; {outcome}"
            raise RollbackError(_NAME, to, problem, reached=step == "COMMIT") from exc
        return removed

    async def _read(self, tail: str, *params: str) -> list[tuple[str, str | None]]:
        """(version, name) rows, name only when that column exists: hosted Supabase tables
        may have more columns, so nothing else is selected."""
        config = self._config
        timeouts = (config.lock_timeout, config.statement_timeout)
        try:
            async with transaction(config.dsn, *timeouts, read_only=True) as conn:
                name = "name" in await columns(conn, self._table)
                query = sql.SQL("SELECT version::text, {}::text FROM {} ").format(
                    sql.Identifier("name") if name else sql.NULL, self._table
                )
                cur = await conn.execute(query + sql.SQL(tail), params)
                return [(row[0], row[1]) for row in await cur.fetchall()]
        except (errors.UndefinedTable, errors.UndefinedColumn) as exc:
            problem = f"migrations_table {config.migrations_table}: {describe(exc, config.dsn)}"
            raise ConfigError(f"{_NAME}: {problem}") from exc
        except psycopg.Error as exc:
            raise RollbackError(_NAME, None, describe(exc, config.dsn), reached=False) from exc

    def _deployment(self, version: str, *, live: bool) -> ProviderDeployment:
        """Created at the timestamp the version starts with (YYYYMMDD[HHMMSS]), else now."""
        created_at = self._clock.now()
        if match := re.match(r"(\d{14}|\d{8})(?!\d)", version):
            with contextlib.suppress(ValueError):
                stamp = datetime.strptime(match[1].ljust(14, "0"), "%Y%m%d%H%M%S")
                created_at = stamp.replace(tzinfo=UTC)
        return ProviderDeployment(version, version, created_at, "applied", live)


async def verify_removed(dsn: str, removed: Collection[str], timeout: timedelta) -> list[str]:
    """The runbook's "Verify Database Rollback": which of ``removed`` (a MigrationRollback's)
    information_schema still lists; [] when all are gone. SignalError when the database does
    not answer, ConfigError for a DSN that cannot be parsed."""
    secret = Secret(dsn)
    try:
        async with transaction(secret, timeout, timeout, read_only=True) as conn:
            return sorted(set(removed) & await _catalog(conn))
    except psycopg.Error as exc:
        raise SignalError(_NAME, describe(exc, secret)) from exc


async def _catalog(conn: Connection) -> set[str]:
    return {str(row[0]) for row in await (await conn.execute(_CATALOG)).fetchall()}
