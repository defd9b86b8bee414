"""``watchdog demo``: the whole story on one machine in about half a minute, so people can see
what the watchdog does before they wire it to their own services.

The sandbox (toy app, Sentry, Render and Slack stand-ins) runs on loopback, with simulated users
keeping Sentry's numbers meaningful. The real daemon and its HTTP API run in this process, as
``watchdog run`` runs them, on SQLite in the demo's own directory. The demo plays CI: it deploys
through the Render stand-in's API and announces each deploy with ``POST /api/deploys``. A good
release is watched and closes healthy; a bad one (5 % of requests fail, login is broken) is
detected, rolled back through Render, verified, told to Slack and written up.

Nothing here decides or acts: the demo only deploys, announces and reads what the daemon did
(from its store and the stand-ins), so what it shows is what the daemon does in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

import httpx
import uvicorn
from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner

from watchdog import logs
from watchdog.api import create_api
from watchdog.clock import SystemClock
from watchdog.daemon import Watchdog
from watchdog.errors import ConfigError, WatchdogError
from watchdog.httpclient import new_client
from watchdog.metrics import Metrics
from watchdog.model import Decision, Reading, Verdict
from watchdog.providers.polling import wait_until
from watchdog.providers.registry import live_timeout, target_seconds
from watchdog.rules.explain import fmt_number, fmt_value
from watchdog.run import QuietServer
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.settings import LoadedConfig, Settings, load_config
from watchdog.store import open_store
from watchdog.store.base import StateStore
from watchdog.store.records import (
    ActionStatus,
    NotificationStatus,
    Outcome,
    WatchRecord,
    WatchState,
)

TARGET = "backend"
INTERVAL, WINDOW = "1s", "10s"  # the good release is watched for the whole window
GO_LIVE = timedelta(seconds=2)  # how long Render takes to make a deploy live
USERS_PER_SECOND = 40  # simulated requests a second, beside the watchdog's own probes
BEARER_VARIABLE = "SANDBOX_API_TOKEN"
POLL = timedelta(milliseconds=250)
FOLLOW_UP = timedelta(seconds=15)  # for the Slack message and the post-mortem after closing


class Narrator(Protocol):
    """Where the story goes: ``say`` a line of narration, ``status`` the line of the latest
    tick (redrawn in place on a terminal)."""

    def say(self, line: str) -> None: ...

    def status(self, line: str) -> None: ...


class PlainNarrator:
    """Plain lines, one per event and one per tick: for pipes and logs."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    def say(self, line: str) -> None:
        print(line, file=self._out, flush=True)

    def status(self, line: str) -> None:
        print(f"    {line}", file=self._out, flush=True)


class LiveNarrator:
    """On a terminal: narration scrolls, and one spinner line shows the latest tick."""

    def __init__(self, console: Console, spinner: Spinner) -> None:
        self._console, self._spinner = console, spinner

    def say(self, line: str) -> None:
        self._console.print(line, markup=False, highlight=False)

    def status(self, line: str) -> None:
        self._spinner.update(text=line)


class SilentNarrator:
    """``--json``: only the final summary is printed."""

    def say(self, line: str) -> None:
        pass

    def status(self, line: str) -> None:
        pass


@contextlib.contextmanager
def narrator_for(out: TextIO, *, as_json: bool) -> Iterator[Narrator]:
    """The narrator for ``out``: silent for ``--json``, live on a terminal, plain otherwise."""
    if as_json:
        yield SilentNarrator()
    elif out.isatty():
        console = Console(file=out)
        spinner = Spinner("dots", text="starting the sandbox")
        with Live(spinner, console=console, refresh_per_second=10, transient=True):
            yield LiveNarrator(console, spinner)
    else:
        yield PlainNarrator(out)


@dataclass
class Act:
    """One deploy of the story and how its watch ended."""

    release: str
    deployment_id: str | None = None
    watch_id: str | None = None
    verdict: str | None = None
    rule: str | None = None
    explanation: str | None = None
    detected_after: float | None = None  # seconds from the announcement to the rollback verdict
    rollbacks: int = 0
    rolled_back_to: str | None = None
    rollback_seconds: float | None = None
    verified: bool | None = None
    seconds: float | None = None  # from the deploy to the watch's close

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "deployment_id": self.deployment_id,
            "watch_id": self.watch_id,
            "verdict": self.verdict,
            "rule": self.rule,
            "explanation": self.explanation,
            "detected_after_seconds": _round(self.detected_after),
            "rollbacks": self.rollbacks,
            "rolled_back_to": self.rolled_back_to,
            "rollback_seconds": _round(self.rollback_seconds),
            "verified": self.verified,
            "seconds": _round(self.seconds),
        }


@dataclass
class DemoResult:
    """What the demo showed and wrote; it succeeded when nothing is in ``problems``."""

    directory: Path
    good: Act = field(default_factory=lambda: Act(GOOD_RELEASE))
    bad: Act = field(default_factory=lambda: Act(BAD_RELEASE))
    slack: list[str] = field(default_factory=list)  # the texts the Slack stand-in received
    incident_report: Path | None = None
    chart: Path | None = None
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def state_db(self) -> Path:
        return self.directory / "state.db"

    @property
    def config(self) -> Path:
        return self.directory / "watchdog.yaml"

    @property
    def log(self) -> Path:
        return self.directory / "watchdog.log"

    def paths(self) -> dict[str, Path | None]:
        return {
            "state_db": self.state_db,
            "incident_report": self.incident_report,
            "chart": self.chart,
            "config": self.config,
            "log": self.log,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": _round(self.seconds),
            "directory": str(self.directory),
            "paths": {k: str(v) if v else None for k, v in self.paths().items()},
            "good": self.good.to_json(),
            "bad": self.bad.to_json(),
            "slack": {"posted": len(self.slack), "messages": self.slack},
            "problems": self.problems,
        }


def workspace(keep: Path | None) -> Path:
    """Where the demo writes everything: ``keep``, which must be new or empty (the demo starts
    from an empty state store), else a new temporary directory, left for people to look at."""
    if keep is None:
        return Path(tempfile.mkdtemp(prefix="watchdog-demo-"))
    directory = keep.resolve()
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"--keep {keep}: expected a directory, found a file")
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(
            f"--keep {keep}: expected a new or empty directory (the demo starts from an empty "
            "state store), found one with files in it"
        )
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def run(directory: Path, out: TextIO, *, as_json: bool) -> DemoResult:
    """Run the demo in ``directory``, narrated on ``out`` (or a JSON summary there), with the
    daemon's log in ``directory`` rather than on the terminal."""
    with _daemon_log(directory / "watchdog.log"), narrator_for(out, as_json=as_json) as story:
        result = asyncio.run(run_demo(directory, story))
    if as_json:
        print(json.dumps(result.to_json(), indent=2), file=out)
        for problem in result.problems:
            print(f"watchdog demo: {problem}", file=sys.stderr)
    else:
        _write_text(result, out)
    return result


@contextlib.contextmanager
def _daemon_log(path: Path) -> Iterator[None]:
    """The daemon's events go to ``path`` while the demo runs, then back to stderr."""
    with path.open("a", encoding="utf-8") as stream:
        logs.configure(stream)
        try:
            yield
        finally:
            logs.configure()


def _write_text(result: DemoResult, out: TextIO) -> None:
    if result.ok:
        print(
            f"\nDemo passed in {result.seconds:.1f}s: the good deploy closed healthy, the bad "
            "one was rolled back once, verified, told to Slack and written up.",
            file=out,
        )
    else:
        print(f"\nDemo FAILED after {result.seconds:.1f}s:", file=out)
        for problem in result.problems:
            print(f"  - {problem}", file=out)
    print("It wrote:", file=out)
    for name, path in result.paths().items():
        print(f"  {name.replace('_', ' '):<16} {path or '(not written)'}", file=out)


async def run_demo(directory: Path, narrator: Narrator) -> DemoResult:
    """The two acts against a fresh sandbox and daemon; never raises for what went wrong in
    the story, which ends up in ``problems``."""
    result = DemoResult(directory)
    started = time.monotonic()
    clock = SystemClock()
    token = secrets.token_urlsafe(24)
    narrator.say(f"watchdog demo: everything on loopback, state in {directory}")
    with stack.running(clock, delay=GO_LIVE) as sandbox, _listening() as sock:
        host, port = sock.getsockname()[:2]
        loaded = _configure(sandbox, directory, f"{host}:{port}", token)
        store = open_store(loaded.settings.state.url.reveal())
        daemon = Watchdog(loaded, store, clock, Metrics())
        try:
            async with (
                _serving(create_api(daemon, clock=clock), sock) as api,
                _users(sandbox, clock),
                new_client(timeout=10) as client,
            ):
                await daemon.start()
                ci = _Ci(client, sandbox.urls["render"], api, token)
                narrator.say(
                    f"Sandbox: toy app, Sentry, Render and Slack stand-ins; daemon API on {api}; "
                    f"{USERS_PER_SECOND} simulated requests a second."
                )
                show = _Show(narrator, store, loaded.settings, sandbox, ci, result)
                try:
                    await show.good_act()
                    await show.bad_act()
                except (WatchdogError, httpx.HTTPError) as exc:
                    result.problems.append(str(exc))
        finally:
            narrator.status("stopping the daemon and the sandbox")
            if daemon.ready:
                await daemon.stop()
            await store.close()
    result.seconds = time.monotonic() - started
    return result


class _Ci:
    """What CI does around a deploy: ask Render to deploy a commit, wait until it serves, and
    announce it to the watchdog, all over HTTP."""

    def __init__(self, client: httpx.AsyncClient, render: str, api: str, token: str) -> None:
        self._client = client
        self._service = f"{render}/v1/services/{stack.SERVICE}"
        self._render_auth = {"Authorization": f"Bearer {stack.ENV['SANDBOX_RENDER_KEY']}"}
        self._api = api
        self._api_auth = {"Authorization": f"Bearer {token}"}

    async def deploy(self, release: str) -> str:
        """Deploy ``release`` on Render; its deploy id once it is live."""
        answer = await self._client.post(
            f"{self._service}/deploys", json={"commitId": release}, headers=self._render_auth
        )
        answer.raise_for_status()
        deploy_id = str(answer.json()["id"])

        async def live() -> bool:
            got = await self._client.get(
                f"{self._service}/deploys/{deploy_id}", headers=self._render_auth
            )
            got.raise_for_status()
            return bool(got.json()["status"] == "live")

        waited = await wait_until(
            live, clock=SystemClock(), sleep=asyncio.sleep, timeout=GO_LIVE * 10, every=POLL
        )
        if waited is not None:
            raise WatchdogError(f"Render never made {deploy_id} live")
        return deploy_id

    async def announce(self, deployment_id: str, release: str, previous: str | None) -> str:
        """``POST /api/deploys`` as a CI step would; the watch's id."""
        body = {"target": TARGET, "deployment_id": deployment_id, "release": release}
        if previous is not None:
            body["previous_deployment_id"] = previous
        answer = await self._client.post(
            f"{self._api}/api/deploys", json=body, headers=self._api_auth
        )
        if answer.status_code != 202:
            raise WatchdogError(
                f"POST /api/deploys answered {answer.status_code}: {answer.text[:200]}"
            )
        return str(answer.json()["watch_id"])


class _Show:
    """The two acts, told as they happen, and the checks of what they should show."""

    def __init__(
        self,
        narrator: Narrator,
        store: StateStore,
        settings: Settings,
        sandbox: stack.Stack,
        ci: _Ci,
        result: DemoResult,
    ) -> None:
        self._say, self._status = narrator.say, narrator.status
        self._store, self._settings = store, settings
        self._sandbox, self._ci, self._result = sandbox, ci, result

    async def good_act(self) -> None:
        act = self._result.good
        self._say("\nAct 1: a good release")
        record = await self._deploy_and_watch(act, previous=None)
        if record.outcome is not Outcome.HEALTHY:
            self._result.problems.append(
                f"the good deploy {act.deployment_id} closed {act.verdict}, expected healthy"
            )

    async def bad_act(self) -> None:
        act = self._result.bad
        self._say("\nAct 2: a bad release (5 % of requests fail, login is broken)")
        record = await self._deploy_and_watch(act, previous=self._result.good.deployment_id)
        if record.outcome is not Outcome.ROLLED_BACK:
            self._result.problems.append(
                f"the bad deploy {act.deployment_id} closed {act.verdict}, expected rolled_back"
            )
            return
        rollbacks = self._sandbox.backend.count("rollback")
        if act.rollbacks != 1 or rollbacks != 1:
            self._result.problems.append(
                f"expected exactly one rollback, found {act.rollbacks} recorded and "
                f"{rollbacks} sent to Render"
            )
        if not act.verified:
            self._result.problems.append("the rollback was not verified")
        await self._follow_up(record)

    async def _deploy_and_watch(self, act: Act, previous: str | None) -> WatchRecord:
        started = time.monotonic()
        self._status(f"Render is deploying {act.release[:7]}")
        act.deployment_id = await self._ci.deploy(act.release)
        self._say(
            f"  CI deploys {act.release[:7]} to Render: {act.deployment_id} is live "
            f"({time.monotonic() - started:.1f}s)"
        )
        announced = time.monotonic()
        act.watch_id = await self._ci.announce(act.deployment_id, act.release, previous)
        self._say(
            f"  CI announces it: POST /api/deploys -> 202, watch {act.watch_id[:8]} "
            f"(window {WINDOW}, a tick every {INTERVAL})"
        )
        record = await self._follow(act, announced)
        act.seconds = time.monotonic() - started
        act.verdict = str(record.outcome) if record.outcome else str(record.state)
        act.rule, act.explanation = record.rule, record.explanation
        if record.outcome is not Outcome.ROLLED_BACK:
            self._say(
                f"  {act.deployment_id} closed {act.verdict} after {act.seconds:.1f}s"
                + (f": {record.explanation}" if record.explanation else "")
            )
        return record

    async def _follow(self, act: Act, announced: float) -> WatchRecord:
        """Tell each tick and each step of the watch until it closes."""
        assert act.watch_id is not None
        watch_id, store = act.watch_id, self._store
        provider = self._settings.targets[TARGET].provider
        limit = (
            self._settings.watch.window
            + live_timeout(provider)
            + self._settings.verify.within
            + FOLLOW_UP
        )
        told: set[str] = set()
        decided = 0
        record: WatchRecord | None = None

        async def closed() -> bool:
            nonlocal decided, record
            record = await store.watch(watch_id)
            assert record is not None
            decisions = await store.decisions(watch_id)
            if len(decisions) > decided:
                readings = await store.readings(watch_id)
                for decision in decisions[decided:]:
                    self._tick(record, decision, readings)
                    if decision.verdict is Verdict.ROLLBACK and "detected" not in told:
                        told.add("detected")
                        act.detected_after = time.monotonic() - announced
                        self._say(
                            f"  detected after {act.detected_after:.1f}s by rule "
                            f"{decision.rule}: roll back now. {decision.explanation}"
                        )
                decided = len(decisions)
            await self._actions(act, told)
            if record.state is WatchState.VERIFYING and "verifying" not in told:
                told.add("verifying")
                self._say("  verifying: health checks, the login flow, the error rate...")
            return record.outcome is not None

        waited = await wait_until(
            closed, clock=SystemClock(), sleep=asyncio.sleep, timeout=limit, every=POLL
        )
        if waited is not None:
            seconds = waited.total_seconds()
            raise WatchdogError(f"the watch of {act.deployment_id} stayed open for {seconds:.0f}s")
        assert record is not None
        if record.outcome is Outcome.ROLLED_BACK:
            checks = record.verification or ()
            act.verified = bool(checks) and all(passed for _, passed, _ in checks)
            listed = ", ".join(
                f"{name} {'ok' if passed else 'FAILED'}" + (f" ({detail})" if detail else "")
                for name, passed, detail in checks
            )
            self._say(f"  {'verified' if act.verified else 'verification FAILED'}: {listed}")
        return record

    def _tick(self, record: WatchRecord, decision: Decision, readings: list[Reading]) -> None:
        left = max(timedelta(0), record.closes_at - decision.at).total_seconds()
        shown = [_signal(r) for r in readings if r.at == decision.at]
        signals = " | ".join(s for s in shown if s) or "no readings yet"
        self._status(
            f"{decision.at:%H:%M:%S} {record.deployment_id}: {signals} => {decision.verdict}, "
            f"{left:.0f}s left"
        )

    async def _actions(self, act: Act, told: set[str]) -> None:
        assert act.watch_id is not None
        actions = [a for a in await self._store.actions(act.watch_id) if a.kind == "rollback"]
        act.rollbacks = len(actions)
        for action in actions:
            if f"sent:{action.id}" not in told:
                told.add(f"sent:{action.id}")
                self._say(
                    f"  rolling back {action.deployment_id} to {action.to} through "
                    f"{action.provider.capitalize()}..."
                )
                self._status(f"waiting for {action.provider.capitalize()} to serve {action.to}")
            if action.status is ActionStatus.INTENDED or f"done:{action.id}" in told:
                continue
            told.add(f"done:{action.id}")
            if action.status is ActionStatus.DONE:
                act.rolled_back_to, act.rollback_seconds = action.to, action.seconds
                allowed = target_seconds(self._settings.targets[TARGET].provider) // 60
                self._say(
                    f"  rolled back in {action.seconds or 0:.1f}s (the runbook allows {allowed} "
                    f"minutes): {action.to} ({(action.to_release or '')[:7]}) serves again"
                )
            else:
                self._say(f"  rollback FAILED: {action.error}")
            for note in action.notes:
                self._say(f"  note: {note}")

    async def _follow_up(self, record: WatchRecord) -> None:
        """Wait for the daemon's follow-up round: the Slack message and the post-mortem."""
        store, watch_id = self._store, record.id
        self._status("waiting for the Slack message and the post-mortem")

        async def done() -> bool:
            current = await store.watch(watch_id)
            sent = await store.notifications(watch_id)
            return (
                current is not None
                and current.incident_report is not None
                and bool(sent)
                and all(n.status is not NotificationStatus.PENDING for n in sent)
            )

        await wait_until(
            done, clock=SystemClock(), sleep=asyncio.sleep, timeout=FOLLOW_UP, every=POLL
        )
        for message in self._sandbox.channel.messages():
            text = str(message.get("text", ""))
            self._result.slack.append(text)
            self._say(f"  Slack got: {text}")
        if not self._result.slack:
            self._result.problems.append("no message reached the Slack stand-in")
        failed = [
            n
            for n in await store.notifications(watch_id)
            if n.status is not NotificationStatus.SENT
        ]
        for notification in failed:
            self._result.problems.append(
                f"{notification.kind} to {notification.notifier} was not sent: "
                f"{notification.last_error or notification.status}"
            )
        current = await store.watch(watch_id)
        report = current.incident_report if current else None
        if report is None:
            self._result.problems.append("no incident report was written")
            return
        self._result.incident_report = Path(report)
        chart = Path(report).with_suffix(".svg")
        self._result.chart = chart if chart.exists() else None
        self._say(f"  incident report: {report}")
        if self._result.chart is None:
            self._result.problems.append(f"the incident report's chart {chart} is missing")
        else:
            self._say(f"  its chart: {chart}")


def _signal(reading: Reading) -> str | None:
    """One reading, short (``errors 5 % over 120 requests``, ``auth ok``); None for an alarm
    that is not raised."""
    if reading.metric in ("health", "flow"):
        name = reading.labels.get("check") or reading.labels.get("flow") or reading.metric
        return f"{name} {'ok' if reading.value == 1 else 'DOWN'}"
    if reading.metric in ("security_alert", "migration_failed"):
        return reading.metric.replace("_", " ") if reading.value else None
    if reading.metric == "error_rate":
        return f"errors {fmt_value(reading)}"
    if reading.metric == "users_affected":
        return f"users hit {fmt_number(reading.metric, reading.value)}"
    return f"{reading.describe()} {fmt_number(reading.metric, reading.value)}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _configure(sandbox: stack.Stack, directory: Path, listen: str, token: str) -> LoadedConfig:
    """The stack's config with the daemon's API, written beside the state and read back with
    the sandbox's credentials; the user's own environment plays no part."""
    path = directory / "watchdog.yaml"
    path.write_text(
        sandbox.config(directory, interval=INTERVAL, window=WINDOW)
        + f'api: {{listen: "{listen}", token: "${{{BEARER_VARIABLE}}}"}}\n'
    )
    with _environment({**stack.ENV, BEARER_VARIABLE: token}):
        loaded = load_config(path)
    logs.REDACTOR.add(logs.secrets_of(loaded.settings))
    return loaded


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` set and every ``WATCHDOG_*`` override unset, for as long as the config is
    read; the environment is as it was afterwards."""
    saved = dict(os.environ)
    for name in [n for n in os.environ if n.upper().startswith("WATCHDOG_")]:
        del os.environ[name]
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def _listening() -> Iterator[socket.socket]:
    """A loopback socket on a free port for the daemon's API."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock
    finally:
        sock.close()


@contextlib.asynccontextmanager
async def _serving(app: Any, sock: socket.socket) -> AsyncIterator[str]:
    """Serve the API on ``sock`` in this event loop, as ``watchdog run`` does; its URL."""
    server = QuietServer(uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                await task
                raise WatchdogError("the daemon's API did not start")
            await asyncio.sleep(0.01)
        host, port = sock.getsockname()[:2]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def _users(sandbox: stack.Stack, clock: SystemClock) -> AsyncIterator[None]:
    """Simulated users: Sentry sees the live release's requests and errors every second."""
    traffic = toyapp.Traffic(
        sandbox.app,
        sandbox.log,
        clock,
        project=stack.PROJECT,
        environment="production",
        per_second=USERS_PER_SECOND,
    )

    async def pump() -> None:
        while True:
            traffic.pump()
            await asyncio.sleep(POLL.total_seconds())

    task = asyncio.create_task(pump())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
