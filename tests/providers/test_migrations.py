"""SqlMigrationRollback and verify_removed against a real PostgreSQL (the ``pg_dsn`` fixture):
the runbook's 20260128_create_feature_flags migration rolled back by its rollback_migration.sql,
in a plain ``schema_migrations`` table and in Supabase's ``supabase_migrations.schema_migrations``.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import make_conninfo
from pydantic import ValidationError
from structlog.testing import capture_logs

from watchdog.clock import ManualClock
from watchdog.errors import ConfigError, RollbackError, SignalError
from watchdog.providers.base import ProviderDeployment
from watchdog.providers.migrations import MigrationRollback, SqlMigrationRollback, verify_removed
from watchdog.secrets import Secret
from watchdog.settings import SqlMigrationsProvider

SQL = Path(__file__).parent / "sql"
T0 = datetime(2026, 1, 28, 12, 30, tzinfo=UTC)
TIMEOUT = timedelta(seconds=5)
PASSWORD = "pg-s3cret-f00"
INDEX = "CREATE INDEX contacts_phone ON contacts (phone)"
MIGRATION = "20260128_create_feature_flags.sql"
REMOVED = (
    "function public.get_org_enabled_features",
    "function public.is_feature_enabled",
    "function public.log_feature_flag_change",
    "function public.update_feature_flag",
    "table public.feature_flag_audit_log",
    "table public.feature_flags",
    "table public.org_feature_flags",
)


@dataclass
class Db:
    """A database holding the app's tables and two applied migrations, ``old`` (known good) and
    ``new`` (the feature flags), with their down scripts in ``rollback_dir``."""

    dsn: str
    table: str
    supabase: bool
    rollback_dir: Path
    old: str = ""
    new: str = ""

    def apply(self, day: str, name: str, up: str, down: str | None) -> str:
        """Apply a migration as the Supabase CLI does (statements and row in one transaction)
        and write its down script, named as each convention names it."""
        version = f"{day}120000" if self.supabase else f"{day}_{name}"
        with psycopg.connect(self.dsn) as conn:
            conn.execute(up)
            conn.execute(
                f"INSERT INTO {self.table} (version, name) VALUES (%s, %s)", [version, name]
            )
        if down is not None:
            self.script(version, name).write_text(down)
        return version

    def script(self, version: str, name: str = "create_feature_flags") -> Path:
        return self.rollback_dir / (f"{version}_{name}.sql" if self.supabase else f"{version}.sql")

    def execute(self, query: str, params: list[Any] | None = None) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(query, params)


@pytest.fixture(params=["schema_migrations", "supabase_migrations.schema_migrations"])
def db(request: pytest.FixtureRequest, pg_dsn: str, tmp_path: Path) -> Db:
    table: str = request.param
    supabase = table.startswith("supabase")
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute((SQL / "app_tables.sql").read_text())
        if supabase:  # api-contracts.md §6, plus a column a hosted project may add
            conn.execute("CREATE SCHEMA supabase_migrations")
            conn.execute(
                "CREATE TABLE supabase_migrations.schema_migrations (version text PRIMARY KEY,"
                " statements text[], name text, created_by text)"
            )
        else:
            conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY, name text)")
    rollback_dir = tmp_path / "rollback"
    rollback_dir.mkdir()
    db = Db(pg_dsn, table, supabase, rollback_dir)
    db.old = db.apply("20260120", "add_contact_phone_index", INDEX, "DROP INDEX contacts_phone;")
    down = runbook_down_script(db)
    db.new = db.apply("20260128", "create_feature_flags", (SQL / MIGRATION).read_text(), down)
    return db


def runbook_down_script(db: Db) -> str:
    """The runbook's rollback_migration.sql; its last line deletes from public.schema_migrations,
    which a Supabase database does not have (the provider deletes the row itself)."""
    script = (SQL / "rollback_migration.sql").read_text()
    return script.split("-- Remove migration record")[0] if db.supabase else script


def provider(db: Db, dsn: str | None = None, **config: Any) -> SqlMigrationRollback:
    config = {"rollback_dir": db.rollback_dir, "migrations_table": db.table, **config}
    settings = SqlMigrationsProvider(kind="sql-migrations", dsn=Secret(dsn or db.dsn), **config)
    return SqlMigrationRollback(settings, ManualClock(T0))


def python(code: str) -> str:
    """A backup_check command line running ``code`` in this Python."""
    return shlex.join([sys.executable, "-c", code])


def runbook_check(db: Db) -> dict[str, Any]:
    """The runbook's "Check Current Migration Version" and "Verify Database Rollback" queries."""
    with psycopg.connect(db.dsn) as conn:
        versions = conn.execute(f"SELECT version FROM {db.table} ORDER BY version DESC LIMIT 5")
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables"
            " WHERE table_schema = 'public' AND table_name LIKE '%feature_flag%'"
        )
        functions = conn.execute(
            "SELECT routine_name FROM information_schema.routines"
            " WHERE routine_schema = 'public' AND routine_name LIKE '%feature%'"
        )
        counts = conn.execute(
            "SELECT 'organizations' AS table_name, COUNT(*) AS row_count FROM organizations"
            " UNION ALL SELECT 'appointments', COUNT(*) FROM appointments"
            " UNION ALL SELECT 'contacts', COUNT(*) FROM contacts"
        )
        return {
            "versions": [row[0] for row in versions],
            "tables": sorted(row[0] for row in tables),
            "functions": sorted(row[0] for row in functions),
            "counts": dict(counts.fetchall()),
        }


async def known_good(source: SqlMigrationRollback) -> ProviderDeployment:
    good = await source.known_good(await source.live())
    assert good is not None
    return good


async def test_live_and_known_good_are_the_newest_versions(db: Db) -> None:
    source = provider(db)
    live = await source.live()
    assert (live.id, live.release, live.status, live.live) == (db.new, db.new, "applied", True)
    assert live.created_at == datetime(2026, 1, 28, 12 if db.supabase else 0, tzinfo=UTC)
    good = await source.known_good(live)
    assert good is not None
    assert (good.id, good.live) == (db.old, False)
    assert await source.known_good(good) is None
    assert await source.is_serving(live)
    assert not await source.is_serving(good)


async def test_rollback_removes_the_migration_and_keeps_the_data(db: Db) -> None:
    before = runbook_check(db)
    assert (len(before["tables"]), len(before["functions"])) == (3, 4)
    assert before["counts"] == {"organizations": 12, "appointments": 160, "contacts": 480}
    source = provider(db)
    good = await known_good(source)
    with capture_logs() as logs:
        result = await source.rollback(good, "migration_failed")
    assert isinstance(result, MigrationRollback)
    assert (result.to, result.handle, result.removed) == (good, None, REMOVED)
    assert result.notes == (f"reverted {db.new} with {db.script(db.new).name}",)
    after = runbook_check(db)
    assert after == {**before, "versions": [db.old], "tables": [], "functions": []}
    assert await verify_removed(db.dsn, result.removed, TIMEOUT) == []
    assert await source.is_serving(good)
    assert (await source.live()).id == db.old
    event = {"event": "migrations.rolled_back", "log_level": "info", "to": db.old}
    assert logs == [{**event, "versions": [db.new], "reason": "migration_failed"}]


async def test_a_second_rollback_sends_nothing(db: Db, tmp_path: Path) -> None:
    runs = tmp_path / "backup-checks"
    source = provider(db, backup_check=python(f"open({str(runs)!r}, 'a').write('x')"))
    good = await known_good(source)
    await source.rollback(good, "first")
    db.script(db.new).unlink()  # were anything run again, the missing script would refuse it
    again = await source.rollback(good, "second")
    assert again.notes == (f"nothing newer than {db.old} is applied",)
    assert again.removed == ()
    assert runs.read_text() == "x"  # the backup check ran once, before the first rollback only
    assert await source.is_serving(good)


async def test_several_versions_are_undone_newest_first(db: Db) -> None:
    # 20260130's table references 20260129's: undone in the wrong order, DROP TABLE would fail.
    tags = db.apply(
        "20260129",
        "add_call_tags",
        "CREATE TABLE call_tags (id int PRIMARY KEY)",
        "DROP TABLE call_tags;",
    )
    down = """DROP TABLE call_notes; -- no CASCADE; a COMMIT; in a comment ends nothing
    CREATE FUNCTION notes_removed_at() RETURNS text AS $body$
    BEGIN RETURN 'COMMIT; END;'; END; $body$ LANGUAGE plpgsql;"""
    notes = db.apply(
        "20260130", "add_call_notes", "CREATE TABLE call_notes (tag int REFERENCES call_tags)", down
    )
    source = provider(db)
    result = await source.rollback(ProviderDeployment(db.old, None, T0, "applied", False), "bad")
    tables = ("table public.call_notes", "table public.call_tags")
    assert result.removed == tuple(sorted(REMOVED + tables))  # notes_removed_at was created
    scripts = [
        db.script(notes, "add_call_notes"),
        db.script(tags, "add_call_tags"),
        db.script(db.new),
    ]
    names = ", ".join(script.name for script in scripts)
    assert result.notes == (f"reverted {notes}, {tags}, {db.new} with {names}",)
    assert runbook_check(db)["versions"] == [db.old]


async def test_a_missing_down_script_is_refused_before_any_sql(db: Db, tmp_path: Path) -> None:
    before = runbook_check(db)
    db.script(db.new).unlink()
    marker = tmp_path / "backup-checked"
    source = provider(db, backup_check=python(f"open({str(marker)!r}, 'w')"))
    with pytest.raises(RollbackError) as caught:
        await source.rollback(await known_good(source), "migration_failed")
    assert str(caught.value) == (
        f"sql-migrations: no down script for {db.new} in {db.rollback_dir}: refusing;"
        " roll back by hand"
    )
    assert (caught.value.provider, caught.value.deployment_id) == ("sql-migrations", db.old)
    assert not caught.value.reached
    assert not marker.exists()
    assert runbook_check(db) == before


@pytest.mark.parametrize("db", ["supabase_migrations.schema_migrations"], indirect=True)
async def test_two_down_scripts_for_one_version_are_refused(db: Db) -> None:
    """Where versions and names are apart, ``<version>.sql`` and ``<version>_<name>.sql``
    could both be meant."""
    (db.rollback_dir / f"{db.new}.sql").write_text("SELECT 1;")
    source = provider(db)
    with pytest.raises(RollbackError) as caught:
        await source.rollback(await known_good(source), "migration_failed")
    assert str(caught.value) == (
        f"sql-migrations: both {db.new}.sql and {db.new}_create_feature_flags.sql undo"
        f" {db.new}: refusing"
    )
    assert len(runbook_check(db)["tables"]) == 3


async def test_an_empty_migrations_table_has_no_live_version(db: Db) -> None:
    db.execute(f"DELETE FROM {db.table}")
    with pytest.raises(RollbackError, match=f"{db.table} is empty"):
        await provider(db).live()


async def test_a_down_script_failing_halfway_changes_nothing(db: Db) -> None:
    before = runbook_check(db)
    script = db.script(db.new)
    script.write_text(runbook_down_script(db).replace("-- Drop functions", "SELECT 1/0;"))
    source = provider(db)
    with pytest.raises(RollbackError) as caught:
        await source.rollback(await known_good(source), "migration_failed")
    assert str(caught.value) == (
        f"sql-migrations: running {script.name} failed: division by zero;"
        " nothing changed (the transaction was rolled back)"
    )
    assert not caught.value.reached
    assert runbook_check(db) == before  # the three DROP TABLEs before 1/0 were rolled back too


async def test_a_script_that_commits_by_itself_is_refused(db: Db) -> None:
    before = runbook_check(db)
    db.script(db.new).write_text("BEGIN;\n" + runbook_down_script(db) + "\nCOMMIT;\n")
    source = provider(db)
    with pytest.raises(RollbackError, match="ends the transaction itself") as caught:
        await source.rollback(await known_good(source), "migration_failed")
    assert not caught.value.reached
    assert runbook_check(db) == before


async def test_lock_timeout_stops_a_rollback_stuck_behind_a_lock(db: Db) -> None:
    before = runbook_check(db)
    source = provider(db, lock_timeout="200ms")
    good = await known_good(source)
    with psycopg.connect(db.dsn) as reader:  # an app query holding feature_flags open
        reader.execute("SELECT count(*) FROM feature_flags").fetchone()
        started = time.monotonic()
        with pytest.raises(RollbackError, match="canceling statement due to lock timeout"):
            await source.rollback(good, "migration_failed")
        assert time.monotonic() - started < 3
        reader.rollback()
    assert runbook_check(db) == before
    await source.rollback(good, "migration_failed")  # once the lock is gone it goes through
    assert runbook_check(db)["tables"] == []


async def test_statement_timeout_stops_a_slow_down_script(db: Db) -> None:
    db.script(db.new).write_text("SELECT pg_sleep(5);\n" + runbook_down_script(db))
    source = provider(db, statement_timeout="300ms")
    with pytest.raises(RollbackError, match="canceling statement due to statement timeout"):
        await source.rollback(await known_good(source), "migration_failed")
    assert len(runbook_check(db)["tables"]) == 3


async def test_a_failing_backup_check_runs_no_sql(db: Db) -> None:
    before = runbook_check(db)
    failing = python("import sys; print('newest backup is 31h old'); sys.exit(3)")
    source = provider(db, backup_check=failing)
    with pytest.raises(RollbackError) as caught:
        await source.rollback(await known_good(source), "migration_failed")
    assert str(caught.value) == (
        f"sql-migrations: backup_check {sys.executable!r} exited 3: newest backup is 31h old;"
        " no SQL was run"
    )
    assert not caught.value.reached
    missing = provider(db, backup_check="/nonexistent/check-backups --max-age 24h")
    with pytest.raises(RollbackError, match="cannot run"):
        await missing.rollback(await known_good(source), "migration_failed")
    assert runbook_check(db) == before


async def test_a_version_applied_while_preparing_stops_the_rollback(db: Db) -> None:
    """Another deploy applies a migration between reading the table and the transaction (here,
    during the backup check): the locked rows no longer match what was checked."""
    insert = f"INSERT INTO {db.table} (version) VALUES ('20260129120000_late')"
    code = f"import psycopg; psycopg.connect({db.dsn!r}, autocommit=True).execute({insert!r})"
    source = provider(db, backup_check=python(code))
    with pytest.raises(RollbackError, match="changed while preparing; nothing changed"):
        await source.rollback(await known_good(source), "migration_failed")
    assert len(runbook_check(db)["tables"]) == 3


async def test_rolling_back_to_a_version_never_applied_is_refused(db: Db) -> None:
    source = provider(db)
    live = await source.live()
    typo = ProviderDeployment("2026012", "2026012", T0, "applied", False)
    with pytest.raises(RollbackError, match="version 2026012 is not applied") as caught:
        await source.rollback(typo, "by hand")
    assert not caught.value.reached
    assert await source.is_serving(live)


async def test_a_table_with_only_a_version_column(pg_dsn: str, tmp_path: Path) -> None:
    db = Db(pg_dsn, "schema_migrations", False, tmp_path)
    db.execute("CREATE TABLE schema_migrations (version bigint PRIMARY KEY)")
    db.execute("INSERT INTO schema_migrations VALUES (20260101000000), (20260102000000)")
    (tmp_path / "20260102000000.sql").write_text("SELECT 1;")
    source = provider(db)
    good = await known_good(source)
    assert good.id == "20260101000000"
    await source.rollback(good, "migration_failed")
    assert await source.is_serving(good)


async def test_check_changes_nothing_and_names_what_is_wrong(db: Db, tmp_path: Path) -> None:
    before = runbook_check(db)
    await provider(db, backup_check=python("pass")).check()
    assert runbook_check(db) == before
    with pytest.raises(ConfigError, match=r"rollback_dir .* is not a directory"):
        await provider(db, rollback_dir=tmp_path / "nowhere").check()
    with pytest.raises(ConfigError, match="backup_check command 'check-backups' not found"):
        await provider(db, backup_check="check-backups --max-age 24h").check()
    with pytest.raises(ConfigError, match=r"migrations_table public.missing: .*does not exist"):
        await provider(db, migrations_table="public.missing").check()
    with pytest.raises(ValidationError, match="migrations_table"):  # refused at load
        provider(db, migrations_table="schema_migrations; DROP TABLE contacts")
    with pytest.raises(ConfigError, match="backup_check: No closing quotation"):
        provider(db, backup_check="check-backups 'unclosed")


async def test_verify_removed_names_what_is_still_there(db: Db) -> None:
    names = [*REMOVED[:2], "table public.feature_flags", "table public.dropped_long_ago"]
    found = await verify_removed(db.dsn, names, TIMEOUT)
    assert found == sorted(REMOVED[:2] + ("table public.feature_flags",))
    with pytest.raises(SignalError, match=r"sql-migrations: connection .* failed"):
        await verify_removed("postgresql://u@127.0.0.1:1/x", names, TIMEOUT)


async def test_the_dsn_password_never_shows(db: Db) -> None:
    with_password = make_conninfo(db.dsn, password=PASSWORD)  # the test server trusts anyone
    source = provider(db, dsn=with_password)
    good = await known_good(source)
    db.script(db.new).write_text("SELECT 1/0;")
    attempts: list[Callable[[], Awaitable[object]]] = [
        provider(db, dsn=f"postgresql://watchdog:{PASSWORD}@127.0.0.1:1/app").check,
        provider(db, dsn=f"postgresql://watchdog:{PASSWORD}@127.0.0.1/app?x=1").check,
        lambda: source.rollback(good, "migration_failed"),
        provider(db, dsn=with_password, migrations_table="missing").live,
        lambda: verify_removed(f"host=127.0.0.1 port=1 password={PASSWORD}", REMOVED, TIMEOUT),
    ]
    problems: list[str] = []
    with capture_logs() as logs:
        for attempt in attempts:
            with pytest.raises((RollbackError, ConfigError, SignalError)) as caught:
                await attempt()
            problems.append(str(caught.value))
        db.script(db.new).write_text(runbook_down_script(db))
        await source.rollback(good, "migration_failed")
    assert "Connection refused" in problems[0]
    assert "not a valid" in problems[1]
    assert "division by zero" in problems[2]
    assert "does not exist" in problems[3]
    assert PASSWORD not in repr(problems) + repr(logs) + repr(source.__dict__)
    assert logs  # the successful rollback was logged


async def test_a_cancelled_backup_check_leaves_no_process(db: Db, tmp_path: Path) -> None:
    started = tmp_path / "pid"
    code = f"import os, time; open({str(started)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    source = provider(db, backup_check=python(code))
    good = await known_good(source)
    task = asyncio.create_task(source.rollback(good, "migration_failed"))
    pid = await asyncio.to_thread(written, started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    assert len(runbook_check(db)["tables"]) == 3


def written(path: Path) -> int:
    """The number a subprocess writes to ``path``, once it has."""
    while not (path.exists() and path.read_text()):
        time.sleep(0.01)
    return int(path.read_text())


async def test_a_failing_commit_says_the_outcome_is_unknown(db: Db) -> None:
    """A deferred constraint is checked at COMMIT: the one failure after which the rollback may
    have happened (had the connection dropped instead), so ``reached`` stays True."""
    db.script(db.new).write_text(
        runbook_down_script(db)
        + "CREATE TABLE checked_late (p int REFERENCES contacts DEFERRABLE INITIALLY DEFERRED);"
        + "INSERT INTO checked_late VALUES (-1);"
    )
    source = provider(db)
    with pytest.raises(RollbackError, match=r"COMMIT failed: .*violates foreign key") as caught:
        await source.rollback(await known_good(source), "migration_failed")
    assert str(caught.value).endswith(
        f"the rollback may or may not have happened: look for {[db.new]} in {db.table}"
    )
    assert caught.value.reached
    assert len(runbook_check(db)["tables"]) == 3
