"""The real daemon (``watchdog run`` as a subprocess) against the sandbox, on the wall clock
with a short window: deploys announced through the HTTP API are watched, the bad one is
rolled back exactly once, a blind watch never acts, and kill -9 loses nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import pytest

from tests.daemons import (
    TOKEN,
    MakeDaemon,
    daemon_maker,
    read_store,
    wait_for,
)
from tests.providers.helpers import refused_url
from watchdog.clock import SystemClock
from watchdog.model import Reading
from watchdog.sandbox import sentry, slack, stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.sandbox.events import EventLog
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve


@pytest.fixture
def sandbox() -> Iterator[stack.Stack]:
    with stack.running(SystemClock(), delay=timedelta(seconds=3)) as running:
        yield running


@pytest.fixture
def make_daemon(tmp_path: Path, sandbox: stack.Stack) -> Iterator[MakeDaemon]:
    """``daemon_maker`` on the sandbox, in tmp_path, on a short window (12 s) unless told."""
    with daemon_maker(tmp_path, sandbox) as make:
        yield partial(make, window="12s")


def test_an_error_spike_is_rolled_back_exactly_once_and_verified(
    make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    daemon = make_daemon().start()
    watch_id = daemon.announce()
    summary = daemon.closed(watch_id)
    assert summary["verdict"] == "rolled_back", summary
    assert summary["actions"][0]["status"] == "done"
    assert summary["verification"]["passed"] is True
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE
    # Then people are told, and the post-mortem is written with its chart.
    report = wait_for(
        lambda: daemon.summary(watch_id)["incident_report"], 20, "the post-mortem"
    )
    markdown = Path(report)
    text = markdown.read_text()
    assert text.startswith(f"<!-- watch: {watch_id} -->")
    # Its timeline is the stored one.
    timeline = {
        event.strip(): at
        for at, event in re.findall(r"^- \*\*(\d\d:\d\d:\d\d)\*\* - ([^:(\n]+)", text, re.M)
    }
    assert timeline["Rollback decision made"] == summary["decided_at"][11:19]
    assert timeline["Rollback executed"] == summary["actions"][0]["finished_at"][11:19]
    assert timeline["System verified healthy"] == summary["closed_at"][11:19]
    assert markdown.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
    texts = wait_for(
        lambda: (t := [m["text"] for m in sandbox.channel.messages()]) and len(t) >= 2 and t,
        20,
        "two Slack messages",
    )
    assert texts[0].startswith("🔄 Rolling back"), texts
    assert any("dep-2" in text for text in texts[1:])
    assert daemon.terminate(timeout=10) == 0


def test_a_clean_deploy_closes_healthy(make_daemon: MakeDaemon, sandbox: stack.Stack) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)
    daemon = make_daemon().start()
    summary = daemon.closed(daemon.announce())
    assert summary["verdict"] == "healthy", summary
    assert sandbox.backend.received() == []


def test_a_dead_sentry_closes_inconclusive_and_never_rolls_back(
    make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    sandbox.app.set_faults(toyapp.Faults(error_fraction=0.05), BAD_RELEASE)
    daemon = make_daemon(sentry_url=refused_url()).start()
    summary = daemon.closed(daemon.announce())
    assert summary["verdict"] == "inconclusive", summary
    assert sandbox.backend.received() == []


def test_a_dry_run_rolls_back_nothing_and_says_it_would_have(
    make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    daemon = make_daemon(dry_run="true").start()
    summary = daemon.closed(daemon.announce())
    assert (summary["verdict"], summary["dry_run"]) == ("would_roll_back", True)
    assert sandbox.backend.received() == []
    assert sandbox.app.live == BAD_RELEASE


def test_kill_9_mid_rollback_then_restart_rolls_back_exactly_once(
    make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    daemon = make_daemon().start()
    watch_id = daemon.announce()
    wait_for(lambda: sandbox.backend.count("rollback") == 1, 30, "the rollback request")
    daemon.kill()  # while it waits for the rollback to go live
    summary = daemon.start().closed(watch_id)
    assert summary["verdict"] == "rolled_back", json.dumps(summary, indent=1)
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE


def test_a_bad_config_at_sighup_is_refused_and_the_daemon_keeps_running(
    make_daemon: MakeDaemon,
) -> None:
    daemon = make_daemon().start()
    good = daemon.config.read_text()
    daemon.config.write_text(good + "watch: {interval: soon}\n")
    daemon.hangup()
    wait_for(
        lambda: daemon.metric("watchdog_config_reloads_total", result="failed") == 1.0,
        10,
        "the failed reload to be counted",
    )
    assert daemon.ready()
    assert daemon.terminate() == 0
    assert daemon.events("config.reload_failed")


def ticks(readings: list[Reading]) -> list[datetime]:
    return sorted({r.at for r in readings})


def test_kill_9_mid_watch_then_restart_resumes_the_watch_with_every_reading(
    make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # healthy while the first one watches
    daemon = make_daemon(window="45s").start()  # room for a slow restart; it closes at the rollback
    watch_id = daemon.announce()

    def stored() -> list[Reading]:
        return read_store(daemon.state_url, watch_id).readings

    wait_for(lambda: len(ticks(stored())) >= 3, 20, "three ticks stored")
    daemon.kill()
    before = stored()
    killed_at = datetime.now(UTC)

    daemon.start()
    [listed] = [w for w in daemon.watches() if w["id"] == watch_id]
    assert (listed["verdict"], listed["closed_at"]) == ("observing", None)
    wait_for(
        lambda: any(t > killed_at for t in ticks(stored())),
        20,
        "a tick of the resumed watch",
    )
    sandbox.app.set_faults(stack.BROKEN, BAD_RELEASE)  # now the deploy goes bad
    summary = daemon.closed(watch_id)

    assert summary["verdict"] == "rolled_back", json.dumps(summary, indent=1)
    assert sandbox.backend.count("rollback") == 1
    after = stored()
    assert [r for r in before if r not in after] == []
    assert len(ticks(after)) > len(ticks(before))
    resumed = daemon.events("watch.resumed", watch=watch_id)
    assert resumed, daemon.stderr.read_text()
    assert resumed[0]["state"] == "observing"
    assert [w["id"] for w in daemon.watches()] == [watch_id]


def test_no_secret_reaches_the_logs_the_api_the_store_or_the_reports(
    make_daemon: MakeDaemon, sandbox: stack.Stack, tmp_path: Path
) -> None:
    """A whole life (start, a bad deploy rolled back and verified, SIGTERM) with every secret
    the config holds set to a value found nowhere else, through ``${VAR}``. The state is
    SQLite (its URL holds no password), so the store's files are searched too."""
    secrets = {
        "SECRET_SLACK_WEBHOOK": "",  # set below, once the Slack stand-in has a port
        "SECRET_RENDER_WEBHOOK": "whsec_cmVuZGVyLXdlYmhvb2stc2VjcmV0LTVlMmE=",  # Standard Webhooks
        "WATCHDOG_SENTRY_DSN": "",  # the daemon's own Sentry project, below
        **stack.ENV,  # the Sentry token, the Render key and the smoke test's password
        "SANDBOX_API_TOKEN": TOKEN,
    }
    channel = slack.SlackChannel()
    reports: list[sentry.EnvelopeItem] = []
    slack_faults = Faults()
    slack_faults.fail_next(1, 500, operation="post")  # a failing webhook must not show its URL
    slack_path = "/services/T0SECRET/B0SECRET/slack-hook-secret-9d3b"
    own_sentry = sentry.create_app(
        EventLog(),
        token="unused",
        clock=SystemClock(),
        organization="acme",
        projects=["watchdog"],
        envelopes=reports,
    )
    with (
        serve(slack.create_app(channel, path=slack_path, clock=SystemClock(), faults=slack_faults))
        as slack_url,
        serve(own_sentry) as own_sentry_url,
    ):
        secrets["SECRET_SLACK_WEBHOOK"] = slack_url + slack_path
        secrets["WATCHDOG_SENTRY_DSN"] = (
            own_sentry_url.replace("http://", "http://dsnkey7e3c9b@") + "/1"
        )
        daemon = make_daemon(webhooks='{render_secret: "${SECRET_RENDER_WEBHOOK}"}')
        config = daemon.config.read_text()
        config = config.replace(
            f'"{sandbox.urls["slack"]}{stack.SLACK_PATH}"', '"${SECRET_SLACK_WEBHOOK}"'
        )
        daemon.config.write_text(config)
        daemon.env.update(secrets)
        daemon.start()

        watch_id = daemon.announce()
        summary = daemon.closed(watch_id)
        assert (summary["verdict"], summary["verification"]["passed"]) == ("rolled_back", True)
        assert sandbox.backend.count("rollback") == 1
        refused = httpx.post(
            f"{daemon.url}/webhooks/render", content=b'{"type": "deploy_ended"}'
        )
        assert refused.status_code == 401
        answers = [
            httpx.get(f"{daemon.url}{path}").text
            for path in ("/api/watches", f"/api/watches/{watch_id}", "/metrics", "/readyz")
        ]
        wait_for(channel.messages, 20, "a Slack message, after the refused first post")
        assert daemon.terminate() == 0
        sentry_sdk_sent = json.dumps([item.payload for item in reports])

    files = {p: p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()}
    assert {p.name for p in files} >= {"daemon-0.err", "daemon.yaml", "state.db"}
    assert any(p.parent.name == "incidents" for p in files)
    everything = {
        **{str(p): text for p, text in files.items()},
        "API answers": "\n".join(answers),
        "Slack messages": json.dumps(channel.messages()),
        "the daemon's own Sentry reports": sentry_sdk_sent,
    }
    leaks = {
        (name, where)
        for name, value in secrets.items()
        for where, text in everything.items()
        if value in text
    }
    assert leaks == set()
    assert "dsnkey7e3c9b" not in "".join(everything.values())
    assert "slack-hook-secret-9d3b" not in "".join(everything.values())
