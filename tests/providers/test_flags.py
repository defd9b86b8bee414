"""The feature-flag kill switch: one contract suite run against both FlagSwitches, then what is
particular to each: SqlFlagSwitch against a real PostgreSQL holding the runbook's
20260128_create_feature_flags migration, ApiFlagSwitch against the flags-API stand-in over real
loopback HTTP (and httpx.MockTransport for the real app's answer the stand-in does not give).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import stamina
from psycopg.conninfo import make_conninfo
from pydantic import ValidationError
from structlog.testing import capture_logs

from watchdog.clock import ManualClock
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.flags import FlagState, FlagSwitch
from watchdog.providers.flags_http import ApiFlagSwitch
from watchdog.providers.flags_sql import SqlFlagSwitch
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.flags_api import FlagStore, Received, create_app
from watchdog.sandbox.server import serve
from watchdog.secrets import Secret
from watchdog.settings import ApiFlags, SqlFlags

SQL = Path(__file__).parent / "sql"
T0 = datetime(2026, 1, 28, 12, 30, tzinfo=UTC)
TOKEN = "ff-admin-7c1e9b"  # the stand-in's, and what must never leak
PASSWORD = "pg-s3cret-f1a9"
FLAGS = {  # as the migration seeds them
    "outbound_calling": (True, 100),
    "sms_campaigns": (False, 0),
    "lead_scoring": (False, 50),
    "knowledge_base": (True, 100),
}
REASON = "flag_error_rate 4.2 % > 1 % for 2 readings"


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """Reads are retried as in production, without waiting between attempts."""
    with stamina.set_testing(True, attempts=2):
        yield


def migrated(dsn: str) -> str:
    """The app's tables and the runbook's feature-flags migration, applied."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute((SQL / "app_tables.sql").read_text())
        conn.execute((SQL / "20260128_create_feature_flags.sql").read_text())
    return dsn


@pytest.fixture
def flags_db(pg_dsn: str) -> str:
    return migrated(pg_dsn)


def sql_switch(dsn: str, **config: Any) -> SqlFlagSwitch:
    return SqlFlagSwitch(SqlFlags(kind="sql", dsn=Secret(dsn), **config))


def query(dsn: str, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def flags_in(dsn: str) -> dict[str, tuple[bool, int]]:
    rows = query(dsn, "SELECT flag_key, enabled_globally, rollout_percentage FROM feature_flags")
    return {key: (on, rollout) for key, on, rollout in rows}


@pytest.fixture
def store() -> FlagStore:
    return FlagStore(FLAGS)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def api_url(store: FlagStore, faults: Faults) -> Iterator[str]:
    app = create_app(store, token=TOKEN, clock=ManualClock(T0), faults=faults)
    with serve(app) as url:
        yield url


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


def api_switch(url: str, client: httpx.AsyncClient, token: str = TOKEN) -> ApiFlagSwitch:
    return ApiFlagSwitch(ApiFlags(kind="api", api_url=url, token=Secret(token)), client)


@dataclass
class Switched:
    """A switch, and its flags as read from behind it (the table, or the stand-in's store)."""

    switch: FlagSwitch
    values: Callable[[], dict[str, tuple[bool, int] | None]]


@pytest.fixture(params=["sql", "api"])
async def switched(request: pytest.FixtureRequest) -> AsyncIterator[Switched]:
    if request.param == "sql":
        dsn = migrated(request.getfixturevalue("pg_dsn"))
        yield Switched(sql_switch(dsn), lambda: dict(flags_in(dsn)))
        return
    store = FlagStore(FLAGS)
    with serve(create_app(store, token=TOKEN, clock=ManualClock(T0))) as url:
        async with httpx.AsyncClient(timeout=5) as client:
            yield Switched(api_switch(url, client), lambda: {k: store.values(k) for k in FLAGS})


# The contract, for every FlagSwitch.


async def test_disable_turns_a_flag_off_for_everyone(switched: Switched) -> None:
    state = await switched.switch.disable("outbound_calling", REASON)
    assert (state.key, state.enabled_globally, state.rollout_percentage) == (
        "outbound_calling",
        False,
        0,
    )
    assert switched.values() == {**FLAGS, "outbound_calling": (False, 0)}
    assert await switched.switch.state("outbound_calling") == FlagState(
        "outbound_calling", False, 0
    )


async def test_enable_turns_a_disabled_flag_back_on(switched: Switched) -> None:
    await switched.switch.disable("knowledge_base", REASON)
    state = await switched.switch.enable("knowledge_base", "fixed in r43")
    assert (state.enabled_globally, state.rollout_percentage) == (True, 100)
    assert switched.values() == FLAGS


async def test_an_unknown_flag_is_an_error_and_changes_nothing(switched: Switched) -> None:
    for change in (switched.switch.disable, switched.switch.enable):
        with pytest.raises(RollbackError) as caught:
            await change("no_such_flag", REASON)
        assert caught.value.provider == switched.switch.name
        assert caught.value.deployment_id == "no_such_flag"
    with pytest.raises(RollbackError):
        await switched.switch.state("no_such_flag")
    assert switched.values() == FLAGS


async def test_check_changes_nothing(switched: Switched) -> None:
    await switched.switch.check()
    assert switched.values() == FLAGS


# SqlFlagSwitch (Method 1).


def audit_rows(dsn: str, *columns: str) -> list[tuple[Any, ...]]:
    names = ", ".join(columns)
    return query(dsn, f"SELECT {names} FROM feature_flag_audit_log ORDER BY changed_at, action")


async def test_sql_disable_audits_with_the_values_before(flags_db: str) -> None:
    with capture_logs() as logs:
        state = await sql_switch(flags_db).disable("lead_scoring", REASON)
    assert state == FlagState("lead_scoring", False, 0)
    rows = audit_rows(flags_db, "flag_key", "action", "previous_value", "new_value")
    ours = ("lead_scoring", "disabled", {"enabled_globally": False, "rollout_percentage": 50})
    assert (*ours, {"enabled_globally": False, "rollout_percentage": 0}) in rows
    trigger = [row for row in rows if row[1] == "rollout_changed"]  # the migration's own
    assert len(rows) == 2
    assert len(trigger) == 1
    assert logs == [
        {
            "event": "flags.disabled",
            "log_level": "info",
            "switch": "flags-sql",
            "key": "lead_scoring",
            "reason": REASON,
            "values": (False, 0),
        }
    ]
    org = query(flags_db, "SELECT id FROM organizations LIMIT 1")[0][0]
    enabled = query(flags_db, "SELECT is_feature_enabled(%s, 'lead_scoring')", [org])
    assert enabled == [(False,)]  # the app's own function sees it off for every org


async def test_sql_enable_restores_the_values_from_before_the_disable(flags_db: str) -> None:
    switch = sql_switch(flags_db)
    await switch.disable("lead_scoring", REASON)
    state = await switch.enable("lead_scoring", "fixed in r43")
    assert (state.enabled_globally, state.rollout_percentage) == (False, 50)
    assert state.notes[0].startswith(
        "restored enabled_globally=false, rollout_percentage=50, as before the disable at 2"
    )
    assert flags_in(flags_db) == FLAGS
    again = await switch.enable("lead_scoring", "by hand")  # newest audit row: enabled
    assert (again.enabled_globally, again.rollout_percentage) == (True, 100)
    assert again.notes == (
        "no values from before a disable in feature_flag_audit_log: turned fully on",
    )


async def test_sql_without_an_audit_table(flags_db: str) -> None:
    query(flags_db, "DROP TRIGGER feature_flags_audit_trigger ON feature_flags")
    query(flags_db, "DROP TABLE feature_flag_audit_log")
    switch = sql_switch(flags_db)
    state = await switch.disable("outbound_calling", REASON)
    assert state.notes == ("no audit row: feature_flag_audit_log does not exist",)
    state = await switch.enable("outbound_calling", "fixed")
    assert (state.enabled_globally, state.rollout_percentage) == (True, 100)
    assert flags_in(flags_db) == FLAGS


async def test_sql_writes_only_the_audit_columns_that_exist(flags_db: str) -> None:
    query(flags_db, "DROP TRIGGER feature_flags_audit_trigger ON feature_flags")
    query(flags_db, "DROP TABLE feature_flag_audit_log")
    query(
        flags_db,
        "CREATE TABLE flag_audit (id serial, flag_key text NOT NULL, action text NOT NULL,"
        " reason text, created_at timestamptz NOT NULL)",
    )
    switch = sql_switch(flags_db, audit_table="public.flag_audit")
    assert (await switch.disable("lead_scoring", REASON)).notes == ()
    state = await switch.enable("lead_scoring", "fixed in r43")  # nothing recorded to restore
    assert (state.enabled_globally, state.rollout_percentage) == (True, 100)
    rows = query(
        flags_db, "SELECT flag_key, action, reason, created_at IS NOT NULL FROM flag_audit"
    )
    assert rows == [
        ("lead_scoring", "disabled", REASON, True),
        ("lead_scoring", "enabled", "fixed in r43", True),
    ]


async def test_sql_a_failing_audit_row_leaves_the_flag_off(flags_db: str) -> None:
    query(flags_db, "DROP TRIGGER feature_flags_audit_trigger ON feature_flags")
    query(flags_db, "ALTER TABLE feature_flag_audit_log ADD COLUMN approved_by text NOT NULL")
    state = await sql_switch(flags_db).disable("outbound_calling", REASON)
    assert (state.enabled_globally, state.rollout_percentage) == (False, 0)
    assert state.notes[0].startswith('audit row not written: null value in column "approved_by"')
    assert audit_rows(flags_db, "flag_key") == []


async def test_sql_the_apps_own_trigger_breaks_method_1(flags_db: str) -> None:
    """The app's migration reads OLD.enabled, which feature_flags lacks: every UPDATE fails.
    The switch says so, and nothing changes."""
    query(
        flags_db,
        """CREATE OR REPLACE FUNCTION log_feature_flag_change() RETURNS TRIGGER AS $$
        BEGIN
          INSERT INTO feature_flag_audit_log (flag_key, action, previous_value, new_value)
          VALUES (NEW.flag_key, CASE WHEN OLD.enabled != NEW.enabled THEN 'disabled'
                  ELSE 'rollout_changed' END, row_to_json(OLD), row_to_json(NEW));
          RETURN NEW;
        END; $$ LANGUAGE plpgsql""",
    )
    with pytest.raises(RollbackError) as caught:
        await sql_switch(flags_db).disable("outbound_calling", REASON)
    assert 'record "old" has no field "enabled"' in str(caught.value)
    assert str(caught.value).endswith("; nothing changed")
    assert not caught.value.reached
    assert flags_in(flags_db) == FLAGS


async def test_sql_a_value_that_does_not_read_back_changes_nothing(flags_db: str) -> None:
    query(
        flags_db,
        """CREATE FUNCTION keep_rollout() RETURNS TRIGGER AS $$
        BEGIN NEW.rollout_percentage := OLD.rollout_percentage; RETURN NEW; END;
        $$ LANGUAGE plpgsql;
        CREATE TRIGGER keep_rollout BEFORE UPDATE ON feature_flags
        FOR EACH ROW EXECUTE FUNCTION keep_rollout()""",
    )
    with pytest.raises(RollbackError) as caught:
        await sql_switch(flags_db).disable("outbound_calling", REASON)
    assert str(caught.value) == (
        "flags-sql: outbound_calling reads enabled_globally=false, rollout_percentage=100"
        " after the update: nothing changed"
    )
    assert flags_in(flags_db) == FLAGS
    assert audit_rows(flags_db, "flag_key") == []


async def test_sql_configuration_problems(flags_db: str) -> None:
    with pytest.raises(ConfigError, match=r"flags-sql: table flags: .*does not exist"):
        await sql_switch(flags_db, table="flags").check()
    with pytest.raises(ValidationError, match="audit_table"):  # refused when the config loads
        sql_switch(flags_db, audit_table="feature flag audit")


async def test_sql_the_dsn_password_never_shows(flags_db: str) -> None:
    switch = sql_switch(make_conninfo(flags_db, password=PASSWORD))
    closed = sql_switch(f"postgresql://watchdog:{PASSWORD}@127.0.0.1:1/app")
    problems = []
    with capture_logs() as logs:
        await switch.disable("outbound_calling", REASON)
        for attempt in (lambda: switch.disable("nope", REASON), closed.check):
            with pytest.raises(RollbackError) as caught:
                await attempt()
            problems.append(str(caught.value))
    assert "Connection refused" in problems[1]
    assert PASSWORD not in repr(problems) + repr(logs) + repr(switch.__dict__)


# ApiFlagSwitch (Method 2).


async def test_api_disable_patches_clears_the_cache_and_reads_back(
    api_url: str, client: httpx.AsyncClient, store: FlagStore
) -> None:
    state = await api_switch(api_url, client).disable("outbound_calling", REASON)
    assert state == FlagState("outbound_calling", False, 0, cache_cleared=True)
    assert store.received() == [
        Received(
            "PATCH",
            "/api/feature-flags/outbound_calling",
            {"enabled_globally": False, "rollout_percentage": 0},
        ),
        Received("POST", "/api/feature-flags/cache/clear", None),
        Received("GET", "/api/feature-flags", None),
    ]
    assert store.cache_clears == 1


async def test_api_a_failed_cache_clear_is_a_note_not_an_error(
    api_url: str, client: httpx.AsyncClient, store: FlagStore, faults: Faults
) -> None:
    faults.fail_next(1, 500, operation="cache_clear")
    state = await api_switch(api_url, client).disable("outbound_calling", REASON)
    assert (state.enabled_globally, state.rollout_percentage) == (False, 0)
    assert state.cache_cleared is False
    assert state.notes[0].startswith("the flag cache was not cleared (flags-api: HTTP 500")
    assert store.values("outbound_calling") == (False, 0)
    assert store.cache_clears == 0


async def test_api_an_unknown_flag_is_a_404_and_nothing_else_is_sent(
    api_url: str, client: httpx.AsyncClient, store: FlagStore
) -> None:
    with pytest.raises(RollbackError, match="flags-api: HTTP 404") as caught:
        await api_switch(api_url, client).disable("no_such_flag", REASON)
    assert caught.value.deployment_id == "no_such_flag"
    assert [r.method for r in store.received()] == ["PATCH"]


async def test_api_a_wrong_token_is_a_config_error(
    api_url: str, client: httpx.AsyncClient, store: FlagStore
) -> None:
    switch = api_switch(api_url, client, token="ff-admin-expired")
    for attempt in (switch.check, lambda: switch.disable("outbound_calling", REASON)):
        with pytest.raises(ConfigError, match="HTTP 401"):
            await attempt()
    assert store.values("outbound_calling") == (True, 100)


@pytest.mark.parametrize(
    ("listed", "problem"),
    [
        ([], "does not list ghost (no such flag, or the app could not read its flags)"),
        (
            [{"flag_key": "ghost", "enabled_globally": True, "rollout_percentage": 100}],
            "shows ghost at enabled_globally=true, rollout_percentage=100 after the PATCH",
        ),
        ([{"flag_key": "ghost", "enabled_globally": "no"}], "shows ghost without usable values"),
    ],
)
async def test_api_only_the_read_back_proves_the_change(
    listed: list[dict[str, Any]], problem: str
) -> None:
    """The app's PATCH calls update_feature_flag(), which changes no row for an unknown key
    and still answers 200; only the read-back shows nothing happened."""

    def app(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(200, json={"success": True, "flags": listed})
        return httpx.Response(200, json={"success": True, "message": "updated"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(app)) as client:
        with pytest.raises(RollbackError) as caught:
            await api_switch("https://api.example.com", client).disable("ghost", REASON)
    assert str(caught.value) == f"flags-api: GET /api/feature-flags {problem}"
    assert caught.value.reached


async def test_api_the_token_never_shows(
    api_url: str, client: httpx.AsyncClient, faults: Faults
) -> None:
    switch = api_switch(api_url, client)
    faults.fail_next(1, 500, operation="cache_clear")
    problems = []
    with capture_logs() as logs:
        state = await switch.disable("outbound_calling", REASON)
        with pytest.raises(RollbackError) as caught:
            await switch.enable("no_such_flag", REASON)
        problems.append(str(caught.value))
    assert TOKEN not in repr(problems) + repr(logs) + repr(state) + repr(switch.__dict__)


def test_the_stand_in_checks_what_it_is_sent(api_url: str, store: FlagStore) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=api_url) as api:
        assert api.get("/api/feature-flags").json() == {"success": False, "error": "Unauthorized"}
        for body in ({}, {"enabled_globally": "no"}, {"rollout_percentage": 101}, {"x": 1}):
            answer = api.patch("/api/feature-flags/lead_scoring", json=body, headers=auth)
            assert answer.status_code == 400
        answer = api.patch(
            "/api/feature-flags/lead_scoring", json={"rollout_percentage": 10}, headers=auth
        )
        assert answer.json() == {
            "success": True,
            "message": 'Feature flag "lead_scoring" updated',
            "flag_key": "lead_scoring",
            "updates": {"rollout_percentage": 10},
        }
        listed = api.get("/api/feature-flags", headers=auth).json()
    assert listed["count"] == 4
    assert {
        "flag_key": "lead_scoring",
        "flag_name": "Lead Scoring",
        "enabled_globally": False,
        "rollout_percentage": 10,
    } in listed["flags"]
    assert json.dumps(store.received()[0].body) == "null"


async def test_sql_a_failing_commit_says_the_outcome_is_unknown(flags_db: str) -> None:
    query(flags_db, "CREATE TABLE reviewed (flag_key text PRIMARY KEY)")
    query(
        flags_db,
        "ALTER TABLE feature_flag_audit_log ADD FOREIGN KEY (flag_key) REFERENCES reviewed"
        " DEFERRABLE INITIALLY DEFERRED",  # checked at COMMIT, after the savepoint
    )
    with pytest.raises(
        RollbackError, match=r"COMMIT failed: .*may or may not have changed"
    ) as caught:
        await sql_switch(flags_db).disable("outbound_calling", REASON)
    assert caught.value.reached
    assert flags_in(flags_db) == FLAGS
