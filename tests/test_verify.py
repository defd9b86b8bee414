"""The rollback verification checklist against the sandbox and the real Postgres."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests.conftest import REPO
from watchdog.clock import ManualClock
from watchdog.model import Deployment
from watchdog.sandbox import sentry, toyapp
from watchdog.sandbox.events import EventLog, write_timeline
from watchdog.sandbox.server import serve
from watchdog.settings import Settings, load_config
from watchdog.verify import Sleep, verify

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
TOKEN = "sntrys-verify-token"
PASSWORD = "smoke-pass-456"


@dataclass
class Sandbox:
    clock: ManualClock
    log: EventLog
    state: toyapp.ToyState
    sentry_url: str
    app_url: str


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    clock, log = ManualClock(T0), EventLog()
    state = toyapp.ToyState("good", password=PASSWORD)
    sentry_app = sentry.create_app(
        log, token=TOKEN, clock=clock, organization="acme", projects=["acme-api"]
    )
    app = toyapp.create_app(
        log, clock=clock, project="acme-api", environment="production", state=state
    )
    with serve(sentry_app) as sentry_url, serve(app) as app_url:
        yield Sandbox(clock, log, state, sentry_url, app_url)


def settings_for(
    tmp_path: Path, box: Sandbox, monkeypatch: pytest.MonkeyPatch, dsn: str | None = None
) -> Settings:
    monkeypatch.setenv("VERIFY_SENTRY_TOKEN", TOKEN)
    monkeypatch.setenv("VERIFY_PASSWORD", PASSWORD)
    database = (
        f'    database: {{dsn: "{dsn}"}}\n'
        "    integrity: {tables: [organizations, appointments], tolerance: 0.02}\n"
        if dsn
        else ""
    )
    path = tmp_path / "watchdog.yaml"
    path.write_text(f"""
rules: {REPO / "config" / "rules.yaml"}
watch: {{interval: 15s, window: 10m}}
sentry: {{api_url: "{box.sentry_url}", organization: acme, token: "${{VERIFY_SENTRY_TOKEN}}"}}
targets:
  backend:
    provider: {{kind: render, service_id: srv-1, token: unused}}
    sentry: {{project: acme-api}}
    health:
      - {{name: api, url: "{box.app_url}/health", expect_json: {{status: healthy}}}}
      - {{name: database, url: "{box.app_url}/api/health/database",
         expect_json: {{status: connected}}}}
    flows:
      - name: auth
        critical: true
        steps: [{{method: POST, url: "{box.app_url}/api/auth/login",
                  json: {{email: a@b.c, password: "${{VERIFY_PASSWORD}}"}}}}]
{database}""")
    return load_config(path).settings


def traffic(box: Sandbox, start: datetime, minutes: int, error_fraction: float) -> None:
    write_timeline(
        box.log,
        project="acme-api",
        environment="production",
        release="good",
        start=start,
        end=start + timedelta(minutes=minutes),
        per_minute=1200,
        error_fraction=error_fraction,
    )


def advancing(clock: ManualClock) -> Sleep:
    """A sleep that moves the manual clock instead of waiting."""

    async def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return sleep


GOOD = Deployment("backend", "dep-1", T0, release="good")


async def test_a_healthy_rollback_passes_every_check(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, sandbox, monkeypatch)
    traffic(sandbox, T0, 10, error_fraction=0.0005)
    sandbox.clock.set(T0 + timedelta(seconds=30))
    result = await verify(settings, GOOD, sandbox.clock, sleep=advancing(sandbox.clock))
    assert [(c.name, c.passed) for c in result.checks] == [
        ("health api", True),
        ("health database", True),
        ("flow auth", True),
        ("error rate", True),
    ]
    assert result.passed
    assert re.fullmatch(r"error rate [\d.]+ % over [\d,]+ < 0\.1 %", result.checks[-1].detail)


async def test_a_broken_database_health_and_login_fail_by_name(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, sandbox, monkeypatch)
    traffic(sandbox, T0, 10, error_fraction=0.0)
    sandbox.state.set_faults(toyapp.Faults(database_broken=True, login_broken=True))
    sandbox.clock.set(T0 + timedelta(seconds=30))
    result = await verify(settings, GOOD, sandbox.clock, sleep=advancing(sandbox.clock))
    failed = {c.name: c.detail for c in result.checks if not c.passed}
    assert set(failed) == {"health api", "health database", "flow auth"}
    assert "expected status 200, got 500" in failed["flow auth"]
    assert not result.passed


async def test_an_error_rate_that_stays_high_fails_after_five_minutes(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, sandbox, monkeypatch)
    traffic(sandbox, T0, 10, error_fraction=0.01)
    sandbox.clock.set(T0 + timedelta(seconds=30))
    result = await verify(settings, GOOD, sandbox.clock, sleep=advancing(sandbox.clock))
    check = result.checks[-1]
    assert (check.name, check.passed) == ("error rate", False)
    assert check.detail.endswith("not below 0.1 % within 5 minutes")
    assert sandbox.clock.now() - (T0 + timedelta(seconds=30)) == timedelta(minutes=5)


async def test_an_error_rate_that_falls_passes_as_soon_as_it_is_low(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, sandbox, monkeypatch)
    traffic(sandbox, T0, 2, error_fraction=0.02)  # the spike's tail
    traffic(sandbox, T0 + timedelta(minutes=2), 8, error_fraction=0.0)
    sandbox.clock.set(T0 + timedelta(seconds=15))
    result = await verify(settings, GOOD, sandbox.clock, sleep=advancing(sandbox.clock))
    assert result.passed
    waited = sandbox.clock.now() - (T0 + timedelta(seconds=15))
    assert timedelta(minutes=2) < waited < timedelta(minutes=5)


async def test_integrity_compares_row_counts_with_the_baseline(
    tmp_path: Path, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, pg_dsn: str
) -> None:
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE organizations (id int); CREATE TABLE appointments (id int)")
        conn.execute("INSERT INTO organizations SELECT generate_series(1, 10)")
        conn.execute("INSERT INTO appointments SELECT generate_series(1, 1000)")
    settings = settings_for(tmp_path, sandbox, monkeypatch, dsn=pg_dsn)
    traffic(sandbox, T0, 10, error_fraction=0.0)
    sandbox.clock.set(T0 + timedelta(seconds=30))
    baseline = {"organizations": 10, "appointments": 1000}
    kept = await verify(settings, GOOD, sandbox.clock, baseline, sleep=advancing(sandbox.clock))
    assert {c.name: c.passed for c in kept.checks}["integrity"] is True
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM appointments WHERE id <= 60")
    lost = await verify(settings, GOOD, sandbox.clock, baseline, sleep=advancing(sandbox.clock))
    integrity = next(c for c in lost.checks if c.name == "integrity")
    assert not integrity.passed
    assert integrity.detail == "appointments: 1,000 → 940 rows (-6.0 %, tolerance 2 %)"
    assert next(c for c in lost.checks if c.name == "database connectivity").passed
