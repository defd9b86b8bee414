"""The real daemon (``watchdog run`` as a subprocess) against the sandbox, on the wall clock
with a short window: deploys announced through the HTTP API are watched, the bad one is
rolled back exactly once, a blind watch never acts, and kill -9 loses nothing."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO
from tests.providers.helpers import refused_url
from watchdog.clock import SystemClock
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE

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
    def __init__(self, config: Path, port: int) -> None:
        self.config, self.url = config, f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> Daemon:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "watchdog.cli", "run", "--config", str(self.config)],
            cwd=REPO,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for(self.ready, 30, "the daemon to be ready")
        return self

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"the daemon exited: {self.process.stderr.read()}")  # type: ignore[union-attr]
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
        _, err = self.process.communicate(timeout=15)
        return self.process.returncode, time.monotonic() - started, err


@pytest.fixture
def sandbox() -> Iterator[stack.Stack]:
    with stack.running(SystemClock(), delay=timedelta(seconds=3)) as running:
        yield running


@pytest.fixture
def write_config(tmp_path: Path, sandbox: stack.Stack) -> Callable[..., Daemon]:
    def write(extra: str = "", sentry_url: str | None = None) -> Daemon:
        port = free_port()
        text = sandbox.config(tmp_path, interval="1s", window="12s")
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
            daemon.process.kill()
            daemon.process.communicate()


def test_an_error_spike_is_rolled_back_exactly_once_and_verified(
    write_config: Callable[..., Daemon], sandbox: stack.Stack, daemons: list[Daemon]
) -> None:
    daemon = write_config().start()
    daemons.append(daemon)
    summary = daemon.closed(daemon.announce())
    assert summary["verdict"] == "rolled_back", summary
    assert summary["actions"][0]["status"] == "done"
    assert summary["verification"]["passed"] is True
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE
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
    assert daemon.process is not None
    daemon.process.kill()  # SIGKILL while it waits for the rollback to go live
    daemon.process.communicate()
    again = Daemon(daemon.config, int(daemon.url.rsplit(":", 1)[1])).start()
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
