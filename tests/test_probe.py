"""``watchdog probe`` as people run it: the real command against the sandbox over loopback."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import REPO, Runner
from watchdog.clock import SystemClock
from watchdog.sandbox import sentry, toyapp
from watchdog.sandbox.events import EventLog, write_timeline
from watchdog.sandbox.server import serve

TOKEN = "sntrys-probe-test-token"
PASSWORD = "smoke-password-123"


@pytest.fixture
def sandbox() -> Iterator[tuple[str, str]]:
    """A Sentry stand-in that saw 60 errors in 3,000 transactions of release r2 in the last
    two minutes, and the toy app serving r2, both on the real clock (the command's)."""
    clock, log = SystemClock(), EventLog()
    now = clock.now()
    write_timeline(
        log,
        project="acme-api",
        environment="production",
        release="r2",
        start=now - timedelta(minutes=2),
        end=now,
        per_minute=1500,
        error_fraction=0.02,
    )
    state = toyapp.ToyState("r2", password=PASSWORD)
    sentry_app = sentry.create_app(
        log, token=TOKEN, clock=clock, organization="acme", projects=["acme-api"]
    )
    toy_app = toyapp.create_app(
        log, clock=clock, project="acme-api", environment="production", state=state
    )
    with serve(sentry_app) as sentry_url, serve(toy_app) as app_url:
        yield sentry_url, app_url


def config(tmp_path: Path, sentry_url: str, app_url: str) -> Path:
    path = tmp_path / "watchdog.yaml"
    path.write_text(f"""
rules: {REPO / "config" / "rules.yaml"}
watch: {{interval: 3s, window: 1m}}
sentry: {{api_url: "{sentry_url}/api/0/", organization: acme, token: "${{PROBE_SENTRY_TOKEN}}",
         lookback: 10m}}
targets:
  backend:
    provider: {{kind: render, service_id: srv-1, token: unused}}
    sentry: {{project: acme-api}}
    health:
      - {{name: api, url: "{app_url}/health", expect_json: {{status: healthy}}}}
    flows:
      - name: auth
        critical: true
        steps:
          - {{method: POST, url: "{app_url}/api/auth/login",
             json: {{email: smoke@acme.example, password: "${{PROBE_SMOKE_PASSWORD}}"}},
             capture: {{token: token}}}}
          - {{url: "{app_url}/api/dashboard", headers: {{Authorization: "Bearer {{{{token}}}}"}}}}
""")
    return path


def env() -> dict[str, str]:
    return {**os.environ, "PROBE_SENTRY_TOKEN": TOKEN, "PROBE_SMOKE_PASSWORD": PASSWORD}


def test_probe_prints_every_reading_of_the_target(
    run_watchdog: Runner, tmp_path: Path, sandbox: tuple[str, str]
) -> None:
    path = config(tmp_path, *sandbox)
    done = run_watchdog(
        "probe", "backend", "--config", str(path), "--release", "r2", "--json", env=env()
    )
    readings = {
        (r["metric"], json.dumps(r.get("labels", {}), sort_keys=True)): r
        for r in map(json.loads, done.stdout.splitlines())
    }
    error_rate = readings[("error_rate", "{}")]
    assert (error_rate["value"], error_rate["samples"]) == (0.02, 3000)
    assert readings[("health", '{"check": "api"}')]["value"] == 1
    assert readings[("flow", '{"critical": "true", "flow": "auth"}')]["value"] == 1
    # Without --previous-release there is no latency baseline: said, but not a failure.
    assert done.returncode == 0, done.stderr
    assert '"failure": "no_data"' in done.stderr
    assert TOKEN not in done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr


def test_probe_output_is_a_readings_file_evaluate_reads(
    run_watchdog: Runner, tmp_path: Path, sandbox: tuple[str, str]
) -> None:
    path = config(tmp_path, *sandbox)
    probed = run_watchdog(
        "probe", "backend", "--config", str(path), "--release", "r2", "--json", env=env()
    )
    readings = tmp_path / "readings.jsonl"
    readings.write_text(probed.stdout)
    done = run_watchdog("evaluate", "--readings", str(readings), "--json")
    final = json.loads(done.stdout.splitlines()[-1])["final"]
    assert final["verdict"] == "monitor"  # 2 % once: not yet held for 2 readings
    assert final["rule"] == "error-rate-high"


def test_probe_against_a_dead_app_names_the_error_and_exits_1(
    run_watchdog: Runner, tmp_path: Path, sandbox: tuple[str, str]
) -> None:
    sentry_url, _ = sandbox
    path = config(tmp_path, sentry_url, "http://127.0.0.1:1")
    done = run_watchdog("probe", "backend", "--config", str(path), "--release", "r2", env=env())
    assert done.returncode == 1
    assert "health{check=api}" in done.stdout
    assert "unreachable: health check 'api': could not connect" in done.stdout
    assert "! flows" in done.stdout


def test_probe_of_an_unknown_target_is_a_usage_error(
    run_watchdog: Runner, tmp_path: Path, sandbox: tuple[str, str]
) -> None:
    done = run_watchdog("probe", "frontend", "--config", str(config(tmp_path, *sandbox)), env=env())
    assert done.returncode == 2
    assert done.stderr == "watchdog: target 'frontend': expected one of backend\n"
