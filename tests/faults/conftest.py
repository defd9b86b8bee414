"""What every fault-injection test shares: the sandbox on the wall clock and ``make_daemon``
(``watchdog run`` as a subprocess, from tests/daemons.py), and the Postgres URL a daemon's
state takes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from psycopg.conninfo import conninfo_to_dict

from tests.daemons import MakeDaemon, daemon_maker
from watchdog.clock import SystemClock
from watchdog.sandbox import stack


@pytest.fixture
def sandbox() -> Iterator[stack.Stack]:
    """Every stand-in on loopback on the wall clock; a Render rollback goes live in 3 s."""
    with stack.running(SystemClock(), delay=timedelta(seconds=3)) as running:
        yield running


@pytest.fixture
def make_daemon(tmp_path: Path, sandbox: stack.Stack) -> Iterator[MakeDaemon]:
    """``daemon_maker`` on the sandbox, in tmp_path: every daemon of one test shares its state
    (``tmp_path/state.db``, or ``state_url=postgres_url(pg_dsn)``)."""
    with daemon_maker(tmp_path, sandbox) as make:
        yield make


def postgres_url(dsn: str) -> str:
    """A libpq conninfo (the ``pg_dsn`` fixture's) as the ``postgresql://`` URL state.url takes."""
    part = {k: quote(str(v), safe="") for k, v in conninfo_to_dict(dsn).items() if v}
    password = f":{part['password']}" if "password" in part else ""
    port = part.get("port", "5432")
    return f"postgresql://{part['user']}{password}@{part['host']}:{port}/{part['dbname']}"
