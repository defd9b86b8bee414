"""The real daemon (``watchdog run`` as a subprocess) against the sandbox, on the wall clock
with a short window: deploys announced through the HTTP API are watched, the bad one is
rolled back exactly once, a blind watch never acts, and kill -9 loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.providers.helpers import refused_url
from watchdog.clock import SystemClock
from watchdog.model import Reading
from watchdog.sandbox import sentry, slack, stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.sandbox.events import EventLog
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve
from watchdog.store import opened

TOKEN = "api-token-for-the-daemon-tests"
ENV = {**os.environ, **stack.ENV, "SANDBOX_API_TOKEN": TOKEN}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEPLOY = {
    "target": "backend",
    "deployment_id": "dep-2",
    "previous_deployment_id": "dep-1",
    "release": BAD_RELEASE,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``check`` until it returns something truthy (a bounded wait on a real process)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what} after {seconds}s")


class Daemon:
    """One ``watchdog run`` process; its stdout and stderr go to files beside its config (a
    pipe nobody reads would fill up and stall it)."""

    def __init__(self, config: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.config, self.url = config, f"http://127.0.0.1:{port}"
        self.env = env or ENV
        self.process: subprocess.Popen[str] | None = None
        self.stderr = self.stdout = config.parent / "daemon-unstarted.log"

    def start(self) -> Daemon:
        run = len(list(self.config.parent.glob("daemon-*.err")))
        self.stderr = self.config.parent / f"daemon-{run}.err"
        self.stdout = self.config.parent / f"daemon-{run}.out"
        with self.stderr.open("w") as err, self.stdout.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "watchdog.cli", "run", "--config", str(self.config)],
                cwd=REPO,
                env=self.env,
                stdout=out,
                stderr=err,
                text=True,
            )
        wait_for(self.ready, 30, "the daemon to be ready")
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the daemon exited: {self.stderr.read_text()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def announce(self, **changes: Any) -> str:
        answer = httpx.post(f"{self.url}/api/deploys", json={**DEPLOY, **changes}, headers=AUTH)
        assert answer.status_code == 202, answer.text
        return str(answer.json()["watch_id"])

    def summary(self, watch_id: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/api/watches/{watch_id}").json())

    def closed(self, watch_id: str, seconds: float = 40) -> dict[str, Any]:
        return dict(
            wait_for(
                lambda: (s := self.summary(watch_id))["closed_at"] and s,
                seconds,
                f"watch {watch_id} to close",
            )
        )

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float, str]:
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(sig)
        self.process.wait(timeout=15)
        return self.process.returncode, time.monotonic() - started, self.stderr.read_text()

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or released."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=15)

    def restart(self) -> Daemon:
        """A new process on the same config, state, port and environment."""
        return Daemon(self.config, int(self.url.rsplit(":", 1)[1]), self.env).start()


@pytest.fixture
def sandbox() -> Iterator[stack.Stack]:
    with stack.running(SystemClock(), delay=timedelta(seconds=3)) as running:
        yield running


@pytest.fixture
def write_config(tmp_path: Path, sandbox: stack.Stack) -> Callable[..., Daemon]:
    def write(extra: str = "", sentry_url: str | None = None, window: str = "12s") -> Daemon:
        port = free_port()
        text = sandbox.config(tmp_path, interval="1s", window=window)
        if sentry_url:
            text = text.replace(sandbox.urls["sentry"], sentry_url)
        path = tmp_path / "watchdog.yaml"
        path.write_text(
            text + f'api: {{listen: "127.0.0.1:{port}", token: "${{SANDBOX_API_TOKEN}}"}}\n' + extra
        )
        return Daemon(path, port)

    return write


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        if daemon.process and daemon.process.poll() is None:
            daemon.kill()


def test_an_error_spike_is_rolled_back_exactly_once_and_verified(
    write_config: Callable[..., Daemon], sandbox: stack.Stack, daemons: list[Daemon]
) -> None:
    daemon = write_config().start()
    daemons.append(daemon)
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
    code, seconds, _ = daemon.stop()
    assert (code, seconds < 10) == (0, True)


def test_a_clean_deploy_closes_healthy(
    write_config: Callable[..., Daemon], sandbox: stack.Stack, daemons: list[Daemon]
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)
    daemon = write_config().start()
    daemons.append(daemon)
    summary = daemon.closed(daemon.announce())
    assert summary["verdict"] == "healthy", summary
    assert sandbox.backend.received() == []


def test_a_dead_sentry_closes_inconclusive_and_never_rolls_back(
    write_config: Callable[..., Daemon], sandbox: stack.Stack, daemons: list[Daemon]
) -> None:
    sandbox.app.set_faults(toyapp.Faults(error_fraction=0.05), BAD_RELEASE)
    daemon = write_config(sentry_url=refused_url()).start()
    daemons.append(daemon)
    summary = daemon.closed(daemon.announce())
    assert summary["verdict"] == "inconclusive", summary
    assert sandbox.backend.received() == []


def test_a_dry_run_rolls_back_nothing_and_says_it_would_have(
    write_config: Callable[..., Daemon], sandbox: stack.Stack, daemons: list[Daemon]
) -> None:
    daemon = write_config("dry_run: true\n").start()
    daemons.append(daemon)
    summary = daemon.closed(daemon.announce())
    assert (summary["verdict"], summary["dry_run"]) == ("would_roll_back", True)
    assert sandbox.backend.received() == []
    assert sandbox.app.live == BAD_RELEASE


def test_kill_9_mid_rollback_then_restart_rolls_back_exactly_once(
    write_config: Callable[..., Daemon], sandbox: stack.Stack, daemons: list[Daemon]
) -> None:
    daemon = write_config().start()
    daemons.append(daemon)
    watch_id = daemon.announce()
    wait_for(lambda: sandbox.backend.count("rollback") == 1, 30, "the rollback request")
    daemon.kill()  # while it waits for the rollback to go live
    again = daemon.restart()
    daemons.append(again)
    summary = again.closed(watch_id)
    assert summary["verdict"] == "rolled_back", json.dumps(summary, indent=1)
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE


def test_a_bad_config_at_sighup_is_refused_and_the_daemon_keeps_running(
    write_config: Callable[..., Daemon], daemons: list[Daemon]
) -> None:
    daemon = write_config().start()
    daemons.append(daemon)
    good = daemon.config.read_text()
    daemon.config.write_text(good + "watch: {interval: soon}\n")
    assert daemon.process is not None
    daemon.process.send_signal(signal.SIGHUP)
    wait_for(
        lambda: (
            'watchdog_config_reloads_total{result="failed"} 1.0'
            in httpx.get(f"{daemon.url}/metrics").text
        ),
        10,
        "the failed reload to be counted",
    )
    assert daemon.ready()
    code, _, err = daemon.stop()
    assert code == 0
    assert "config.reload_failed" in err


def stored_readings(state_url: str, watch_id: str) -> list[Reading]:
    """The watch's readings as the state store holds them (read beside the running daemon)."""

    async def read() -> list[Reading]:
        async with opened(state_url) as store:
            return await store.readings(watch_id)

    return asyncio.run(read())


def ticks(readings: list[Reading]) -> list[datetime]:
    return sorted({r.at for r in readings})


def test_kill_9_mid_watch_then_restart_resumes_the_watch_with_every_reading(
    write_config: Callable[..., Daemon],
    sandbox: stack.Stack,
    daemons: list[Daemon],
    tmp_path: Path,
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # healthy while the first one watches
    daemon = write_config(window="45s").start()  # room for a slow restart; it closes at the rollback
    daemons.append(daemon)
    watch_id = daemon.announce()
    state = f"sqlite:///{tmp_path}/state.db"
    wait_for(lambda: len(ticks(stored_readings(state, watch_id))) >= 3, 20, "three ticks stored")
    daemon.kill()
    before = stored_readings(state, watch_id)
    killed_at = datetime.now(UTC)

    again = daemon.restart()
    daemons.append(again)
    [listed] = [w for w in httpx.get(f"{again.url}/api/watches").json() if w["id"] == watch_id]
    assert (listed["verdict"], listed["closed_at"]) == ("observing", None)
    wait_for(
        lambda: any(t > killed_at for t in ticks(stored_readings(state, watch_id))),
        20,
        "a tick of the resumed watch",
    )
    sandbox.app.set_faults(stack.BROKEN, BAD_RELEASE)  # now the deploy goes bad
    summary = again.closed(watch_id)

    assert summary["verdict"] == "rolled_back", json.dumps(summary, indent=1)
    assert sandbox.backend.count("rollback") == 1
    after = stored_readings(state, watch_id)
    assert [r for r in before if r not in after] == []
    assert len(ticks(after)) > len(ticks(before))
    resumed = [
        json.loads(line)
        for line in again.stderr.read_text().splitlines()
        if '"watch.resumed"' in line and watch_id in line
    ]
    assert resumed, again.stderr.read_text()
    assert resumed[0]["state"] == "observing"
    assert [w["id"] for w in httpx.get(f"{again.url}/api/watches").json()] == [watch_id]


def test_no_secret_reaches_the_logs_the_api_the_store_or_the_reports(
    write_config: Callable[..., Daemon],
    sandbox: stack.Stack,
    daemons: list[Daemon],
    tmp_path: Path,
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
        daemon = write_config('webhooks: {render_secret: "${SECRET_RENDER_WEBHOOK}"}\n')
        config = daemon.config.read_text()
        config = config.replace(
            f'"{sandbox.urls["slack"]}{stack.SLACK_PATH}"', '"${SECRET_SLACK_WEBHOOK}"'
        )
        daemon.config.write_text(config)
        daemon.env = {**ENV, **secrets}
        daemons.append(daemon.start())

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
        code, _, _ = daemon.stop()
        assert code == 0
        sentry_sdk_sent = json.dumps([item.payload for item in reports])

    files = {p: p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file()}
    assert {p.name for p in files} >= {"daemon-0.err", "watchdog.yaml", "state.db"}
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
