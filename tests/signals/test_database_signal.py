"""The database signal and verification checks, against a real PostgreSQL (the ``pg_dsn`` fixture)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from psycopg import errors

from watchdog.configfile import EnvRef
from watchdog.errors import ConfigError, SignalError
from watchdog.model import Deployment, Reading
from watchdog.secrets import Secret
from watchdog.settings import Database
from watchdog.signals.base import Failure, Probe
from watchdog.signals.database import (
    Connectivity,
    DatabaseSignal,
    _read_only,
    applied_versions,
    connected,
    integrity_problems,
    row_counts,
)

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=1)
TIMEOUT = timedelta(seconds=5)
SHORT = timedelta(milliseconds=300)  # for the tests that wait on a lock or a slow query
APPLIED = "20260128115500"
MISSING = "20260128120000"
PASSWORD = "sup3rs3cret"
CLOSED_PORT = f"postgresql://u:{PASSWORD}@127.0.0.1:1/x"
TABLES = {"organizations": 50, "appointments": 1000, "contacts": 400}

MIGRATION_TABLES = {
    "schema_migrations": ["CREATE TABLE schema_migrations (version text PRIMARY KEY, name text)"],
    "supabase_migrations.schema_migrations": [
        "CREATE SCHEMA supabase_migrations",
        "CREATE TABLE supabase_migrations.schema_migrations"
        " (version text PRIMARY KEY, statements text[], name text)",
    ],
}


@pytest.fixture(params=list(MIGRATION_TABLES))
def migrations(request: pytest.FixtureRequest, pg_dsn: str) -> str:
    """The plain and the Supabase migrations table, holding older versions and APPLIED."""
    table: str = request.param
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for statement in MIGRATION_TABLES[table]:
            conn.execute(statement)
        for version in ["20260101000000", "20260102000000", "20260110000000", "20260120000000"]:
            conn.execute(f"INSERT INTO {table} (version, name) VALUES (%s, 'old')", [version])
        conn.execute(f"INSERT INTO {table} (version, name) VALUES (%s, 'feature_flags')", [APPLIED])
    return table


@pytest.fixture
def app_tables(pg_dsn: str) -> Iterator[psycopg.Connection]:
    """The runbook's integrity tables filled with TABLES rows; yields an autocommit connection."""
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        for table, rows in TABLES.items():
            conn.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
            conn.execute(f"INSERT INTO {table} SELECT generate_series(1, {rows})")
        yield conn


def signal(
    dsn: str | Secret, table: str = "schema_migrations", timeout: timedelta = TIMEOUT
) -> DatabaseSignal:
    secret = dsn if isinstance(dsn, Secret) else Secret(dsn)
    database = Database(dsn=secret, migrations_table=table, migration_grace=GRACE)
    return DatabaseSignal(database, timeout)


def deployment(version: str | None = MISSING, failed: bool = False) -> Deployment:
    return Deployment(
        target="backend",
        id="dep-2",
        deployed_at=T0,
        migration_version=version,
        migration_failed=failed,
    )


def reading(value: float, at: datetime) -> Probe:
    return Probe(readings=(Reading(at=at, metric="migration_failed", value=value),))


@pytest.mark.parametrize(
    ("version", "elapsed", "value"),
    [
        (APPLIED, timedelta(seconds=10), 0),
        (APPLIED, timedelta(minutes=5), 0),
        (MISSING, GRACE, 1),
        (MISSING, timedelta(minutes=5), 1),
    ],
)
async def test_migration_version_is_looked_up_in_the_table(
    pg_dsn: str, migrations: str, version: str, elapsed: timedelta, value: float
) -> None:
    at = T0 + elapsed
    assert await signal(pg_dsn, migrations).read(deployment(version), at) == reading(value, at)


async def test_missing_version_within_grace_gives_no_reading(pg_dsn: str, migrations: str) -> None:
    probe = await signal(pg_dsn, migrations).read(deployment(MISSING), T0 + GRACE / 2)
    assert probe.readings == ()
    [error] = probe.errors
    assert (error.source, error.failure, error.metric) == (
        "database",
        Failure.NO_DATA,
        "migration_failed",
    )
    assert MISSING in error.message
    assert "2026-01-28T12:01:00+00:00" in error.message


async def test_failed_migration_in_the_deploy_event_needs_no_database() -> None:
    at = T0 + timedelta(seconds=1)
    probe = await signal(CLOSED_PORT).read(deployment(APPLIED, failed=True), at)
    assert probe == reading(1, at)


async def test_no_announced_migration_is_not_a_failure() -> None:
    at = T0 + timedelta(minutes=5)
    assert await signal(CLOSED_PORT).read(deployment(None), at) == reading(0, at)


async def test_unreachable_database_gives_no_reading_and_keeps_the_password_out() -> None:
    probe = await signal(CLOSED_PORT).read(deployment(), T0 + timedelta(minutes=5))
    assert probe.readings == ()
    [error] = probe.errors
    assert error.failure is Failure.DATABASE
    assert "127.0.0.1" in error.message
    assert PASSWORD not in error.message
    assert CLOSED_PORT not in error.message


async def test_unset_dsn_variable_is_a_config_error() -> None:
    unset = Secret(EnvRef("${DATABASE_URL}", ("DATABASE_URL",), "targets.backend.database.dsn"))
    probe = await signal(unset).read(deployment(), T0 + timedelta(minutes=5))
    assert probe.readings == ()
    [error] = probe.errors
    assert error.failure is Failure.CONFIG
    assert "DATABASE_URL" in error.message


async def test_unparsable_dsn_is_a_config_error_that_does_not_quote_it() -> None:
    dsn = f"host=127.0.0.1 user=u {PASSWORD}"  # libpq's own message would quote the password
    probe = await signal(dsn).read(deployment(), T0 + timedelta(minutes=5))
    [error] = probe.errors
    assert error.failure is Failure.CONFIG
    assert PASSWORD not in error.message
    with pytest.raises(ConfigError) as caught:
        await row_counts(dsn, ["contacts"], TIMEOUT)
    assert PASSWORD not in str(caught.value)
    assert caught.value.__context__ is None  # not even in a traceback


async def test_locked_migrations_table_times_out_quickly(pg_dsn: str, migrations: str) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn) as holder:
        await holder.execute(f"LOCK TABLE {migrations} IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        probe = await signal(pg_dsn, migrations, SHORT).read(
            deployment(), T0 + timedelta(minutes=5)
        )
        assert time.monotonic() - started < 2
    assert probe.readings == ()
    [error] = probe.errors
    assert error.failure is Failure.TIMEOUT
    assert "lock timeout" in error.message


async def test_row_counts_and_integrity_after_deletes(
    pg_dsn: str, app_tables: psycopg.Connection
) -> None:
    tables = list(TABLES)
    baseline = await row_counts(pg_dsn, tables, TIMEOUT)
    assert baseline == TABLES
    app_tables.execute("DELETE FROM appointments WHERE id <= 60")
    app_tables.execute("DELETE FROM contacts WHERE id <= 4")  # -1 %, within tolerance
    now = await row_counts(pg_dsn, tables, TIMEOUT)
    assert now == {"organizations": 50, "appointments": 940, "contacts": 396}
    assert integrity_problems(baseline, now, 0.02) == [
        "appointments: 1,000 → 940 rows (-6.0 %, tolerance 2 %)"
    ]
    assert integrity_problems(baseline, now, 0.07) == []


async def test_dropped_table_is_left_out_and_reported_gone(
    pg_dsn: str, app_tables: psycopg.Connection
) -> None:
    baseline = await row_counts(pg_dsn, list(TABLES), TIMEOUT)
    app_tables.execute("DROP TABLE contacts")
    now = await row_counts(pg_dsn, list(TABLES), TIMEOUT)
    assert now == {"organizations": 50, "appointments": 1000}
    assert integrity_problems(baseline, now, 0.02) == ["contacts: table is gone (had 400 rows)"]


async def test_row_counts_take_schema_qualified_and_odd_names(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            'CREATE SCHEMA app; CREATE TABLE app."Call Logs" (id int); INSERT INTO app."Call Logs" VALUES (1), (2)'
        )
    assert await row_counts(pg_dsn, ["app.Call Logs", "nowhere.x"], TIMEOUT) == {"app.Call Logs": 2}


async def test_row_counts_wait_on_a_lock_no_longer_than_the_lock_timeout(
    pg_dsn: str, app_tables: psycopg.Connection
) -> None:
    async with await psycopg.AsyncConnection.connect(pg_dsn) as holder:
        await holder.execute("LOCK TABLE appointments IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(SignalError) as caught:
            await row_counts(pg_dsn, list(TABLES), SHORT)
        assert time.monotonic() - started < 2
    assert isinstance(caught.value.__cause__, errors.LockNotAvailable)
    assert caught.value.source == "database"


async def test_row_counts_stop_at_the_statement_timeout(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE VIEW slow AS SELECT 1 AS one FROM pg_sleep(30)")
    started = time.monotonic()
    with pytest.raises(SignalError) as caught:
        await row_counts(pg_dsn, ["slow"], SHORT)
    assert time.monotonic() - started < 2
    assert isinstance(caught.value.__cause__, errors.QueryCanceled)
    assert "statement timeout" in str(caught.value)


async def test_row_counts_of_an_unreachable_database_raise_without_the_password() -> None:
    with pytest.raises(SignalError) as caught:
        await row_counts(CLOSED_PORT, list(TABLES), TIMEOUT)
    assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    assert PASSWORD not in str(caught.value)


async def test_queries_run_read_only(pg_dsn: str, app_tables: psycopg.Connection) -> None:
    async with _read_only(pg_dsn, TIMEOUT) as conn:
        with pytest.raises(errors.ReadOnlySqlTransaction):
            await conn.execute("DELETE FROM contacts")
    assert await row_counts(pg_dsn, ["contacts"], TIMEOUT) == {"contacts": 400}


async def test_applied_versions_newest_five_first(pg_dsn: str, migrations: str) -> None:
    assert await applied_versions(pg_dsn, migrations, TIMEOUT) == [
        APPLIED,
        "20260120000000",
        "20260110000000",
        "20260102000000",
        "20260101000000",
    ]
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {migrations} (version) VALUES (%s)", [MISSING])
    assert (await applied_versions(pg_dsn, migrations, TIMEOUT))[:2] == [MISSING, APPLIED]
    assert len(await applied_versions(pg_dsn, migrations, TIMEOUT)) == 5


async def test_applied_versions_of_a_missing_table_raise(pg_dsn: str) -> None:
    with pytest.raises(SignalError) as caught:
        await applied_versions(pg_dsn, "supabase_migrations.schema_migrations", TIMEOUT)
    assert isinstance(caught.value.__cause__, errors.UndefinedTable)


async def test_connected(pg_dsn: str) -> None:
    assert await connected(pg_dsn, TIMEOUT) == Connectivity(ok=True)
    down = await connected(CLOSED_PORT, TIMEOUT)
    assert not down.ok
    assert down.error is not None
    assert "Connection refused" in down.error
    assert PASSWORD not in down.error


@pytest.mark.parametrize(
    ("baseline", "now", "tolerance", "problems"),
    [
        ({"a": 1000}, {"a": 1000}, 0.02, []),
        ({"a": 1000}, {"a": 980}, 0.02, []),  # exactly the tolerance is within it
        ({"a": 1000}, {"a": 979}, 0.02, ["a: 1,000 → 979 rows (-2.1 %, tolerance 2 %)"]),
        ({"a": 1000}, {"a": 1030}, 0.02, ["a: 1,000 → 1,030 rows (+3.0 %, tolerance 2 %)"]),
        ({"a": 200}, {"a": 196}, 0.015, ["a: 200 → 196 rows (-2.0 %, tolerance 1.5 %)"]),
        ({"a": 0}, {"a": 0}, 0.02, []),
        ({"a": 0}, {"a": 3}, 0.02, ["a: 0 → 3 rows (was empty, tolerance 2 %)"]),
        ({"a": 10}, {"a": 10, "b": 5}, 0.02, []),  # only baseline tables are checked
        ({"a": 1000}, {}, 0.5, ["a: table is gone (had 1,000 rows)"]),
        ({"a": 10, "b": 10}, {"a": 0, "b": 10}, 0, ["a: 10 → 0 rows (-100.0 %, tolerance 0 %)"]),
    ],
)
def test_integrity_problems(
    baseline: dict[str, int], now: dict[str, int], tolerance: float, problems: list[str]
) -> None:
    assert integrity_problems(baseline, now, tolerance) == problems
