"""``watchdog drill`` as ops run it, against the sandbox: the known-bad backend deployment is
made live, the watchdog must catch it and roll it back on its own, and the drill writes a timed
report and posts it to Slack; a bad deployment the watchdog misses fails the drill, and the
drill puts staging back on the known-good itself. Plus the drill schedule, read by the
scheduler's own cron trigger across month and year ends."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.triggers.cron import CronTrigger

from tests.conftest import Runner
from watchdog.clock import SystemClock
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE, Cause
from watchdog.schedule import cron_fields

ENV = {**os.environ, **stack.ENV}
DRILL = "drills: {{target: backend, bad_deployment: dep-2, reports: '{reports}'}}\n"


@pytest.fixture
def sandbox() -> Iterator[stack.Stack]:
    """The sandbox with staging on its known-good deployment: dep-1 live, dep-2 (the bad
    release) built and idle."""
    with stack.running(SystemClock(), delay=timedelta(0)) as running:
        running.backend.switch_to("dep-1", Cause.ROLLBACK)
        assert running.backend.live().id == "dep-1"  # type: ignore[union-attr]
        assert running.app.live == GOOD_RELEASE
        yield running


def write_config(tmp_path: Path, sandbox: stack.Stack, drills: str, window: str = "20s") -> str:
    path = tmp_path / "watchdog.yaml"
    path.write_text(sandbox.config(tmp_path, interval="1s", window=window) + drills)
    return str(path)


def rollbacks(sandbox: stack.Stack) -> list[str | None]:
    """The deployments the Render stand-in was asked to roll back to, in order."""
    return [r.subject for r in sandbox.backend.received() if r.operation == "rollback"]


def test_the_watchdog_catches_the_bad_deployment_and_the_drill_reports_it(
    run_watchdog: Runner, sandbox: stack.Stack, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox, DRILL.format(reports=tmp_path / "drills"))
    done = run_watchdog("drill", "backend", "--config", config, env=ENV)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "backend serves dep-1 (known-good); making dep-2 live" in done.stdout
    assert any(" rollback " in line and "left)" in line for line in done.stdout.splitlines())
    assert "drill PASSED: the watchdog caught dep-3" in done.stdout
    # The drill made the known-bad live (a Render rollback to dep-2 is a new deploy, dep-3);
    # the watchdog rolled back once, to the known-good, and the app serves it again.
    assert rollbacks(sandbox) == ["dep-2", "dep-1"]
    assert sandbox.app.live == GOOD_RELEASE
    (report,) = (tmp_path / "drills").iterdir()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d-drill-backend\.md", report.name)
    assert f"report: {report}" in done.stdout
    text = report.read_text()
    assert text.startswith("# Rollback drill: backend, ")
    assert text.splitlines()[0].endswith(": PASS")
    assert "**Known-bad:** dep-2, live as dep-3" in text
    for phase in ("bad deployment live", "detected", "rollback decided", "rollback done"):
        assert re.search(rf"^\| {phase} \| \d\d:\d\d:\d\d \| \d+\.\ds \|", text, re.M), phase
    assert re.search(r"the runbook's target is under 5 minutes: \*\*PASS\*\*", text)
    assert "- [x] flow auth" in text
    assert "- [x] error rate" in text
    (message,) = sandbox.channel.messages()
    assert message["text"].startswith("✅ Rollback drill on backend: PASS: the watchdog caught")
    assert [b["type"] for b in message["blocks"]] == [
        "header",
        "section",
        "section",
        "section",
        "context",
    ]
    for secret in stack.ENV.values():
        assert secret not in done.stdout + done.stderr + text + json.dumps(message)

    # Next month's drill, with Slack down: it still passes, says what was not delivered, and
    # never overwrites the first report.
    sandbox.channel.archived = True
    again = run_watchdog("drill", "--config", config, "--json", env=ENV)
    assert again.returncode == 0, again.stdout + again.stderr
    result = json.loads(again.stdout)
    assert (result["passed"], result["known_good"], result["deployment_id"]) == (
        True,
        "dep-4",
        "dep-5",
    )
    assert result["rollback_seconds"] <= result["target_seconds"] == 300
    assert result["undelivered"] == ["slack: HTTP 410 channel_is_archived"]
    assert result["report"] == str(report.with_name(report.stem + "-2.md"))
    assert "- not delivered: slack: HTTP 410" in Path(result["report"]).read_text()
    assert rollbacks(sandbox) == ["dep-2", "dep-1", "dep-2", "dep-4"]
    assert report.read_text() == text


def test_a_bad_deployment_the_watchdog_misses_fails_and_staging_is_put_back(
    run_watchdog: Runner, sandbox: stack.Stack, tmp_path: Path
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # the "known-bad" one works fine
    drills = DRILL.format(reports=tmp_path / "drills")
    config = write_config(tmp_path, sandbox, drills, window="5s")
    done = run_watchdog("drill", "--config", config, env=ENV)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "drill FAILED: the watchdog did not roll dep-3 back within its 5s watch" in done.stdout
    assert "the drill puts dep-1 back itself" in done.stdout
    # The drill's own rollback put the known-good back: staging is not left on dep-3.
    assert rollbacks(sandbox) == ["dep-2", "dep-1"]
    assert sandbox.backend.live().release == GOOD_RELEASE  # type: ignore[union-attr]
    assert sandbox.app.live == GOOD_RELEASE
    (report,) = (tmp_path / "drills").iterdir()
    text = report.read_text()
    assert text.splitlines()[0].endswith(": FAIL")
    assert "The watchdog did not roll back: **FAIL**" in text
    assert "| rollback done |" not in text
    assert "The drill rolled backend back to dep-1 itself" in text
    assert "Check that dep-2 is broken in a way the rules see" in text
    assert "- [x] health api" in text
    assert sandbox.channel.texts()[0].startswith("❌ Rollback drill on backend: FAIL")


@pytest.mark.parametrize(
    ("drills", "args", "error"),
    [
        (
            "drills: {target: backend, bad_deployment: dep-2, schedule: 'fridays at 3pm'}\n",
            [],
            "watchdog.yaml:{line}: drills.schedule: expected '<day> HH:MM' such as 'last fri 15:00'",
        ),
        (
            "drills: {target: staging, bad_deployment: dep-2}\n",
            [],
            "watchdog.yaml:{line}: drills.target: expected one of the targets (backend), found 'staging'",
        ),
        ("drills: {target: backend}\n", [], ": drills.bad_deployment: expected the id of a"),
        ("", [], ": drills: expected a 'drills' section (target, bad_deployment)"),
        (DRILL.format(reports="r"), ["staging"], "target 'staging': expected one of backend"),
        (
            "dry_run: true\n" + DRILL.format(reports="r"),
            [],
            ": dry_run: a drill deploys and rolls back for real; expected false",
        ),
    ],
    ids=[
        "schedule",
        "drills-target",
        "no-bad-deployment",
        "no-drills",
        "target-argument",
        "dry-run",
    ],
)
def test_config_errors_exit_2_with_one_line_and_change_nothing(
    run_watchdog: Runner,
    sandbox: stack.Stack,
    tmp_path: Path,
    drills: str,
    args: list[str],
    error: str,
) -> None:
    config = write_config(tmp_path, sandbox, drills)
    done = run_watchdog("drill", *args, "--config", config, env=ENV)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    drills_line = len(Path(config).read_text().splitlines())
    assert line.startswith("watchdog: ")
    assert error.format(line=drills_line) in line, line
    assert sandbox.backend.received() == []


@pytest.mark.parametrize(
    ("schedule", "fields"),
    [
        ("last fri 15:00", {"day": "last fri", "hour": "15", "minute": "0"}),
        ("1st mon 09:30", {"day": "1st mon", "hour": "9", "minute": "30"}),
        ("  15   7:05 ", {"day": "15", "hour": "7", "minute": "5"}),
    ],
)
def test_a_schedule_becomes_cron_fields(schedule: str, fields: dict[str, str]) -> None:
    assert cron_fields(schedule) == fields


@pytest.mark.parametrize(
    "schedule", ["15:00", "last fri", "last fri 24:00", "last fri 15:60", "fri 3pm", ""]
)
def test_a_malformed_schedule_says_what_was_expected(schedule: str) -> None:
    with pytest.raises(ValueError, match=r"expected '<day> HH:MM' such as 'last fri 15:00'"):
        cron_fields(schedule)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("now", "next_drill"),
    [
        # Christmas 2026 is December's last Friday, and its drill is over: next year's first.
        ("2026-12-25 16:00", "2027-01-29 15:00"),
        ("2027-02-26 14:00", "2027-02-26 15:00"),  # the same day, an hour later
        ("2027-01-22 00:00", "2027-01-29 15:00"),  # January 2027 has five Fridays: the fifth
        ("2028-02-01 00:00", "2028-02-25 15:00"),  # leap-year February ends on a Tuesday
        ("2028-02-25 15:00:01", "2028-03-31 15:00"),
    ],
)
def test_last_friday_is_found_across_month_and_year_ends(now: str, next_drill: str) -> None:
    trigger = CronTrigger(**cron_fields("last fri 15:00"), timezone=UTC)
    assert trigger.get_next_fire_time(None, at(now)) == at(next_drill)
