"""The flow source against the toy app over real loopback HTTP: steps in order, values
captured from one answer into the next request, and messages that name the step that broke
without showing a password or a token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from watchdog.configfile import EnvRef
from watchdog.errors import ConfigError
from watchdog.sandbox.toyapp import Faults
from watchdog.settings import Flow
from watchdog.signals.base import Failure, Probe
from watchdog.signals.flows import FlowSignal, dig, render

from .toy import DEPLOY, PASSWORD, T0, Toy, closed_port_url, rendezvous, running

AT = T0 + timedelta(minutes=1)
UNSET = EnvRef(
    template="${SMOKE_PASSWORD}",
    missing=("SMOKE_PASSWORD",),
    where="config/watchdog.yaml:31: targets.backend.flows[0].steps[0].json.password",
)


@pytest.fixture
def toy() -> Iterator[Toy]:
    with running() as app:
        yield app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as c:
        yield c


def auth_flow(base: str, *, password: Any = PASSWORD, dashboard_status: int = 200) -> Flow:
    """Log in, then open the dashboard with the token the login answered."""
    return Flow.model_validate(
        {
            "name": "auth",
            "critical": True,
            "steps": [
                {
                    "method": "POST",
                    "url": f"{base}/api/auth/login",
                    "json": {"email": "smoke@acme.example", "password": password},
                    "capture": {"token": "token"},
                },
                {
                    "url": f"{base}/api/dashboard",
                    "headers": {"Authorization": "Bearer {{token}}"},
                    "expect_status": dashboard_status,
                },
            ],
        }
    )


def values(probe: Probe) -> dict[str, float]:
    return {r.labels["flow"]: r.value for r in probe.readings}


async def test_a_working_login_flow_reads_1(toy: Toy, client: httpx.AsyncClient) -> None:
    probe = await FlowSignal([auth_flow(toy.url)], client).read(DEPLOY, AT)

    (reading,) = probe.readings
    assert (reading.at, reading.metric, reading.value) == (AT, "flow", 1)
    assert reading.labels == {"flow": "auth", "critical": "true"}
    assert probe.errors == ()


async def test_a_broken_login_reads_0_naming_the_step(toy: Toy, client: httpx.AsyncClient) -> None:
    toy.state.set_faults(Faults(login_broken=True))

    probe = await FlowSignal([auth_flow(toy.url)], client).read(DEPLOY, AT)

    assert values(probe) == {"auth": 0}
    (error,) = probe.errors
    assert (error.source, error.failure, error.metric) == ("flows", Failure.STATUS, "flow")
    assert error.message == (
        "flow 'auth' step 1 (POST /api/auth/login): expected status 200, got 500"
    )


async def test_a_wrong_status_in_a_later_step_reads_0_without_showing_the_token(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    probe = await FlowSignal([auth_flow(toy.url, dashboard_status=201)], client).read(DEPLOY, AT)

    assert values(probe) == {"auth": 0}
    (error,) = probe.errors
    assert error.message == "flow 'auth' step 2 (GET /api/dashboard): expected status 201, got 200"


async def test_a_wrong_password_reads_0_without_showing_it(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    probe = await FlowSignal([auth_flow(toy.url, password="hunter2")], client).read(DEPLOY, AT)

    assert values(probe) == {"auth": 0}
    (error,) = probe.errors
    assert "expected status 200, got 401" in error.message
    assert "hunter2" not in error.message


async def test_an_unset_environment_variable_is_no_reading_and_a_config_error(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    probe = await FlowSignal([auth_flow(toy.url, password=UNSET)], client).read(DEPLOY, AT)

    assert probe.readings == ()
    (error,) = probe.errors
    assert error.failure is Failure.CONFIG
    assert error.message == (
        "flow 'auth' step 1 (POST /api/auth/login): config/watchdog.yaml:31: "
        "targets.backend.flows[0].steps[0].json.password: "
        "environment variable SMOKE_PASSWORD is not set"
    )


async def test_an_unset_variable_in_a_header_is_a_config_error(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    flow = Flow.model_validate(
        {"name": "api", "steps": [{"url": f"{toy.url}/api/dashboard", "headers": {"X-Key": UNSET}}]}
    )

    probe = await FlowSignal([flow], client).read(DEPLOY, AT)

    assert probe.readings == ()
    assert [e.failure for e in probe.errors] == [Failure.CONFIG]


async def test_a_placeholder_nothing_captured_is_a_config_error(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    flow = Flow.model_validate(
        {
            "name": "payments",
            "steps": [
                {
                    "method": "POST",
                    "url": f"{toy.url}/api/payments",
                    "headers": {"Authorization": "Bearer {{tokn}}"},
                }
            ],
        }
    )

    probe = await FlowSignal([flow], client).read(DEPLOY, AT)

    assert probe.readings == ()
    (error,) = probe.errors
    assert error.failure is Failure.CONFIG
    assert error.message.endswith("{{tokn}} names no value captured by an earlier step")


async def test_an_answer_without_the_value_to_capture_reads_0(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    flow = Flow.model_validate(
        {
            "name": "health",
            "steps": [
                {"url": f"{toy.url}/health", "capture": {"token": "session.token"}},
                {"url": f"{toy.url}/api/dashboard"},
            ],
        }
    )

    probe = await FlowSignal([flow], client).read(DEPLOY, AT)

    assert values(probe) == {"health": 0}
    (error,) = probe.errors
    assert error.failure is Failure.MALFORMED
    assert error.message == (
        "flow 'health' step 1 (GET /health): answer has no 'session.token' to capture as 'token'"
    )


async def test_flows_fail_alone_and_carry_their_criticality(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    toy.state.set_faults(Faults(payments_broken=True))
    base = toy.url
    payments = Flow.model_validate(
        {
            "name": "payments",
            "critical": True,
            "steps": [
                auth_flow(base).steps[0].model_dump(by_alias=True),
                {
                    "method": "POST",
                    "url": f"{base}/api/payments",
                    "headers": {"Authorization": "Bearer {{token}}"},
                },
            ],
        }
    )
    appointments = Flow.model_validate(
        {"name": "appointments", "steps": [{"url": f"{base}/api/appointments"}]}
    )
    refused = Flow.model_validate({"name": "docs", "steps": [{"url": closed_port_url()}]})

    probe = await FlowSignal([payments, appointments, refused], client).read(DEPLOY, AT)

    assert {(r.labels["flow"], r.labels["critical"], r.value) for r in probe.readings} == {
        ("payments", "true", 0),
        ("appointments", "false", 1),
        ("docs", "false", 0),
    }
    assert [(e.failure, e.message) for e in probe.errors] == [
        (
            Failure.STATUS,
            "flow 'payments' step 2 (POST /api/payments): expected status 200, got 500",
        ),
        (Failure.UNREACHABLE, "flow 'docs' step 1 (GET /): could not connect (ConnectError)"),
    ]


async def test_flows_run_concurrently() -> None:
    flows = [
        Flow.model_validate({"name": f"f{i}", "steps": [{"url": f"http://app.test/{i}"}]})
        for i in range(3)
    ]

    async with httpx.AsyncClient(transport=rendezvous(3)) as client, asyncio.timeout(5):
        probe = await FlowSignal(flows, client).read(DEPLOY, AT)

    assert values(probe) == {"f0": 1, "f1": 1, "f2": 1}


def test_render_fills_placeholders_keeping_a_whole_value_as_it_is() -> None:
    captured = {"token": "abc", "id": 7}
    template = {
        "id": "{{id}}",
        "note": "order {{ id }} for {{token}}",
        "items": [{"ref": "{{id}}"}, 3, None],
    }

    assert render(template, captured) == {
        "id": 7,
        "note": "order 7 for abc",
        "items": [{"ref": 7}, 3, None],
    }
    with pytest.raises(ConfigError, match="environment variable SMOKE_PASSWORD is not set"):
        render({"password": UNSET}, captured)


@pytest.mark.parametrize(
    ("path", "found"),
    [("token", "t"), ("data.items.1.id", 2), ("data.items.0", {"id": 1})],
)
def test_dig_follows_dotted_paths_through_mappings_and_lists(path: str, found: Any) -> None:
    document = {"token": "t", "data": {"items": [{"id": 1}, {"id": 2}]}}

    assert dig(document, path) == found


@pytest.mark.parametrize("path", ["missing", "data.items.2.id", "data.items.first", "token.x"])
def test_dig_raises_lookup_error_when_the_path_is_absent(path: str) -> None:
    with pytest.raises(LookupError):
        dig({"token": "t", "data": {"items": [{"id": 1}]}}, path)
