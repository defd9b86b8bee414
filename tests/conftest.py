from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from watchdog.clock import ManualClock
from watchdog.sandbox import stack
from watchdog.store.sql import SqlStore
from watchdog.store.sqlite import sqlite_store

REPO = Path(__file__).parents[1]
T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)  # when the sandbox's bad deploy goes out
API_TOKEN = "wd-api-token-0123456789"
Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_watchdog(tmp_path: Path) -> Runner:
    """Run the real ``watchdog`` command in a subprocess, from the repository root."""

    def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "watchdog.cli", *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    return run


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards.

    Reads WATCHDOG_TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test).
    Without a reachable server the test is skipped, except under CI=true, where it fails.
    """
    base = os.environ.get("WATCHDOG_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        admin = psycopg.connect(base, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI and unreachable at {base}: {exc}")
        pytest.skip(f"PostgreSQL unreachable at {base}")
    name = f"watchdog_test_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield make_conninfo(base, dbname=name)
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def sandbox(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[stack.Stack]:
    """Every stand-in on loopback, on the test's clock, with the credentials its config
    names set in the environment (and the API's token)."""
    for name, value in {**stack.ENV, "WATCHDOG_API_TOKEN": API_TOKEN}.items():
        monkeypatch.setenv(name, value)
    with stack.running(clock, delay=timedelta(0)) as running:
        yield running


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A migrated SQLite store in the test's directory (``state.db``, as the sandbox's
    config names it)."""
    made = sqlite_store(tmp_path / "state.db")
    await made.migrate()
    yield made
    await made.close()
