"""The ``watchdog`` command as people run it: real subprocesses, real files, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Runner

EXAMPLE = "config/examples/bad-deploy.jsonl"


def readings_file(tmp_path: Path, *lines: dict[str, object]) -> str:
    path = tmp_path / "readings.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(path)


def test_evaluate_replays_the_example_to_a_rollback(run_watchdog: Runner) -> None:
    done = run_watchdog("evaluate", "--readings", EXAMPLE)
    assert done.returncode == 1, done.stderr
    assert "final: rollback by error-rate-critical at 12:01:15 (+1m15s)" in done.stdout
    assert "monitor [error-rate-elevated]" in done.stdout


def test_evaluate_json_is_one_line_per_tick_then_the_final(run_watchdog: Runner) -> None:
    done = run_watchdog("evaluate", "--readings", EXAMPLE, "--json")
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["verdict"] for line in lines[:-1]] == [
        "none",
        "none",
        "monitor",
        "monitor",
        "rollback",
    ]
    assert lines[0]["at"] == "2026-01-28T12:00:15Z"
    assert lines[-1]["final"] == {
        "at": "2026-01-28T12:01:15Z",
        "verdict": "rollback",
        "rule": "error-rate-critical",
        "scope": "application",
        "urgency": "immediate",
        "explanation": "error_rate 2.3 % over 4,120 requests > 1 % (95 % lower bound 1.88 %) "
        "for 2 readings in the first 10m → rollback, immediate",
    }


def test_evaluate_a_healthy_deploy_exits_zero(run_watchdog: Runner, tmp_path: Path) -> None:
    path = readings_file(
        tmp_path,
        *[
            {
                "at": f"2026-01-28T12:0{m}:00Z",
                "metric": "error_rate",
                "value": 0.0004,
                "samples": 3000,
            }
            for m in range(4)
        ],
    )
    done = run_watchdog("evaluate", "--readings", path, "--json")
    assert done.returncode == 0
    assert json.loads(done.stdout.splitlines()[-1])["final"]["verdict"] == "none"


def test_evaluate_without_any_error_rate_ends_inconclusive(
    run_watchdog: Runner, tmp_path: Path
) -> None:
    path = readings_file(
        tmp_path,
        {"at": "2026-01-28T12:00:15Z", "metric": "health", "value": 1, "labels": {"check": "api"}},
    )
    done = run_watchdog("evaluate", "--readings", path)
    assert done.returncode == 1
    assert "final: inconclusive" in done.stdout


def test_deployed_at_flag_moves_the_ten_minute_window(run_watchdog: Runner) -> None:
    done = run_watchdog(
        "evaluate", "--readings", EXAMPLE, "--json", "--deployed-at", "2026-01-28T11:50:00Z"
    )
    final = json.loads(done.stdout.splitlines()[-1])["final"]
    # Past the first 10 minutes the >1 % rule no longer applies; the rise still does.
    assert (final["verdict"], final["rule"]) == ("rollback", "error-rate-rising")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            '{"at": "2026-01-28 12:00", "metric": "error_rate", "value": 0.1}',
            "readings.jsonl:2: at: expected an ISO 8601 time with zone (Z or +00:00), found "
            "'2026-01-28 12:00'",
        ),
        (
            '{"at": "2026-01-28T12:00:00Z", "metric": "errors", "value": 0.1}',
            "readings.jsonl:2: metric: expected one of error_rate, users_affected",
        ),
        (
            '{"at": "2026-01-28T12:00:00Z", "metric": "error_rate", "value": 2}',
            "readings.jsonl:2: value: expected a fraction between 0 and 1 for error_rate, found 2",
        ),
        (
            '{"at": "2026-01-28T12:00:00Z", "metric": "error_rate"}',
            "readings.jsonl:2: value: required key is missing",
        ),
        (
            '{"at": "2026-01-28T12:00:00Z", "metric": "flow", "value": 0, "labels": ["auth"]}',
            "readings.jsonl:2: labels: expected an object of strings",
        ),
        (
            '{"at": "2026-01-28T12:00:00Z", "metric": "error_rate", "value": 0.1, "samples": -3}',
            "readings.jsonl:2: samples: expected a whole number >= 0, found -3",
        ),
        (
            '{"at": "2026-01-28T12:00:00Z", "metric": "error_rate", "value": 0.1, "sample": 3}',
            "readings.jsonl:2: sample: unknown key",
        ),
        ("{not json", "readings.jsonl:2: expected one JSON object per line, found invalid JSON"),
        (
            '{"deployment": {"id": "x"}}',
            "readings.jsonl:2: deployment: expected the deployment line first, and only once",
        ),
    ],
)
def test_a_bad_readings_line_is_named_and_exits_2(
    run_watchdog: Runner, tmp_path: Path, line: str, message: str
) -> None:
    path = tmp_path / "readings.jsonl"
    path.write_text(
        '{"at": "2026-01-28T12:00:00Z", "metric": "error_rate", "value": 0}\n' + line + "\n"
    )
    done = run_watchdog("evaluate", "--readings", str(path))
    assert done.returncode == 2
    assert done.stderr.startswith(f"watchdog: {tmp_path}/{message}"), done.stderr
    assert len(done.stderr.splitlines()) == 1
    assert done.stdout == ""


def test_config_check_passes_the_shipped_example_and_prints_thresholds(
    run_watchdog: Runner,
) -> None:
    done = run_watchdog("config", "check", "--config", "config/watchdog.example.yaml")
    assert done.returncode == 0, done.stderr
    assert "config/watchdog.example.yaml: valid" in done.stdout
    row = next(line for line in done.stdout.splitlines() if "error-rate-critical" in line)
    assert row.split() == [
        "error-rate-critical",
        "rollback",
        "(immediate)",
        "error_rate",
        ">",
        "1",
        "%",
        "2",
        "readings",
        "10m",
        "95%",
        "Wilson",
    ]
    assert (
        "warning: config/watchdog.example.yaml:19: sentry.token: environment variable "
        "SENTRY_AUTH_TOKEN is not set" in done.stderr
    )


def test_config_check_json(run_watchdog: Runner) -> None:
    done = run_watchdog("config", "check", "--config", "config/watchdog.example.yaml", "--json")
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["targets"]["backend"]["provider"] == "render"
    assert report["rules"][0]["rule"] == "migration-failed"


def test_config_check_reads_watchdog_config_from_the_environment(
    run_watchdog: Runner, tmp_path: Path
) -> None:
    import os

    env = {**os.environ, "WATCHDOG_CONFIG": str(tmp_path / "absent.yaml")}
    done = run_watchdog("config", "check", env=env)
    assert done.returncode == 2
    assert done.stderr == (
        f"watchdog: {tmp_path}/absent.yaml: file not found (expected the "
        "watchdog config; see config/watchdog.example.yaml)\n"
    )


def test_bad_config_is_exit_2_with_one_line_per_problem(
    run_watchdog: Runner, tmp_path: Path
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("watch: {interval: 15}\ntargets:\n  b:\n    provider: {kind: rendr}\n")
    done = run_watchdog("config", "check", "--config", str(path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"watchdog: {path}:1: watch.interval: expected a duration like 15s, 10m or 1h, found 15",
        f"watchdog: {path}:4: targets.b.provider.kind: expected one of vercel, render, railway, "
        "git, sql-migrations, found 'rendr' (did you mean 'render'?)",
    ]


@pytest.mark.parametrize(
    "args",
    [
        ["evaluate"],
        ["evaluate", "--readings", EXAMPLE, "--interval", "soon"],
        ["evaluate", "--readings", EXAMPLE, "--deployed-at", "yesterday"],
        ["frobnicate"],
    ],
)
def test_bad_usage_exits_2_without_a_traceback(run_watchdog: Runner, args: list[str]) -> None:
    done = run_watchdog(*args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "usage: watchdog" in done.stderr
