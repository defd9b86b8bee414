"""The Sentry signal against the Sentry stand-in over real loopback HTTP: exact readings from
scripted timelines, and every failure mode as no reading plus a ProbeError, never an exception,
never the token in a message or a log. A few odd answers come from ``httpx.MockTransport``."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from watchdog.clock import ManualClock
from watchdog.configfile import EnvRef
from watchdog.model import Deployment, Reading
from watchdog.sandbox import sentry as standin
from watchdog.sandbox.events import EventLog, Timeline, write_timeline
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve
from watchdog.secrets import Secret
from watchdog.settings import SentryConfig, TargetSentry
from watchdog.signals.base import Failure, Probe
from watchdog.signals.sentry import SentrySignal

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)
TOKEN = "sntrys-signal-test-token"
WRONG_TOKEN = "sntrys-wrong-token"
ALL = ["error_rate", "users_affected", "latency_change{check=sentry}"]
DEPLOY = Deployment("backend", "dep-2", T0, "dep-1", release="r2", previous_release="r1")


def traffic(log: EventLog, release: str, start: datetime, minutes: int, **kw: Any) -> Timeline:
    """``per_minute`` (default 100) requests a minute of ``release`` in acme-api/production."""
    kw.setdefault("per_minute", 100)
    return write_timeline(
        log,
        project="acme-api",
        environment="production",
        release=release,
        start=start,
        end=start + minutes * MINUTE,
        **kw,
    )


def signal(
    url: str,
    client: httpx.AsyncClient,
    clock: ManualClock,
    *,
    token: str | Secret = TOKEN,
    organization: str = "acme",
    project: str = "acme-api",
    flags: dict[str, str] | None = None,
    lookback: timedelta = 30 * MINUTE,
) -> SentrySignal:
    config = SentryConfig(
        api_url=url,
        organization=organization,
        token=token if isinstance(token, Secret) else Secret(token),
        lookback=lookback,
    )
    target = TargetSentry(project=project, environment="production", flags=flags or {})
    return SentrySignal(config, target, client, clock)


def failures(probe: Probe) -> dict[str | None, Failure]:
    return {error.metric: error.failure for error in probe.errors}


def assert_no_secret(probe: Probe, logs: Sequence[Mapping[str, Any]] = ()) -> None:
    """Neither the right token nor a wrong one shows in what the signal says or logs."""
    for secret in (TOKEN, WRONG_TOKEN):
        assert secret not in repr(probe)
        assert secret not in repr(logs)


@pytest.fixture
def sentry_clock() -> ManualClock:
    return ManualClock(T0 + 30 * MINUTE)


@pytest.fixture
def sentry_log() -> EventLog:
    return EventLog()


@pytest.fixture
def sentry_faults() -> Faults:
    return Faults()


def standin_app(log: EventLog, clock: ManualClock, **kw: Any) -> Any:
    kw.setdefault("rate_limit", standin.RateLimit(limit=1000, window_seconds=60))
    return standin.create_app(
        log, token=TOKEN, clock=clock, organization="acme", projects=("acme-api",), **kw
    )


@pytest.fixture
def sentry_standin(
    sentry_log: EventLog, sentry_clock: ManualClock, sentry_faults: Faults
) -> Iterator[str]:
    with serve(standin_app(sentry_log, sentry_clock, faults=sentry_faults)) as url:
        try:
            yield url
        finally:
            sentry_faults.clear()  # lets a stalled request finish so the server can stop


class Sent:
    """The requests a client sent, counted by an event hook (the client's own seam)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def __call__(self, request: httpx.Request) -> None:
        self.requests.append(request)


@pytest.fixture
def sentry_sent() -> Sent:
    return Sent()


@pytest.fixture
async def sentry_client(sentry_sent: Sent) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        timeout=httpx.Timeout(5.0), event_hooks={"request": [sentry_sent]}
    ) as client:
        yield client


@pytest.fixture
def bad_deploy(sentry_log: EventLog) -> None:
    """r1 for the hour before T0 (p95 100 ms); r2 from T0 for 30 minutes: 2 % of 3,000
    requests fail, for 20 of its 100 users, at p95 300 ms."""
    traffic(sentry_log, "r1", T0 - 60 * MINUTE, 60, error_fraction=0.001, p95_ms=100)
    traffic(sentry_log, "r2", T0, 30, error_fraction=0.02, error_user_fraction=0.2, p95_ms=300)


# --- readings from known timelines --------------------------------------------------------


async def test_a_known_timeline_gives_exact_readings(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    bad_deploy: None,
) -> None:
    at = sentry_clock.now()
    probe = await signal(sentry_standin, sentry_client, sentry_clock).read(DEPLOY, at)

    by_series = {r.describe(): r for r in probe.readings}
    assert probe.errors == ()
    assert by_series["error_rate"] == Reading(at, "error_rate", 0.02, {}, samples=3000)
    assert by_series["users_affected"] == Reading(at, "users_affected", 0.2, {}, samples=100)
    for p in ("p50", "p75", "p95"):
        latency = by_series[f"latency_change{{check=sentry,percentile={p}}}"]
        assert latency.value == pytest.approx(2.0)
        assert (latency.at, latency.samples) == (at, 3000)
    assert len(probe.readings) == 5


async def test_the_lookback_trails_and_never_starts_before_the_deploy(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_log: EventLog,
) -> None:
    traffic(sentry_log, "r2", T0 - 5 * MINUTE, 5, error_fraction=0.5)  # a canary before the deploy
    traffic(sentry_log, "r2", T0, 10, error_fraction=0.02)
    source = signal(sentry_standin, sentry_client, sentry_clock, lookback=2 * MINUTE)

    first = await source.read(DEPLOY, T0 + MINUTE)
    later = await source.read(DEPLOY, T0 + 10 * MINUTE)

    def error_rate(probe: Probe) -> tuple[float, int | None]:
        (reading,) = [r for r in probe.readings if r.metric == "error_rate"]
        return reading.value, reading.samples

    assert error_rate(first) == (0.02, 100)  # [T0, T0+1m): none of the canary's failures
    assert error_rate(later) == (0.02, 200)  # [T0+8m, T0+10m)


async def test_a_flag_error_rate_narrows_by_its_search(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_log: EventLog,
) -> None:
    traffic(sentry_log, "r2", T0, 10, error_fraction=0.01)
    traffic(
        sentry_log,
        "r2",
        T0,
        10,
        per_minute=20,
        error_fraction=0.1,
        tags={"feature": "new_checkout"},
    )
    flags = {"new_checkout": "feature:new_checkout", "dark_mode": "feature:dark_mode"}
    source = signal(sentry_standin, sentry_client, sentry_clock, flags=flags, lookback=10 * MINUTE)
    at = T0 + 10 * MINUTE

    probe = await source.read(DEPLOY, at)

    by_series = {r.describe(): r for r in probe.readings}
    assert by_series["flag_error_rate{flag=new_checkout}"] == Reading(
        at, "flag_error_rate", 0.1, {"flag": "new_checkout"}, samples=200
    )
    assert by_series["error_rate"].value == pytest.approx(30 / 1200)
    assert "flag_error_rate{flag=dark_mode}" not in by_series
    assert failures(probe)["flag_error_rate{flag=dark_mode}"] is Failure.NO_DATA


async def test_latency_needs_a_previous_release_with_data_but_the_rest_still_comes(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_log: EventLog,
) -> None:
    traffic(sentry_log, "r2", T0, 30, error_fraction=0.02)
    source = signal(sentry_standin, sentry_client, sentry_clock)
    at = sentry_clock.now()

    no_previous = await source.read(Deployment("backend", "dep-2", T0, release="r2"), at)
    no_baseline = await source.read(DEPLOY, at)  # r1 sent nothing in the hour before

    for probe in (no_previous, no_baseline):
        assert failures(probe) == {"latency_change{check=sentry}": Failure.NO_DATA}
        assert {r.metric for r in probe.readings} == {"error_rate", "users_affected"}
    assert "previous release" in no_previous.errors[0].message
    assert 'release:"r1"' in no_baseline.errors[0].message


async def test_the_baseline_is_asked_for_until_sentry_has_it(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_sent: Sent,
    bad_deploy: None,
) -> None:
    source = signal(sentry_standin, sentry_client, sentry_clock)

    first = await source.read(DEPLOY, sentry_clock.now())
    sentry_clock.advance(timedelta(seconds=15))
    second = await source.read(DEPLOY, sentry_clock.now())

    queries = [r.url.params["query"] for r in sentry_sent.requests]
    assert queries.count('release:"r1"') == 1
    assert len(queries) == 3 + 4  # the lookback starts at the deploy, then trails it
    for probe in (first, second):
        assert (probe.errors, len(probe.readings)) == ((), 5)


async def test_within_the_lookback_a_tick_asks_each_dataset_once(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_sent: Sent,
    sentry_log: EventLog,
) -> None:
    traffic(sentry_log, "r2", T0, 40, error_fraction=0.02, error_user_fraction=0.2)
    source = signal(sentry_standin, sentry_client, sentry_clock)  # a 30-minute lookback
    deploy = Deployment("backend", "dep-2", T0, release="r2")  # no baseline: the counts only

    within = await source.read(deploy, T0 + 30 * MINUTE)
    sent_within = len(sentry_sent.requests)
    after = await source.read(deploy, T0 + 40 * MINUTE)

    assert (sent_within, len(sentry_sent.requests) - sent_within) == (2, 4)
    for probe in (within, after):
        assert {r.describe(): (r.value, r.samples) for r in probe.readings} == {
            "error_rate": (0.02, 3000),
            "users_affected": (0.2, 100),
        }


async def test_merged_requests_give_the_readings_separate_requests_give(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_sent: Sent,
    sentry_log: EventLog,
) -> None:
    traffic(sentry_log, "r1", T0 - 50 * MINUTE, 40, p95_ms=100)
    traffic(sentry_log, "r2", T0, 30, error_fraction=0.02, error_user_fraction=0.2, p95_ms=300)
    traffic(sentry_log, "r2", T0, 30, per_minute=20, error_fraction=0.1, tags={"feature": "beta"})
    probes: list[Probe] = []
    sent: list[int] = []
    # Deployed at the first event, or a second before it: the same events are counted, but
    # only in the first do the counts since the deploy cover the lookback's window.
    for deployed in (T0, T0 - timedelta(seconds=1)):
        deploy = Deployment("backend", "dep-2", deployed, release="r2", previous_release="r1")
        source = signal(sentry_standin, sentry_client, sentry_clock, flags={"beta": "feature:beta"})
        before = len(sentry_sent.requests)
        probes.append(await source.read(deploy, T0 + 30 * MINUTE))
        sent.append(len(sentry_sent.requests) - before)
    merged, separate = probes

    assert sent == [5, 7]  # errors, transactions, the baseline and the flag's 2; or 4 counts
    assert (merged.errors, len(merged.readings)) == ((), 6)
    assert merged == separate


async def test_no_transactions_is_no_data_not_zero(
    sentry_standin: str, sentry_client: httpx.AsyncClient, sentry_clock: ManualClock
) -> None:
    probe = await signal(sentry_standin, sentry_client, sentry_clock).read(
        DEPLOY, sentry_clock.now()
    )

    assert probe.readings == ()
    assert failures(probe) == dict.fromkeys(ALL, Failure.NO_DATA)
    assert 'no transactions of release:"r2"' in probe.errors[0].message


async def test_no_release_is_a_config_problem_and_sends_nothing(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_sent: Sent,
) -> None:
    source = signal(sentry_standin, sentry_client, sentry_clock)

    with capture_logs() as logs:
        probe = await source.read(Deployment("backend", "dep-2", T0), sentry_clock.now())

    assert probe.readings == ()
    assert failures(probe) == dict.fromkeys(ALL, Failure.CONFIG)
    assert "dep-2 of backend has no Sentry release" in probe.errors[0].message
    assert sentry_sent.requests == []
    assert [e["event"] for e in logs] == ["sentry.misconfigured"]


async def test_an_unset_token_is_a_config_problem_naming_the_variable(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_sent: Sent,
) -> None:
    unset = Secret(EnvRef("${SENTRY_AUTH_TOKEN}", ("SENTRY_AUTH_TOKEN",), "sentry.token"))
    source = signal(sentry_standin, sentry_client, sentry_clock, token=unset)

    probe = await source.read(DEPLOY, sentry_clock.now())

    assert failures(probe) == dict.fromkeys(ALL, Failure.CONFIG)
    assert "SENTRY_AUTH_TOKEN is not set" in probe.errors[0].message
    assert sentry_sent.requests == []


# --- failures -----------------------------------------------------------------------------


async def test_a_timeout_is_no_reading(
    sentry_standin: str,
    sentry_clock: ManualClock,
    sentry_faults: Faults,
    bad_deploy: None,
) -> None:
    sentry_faults.stall_next(3, 0.5)
    async with httpx.AsyncClient(timeout=httpx.Timeout(0.05)) as client:
        probe = await signal(sentry_standin, client, sentry_clock).read(DEPLOY, sentry_clock.now())

    assert probe.readings == ()
    assert failures(probe) == dict.fromkeys(ALL, Failure.TIMEOUT)
    assert "did not answer in time" in probe.errors[0].message
    assert_no_secret(probe)


async def test_a_refused_connection_is_unreachable(
    sentry_client: httpx.AsyncClient, sentry_clock: ManualClock
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"

    probe = await signal(closed, sentry_client, sentry_clock).read(DEPLOY, sentry_clock.now())

    assert probe.readings == ()
    assert failures(probe) == dict.fromkeys(ALL, Failure.UNREACHABLE)
    assert f"cannot reach Sentry at {closed}" in probe.errors[0].message
    assert_no_secret(probe)


@pytest.mark.parametrize(
    ("arm", "failure", "words"),
    [
        (lambda faults: faults.fail_next(3, 500), Failure.STATUS, "Sentry answered 500"),
        (lambda faults: faults.garble_next(3), Failure.MALFORMED, "unexpected answer"),
    ],
    ids=["error", "malformed"],
)
async def test_a_5xx_or_unparsable_answer_is_no_reading(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_faults: Faults,
    bad_deploy: None,
    arm: Callable[[Faults], None],
    failure: Failure,
    words: str,
) -> None:
    arm(sentry_faults)

    probe = await signal(sentry_standin, sentry_client, sentry_clock).read(
        DEPLOY, sentry_clock.now()
    )

    assert probe.readings == ()
    assert failures(probe) == dict.fromkeys(ALL, failure)
    assert words in probe.errors[0].message
    assert_no_secret(probe)


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"token": WRONG_TOKEN}, "Sentry rejected the token (401): set sentry.token"),
        ({"organization": "umbrella"}, "Sentry refused organization 'umbrella' (403)"),
        ({"project": "acme-db"}, "Sentry has no project 'acme-db' in organization 'acme' (404)"),
    ],
)
async def test_auth_org_and_project_errors_say_what_to_fix_and_log_once(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    bad_deploy: None,
    settings: dict[str, Any],
    words: str,
) -> None:
    source = signal(sentry_standin, sentry_client, sentry_clock, **settings)

    with capture_logs() as logs:
        probes = [await source.read(DEPLOY, sentry_clock.now()) for _ in range(3)]

    for probe in probes:
        assert probe.readings == ()
        assert failures(probe) == dict.fromkeys(ALL, Failure.CONFIG)
        assert words in probe.errors[0].message
        assert_no_secret(probe, logs)
    assert [(e["event"], e["log_level"]) for e in logs] == [("sentry.misconfigured", "error")]
    assert words in logs[0]["error"]
    assert (logs[0]["target"], logs[0]["deployment"]) == ("backend", "dep-2")


async def test_a_429_stops_every_request_until_the_announced_reset(
    sentry_standin: str,
    sentry_client: httpx.AsyncClient,
    sentry_clock: ManualClock,
    sentry_faults: Faults,
    sentry_sent: Sent,
    bad_deploy: None,
) -> None:
    sentry_clock.set(T0 + timedelta(minutes=30, seconds=10))
    sentry_faults.rate_limit(T0 + timedelta(minutes=30, seconds=40))
    source = signal(sentry_standin, sentry_client, sentry_clock)

    throttled = await source.read(DEPLOY, sentry_clock.now())
    sent = len(sentry_sent.requests)
    sentry_clock.advance(timedelta(seconds=45))  # past the throttle, not the window's reset
    backing_off = await source.read(DEPLOY, sentry_clock.now())
    sent_while_backing_off = len(sentry_sent.requests) - sent
    sentry_clock.set(T0 + 31 * MINUTE)  # X-Sentry-Rate-Limit-Reset: the next minute
    recovered = await source.read(DEPLOY, sentry_clock.now())

    assert throttled.readings == ()
    assert failures(throttled) == dict.fromkeys(ALL, Failure.RATE_LIMITED)
    assert "too frequently" in throttled.errors[0].message
    assert (sent, sent_while_backing_off) == (5, 0)
    assert failures(backing_off) == dict.fromkeys(ALL, Failure.RATE_LIMITED)
    assert "no requests until 2026-01-28T12:31:00Z" in backing_off.errors[0].message
    assert (recovered.errors, len(recovered.readings)) == ((), 5)


async def test_a_window_too_short_for_another_tick_pauses_polling(
    sentry_log: EventLog,
    sentry_clock: ManualClock,
    sentry_client: httpx.AsyncClient,
    sentry_sent: Sent,
    bad_deploy: None,
) -> None:
    app = standin_app(
        sentry_log, sentry_clock, rate_limit=standin.RateLimit(limit=6, window_seconds=60)
    )
    probes: list[Probe] = []
    sent: list[int] = []
    with serve(app) as url:
        # An hour's lookback: every tick's counts start at the deploy, so each dataset is one
        # request, and what is left of the window is judged against the requests really sent.
        source = signal(url, sentry_client, sentry_clock, lookback=60 * MINUTE)
        for moment in (30 * MINUTE, timedelta(minutes=30, seconds=15), 30.5 * MINUTE, 31 * MINUTE):
            sentry_clock.set(T0 + moment)
            before = len(sentry_sent.requests)
            probes.append(await source.read(DEPLOY, sentry_clock.now()))
            sent.append(len(sentry_sent.requests) - before)
    full, last_in_window, paused, resumed = probes

    assert sent == [3, 2, 0, 2]  # 3 left after the first tick: enough for one more of 2
    for probe in (full, last_in_window, resumed):
        assert (probe.errors, len(probe.readings)) == ((), 5)
    assert failures(paused) == dict.fromkeys(ALL, Failure.RATE_LIMITED)
    assert "no requests until 2026-01-28T12:31:00Z" in paused.errors[0].message


# --- odd answers and the request itself, through MockTransport ----------------------------


def answering(handler: Callable[[httpx.Request], Any]) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def healthy_row(request: httpx.Request) -> dict[str, Any]:
    """Fixed numbers: r2 had 1,000 requests from 50 users, 10 errors for 5 of them, and is
    twice as slow as r1."""
    params = request.url.params
    errors = params["dataset"] == "errors"
    slow = 2 if 'release:"r2"' in params["query"] else 1
    values = {
        "count()": 10 if errors else 1000,
        "count_unique(user)": 5 if errors else 50,
        **{f"{p}(transaction.duration)": 100.0 * slow for p in ("p50", "p75", "p95")},
    }
    return {"data": [{f: values[f] for f in params.get_list("field")}], "meta": {}}


async def test_requests_carry_the_contract_params_and_run_concurrently(
    sentry_clock: ManualClock,
) -> None:
    arrived = asyncio.Barrier(5)  # all five requests of the tick are in flight at once
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        async with asyncio.timeout(2):
            await arrived.wait()
        return httpx.Response(200, json=healthy_row(request))

    async with answering(handler) as client:
        probe = await signal(
            "https://sentry.example", client, sentry_clock, lookback=2 * MINUTE
        ).read(DEPLOY, T0 + 30 * MINUTE)

    assert probe.errors == ()
    assert {r.describe(): (r.value, r.samples) for r in probe.readings} == {
        "error_rate": (0.01, 1000),
        "users_affected": (0.1, 50),
        **{
            f"latency_change{{check=sentry,percentile={p}}}": (1.0, 1000)
            for p in ("p50", "p75", "p95")
        },
    }
    errors = next(
        r
        for r in seen
        if r.url.params["dataset"] == "errors" and r.url.params["field"] == "count()"
    )
    assert errors.url.path == "/api/0/organizations/acme/events/"
    assert errors.headers["Authorization"] == f"Bearer {TOKEN}"
    assert dict(errors.url.params) == {
        "dataset": "errors",
        "field": "count()",
        "query": 'release:"r2"',
        "projectSlug": "acme-api",
        "environment": "production",
        "start": "2026-01-28T12:28:00Z",
        "end": "2026-01-28T12:30:00Z",
    }
    transactions = next(r for r in seen if 'release:"r1"' in r.url.params["query"])
    assert transactions.url.params.get_list("field") == [
        "p50(transaction.duration)",
        "p75(transaction.duration)",
        "p95(transaction.duration)",
    ]
    assert (transactions.url.params["start"], transactions.url.params["end"]) == (
        "2026-01-28T11:00:00Z",
        "2026-01-28T12:00:00Z",
    )


async def test_one_failed_request_costs_only_the_metrics_computed_from_it(
    sentry_clock: ManualClock,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params["field"] == "count_unique(user)":
            return httpx.Response(503, json={"detail": "Service Unavailable"})
        return httpx.Response(200, json=healthy_row(request))

    async with answering(handler) as client:
        probe = await signal(
            "https://sentry.example", client, sentry_clock, lookback=2 * MINUTE
        ).read(DEPLOY, T0 + 30 * MINUTE)  # past the lookback: the user counts are asked apart

    assert failures(probe) == {"users_affected": Failure.STATUS}
    assert "Sentry answered 503" in probe.errors[0].message
    assert "Service Unavailable" in probe.errors[0].message
    assert {r.metric for r in probe.readings} == {"error_rate", "latency_change"}


async def test_a_failed_merged_request_costs_the_metrics_of_every_query_it_answers(
    sentry_clock: ManualClock,
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if request.url.params["dataset"] == "errors":
            return httpx.Response(503, json={"detail": "Service Unavailable"})
        return httpx.Response(200, json=healthy_row(request))

    async with answering(handler) as client:
        probe = await signal("https://sentry.example", client, sentry_clock).read(
            DEPLOY, T0 + MINUTE
        )

    errors = [r.url.params.get_list("field") for r in sent if r.url.params["dataset"] == "errors"]
    assert errors == [["count()", "count_unique(user)"]]  # one request for both counts
    assert failures(probe) == {"error_rate": Failure.STATUS, "users_affected": Failure.STATUS}
    for error in probe.errors:
        assert 'Sentry answered 503 to errors of release:"r2" from 2026-01-28T12:00:00Z' in (
            error.message
        )
    assert {r.metric for r in probe.readings} == {"latency_change"}


@pytest.mark.parametrize(
    "body",
    [
        [{"count()": 3}],
        {"rows": []},
        {"data": ["count()"]},
        {"data": [{"count()": "many"}]},
        {"data": [{"count()": True}]},
        {"data": [{"count()": None}]},
        {"data": [{}]},
    ],
)
async def test_an_unexpected_shape_is_malformed(sentry_clock: ManualClock, body: Any) -> None:
    async with answering(lambda request: httpx.Response(200, json=body)) as client:
        probe = await signal("https://sentry.example", client, sentry_clock).read(
            DEPLOY, T0 + MINUTE
        )

    assert probe.readings == ()
    assert failures(probe) == dict.fromkeys(ALL, Failure.MALFORMED)


async def test_the_empty_result_shape_is_no_data(sentry_clock: ManualClock) -> None:
    empty: dict[str, Any] = {"data": [], "meta": {}}
    async with answering(lambda request: httpx.Response(200, json=empty)) as client:
        probe = await signal("https://sentry.example", client, sentry_clock).read(
            DEPLOY, T0 + MINUTE
        )

    assert probe.readings == ()
    assert failures(probe) == dict.fromkeys(ALL, Failure.NO_DATA)


@pytest.mark.parametrize("reset", [None, "soon", "99999999999999999999"])
async def test_a_429_without_a_usable_reset_is_retried_next_tick(
    sentry_clock: ManualClock, reset: str | None
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        headers = {} if reset is None else {"X-Sentry-Rate-Limit-Reset": reset}
        return httpx.Response(429, json={"detail": "too frequently"}, headers=headers)

    async with answering(handler) as client:
        source = signal("https://sentry.example", client, sentry_clock)
        first = await source.read(DEPLOY, T0 + MINUTE)
        second = await source.read(DEPLOY, T0 + MINUTE)

    for probe in (first, second):
        assert failures(probe) == dict.fromkeys(ALL, Failure.RATE_LIMITED)
    assert len(sent) == 3 + 3
