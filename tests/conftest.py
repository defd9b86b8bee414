from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

REPO = Path(__file__).parents[1]
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
