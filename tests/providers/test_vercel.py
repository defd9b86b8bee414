"""VercelRollback against the Vercel stand-in, over real loopback HTTP, with time moved by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.providers.helpers import (
    DELAY,
    T0,
    advancing_sleep,
    assert_secret_free,
    refused_url,
    served,
)
from watchdog.clock import ManualClock
from watchdog.configfile import EnvRef
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment
from watchdog.providers.vercel import PAUSED, VercelRollback
from watchdog.sandbox import vercel
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE, DeploymentHistory, GoLive
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve
from watchdog.secrets import Secret
from watchdog.settings import VercelProvider

TOKEN = "vercel-test-token-3f9c2a"  # the stand-in's, and what must never leak
TEAM = "team_acme"
PROJECT = "prj_acmeweb"

Make = Callable[..., VercelRollback]


@pytest.fixture
def base_url(history: DeploymentHistory, clock: ManualClock, faults: Faults) -> Iterator[str]:
    app = vercel.create_app(
        history, token=TOKEN, team_id=TEAM, project_id=PROJECT, clock=clock, faults=faults
    )
    with served(app, faults) as url:
        yield url


@pytest.fixture
def make(base_url: str, client: httpx.AsyncClient, clock: ManualClock) -> Make:
    def make(client: httpx.AsyncClient = client, **changes: Any) -> VercelRollback:
        fields: dict[str, Any] = {
            "kind": "vercel",
            "api_url": base_url,
            "project": PROJECT,
            "team_id": TEAM,
            "token": Secret(TOKEN),
        }
        config = VercelProvider(**(fields | changes))
        return VercelRollback(config, client, clock, sleep=advancing_sleep(clock))

    return make


@pytest.fixture
def provider(make: Make) -> VercelRollback:
    return make()


def project_json(base_url: str) -> Any:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return httpx.get(
        f"{base_url}/v9/projects/{PROJECT}", headers=headers, params={"teamId": TEAM}
    ).json()


async def test_live_is_the_projects_production_deployment(provider: VercelRollback) -> None:
    live = await provider.live()
    assert live == ProviderDeployment(
        id="dep-2",
        release=BAD_RELEASE,
        created_at=T0 - timedelta(minutes=5),
        status="READY",
        live=True,
    )


async def test_known_good_is_the_previous_production_deployment(provider: VercelRollback) -> None:
    good = await provider.known_good(await provider.live())
    assert good == ProviderDeployment(
        id="dep-1",
        release=GOOD_RELEASE,
        created_at=T0 - timedelta(days=1),
        status="READY",
        live=False,
    )


def ms(days: int = 0, minutes: int = 0) -> str:
    """``until`` as Vercel takes it: epoch milliseconds of T0 plus the offset."""
    return str(int((T0 + timedelta(days=days, minutes=minutes)).timestamp() * 1000))


async def test_known_good_pages_back_past_deployments_that_never_served(
    make: Make, clock: ManualClock, sent: list[httpx.Request]
) -> None:
    # 150 production builds that never went live, and previews, lie between bad and good.
    history = DeploymentHistory("big", clock)
    history.add("dpl_good", GOOD_RELEASE, created_at=T0 - timedelta(days=2), live=True)
    for n in range(150):
        at = T0 - timedelta(days=1) + timedelta(minutes=n)
        history.add(f"dpl_{n:03}", BAD_RELEASE, created_at=at)
        history.add_preview(f"dpl_pre{n:03}", BAD_RELEASE, created_at=at + timedelta(seconds=1))
    history.add("dpl_bad", BAD_RELEASE, created_at=T0, live=True)
    app = vercel.create_app(history, token=TOKEN, team_id=TEAM, project_id=PROJECT, clock=clock)
    with serve(app) as url:
        provider = make(api_url=url)
        bad = await provider.live()
        good = await provider.known_good(bad)
    assert (bad.id, good and good.id) == ("dpl_bad", "dpl_good")
    lists = [r.url for r in sent if r.url.path == "/v7/deployments"]
    assert len(lists) == 2
    assert dict(lists[0].params) == {
        "teamId": TEAM,
        "projectId": PROJECT,
        "target": "production",
        "state": "READY",
        "limit": "100",
        "until": ms(),
    }
    # the second page starts where the first ended: at the 100th, dpl_050
    assert lists[1].params["until"] == ms(days=-1, minutes=50)
    assert all(r.url.params["teamId"] == TEAM for r in sent)


async def test_known_good_is_none_when_nothing_served_before(
    make: Make, clock: ManualClock
) -> None:
    history = DeploymentHistory("fresh", clock)
    history.add("dpl_only", BAD_RELEASE, created_at=T0, live=True)
    app = vercel.create_app(history, token=TOKEN, team_id=TEAM, project_id=PROJECT, clock=clock)
    with serve(app) as url:
        provider = make(api_url=url)
        assert await provider.known_good(await provider.live()) is None


@pytest.mark.parametrize(
    ("method", "operation"), [("rollback", "rollback"), ("promote", "promote")]
)
async def test_a_rollback_moves_production_back(
    make: Make,
    history: DeploymentHistory,
    clock: ManualClock,
    served: list[str],
    base_url: str,
    sent: list[httpx.Request],
    method: str,
    operation: str,
) -> None:
    provider = make(method=method)
    good = await provider.known_good(await provider.live())
    assert good is not None
    assert not await provider.is_serving(good)

    done = await provider.rollback(good, "error rate 4.2% > 1% for 2m")

    assert (done.to, done.handle) == (good, None)
    assert done.notes == ((PAUSED,) if method == "rollback" else ())
    assert served[-1] == BAD_RELEASE  # accepted, not switched yet
    await provider.wait_live(done, timedelta(minutes=5))
    assert DELAY <= clock.now() - T0 < DELAY + timedelta(seconds=2)
    assert served[-1] == GOOD_RELEASE
    assert await provider.is_serving(good)
    assert (await provider.live()).id == good.id
    assert history.count(operation) == 1
    assert len(history.received()) == 1
    assert all(r.url.params["teamId"] == TEAM for r in sent)
    if method == "rollback":
        described = project_json(base_url)["rollbackDescription"]["description"]
        assert described == "error rate 4.2% > 1% for 2m"


async def test_a_switch_that_never_ends_times_out_naming_the_wait(
    provider: VercelRollback, faults: Faults, clock: ManualClock, served: list[str]
) -> None:
    faults.go_live = GoLive.NEVER
    good = await provider.known_good(await provider.live())
    assert good is not None
    done = await provider.rollback(good, "bad")
    with pytest.raises(RollbackError, match="still does not serve dep-1 after 1m") as caught:
        await provider.wait_live(done, timedelta(minutes=1))
    assert clock.now() - T0 == timedelta(minutes=1)
    assert (caught.value.provider, caught.value.deployment_id) == ("vercel", "dep-1")
    assert served[-1] == BAD_RELEASE
    assert_secret_free(TOKEN, caught.value)


async def test_a_failed_switch_fails_the_wait_at_once(
    provider: VercelRollback, faults: Faults, clock: ManualClock
) -> None:
    faults.go_live = GoLive.FAIL
    good = await provider.known_good(await provider.live())
    assert good is not None
    done = await provider.rollback(good, "bad")
    with pytest.raises(RollbackError, match="dep-1 failed") as caught:
        await provider.wait_live(done, timedelta(minutes=5))
    assert clock.now() - T0 < DELAY + timedelta(seconds=2)
    assert not await provider.is_serving(good)
    assert_secret_free(TOKEN, caught.value)


async def test_check_reads_the_project(provider: VercelRollback, sent: list[httpx.Request]) -> None:
    await provider.check()
    assert [(r.method, r.url.path) for r in sent] == [("GET", f"/v9/projects/{PROJECT}")]
    assert sent[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("changes", "armed", "message"),
    [
        ({"token": Secret("wrong")}, None, "HTTP 403"),
        ({}, 401, "HTTP 401"),
        ({"team_id": "team_other"}, None, "HTTP 403"),
        (
            {"team_id": None},
            None,
            "project 'prj_acmeweb' not found in the token's personal account",
        ),
        ({"project": "prj_gone"}, None, "project 'prj_gone' not found in team team_acme"),
    ],
)
async def test_check_fails_on_what_people_must_fix(
    make: Make, faults: Faults, changes: dict[str, Any], armed: int | None, message: str
) -> None:
    if armed:
        faults.fail_next(1, armed)
    with pytest.raises(ConfigError, match=message) as caught:
        await make(**changes).check()
    assert_secret_free(TOKEN, caught.value)


async def test_an_unset_token_fails_the_call_naming_its_variable(make: Make) -> None:
    unset = EnvRef("${VERCEL_TOKEN}", ("VERCEL_TOKEN",), "targets.web.provider.token")
    provider = make(token=Secret(unset))  # building it needs no token
    with pytest.raises(ConfigError, match="VERCEL_TOKEN is not set"):
        await provider.check()


async def test_a_rate_limited_read_is_retried(
    provider: VercelRollback, faults: Faults, sent: list[httpx.Request]
) -> None:
    faults.fail_next(2, 429, operation="get_project")
    assert (await provider.live()).id == "dep-2"
    assert len(sent) == 3


@pytest.mark.parametrize("status", [400, 409, 500])
async def test_a_refused_rollback_is_reached_and_never_resent(
    provider: VercelRollback, faults: Faults, history: DeploymentHistory, status: int
) -> None:
    good = await provider.known_good(await provider.live())
    assert good is not None
    faults.fail_next(1, status, operation="rollback")
    with pytest.raises(RollbackError, match=f"HTTP {status}") as caught:
        await provider.rollback(good, "bad")
    assert (caught.value.reached, caught.value.deployment_id) == (True, "dep-1")
    assert history.count("rollback") == 1
    assert history.switches() == []
    assert_secret_free(TOKEN, caught.value)


async def test_a_stalled_rollback_may_have_arrived(
    make: Make, faults: Faults, history: DeploymentHistory, clock: ManualClock, base_url: str
) -> None:
    async with httpx.AsyncClient(timeout=0.2) as impatient:
        provider = make(client=impatient)
        good = await provider.known_good(await provider.live())
        assert good is not None
        faults.stall_next(1, 5, operation="rollback")
        with pytest.raises(RollbackError, match="may or may not have arrived") as caught:
            await provider.rollback(good, "bad")
    assert caught.value.reached is True
    assert history.count("rollback") == 1
    assert_secret_free(TOKEN, caught.value)


async def test_a_refused_connection_never_reached_vercel(make: Make) -> None:
    provider = make(api_url=refused_url())
    target = ProviderDeployment("dep-1", GOOD_RELEASE, T0, "READY", live=False)
    with pytest.raises(RollbackError, match="cannot connect") as sending:
        await provider.rollback(target, "bad")
    assert sending.value.reached is False
    with pytest.raises(RollbackError, match="no answer") as reading:
        await provider.live()
    assert_secret_free(TOKEN, sending.value, reading.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"targets": {"production": {"id": 7, "createdAt": 1, "readyState": "READY"}}},
            "targets.production.id",
        ),
        ({"targets": {"production": {"id": "dpl_x", "readyState": "READY"}}}, "createdAt"),
        ([], "the body"),
    ],
)
async def test_a_malformed_answer_is_a_rollback_error(
    clock: ManualClock, body: Any, message: str
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=body)

    config = VercelProvider(kind="vercel", project=PROJECT, token=Secret(TOKEN))
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(RollbackError, match=message) as caught:
            await VercelRollback(config, client, clock).live()
    assert_secret_free(TOKEN, caught.value)


async def test_a_production_less_project_has_no_live_deployment(clock: ManualClock) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"id": PROJECT, "targets": {}})

    config = VercelProvider(kind="vercel", project=PROJECT, token=Secret(TOKEN))
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        provider = VercelRollback(config, client, clock)
        with pytest.raises(RollbackError, match="no production deployment"):
            await provider.live()
        target = ProviderDeployment("dep-1", None, T0, "READY", live=False)
        assert not await provider.is_serving(target)


async def test_a_list_that_does_not_page_back_is_an_error_not_a_loop(clock: ManualClock) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        until = int(request.url.params["until"])  # answers a page that starts over
        return httpx.Response(200, json={"pagination": {"next": until}, "deployments": []})

    config = VercelProvider(kind="vercel", project=PROJECT, token=Secret(TOKEN))
    bad = ProviderDeployment("dpl_bad", BAD_RELEASE, T0, "READY", live=True)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(RollbackError, match="does not page back"):
            await VercelRollback(config, client, clock).known_good(bad)
