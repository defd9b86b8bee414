"""Bad configuration, at start and at SIGHUP. At start the daemon refuses to run (exit 2) with
one line naming the file, the line and the key, before it touches the state; at SIGHUP it
refuses the new config whole, says so in its log and /metrics, and goes on with the running
one: the watch in progress is unaffected and new watches still get the old settings."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.daemons import MakeDaemon, read_store, wait_for
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE

BAD_DAY = '{target: backend, schedule: "last fry 15:00"}'
GOOD_DAY = '{target: backend, schedule: "last fri 15:00"}'


def break_interval(config: Path) -> str:
    config.write_text(config.read_text().replace("interval: 1s", "interval: soon"))
    return "watch.interval"


def break_provider_kind(config: Path) -> str:
    config.write_text(config.read_text().replace("kind: render", "kind: rendr"))
    return "targets.backend.provider"


def break_drill_day(config: Path) -> str:
    config.write_text(config.read_text() + f"drills: {BAD_DAY}\n")
    return "drills.schedule"


@pytest.mark.parametrize(
    "breaks",
    [
        break_interval,
        break_provider_kind,
        break_drill_day,
    ],
    ids=lambda f: f.__name__,
)
def test_a_bad_config_at_start_exits_2_with_one_line_and_writes_no_state(
    breaks: Callable[[Path], str], make_daemon: MakeDaemon, tmp_path: Path
) -> None:
    daemon = make_daemon()
    key = breaks(daemon.config)
    daemon.start(ready=False)
    assert daemon.process is not None

    code = daemon.process.wait(timeout=30)

    lines = daemon.stderr.read_text().splitlines()
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert re.match(rf"watchdog: {re.escape(str(daemon.config))}:\d+: {re.escape(key)}", lines[0])
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["daemon-0.err", "daemon-0.out", "daemon.yaml"]  # no state.db, no incidents


def test_a_bad_config_at_sighup_is_refused_and_the_running_watch_goes_on(
    sandbox: stack.Stack, make_daemon: MakeDaemon
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # a good deploy, watched to its end
    daemon = make_daemon(window="15s").start()
    watch_id = daemon.announce()
    wait_for(lambda: len(read_store(daemon.state_url, watch_id).ticks) >= 2, 20, "two ticks")
    break_interval(daemon.config)

    daemon.hangup()

    failed = daemon.wait_event("config.reload_failed")
    assert "watch.interval" in failed["error"]
    assert str(daemon.config) in failed["error"]
    assert daemon.metric("watchdog_config_reloads_total", result="failed") == 1
    assert daemon.ready()
    summary = daemon.closed(watch_id)
    assert summary["verdict"] == "healthy", summary
    stored = read_store(daemon.state_url, watch_id)
    assert stored.unaccounted() == []
    assert stored.unaccounted("health", "health") == []
    assert sandbox.backend.count("rollback") == 0
    assert daemon.terminate() == 0


def test_a_bad_drill_day_at_sighup_is_refused_and_new_watches_keep_the_old_config(
    sandbox: stack.Stack, make_daemon: MakeDaemon
) -> None:
    """``last fry`` is no cron day: the reload is refused whole, so the window the same file
    changes is not taken either."""
    daemon = make_daemon(window="15s", drills=GOOD_DAY).start()
    text = daemon.config.read_text()
    daemon.config.write_text(
        text.replace(GOOD_DAY, BAD_DAY).replace("window: 15s", "window: 45s")
    )

    daemon.hangup()

    failed = daemon.wait_event("config.reload_failed")
    assert "drills.schedule: expected '<day> HH:MM'" in failed["error"]
    assert "'last fry" in failed["error"]
    assert daemon.metric("watchdog_config_reloads_total", result="failed") == 1
    watch_id = daemon.announce()  # after the refused reload: the old 15 s window
    watch = read_store(daemon.state_url, watch_id).watch
    assert (watch.closes_at - watch.started_at).total_seconds() <= 15
    # Once the file is fixed, the next SIGHUP takes it.
    daemon.config.write_text(text.replace("window: 15s", "window: 45s"))
    daemon.hangup()
    daemon.wait_event("config.reloaded")
    assert daemon.metric("watchdog_config_reloads_total", result="ok") == 1
    assert daemon.closed(watch_id)["verdict"] == "rolled_back"  # the bad deploy, still watched
    assert sandbox.backend.count("rollback") == 1
