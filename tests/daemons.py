"""The real daemon (``watchdog run``) as a subprocess, shared by tests/test_daemon.py and the
fault-injection suite (tests/faults): start it on a config for the sandbox, announce, wait for
a watch to close, kill -9, SIGTERM, SIGHUP, read its JSON log events and its /metrics, and read
the state store beside it.

Everything waits by polling with a deadline (``wait_for``), never by sleeping a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import REPO
from watchdog.model import Decision, Reading
from watchdog.sandbox import stack
from watchdog.sandbox.deployments import BAD_RELEASE
from watchdog.signals.base import ProbeError
from watchdog.store import opened
from watchdog.store.records import ActionRecord, WatchRecord

TOKEN = "api-token-for-the-daemon-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEPLOY = {
    "target": "backend",
    "deployment_id": "dep-2",
    "previous_deployment_id": "dep-1",
    "release": BAD_RELEASE,
}
"""The sandbox's deploy (``dep-2`` serving the bad release after ``dep-1``), as announced."""


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
    """One ``watchdog run`` on one config; ``start`` again after a kill is a restart on the
    same config, state and port. Each run's stdout and stderr go to ``<name>-<run>.out/.err``
    beside the config (a pipe nobody reads would fill up and stall it)."""

    def __init__(
        self, config: Path, port: int, env: Mapping[str, str], state_url: str, name: str
    ) -> None:
        self.config, self.url, self.state_url, self.name = (
            config,
            f"http://127.0.0.1:{port}",
            state_url,
            name,
        )
        self.env = dict(env)
        self.process: subprocess.Popen[str] | None = None
        self.runs: list[Path] = []  # every run's stderr, oldest first

    @property
    def stderr(self) -> Path:
        """The current (or last) run's stderr."""
        return self.runs[-1]

    def start(self, *, ready: bool = True) -> Daemon:
        """A new process; with ``ready``, returns once GET /readyz answers 200."""
        assert not self.alive, "the daemon is running already"
        run = len(self.runs)
        err = self.config.parent / f"{self.name}-{run}.err"
        out = self.config.parent / f"{self.name}-{run}.out"
        self.runs.append(err)
        with err.open("w") as err_file, out.open("w") as out_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "watchdog.cli", "run", "--config", str(self.config)],
                cwd=REPO,
                env=self.env,
                stdout=out_file,
                stderr=err_file,
                text=True,
            )
        if ready:
            wait_for(self.ready, 30, f"{self.name} to be ready")
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def ready(self) -> bool:
        """Whether /readyz answers 200; AssertionError (with its stderr) once it exited."""
        if not self.alive:
            raise AssertionError(f"{self.name} exited: {self.stderr.read_text()}")
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def announce(self, **changes: Any) -> str:
        """POST /api/deploys (``DEPLOY`` with ``changes``); the watch's id."""
        answer = httpx.post(
            f"{self.url}/api/deploys", json={**DEPLOY, **changes}, headers=AUTH, timeout=10
        )
        assert answer.status_code == 202, answer.text
        return str(answer.json()["watch_id"])

    def summary(self, watch_id: str) -> dict[str, Any]:
        """GET /api/watches/{id}."""
        return dict(httpx.get(f"{self.url}/api/watches/{watch_id}", timeout=10).json())

    def watches(self) -> list[dict[str, Any]]:
        """GET /api/watches."""
        return list(httpx.get(f"{self.url}/api/watches", timeout=10).json())

    def closed(self, watch_id: str, seconds: float = 60) -> dict[str, Any]:
        """The summary, once the watch closed."""
        return dict(
            wait_for(
                lambda: (s := self.summary(watch_id))["closed_at"] and s,
                seconds,
                f"watch {watch_id} to close",
            )
        )

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample of GET /metrics (``name`` as exposed, with ``_total``)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return float(sample.value)
        return None

    def events(self, name: str | None = None, **fields: Any) -> list[dict[str, Any]]:
        """The JSON log events of every run so far (lines that are not JSON are skipped),
        those named ``name`` with ``fields`` when given."""
        found = []
        for path in self.runs:
            for line in path.read_text().splitlines():
                if not line.startswith("{"):
                    continue
                event = json.loads(line)
                if (name is None or event.get("event") == name) and all(
                    event.get(k) == v for k, v in fields.items()
                ):
                    found.append(event)
        return found

    def wait_event(self, name: str, seconds: float = 30, **fields: Any) -> dict[str, Any]:
        """The first event ``name`` with ``fields``, once it is logged."""
        events = wait_for(
            lambda: self.events(name, **fields), seconds, f"{self.name} to log {name} {fields}"
        )
        return dict(events[0])

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or released."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=15)

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, then its exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def hangup(self) -> None:
        """SIGHUP: reload the config."""
        assert self.process is not None
        self.process.send_signal(signal.SIGHUP)


MakeDaemon = Callable[..., Daemon]


def _set_sections(text: str, sections: Mapping[str, str]) -> str:
    """Replace the one-line top-level ``key: value`` of each section (or add it)."""
    lines = text.splitlines()
    for key, value in sections.items():
        line = f"{key}: {value}"
        at = next((i for i, old in enumerate(lines) if old.startswith(f"{key}:")), None)
        if at is None:
            lines.append(line)
        else:
            assert at + 1 == len(lines) or lines[at + 1][:1] not in (" ", "\t"), key
            lines[at] = line
    return "\n".join(lines) + "\n"


@contextmanager
def daemon_maker(directory: Path, sandbox: stack.Stack) -> Iterator[MakeDaemon]:
    """``make(name="daemon", *, window="20s", interval="1s", state_url=None, sentry_url=None,
    **sections)``: a Daemon (not started) on its own port and a config ``<name>.yaml`` in
    ``directory`` for ``sandbox``. Its state is ``directory/state.db`` unless ``state_url``
    names another (a Postgres URL; daemons of one test share it); ``sentry_url`` replaces the
    Sentry stand-in's; each of ``sections`` replaces (or adds) a one-line top-level key, e.g.
    ``verify="{within: 5s}"``. Every daemon still running on leaving is killed."""
    made: list[Daemon] = []

    def make(
        name: str = "daemon",
        *,
        window: str = "20s",
        interval: str = "1s",
        state_url: str | None = None,
        sentry_url: str | None = None,
        **sections: str,
    ) -> Daemon:
        port = free_port()
        env = {**os.environ, **stack.ENV, "SANDBOX_API_TOKEN": TOKEN}
        text = sandbox.config(directory, interval=interval, window=window)
        if sentry_url is not None:
            text = text.replace(sandbox.urls["sentry"], sentry_url)
        url = state_url or f"sqlite:///{directory}/state.db"
        if state_url is not None:
            env["FAULTS_STATE_URL"] = state_url
            sections = {"state": '{url: "${FAULTS_STATE_URL}"}', **sections}
        api = f'{{listen: "127.0.0.1:{port}", token: "${{SANDBOX_API_TOKEN}}"}}'
        config = directory / f"{name}.yaml"
        config.write_text(_set_sections(text, {"api": api, **sections}))
        daemon = Daemon(config, port, env, url, name)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        if daemon.alive:
            daemon.kill()


@dataclass(frozen=True)
class Stored:
    """One watch as the state store holds it."""

    watch: WatchRecord
    readings: list[Reading]
    probe_errors: list[tuple[datetime, ProbeError]]
    decisions: list[Decision]
    actions: list[ActionRecord]

    @property
    def ticks(self) -> list[datetime]:
        """The time of every tick that decided (each stores its decision last)."""
        return [d.at for d in self.decisions]

    @property
    def rollbacks(self) -> list[ActionRecord]:
        return [a for a in self.actions if a.kind == "rollback"]

    def errors_of(self, source: str) -> list[ProbeError]:
        return [e for _, e in self.probe_errors if e.source == source]

    def unaccounted(self, metric: str = "error_rate", source: str = "sentry") -> list[datetime]:
        """Ticks that stored neither a reading of ``metric`` nor a probe error saying why
        not (one of ``metric``, or of its whole ``source``, as a timed-out source has):
        readings lost without a trace. Should be none."""
        seen = {r.at for r in self.readings if r.metric == metric}
        seen |= {
            at
            for at, e in self.probe_errors
            if e.metric == metric or (e.metric is None and e.source == source)
        }
        return [t for t in self.ticks if t not in seen]


def read_store(state_url: str, watch_id: str) -> Stored:
    """What the store holds of ``watch_id`` (read beside the running daemon; from a test
    that is not async: it runs its own event loop)."""

    async def read() -> Stored:
        async with opened(state_url) as store:
            watch = await store.watch(watch_id)
            assert watch is not None, f"no watch {watch_id} in the store"
            return Stored(
                watch,
                await store.readings(watch_id),
                await store.probe_errors(watch_id),
                await store.decisions(watch_id),
                await store.actions(watch_id),
            )

    return asyncio.run(read())
