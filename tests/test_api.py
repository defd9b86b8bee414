"""The daemon's HTTP API over real HTTP on loopback: uvicorn serves the app in the test's own
event loop, a real Watchdog runs over a SQLite store against the whole sandbox, on a manual
clock. A started daemon ticks a new watch at once on the wall clock, then only every 15 s, so
tests wait for that first tick and drive the later ones by hand."""

from __future__ import annotations

import asyncio
import json
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
import uvicorn
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST

from tests.conftest import API_TOKEN, T0, Runner
from tests.providers.helpers import advancing_sleep, refused_url
from tests.test_watch import DEPLOY, TICK, run_out, traffic_for
from watchdog.actions import ActionRunner
from watchdog.api import create_api
from watchdog.clock import ManualClock
from watchdog.daemon import Watchdog
from watchdog.metrics import Metrics
from watchdog.model import Deployment, Verdict
from watchdog.providers.registry import build_provider
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.settings import LoadedConfig, load_config
from watchdog.signals.alerts import AlertSignal
from watchdog.signals.base import Failure
from watchdog.store.records import ActionStatus, Outcome
from watchdog.store.sql import SqlStore
from watchdog.store.sqlite import sqlite_store
from watchdog.watch import Watch, target_context

TOKEN = API_TOKEN
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WITH_TOKEN = 'api: {token: "${WATCHDOG_API_TOKEN}"}\n'
BODY = {
    "target": "backend",
    "deployment_id": "dep-2",
    "previous_deployment_id": "dep-1",
    "release": BAD_RELEASE,
    "commit": "badc0ff",
    "deployed_at": "2026-01-28T12:00:00Z",
}
ROLLED_BACK = 'watchdog_rollbacks_total{provider="render",result="done"} 1.0'
ALERT = {"target": "backend", "kind": "security_alert", "detail": "CVE-2026-0001 in login"}


def configured(tmp_path: Path, sandbox: stack.Stack, section: str = WITH_TOKEN) -> LoadedConfig:
    """The sandbox's config, with ``section`` (the API's) added."""
    path = tmp_path / "watchdog.yaml"
    path.write_text(sandbox.config(tmp_path, interval="15s", window="2m") + section)
    return load_config(path)


@pytest.fixture
def config(tmp_path: Path, sandbox: stack.Stack) -> LoadedConfig:
    return configured(tmp_path, sandbox)


@asynccontextmanager
async def running(
    config: LoadedConfig, store: SqlStore, clock: ManualClock
) -> AsyncIterator[Watchdog]:
    """A daemon, not started; stopped on exit when it was."""
    daemon = Watchdog(config, store, clock, Metrics(), sleep=advancing_sleep(clock))
    try:
        yield daemon
    finally:
        if daemon.ready:
            await daemon.stop()


@pytest.fixture
async def daemon(
    config: LoadedConfig, store: SqlStore, clock: ManualClock
) -> AsyncIterator[Watchdog]:
    async with running(config, store, clock) as made:
        yield made


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` on a free loopback port in this event loop; a client for it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve(sockets=[sock]))

    async def started() -> bool:
        assert not task.done(), "the API server did not start"
        return server.started

    try:
        await until(started)
        host, port = sock.getsockname()
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def client(daemon: Watchdog, clock: ManualClock) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_api(daemon, clock=clock)) as made:
        yield made


async def until(done: Callable[[], Awaitable[bool]]) -> None:
    """Wait up to 10 s for something the server or the daemon does on its own time; neither
    offers an event to wait on, so this polls."""
    async with asyncio.timeout(10):
        while True:
            if await done():
                return
            await asyncio.sleep(0.01)


@pytest.fixture
async def api(daemon: Watchdog, client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client of a started daemon's API."""
    await daemon.start()
    return client


async def first_tick(store: SqlStore, watch_id: str) -> None:
    """Wait for the tick the daemon runs as soon as a watch opens, so that the test's own
    steps never overlap it (the next is 15 s of wall time away)."""

    async def decided() -> bool:
        return bool(await store.decisions(watch_id))

    await until(decided)


async def announce(client: httpx.AsyncClient, store: SqlStore, **changes: Any) -> str:
    """Announce a deploy (``BODY`` with ``changes``) and wait for its first tick."""
    response = await client.post("/api/deploys", json={**BODY, **changes}, headers=AUTH)
    assert response.status_code == 202, response.text
    watch_id: str = response.json()["watch_id"]
    await first_tick(store, watch_id)
    return watch_id


@asynccontextmanager
async def by_hand(
    config: LoadedConfig, store: SqlStore, clock: ManualClock, watch_id: str
) -> AsyncIterator[Watch]:
    """The stored watch, carried on as a restarted daemon would, for the test to tick."""
    record = await store.watch(watch_id)
    assert record is not None
    async with target_context(
        config.settings, config.rules, store, clock, "backend", sleep=advancing_sleep(clock)
    ) as ctx:
        yield await Watch.resume(ctx, record)


async def nothing_recorded(store: SqlStore) -> None:
    assert await store.recent_watches(10) == []
    assert await store.deployment("backend", "dep-2") is None


async def test_healthz_always_and_readyz_once_started(
    client: httpx.AsyncClient, daemon: Watchdog
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    before = await client.get("/readyz")
    assert (before.status_code, before.json()) == (503, {"ready": False})
    assert (await client.get("/api/watches")).status_code == 503
    await daemon.start()
    after = await client.get("/readyz")
    assert (after.status_code, after.json()) == (200, {"ready": True})
    assert (await client.get("/healthz")).status_code == 200


async def test_metrics_are_prometheus_text(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    assert "watchdog_active_watches 0.0" in response.text


async def test_a_deploy_is_accepted_and_watched_once(
    api: httpx.AsyncClient, daemon: Watchdog, store: SqlStore
) -> None:
    response = await api.post("/api/deploys", json=BODY, headers=AUTH)
    assert response.status_code == 202
    assert response.json() == {"watch_id": response.json()["watch_id"], "state": "observing"}
    watch_id = response.json()["watch_id"]
    await first_tick(store, watch_id)
    assert await store.deployment("backend", "dep-2") == replace(
        DEPLOY, commit="badc0ff", previous_release=None
    )
    again = await api.post("/api/deploys", json=BODY, headers=AUTH)
    assert (again.status_code, again.json()["watch_id"]) == (202, watch_id)
    assert [w.id for w in await store.open_watches()] == [watch_id]
    assert daemon.open_watches == 1


async def test_a_deploy_without_a_time_starts_on_the_daemons_clock(
    api: httpx.AsyncClient, store: SqlStore, clock: ManualClock
) -> None:
    clock.advance(timedelta(minutes=3))
    await announce(api, store, deployed_at=None)
    stored = await store.deployment("backend", "dep-2")
    assert stored is not None
    assert stored.deployed_at == T0 + timedelta(minutes=3)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"deployment_id": None}, "deployment_id"),
        ({"deployed_at": "2026-01-28T12:00:00"}, "deployed_at"),  # no zone
        ({"previous_id": "dep-1"}, "previous_id"),  # misspelt, not ignored
        ({"migration_failed": "maybe"}, "migration_failed"),
    ],
)
async def test_a_bad_body_is_422_naming_the_field_and_records_nothing(
    api: httpx.AsyncClient,
    store: SqlStore,
    changes: dict[str, Any],
    field: str,
) -> None:
    body = {k: v for k, v in {**BODY, **changes}.items() if v is not None}
    response = await api.post("/api/deploys", json=body, headers=AUTH)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", field]]
    await nothing_recorded(store)


async def test_an_unknown_target_is_422_naming_the_field(
    api: httpx.AsyncClient, store: SqlStore
) -> None:
    for path, body in [("/api/deploys", BODY), ("/api/signals", {**ALERT, "deployment_id": "d"})]:
        response = await api.post(path, json={**body, "target": "frontend"}, headers=AUTH)
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert (error["loc"], error["msg"]) == (["body", "target"], "expected one of backend")
    await nothing_recorded(store)
    assert await store.raised_signals("frontend", "d") == []


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": TOKEN},  # no scheme
        {"Authorization": f"Basic {TOKEN}"},
    ],
    ids=["none", "wrong", "no-scheme", "basic"],
)
async def test_without_the_token_every_change_is_401_and_nothing_is_recorded(
    api: httpx.AsyncClient, store: SqlStore, headers: dict[str, str]
) -> None:
    watch_id = await announce(api, store)
    with structlog.testing.capture_logs() as logs:
        answers = [
            await api.post(path, json=body, headers=headers)
            for path, body in [
                ("/api/deploys", {**BODY, "deployment_id": "dep-3"}),
                ("/api/signals", ALERT),
                (f"/api/watches/{watch_id}/ack", None),
                (f"/api/watches/{watch_id}/hold", None),
            ]
        ]
    assert [a.status_code for a in answers] == [401] * 4
    assert {a.headers["www-authenticate"] for a in answers} == {"Bearer"}
    record = await store.watch(watch_id)
    assert record is not None
    assert (record.held, record.acknowledged_at) == (False, None)
    assert await store.deployment("backend", "dep-3") is None
    assert await store.raised_signals("backend", "dep-2") == []
    assert all(TOKEN not in a.text for a in answers)
    assert TOKEN not in repr(logs)


@pytest.mark.parametrize(
    ("section", "reason"),
    [
        (WITH_TOKEN, "environment variable WATCHDOG_API_TOKEN is not set"),
        ("", "api.token is not configured"),
    ],
    ids=["variable-unset", "not-configured"],
)
async def test_without_a_configured_token_every_change_is_401_and_said_once(
    tmp_path: Path,
    sandbox: stack.Stack,
    store: SqlStore,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    reason: str,
) -> None:
    monkeypatch.delenv("WATCHDOG_API_TOKEN")
    config = configured(tmp_path, sandbox, section)
    async with running(config, store, clock) as daemon:
        await daemon.start()
        with structlog.testing.capture_logs() as logs:
            app = create_api(daemon, clock=clock)
            async with serving(app) as client:
                answers = [
                    await client.post(path, json=body, headers=AUTH)
                    for path, body in [
                        ("/api/deploys", BODY),
                        ("/api/deploys", BODY),
                        ("/api/signals", {**ALERT, "deployment_id": "dep-2"}),
                        ("/api/watches/any/ack", None),
                        ("/api/watches/any/hold", None),
                    ]
                ]
    assert [a.status_code for a in answers] == [401] * 5
    (missing,) = [e for e in logs if e["event"] == "api.token_missing"]
    assert reason in missing["reason"]
    await nothing_recorded(store)
    assert await store.raised_signals("backend", "dep-2") == []


async def test_watches_are_listed_and_shown_as_their_summary(
    api: httpx.AsyncClient, daemon: Watchdog, store: SqlStore
) -> None:
    watch_id = await announce(api, store)
    summary = await daemon.summary(watch_id)
    assert summary["verdict"] == "observing"
    shown = await api.get(f"/api/watches/{watch_id}")
    assert (shown.status_code, shown.json()) == (200, summary)
    listed = await api.get("/api/watches", params={"limit": 5})
    assert listed.json() == [{"id": watch_id, **summary}]
    assert (await api.get("/api/watches", params={"limit": 0})).status_code == 422
    unknown = await api.get("/api/watches/nope")
    assert (unknown.status_code, unknown.json()) == (404, {"detail": "no watch nope"})


async def test_ack_records_who_took_it_over(
    api: httpx.AsyncClient, store: SqlStore, clock: ManualClock
) -> None:
    watch_id = await announce(api, store)
    clock.advance(timedelta(minutes=1))
    response = await api.post(f"/api/watches/{watch_id}/ack", headers=AUTH)
    assert response.json() == {"watch_id": watch_id, "acknowledged_at": "2026-01-28T12:01:00Z"}
    record = await store.watch(watch_id)
    assert record is not None
    assert record.acknowledged_at == T0 + timedelta(minutes=1)
    assert (await api.post("/api/watches/nope/ack", headers=AUTH)).status_code == 404


async def test_a_held_watch_never_acts(
    api: httpx.AsyncClient,
    daemon: Watchdog,
    store: SqlStore,
    config: LoadedConfig,
    sandbox: stack.Stack,
    clock: ManualClock,
) -> None:
    traffic = traffic_for(sandbox, clock)  # the bad release: 5 % errors and a broken login
    watch_id = await announce(api, store)
    response = await api.post(f"/api/watches/{watch_id}/hold", headers=AUTH)
    assert (response.status_code, response.json()) == (200, {"watch_id": watch_id, "held": True})
    await daemon.stop()
    async with by_hand(config, store, clock, watch_id) as watch:
        verdicts = await run_out(watch, sandbox, clock, traffic)
    assert Verdict.ROLLBACK in verdicts
    assert watch.record.outcome is Outcome.WOULD_ROLL_BACK
    assert sandbox.backend.received() == []
    assert sandbox.app.live == BAD_RELEASE


async def test_only_an_open_watch_can_be_held(api: httpx.AsyncClient, store: SqlStore) -> None:
    superseded = await announce(api, store)
    await announce(api, store, deployment_id="dep-3")
    for watch_id in (superseded, "nope"):
        response = await api.post(f"/api/watches/{watch_id}/hold", headers=AUTH)
        assert (response.status_code, response.json()) == (
            404,
            {"detail": f"no open watch {watch_id}"},
        )
    record = await store.watch(superseded)
    assert record is not None
    assert (record.outcome, record.held) == (Outcome.SUPERSEDED, False)


async def test_a_security_alert_rolls_the_watch_back_at_its_next_tick(
    api: httpx.AsyncClient,
    daemon: Watchdog,
    store: SqlStore,
    config: LoadedConfig,
    sandbox: stack.Stack,
    clock: ManualClock,
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # only the alert can roll it back
    traffic = traffic_for(sandbox, clock)
    watch_id = await announce(api, store)
    response = await api.post("/api/signals", json=ALERT, headers=AUTH)
    assert (response.status_code, response.json()) == (
        202,
        {
            "target": "backend",
            "deployment_id": "dep-2",  # the open watch's
            "kind": "security_alert",
            "raised_at": "2026-01-28T12:00:00Z",
        },
    )
    assert [d.verdict for d in await store.decisions(watch_id)] == [Verdict.NONE]
    await daemon.stop()
    async with by_hand(config, store, clock, watch_id) as watch:
        clock.advance(TICK)
        traffic.pump()
        decision = await watch.tick()
    assert decision is not None
    assert (decision.verdict, decision.rule) == (Verdict.ROLLBACK, "security-alert")
    assert watch.record.outcome is Outcome.ROLLED_BACK
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE


async def test_a_raised_alert_survives_a_restart(
    api: httpx.AsyncClient,
    daemon: Watchdog,
    store: SqlStore,
    config: LoadedConfig,
    sandbox: stack.Stack,
    clock: ManualClock,
    tmp_path: Path,
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)
    traffic = traffic_for(sandbox, clock)
    watch_id = await announce(api, store)
    raised = await api.post("/api/signals", json={**ALERT, "deployment_id": "dep-2"}, headers=AUTH)
    assert raised.status_code == 202
    await daemon.stop()
    clock.advance(TICK)
    traffic.pump()
    reopened = sqlite_store(tmp_path / "state.db")  # a new process: nothing shared but the file
    try:
        async with running(config, reopened, clock) as again:
            await again.start()  # resumes the watch and ticks it at once
            async with serving(create_api(again, clock=clock)) as second:

                async def counted() -> bool:  # the last thing the tick does
                    return ROLLED_BACK in (await second.get("/metrics")).text

                await until(counted)
                summary = (await second.get(f"/api/watches/{watch_id}")).json()
    finally:
        await reopened.close()
    assert (summary["verdict"], summary["rule"]) == ("rolled_back", "security-alert")
    assert sandbox.backend.count("rollback") == 1


async def test_an_alert_needs_a_deployment_when_none_is_watched(
    api: httpx.AsyncClient, store: SqlStore
) -> None:
    response = await api.post("/api/signals", json=ALERT, headers=AUTH)
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "deployment_id"]]
    named = await api.post("/api/signals", json={**ALERT, "deployment_id": "dep-9"}, headers=AUTH)
    assert named.status_code == 202
    (stored,) = await store.raised_signals("backend", "dep-9")  # counts once it is watched
    assert (stored.kind, stored.detail, stored.raised_at) == (
        "security_alert",
        ALERT["detail"],
        T0,
    )


async def test_the_alert_source_reads_the_store_and_never_guesses(
    store: SqlStore, tmp_path: Path
) -> None:
    source = AlertSignal(store, "backend")
    await store.raise_signal("backend", "dep-2", "security_alert", "x", T0 + TICK)
    readings = [(await source.read(DEPLOY, at)).readings for at in (T0, T0 + TICK)]
    assert [[(r.metric, r.value) for r in rs] for rs in readings] == [
        [("security_alert", 0.0)],
        [("security_alert", 1.0)],
    ]
    other = await source.read(replace(DEPLOY, id="dep-3"), T0 + TICK)
    assert [r.value for r in other.readings] == [0.0]
    broken = sqlite_store(tmp_path)  # a directory: the store cannot be opened
    failed = await AlertSignal(broken, "backend").read(DEPLOY, T0)
    await broken.close()
    assert failed.readings == ()
    assert [(e.source, e.failure, e.metric) for e in failed.errors] == [
        ("alerts", Failure.DATABASE, "security_alert")
    ]


async def test_the_openapi_schema_describes_every_endpoint(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operations = {
        (method.upper(), path): op
        for path, ops in schema["paths"].items()
        for method, op in ops.items()
    }
    writes = {
        ("POST", "/api/deploys"),
        ("POST", "/api/watches/{watch_id}/ack"),
        ("POST", "/api/watches/{watch_id}/hold"),
        ("POST", "/api/signals"),
    }
    reads = {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/api/watches"),
        ("GET", "/api/watches/{watch_id}"),
    }
    # Signed by the provider instead of the bearer token (tests/test_webhooks.py).
    webhooks = {("POST", f"/webhooks/{source}") for source in ("vercel", "render", "github")}
    assert set(operations) == writes | reads | webhooks
    for key in writes:
        assert operations[key]["security"] == [{"HTTPBearer": []}]
        assert "401" in operations[key]["responses"]
    for key in webhooks:
        assert "401" in operations[key]["responses"]
    for key in reads:
        assert "security" not in operations[key]
    bodies = {
        key: op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        for key, op in operations.items()
        if "requestBody" in op and key not in webhooks
    }
    assert bodies == {
        ("POST", "/api/deploys"): "#/components/schemas/DeployIn",
        ("POST", "/api/signals"): "#/components/schemas/SignalIn",
    }
    summary = schema["components"]["schemas"]["Summary"]["properties"]
    assert {"verdict", "actions", "verification", "previous_deployment_id"} <= set(summary)


async def test_stopping_lets_the_tick_in_flight_finish_and_store_its_decision(
    daemon: Watchdog, store: SqlStore, sandbox: stack.Stack
) -> None:
    sandbox.app.set_faults(toyapp.Faults(added_latency_ms=1500), BAD_RELEASE)  # a slow tick
    await daemon.start()
    record = await daemon.announce(Deployment("backend", "dep-2", T0, release=BAD_RELEASE))

    async def ticking() -> bool:  # the tick records its lag as it begins
        return b"watchdog_tick_lag_seconds_count 1.0" in daemon.metrics.render()

    await until(ticking)
    assert await store.decisions(record.id) == []  # still reading the slow health checks
    await daemon.stop()
    assert len(await store.decisions(record.id)) == 1


async def test_probe_errors_are_counted_by_source_and_failure(
    tmp_path: Path, store: SqlStore, sandbox: stack.Stack, clock: ManualClock
) -> None:
    text = (
        sandbox.config(tmp_path, interval="15s", window="2m").replace(
            sandbox.urls["sentry"], refused_url()
        )
        + WITH_TOKEN
    )
    (tmp_path / "blind.yaml").write_text(text)
    async with running(load_config(tmp_path / "blind.yaml"), store, clock) as daemon:
        await daemon.start()
        clock.advance(timedelta(minutes=1))  # past the deploy, so Sentry is asked
        await daemon.announce(Deployment("backend", "dep-2", T0, release=BAD_RELEASE))

        async def counted() -> bool:
            return (
                b'watchdog_probe_errors_total{failure="unreachable",source="sentry"}'
                in daemon.metrics.render()
            )

        await until(counted)


async def test_discovery_watches_new_deploys_but_not_its_own_rollbacks(
    tmp_path: Path, store: SqlStore, sandbox: stack.Stack, clock: ManualClock
) -> None:
    text = sandbox.config(tmp_path).replace("window: 30s}", "window: 30s, discover: null}")
    (tmp_path / "discover.yaml").write_text(text + WITH_TOKEN)
    async with running(load_config(tmp_path / "discover.yaml"), store, clock) as daemon:
        await daemon.start()
        await daemon.discover("backend")  # the first look only notes what is live
        assert await store.open_watches() == []
        clock.advance(timedelta(minutes=1))
        new = sandbox.backend.deploy("c" * 40)  # someone deploys; live at once
        await daemon.discover("backend")
        (watch,) = await store.open_watches()
        assert (watch.deployment_id, watch.target) == (new.id, "backend")
        deployment = await store.deployment("backend", new.id)
        assert deployment is not None
        assert (deployment.release, deployment.previous_id) == ("c" * 40, "dep-2")
        # This watchdog rolls it back: Render redeploys the earlier release as a new deploy,
        # which is not a deploy to watch.
        provider = daemon.config.settings.targets["backend"].provider
        runner = ActionRunner(store, clock)
        async with httpx.AsyncClient() as http:
            render = build_provider(provider, http, clock)
            plan = await runner.plan(render, "backend", new.id)
            done = await runner.rollback(
                render, plan, watch_id=watch.id, reason="r", timeout=timedelta(minutes=1)
            )
        assert done.status is ActionStatus.DONE
        await daemon.discover("backend")
        assert [w.deployment_id for w in await store.open_watches()] == [new.id]


async def test_a_failing_store_is_a_plain_retryable_503(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    # A real failure: the tables vanish under the running daemon.
    with sqlite3.connect(tmp_path / "state.db") as db:
        db.execute("PRAGMA foreign_keys=OFF")
        db.executescript("DROP TABLE readings; DROP TABLE probe_errors; DROP TABLE decisions;")
        db.executescript("DROP TABLE actions; DROP TABLE watches;")
    listed = await api.get("/api/watches")
    announced = await api.post("/api/deploys", json=BODY, headers=AUTH)
    for response in (listed, announced):
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert response.json() == {"detail": "the state store is unavailable; try again"}
        assert str(tmp_path) not in response.text


async def test_status_asks_a_running_daemon(
    api: httpx.AsyncClient, store: SqlStore, run_watchdog: Runner
) -> None:
    await announce(api, store)
    url = str(api.base_url)
    as_json = await asyncio.to_thread(run_watchdog, "status", "--api", url, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == (await api.get("/api/watches")).json()
    plain = await asyncio.to_thread(run_watchdog, "status", "--api", url)
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.split()[1:4] == ["backend", "dep-2", "observing"]


def test_status_says_when_the_daemon_does_not_answer(run_watchdog: Runner) -> None:
    url = refused_url()
    done = run_watchdog("status", "--api", url)
    assert done.returncode == 1
    assert done.stderr.startswith(f"watchdog: --api {url}: the daemon did not answer")
