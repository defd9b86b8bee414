"""``watchdog flags`` and ``watchdog rollback all`` as people run them: the real Postgres with
the runbook's feature_flags migration, and the sandbox backend."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from tests.conftest import Runner
from tests.providers.test_flags import migrated
from watchdog.clock import SystemClock
from watchdog.sandbox import stack
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE

ENV = {**os.environ, **stack.ENV}


@pytest.fixture
def sandbox() -> Iterator[stack.Stack]:
    with stack.running(SystemClock(), delay=timedelta(0)) as running:
        yield running


def config(tmp_path: Path, sandbox: stack.Stack, dsn: str, extra: str = "") -> str:
    path = tmp_path / "watchdog.yaml"
    path.write_text(sandbox.config(tmp_path) + f'flags: {{kind: sql, dsn: "{dsn}"}}\n' + extra)
    return str(path)


def flag(dsn: str, key: str) -> tuple[bool, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT enabled_globally, rollout_percentage FROM feature_flags WHERE flag_key = %s",
            (key,),
        ).fetchone()
    assert row is not None
    return row[0], row[1]


def test_flags_disable_then_enable_restores_the_rollout(
    run_watchdog: Runner, tmp_path: Path, sandbox: stack.Stack, pg_dsn: str
) -> None:
    dsn = migrated(pg_dsn)
    path = config(tmp_path, sandbox, dsn)
    assert flag(dsn, "lead_scoring") == (False, 50)
    off = run_watchdog("flags", "disable", "lead_scoring", "--config", path, "--json", env=ENV)
    assert off.returncode == 0, off.stdout + off.stderr
    record = json.loads(off.stdout)
    assert (record["kind"], record["status"], record["to"]) == (
        "disable_flag",
        "done",
        "lead_scoring",
    )
    assert record["notes"][0] == "enabled_globally=false, rollout_percentage=0"
    assert flag(dsn, "lead_scoring") == (False, 0)
    on = run_watchdog("flags", "enable", "lead_scoring", "--config", path, env=ENV)
    assert on.returncode == 0, on.stdout
    assert flag(dsn, "lead_scoring") == (False, 50)


def test_an_unknown_flag_fails_and_changes_nothing(
    run_watchdog: Runner, tmp_path: Path, sandbox: stack.Stack, pg_dsn: str
) -> None:
    dsn = migrated(pg_dsn)
    done = run_watchdog(
        "flags", "disable", "no_such_flag", "--config", config(tmp_path, sandbox, dsn), env=ENV
    )
    assert done.returncode == 1
    assert "disable_flag no_such_flag via flags-sql: failed" in done.stdout
    assert flag(dsn, "outbound_calling") == (True, 100)


def test_rollback_all_turns_flags_off_first_then_rolls_the_apps_back(
    run_watchdog: Runner, tmp_path: Path, sandbox: stack.Stack, pg_dsn: str
) -> None:
    dsn = migrated(pg_dsn)
    path = config(tmp_path, sandbox, dsn, "full_rollback: {flags: [outbound_calling]}\n")
    planned = run_watchdog("rollback", "all", "--config", path, "--dry-run", env=ENV)
    assert planned.returncode == 0
    assert "would roll back all: flags off: outbound_calling; backend dep-2 → dep-1" in (
        planned.stdout
    )
    assert flag(dsn, "outbound_calling") == (True, 100)
    done = run_watchdog(
        "rollback",
        "all",
        "--config",
        path,
        "--yes",
        "--json",
        "--reason",
        "migration failed",
        env=ENV,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["verdict"] == "rolled_back"
    assert [(a["kind"], a["to"], a["status"]) for a in summary["actions"]] == [
        ("disable_flag", "outbound_calling", "done"),
        ("rollback", "dep-1", "done"),
    ]
    assert summary["actions"][1]["started_at"] >= summary["actions"][0]["finished_at"]
    assert "of the runbook's 20 minutes" in summary["explanation"]
    assert all(c["name"].startswith("backend: ") for c in summary["verification"]["checks"])
    assert flag(dsn, "outbound_calling") == (False, 0)
    assert sandbox.app.live == GOOD_RELEASE


def test_rollback_all_stops_at_the_first_failed_step(
    run_watchdog: Runner, tmp_path: Path, sandbox: stack.Stack, pg_dsn: str
) -> None:
    dsn = migrated(pg_dsn)
    path = config(tmp_path, sandbox, dsn, "full_rollback: {flags: [no_such_flag]}\n")
    done = run_watchdog("rollback", "all", "--config", path, "--yes", env=ENV)
    assert done.returncode == 1
    assert "all: rollback_failed: stopped at flag no_such_flag" in done.stdout
    assert sandbox.backend.received() == []  # the backend was never touched
    assert sandbox.app.live == BAD_RELEASE
