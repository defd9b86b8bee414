"""``watchdog rollback`` and ``watchdog verify`` as people run them, against the sandbox: the
bad backend release is rolled back through the Render stand-in, the toy app serves the good
release again, and verification sees it healthy."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import Runner
from watchdog.clock import SystemClock
from watchdog.sandbox import stack
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE


@pytest.fixture
def sandbox() -> Iterator[stack.Stack]:
    with stack.running(SystemClock(), delay=timedelta(0)) as running:
        yield running


@pytest.fixture
def config(tmp_path: Path, sandbox: stack.Stack) -> str:
    path = tmp_path / "watchdog.yaml"
    path.write_text(sandbox.config(tmp_path))
    return str(path)


ENV = {**os.environ, **stack.ENV}


def test_rollback_yes_rolls_back_verifies_and_prints_the_timed_summary(
    run_watchdog: Runner, sandbox: stack.Stack, config: str
) -> None:
    assert sandbox.app.live == BAD_RELEASE
    done = run_watchdog(
        "rollback",
        "backend",
        "--config",
        config,
        "--yes",
        "--json",
        "--reason",
        "error rate 5 %",
        env=ENV,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert (summary["verdict"], summary["deployment_id"], summary["previous_deployment_id"]) == (
        "rolled_back",
        "dep-2",
        "dep-1",
    )
    (action,) = summary["actions"]
    assert (action["provider"], action["to"], action["status"]) == ("render", "dep-1", "done")
    assert action["target_seconds"] == 300
    assert 0 <= action["seconds"] < 300
    assert any("auto-deploy" in note.lower() for note in action["notes"])
    assert summary["verification"]["passed"] is True
    names = {check["name"] for check in summary["verification"]["checks"]}
    assert names == {"health api", "health database", "flow auth", "error rate"}
    assert sandbox.app.live == GOOD_RELEASE
    assert sandbox.backend.count("rollback") == 1
    for secret in stack.ENV.values():
        assert secret not in done.stdout + done.stderr


def test_a_second_rollback_finds_nothing_to_go_back_to(
    run_watchdog: Runner, sandbox: stack.Stack, config: str
) -> None:
    run_watchdog("rollback", "backend", "--config", config, "--yes", env=ENV)
    again = run_watchdog("rollback", "backend", "--config", config, "--yes", env=ENV)
    assert again.returncode == 1
    assert "rollback_failed: render has no earlier good deployment to go back to" in again.stdout
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE


def test_dry_run_records_and_sends_nothing(
    run_watchdog: Runner, sandbox: stack.Stack, config: str, tmp_path: Path
) -> None:
    done = run_watchdog("rollback", "backend", "--config", config, "--dry-run", env=ENV)
    assert done.returncode == 0
    assert done.stdout.startswith(
        "backend: would_roll_back: would roll backend back from dep-2 to dep-1"
    )
    assert sandbox.backend.received() == []
    assert sandbox.app.live == BAD_RELEASE


def test_without_yes_and_without_a_terminal_it_refuses(
    run_watchdog: Runner, sandbox: stack.Stack, config: str
) -> None:
    done = run_watchdog("rollback", "backend", "--config", config, env=ENV)
    assert done.returncode == 2
    assert done.stderr == "watchdog: refusing to roll back without --yes when not on a terminal\n"
    assert sandbox.backend.received() == []


def test_a_failing_provider_is_a_recorded_failure_exit_1(
    run_watchdog: Runner, sandbox: stack.Stack, config: str
) -> None:
    sandbox.backend_faults.fail_next(1, 500, operation="rollback")
    done = run_watchdog("rollback", "backend", "--config", config, "--yes", "--json", env=ENV)
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert summary["verdict"] == "rollback_failed"
    assert summary["actions"][0]["status"] == "failed"
    assert "HTTP 500" in summary["actions"][0]["error"]
    assert sandbox.backend.count("rollback") == 1


def test_verify_says_what_is_broken_then_that_it_is_healthy(
    run_watchdog: Runner, sandbox: stack.Stack, config: str
) -> None:
    broken = run_watchdog("verify", "backend", "--config", config, "--json", env=ENV)
    assert broken.returncode == 1
    checks = {c["name"]: c for c in json.loads(broken.stdout)["checks"]}
    assert checks["flow auth"]["passed"] is False
    assert checks["health api"]["passed"] is True
    run_watchdog("rollback", "backend", "--config", config, "--yes", env=ENV)
    healthy = run_watchdog("verify", "backend", "--config", config, env=ENV)
    assert healthy.returncode == 0, healthy.stdout
    assert healthy.stdout.endswith("verification passed\n")


def test_watch_in_the_foreground_rolls_back_the_bad_deploy_and_prints_the_summary(
    run_watchdog: Runner, sandbox: stack.Stack, config: str
) -> None:
    done = run_watchdog(
        "watch", "backend", "--config", config, "--window", "20s", "--interval", "1s", env=ENV
    )
    assert done.returncode == 1, done.stdout + done.stderr  # not healthy: it was rolled back
    progress = done.stdout.splitlines()
    assert any("rollback" in line and "left)" in line for line in progress)
    assert "backend: rolled_back:" in done.stdout
    assert "rollback via render to dep-1: done" in done.stdout
    assert "verification: passed" in done.stdout
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE


def test_watch_json_dry_run_says_it_would_roll_back(
    run_watchdog: Runner, sandbox: stack.Stack, config: str
) -> None:
    done = run_watchdog(
        "watch",
        "backend",
        "--config",
        config,
        "--window",
        "20s",
        "--interval",
        "1s",
        "--dry-run",
        "--json",
        env=ENV,
    )
    summary = json.loads(done.stdout)
    assert (summary["verdict"], summary["dry_run"], summary["actions"]) == (
        "would_roll_back",
        True,
        [],
    )
    assert summary["rule"] in {
        "critical-flow-broken",
        "error-rate-critical",
        "health-check-failing",
    }
    assert sandbox.backend.received() == []


def test_status_lists_the_watches_from_the_store(
    run_watchdog: Runner, sandbox: stack.Stack, config: str
) -> None:
    assert run_watchdog("status", "--config", config, env=ENV).stdout == "no watches yet\n"
    run_watchdog(
        "watch",
        "backend",
        "--config",
        config,
        "--window",
        "20s",
        "--interval",
        "1s",
        "--dry-run",
        env=ENV,
    )
    done = run_watchdog("status", "--config", config, "--json", env=ENV)
    (watch,) = json.loads(done.stdout)
    assert (watch["target"], watch["deployment_id"], watch["verdict"]) == (
        "backend",
        "dep-2",
        "would_roll_back",
    )
