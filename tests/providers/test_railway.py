"""RailwayRollback against the Railway stand-in, over real loopback HTTP, on a manual clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.providers.helpers import DELAY, T0, advancing_sleep, refused_url, served
from watchdog.clock import ManualClock
from watchdog.configfile import EnvRef
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment
from watchdog.providers.railway import POLL, RailwayRollback
from watchdog.sandbox import railway
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE, DeploymentHistory, GoLive
from watchdog.sandbox.faults import Faults
from watchdog.secrets import Secret
from watchdog.settings import RailwayProvider

TOKEN = "railway-account-token"
PROJECT_TOKEN = "railway-project-token"
IDS = {"project_id": "prj-1", "environment_id": "env-1", "service_id": "svc-1"}

Make = Callable[..., RailwayRollback]


@pytest.fixture
def url(history: DeploymentHistory, clock: ManualClock, faults: Faults) -> Iterator[str]:
    app = railway.create_app(
        history,
        token=TOKEN,
        project_token=PROJECT_TOKEN,
        project_id=IDS["project_id"],
        environment_id=IDS["environment_id"],
        service_id=IDS["service_id"],
        clock=clock,
        faults=faults,
    )
    with served(app, faults) as base_url:
        yield base_url


@pytest.fixture
def make(url: str, client: httpx.AsyncClient, clock: ManualClock) -> Make:
    """A provider of the stand-in's service; keyword arguments override the config."""

    def build(**overrides: Any) -> RailwayRollback:
        fields: dict[str, Any] = {
            "kind": "railway",
            "api_url": url,
            **IDS,
            "token": Secret(PROJECT_TOKEN),
        }
        config = RailwayProvider(**(fields | overrides))
        return RailwayRollback(config, client, clock, sleep=advancing_sleep(clock))

    return build


async def good(provider: RailwayRollback) -> ProviderDeployment:
    found = await provider.known_good(await provider.live())
    assert found is not None
    return found


async def test_live_is_the_newest_success_and_known_good_the_one_before(make: Make) -> None:
    provider = make()
    live = await provider.live()
    assert (live.id, live.release, live.status, live.live) == (
        "dep-2",
        BAD_RELEASE,
        "SUCCESS",
        True,
    )
    assert live.created_at == T0 - timedelta(minutes=5)
    before = await provider.known_good(live)
    assert before is not None
    assert (before.id, before.release, before.status, before.live) == (
        "dep-1",
        GOOD_RELEASE,
        "REMOVED",
        False,
    )
    assert await provider.known_good(before) is None


async def test_known_good_pages_past_the_first_page(
    clock: ManualClock, served: list[str], make: Make, history: DeploymentHistory
) -> None:
    for n in range(3, 31):
        history.add(f"dep-{n}", f"{n:040x}", created_at=T0 + timedelta(minutes=n), live=True)
    provider = make()
    assert (await provider.live()).id == "dep-30"
    third = next(d for d in history.deployments() if d.id == "dep-3")
    before = ProviderDeployment("dep-3", third.release, third.created_at, "REMOVED", False)
    found = await provider.known_good(before)
    assert found is not None
    assert (found.id, found.release) == ("dep-2", BAD_RELEASE)


async def test_rollback_moves_production_back_once_and_waits_for_it(
    make: Make, history: DeploymentHistory, clock: ManualClock, served: list[str]
) -> None:
    provider = make()
    to = await good(provider)
    assert not await provider.is_serving(to)

    rollback = await provider.rollback(to, "error rate 12% > 5%")

    assert rollback.to == to
    assert rollback.handle is None
    assert history.count("deploymentRollback") == 1
    assert history.received()[0].subject == "dep-1"
    start = clock.now()
    await provider.wait_live(rollback, timedelta(minutes=5))
    assert DELAY <= clock.now() - start < DELAY + POLL
    assert served[-1] == GOOD_RELEASE
    live = await provider.live()
    assert (live.id, live.release) == ("dep-3", GOOD_RELEASE)
    assert await provider.is_serving(to)
    assert history.count("deploymentRollback") == 1


@pytest.mark.parametrize(
    ("kind", "token"), [("project", PROJECT_TOKEN), ("account", TOKEN)], ids=["project", "bearer"]
)
async def test_each_token_kind_goes_in_its_own_header(make: Make, kind: str, token: str) -> None:
    provider = make(token_kind=kind, token=Secret(token))
    await provider.check()
    assert (await provider.live()).id == "dep-2"


async def test_not_authorized_is_a_config_error(make: Make, history: DeploymentHistory) -> None:
    provider = make(token_kind="project", token=Secret(TOKEN))
    with pytest.raises(ConfigError, match=r"Not Authorized.*token_kind"):
        await provider.check()
    with pytest.raises(ConfigError, match="Not Authorized"):
        await provider.rollback(await good(make()), "drill")
    assert history.switches() == []


async def test_other_ids_fail_the_check(make: Make) -> None:
    with pytest.raises(ConfigError, match="no deployments of service svc-other"):
        await make(service_id="svc-other").check()
    with pytest.raises(RollbackError, match="no SUCCESS deployment"):
        await make(service_id="svc-other").live()


async def test_an_unset_token_fails_the_calls_not_the_construction(make: Make) -> None:
    unset = EnvRef("${RAILWAY_TOKEN}", ("RAILWAY_TOKEN",), "watchdog.yaml:9: token")
    provider = make(token=Secret(unset))
    with pytest.raises(ConfigError, match="RAILWAY_TOKEN is not set"):
        await provider.check()


async def test_a_429_on_a_read_is_retried(make: Make, faults: Faults) -> None:
    faults.fail_next(2, 429, operation="deployments")
    assert (await make().live()).id == "dep-2"


async def test_a_500_on_the_rollback_reached_railway_and_is_not_resent(
    make: Make, faults: Faults, history: DeploymentHistory
) -> None:
    provider = make()
    to = await good(provider)
    faults.fail_next(1, 500, operation="deploymentRollback")
    with pytest.raises(RollbackError, match="HTTP 500") as caught:
        await provider.rollback(to, "drill")
    assert (caught.value.reached, caught.value.deployment_id, caught.value.provider) == (
        True,
        "dep-1",
        "railway",
    )
    assert history.count("deploymentRollback") == 1
    assert history.switches() == []


async def test_a_refused_connection_never_reached_railway(
    make: Make, history: DeploymentHistory
) -> None:
    provider = make()
    to = await good(provider)
    elsewhere = make(api_url=refused_url())
    with pytest.raises(RollbackError, match="cannot connect") as caught:
        await elsewhere.rollback(to, "drill")
    assert caught.value.reached is False
    with pytest.raises(RollbackError, match="no answer"):
        await elsewhere.live()
    assert history.count("deploymentRollback") == 0


async def test_a_graphql_error_is_a_rollback_error_with_railways_message(make: Make) -> None:
    provider = make()
    with pytest.raises(RollbackError, match="Deployment cannot be rolled back to") as caught:
        await provider.rollback(await provider.live(), "drill")
    assert caught.value.deployment_id == "dep-2"


async def test_false_is_a_rollback_error(clock: ManualClock) -> None:
    sent: list[Any] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.read())
        return httpx.Response(200, json={"data": {"deploymentRollback": False}})

    config = RailwayProvider(kind="railway", **IDS, token=Secret(TOKEN), token_kind="account")
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        provider = RailwayRollback(config, client, clock)
        to = ProviderDeployment("dep-1", GOOD_RELEASE, T0, "REMOVED", False)
        with pytest.raises(RollbackError, match="refused the rollback to dep-1"):
            await provider.rollback(to, "drill")
    assert len(sent) == 1
    assert b"deploymentRollback(id: $id) }" in sent[0]


@pytest.mark.parametrize(
    ("outcome", "message"),
    [
        (GoLive.NEVER, "not live after 2m"),
        (GoLive.FAIL, "dep-3 of the rollback to dep-1 is FAILED"),
    ],
)
async def test_a_rollback_that_does_not_go_live_is_a_rollback_error(
    make: Make,
    faults: Faults,
    clock: ManualClock,
    served: list[str],
    outcome: GoLive,
    message: str,
) -> None:
    provider = make()
    to = await good(provider)
    faults.go_live = outcome
    rollback = await provider.rollback(to, "drill")
    start = clock.now()
    with pytest.raises(RollbackError, match=message):
        await provider.wait_live(rollback, timedelta(minutes=2))
    assert clock.now() - start <= timedelta(minutes=2)
    assert served[-1] == BAD_RELEASE
    assert not await provider.is_serving(to)
