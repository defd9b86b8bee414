"""The health source against the toy app over real loopback HTTP, and a whole tick of the
HTTP sources read together with a source that never answers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from watchdog.model import Deployment
from watchdog.sandbox.toyapp import Faults
from watchdog.settings import Flow, HealthCheck, LatencyProbe
from watchdog.signals.base import Failure, Probe, SignalSource, read_all
from watchdog.signals.flows import FlowSignal
from watchdog.signals.health import HealthSignal, contains
from watchdog.signals.httpprobe import Failed, classify
from watchdog.signals.latency import LatencyHistory, LatencySignal

from .toy import DEPLOY, PASSWORD, T0, Toy, closed_port_url, rendezvous, running

AT = T0 + timedelta(minutes=1)


@pytest.fixture
def toy() -> Iterator[Toy]:
    with running() as app:
        yield app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as c:
        yield c


def checks(base: str) -> list[HealthCheck]:
    return [
        HealthCheck(name="api", url=f"{base}/health", expect_json={"status": "healthy"}),
        HealthCheck(
            name="database",
            url=f"{base}/api/health/database",
            expect_json={"status": "connected"},
        ),
    ]


def values(probe: Probe) -> dict[str, float]:
    return {r.labels["check"]: r.value for r in probe.readings}


async def test_healthy_checks_read_1(toy: Toy, client: httpx.AsyncClient) -> None:
    probe = await HealthSignal(checks(toy.url), client).read(DEPLOY, AT)

    assert values(probe) == {"api": 1, "database": 1}
    assert probe.errors == ()
    assert {(r.at, r.metric, r.samples) for r in probe.readings} == {(AT, "health", 1)}


async def test_a_broken_database_reads_0_for_its_check(toy: Toy, client: httpx.AsyncClient) -> None:
    toy.state.set_faults(Faults(database_broken=True))

    probe = await HealthSignal(checks(toy.url), client).read(DEPLOY, AT)

    assert values(probe)["database"] == 0
    assert probe.errors == ()  # the app answered: the 0 is the whole story


async def test_a_body_without_the_expected_fields_reads_0(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    check = HealthCheck(name="api", url=f"{toy.url}/health", expect_json={"status": "ok"})

    probe = await HealthSignal([check], client).read(DEPLOY, AT)

    assert values(probe) == {"api": 0}


async def test_an_unexpected_status_or_a_body_that_is_not_json_reads_0(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    wrong_status = HealthCheck(name="status", url=f"{toy.url}/health", expect_status=204)
    html = HealthCheck(name="html", url=f"{toy.url}/", expect_json={"status": "healthy"})
    home = HealthCheck(name="home", url=f"{toy.url}/")

    probe = await HealthSignal([wrong_status, html, home], client).read(DEPLOY, AT)

    assert values(probe) == {"status": 0, "html": 0, "home": 1}


async def test_a_refused_connection_reads_0_and_says_why(client: httpx.AsyncClient) -> None:
    check = HealthCheck(name="api", url=f"{closed_port_url()}/health")

    probe = await HealthSignal([check], client).read(DEPLOY, AT)

    assert values(probe) == {"api": 0}
    (error,) = probe.errors
    assert (error.source, error.failure, error.metric) == ("health", Failure.UNREACHABLE, "health")
    assert error.message == "health check 'api': could not connect (ConnectError)"


async def test_a_slow_answer_past_the_client_timeout_reads_0_with_a_timeout(toy: Toy) -> None:
    toy.state.set_faults(Faults(added_latency_ms=500))
    check = HealthCheck(name="api", url=f"{toy.url}/health")

    async with httpx.AsyncClient(timeout=0.05) as impatient:
        probe = await HealthSignal([check], impatient).read(DEPLOY, AT)

    assert values(probe) == {"api": 0}
    (error,) = probe.errors
    assert error.failure is Failure.TIMEOUT
    assert error.message == "health check 'api': timed out (ReadTimeout)"


async def test_checks_run_concurrently() -> None:
    urls = [HealthCheck(name=f"c{i}", url=f"http://app.test/{i}") for i in range(3)]

    async with httpx.AsyncClient(transport=rendezvous(3)) as client, asyncio.timeout(5):
        probe = await HealthSignal(urls, client).read(DEPLOY, AT)

    assert values(probe) == {"c0": 1, "c1": 1, "c2": 1}


@pytest.mark.parametrize(
    ("actual", "expected", "result"),
    [
        ({"status": "healthy", "version": "r2"}, {"status": "healthy"}, True),
        ({"status": "healthy"}, {"status": "healthy", "version": "r2"}, False),
        ({"db": {"status": "up", "ms": 3}, "ok": True}, {"db": {"status": "up"}}, True),
        ({"db": {"status": "down"}}, {"db": {"status": "up"}}, False),
        ({"db": "up"}, {"db": {"status": "up"}}, False),
        ({"regions": ["eu", "us"]}, {"regions": ["eu", "us"]}, True),
        ({"regions": ["eu", "us"]}, {"regions": ["eu"]}, False),
        (["status"], {"status": "healthy"}, False),
        ({"anything": 1}, {}, True),
    ],
)
def test_contains_is_a_recursive_subset(actual: Any, expected: Any, result: bool) -> None:
    assert contains(actual, expected) is result


@pytest.mark.parametrize(
    ("exc", "failed"),
    [
        (httpx.ConnectTimeout("x"), Failed(Failure.TIMEOUT, "timed out (ConnectTimeout)")),
        (httpx.ReadTimeout("x"), Failed(Failure.TIMEOUT, "timed out (ReadTimeout)")),
        (httpx.ConnectError("x"), Failed(Failure.UNREACHABLE, "could not connect (ConnectError)")),
        (httpx.ReadError("x"), Failed(Failure.UNREACHABLE, "connection lost (ReadError)")),
        (
            httpx.RemoteProtocolError("x"),
            Failed(Failure.UNREACHABLE, "connection lost (RemoteProtocolError)"),
        ),
        (
            httpx.UnsupportedProtocol("x"),
            Failed(Failure.CONFIG, "unusable URL (UnsupportedProtocol)"),
        ),
        (httpx.InvalidURL("x"), Failed(Failure.CONFIG, "unusable URL (InvalidURL)")),
        (httpx.DecodingError("x"), Failed(Failure.MALFORMED, "undecodable answer (DecodingError)")),
        (
            httpx.TooManyRedirects("x"),
            Failed(Failure.STATUS, "too many redirects (TooManyRedirects)"),
        ),
    ],
)
def test_httpx_errors_are_classified_by_type_without_their_text(
    exc: httpx.HTTPError | httpx.InvalidURL, failed: Failed
) -> None:
    assert classify(exc) == failed


class NeverAnswers:
    """A source stuck on a remote that never answers."""

    name = "stuck"

    async def read(self, deployment: Deployment, at: datetime) -> Probe:
        await asyncio.sleep(3600)
        return Probe()


async def test_a_stuck_source_never_delays_the_tick_past_the_timeout(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    flow = Flow.model_validate(
        {
            "name": "auth",
            "critical": True,
            "steps": [
                {
                    "method": "POST",
                    "url": f"{toy.url}/api/auth/login",
                    "json": {"email": "smoke@acme.example", "password": PASSWORD},
                }
            ],
        }
    )
    latency = LatencyProbe(name="api", url=f"{toy.url}/health", samples=2)
    sources: list[SignalSource] = [
        HealthSignal(checks(toy.url), client),
        NeverAnswers(),
        FlowSignal([flow], client),
        LatencySignal([latency], client, LatencyHistory()),
    ]
    loop = asyncio.get_running_loop()

    started = loop.time()
    probe = await read_all(sources, DEPLOY, AT, timeout=timedelta(seconds=1))
    elapsed = loop.time() - started

    assert elapsed < 10  # far below the hour the stuck source would take
    assert sorted(r.describe() for r in probe.readings) == [
        "flow{critical=true,flow=auth}",
        "health{check=api}",
        "health{check=database}",
    ]
    assert {(e.source, e.failure) for e in probe.errors} == {
        ("stuck", Failure.TIMEOUT),
        ("latency", Failure.NO_DATA),
    }
