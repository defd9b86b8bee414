"""RenderRollback against the Render stand-in, over real loopback HTTP, with time moved by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.providers.helpers import (
    DELAY,
    T0,
    advancing_sleep,
    assert_secret_free,
    refused_url,
    served,
)
from watchdog.clock import ManualClock
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment
from watchdog.providers.render import RenderRollback
from watchdog.sandbox import render
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE, DeploymentHistory, GoLive
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve
from watchdog.secrets import Secret
from watchdog.settings import RenderProvider

TOKEN = "rnd_test_key_8e41d0"  # the stand-in's, and what must never leak
SERVICE = "srv-acmeapi"

Make = Callable[..., RenderRollback]


def standin(history: DeploymentHistory, clock: ManualClock, faults: Faults | None = None) -> Any:
    return render.create_app(history, token=TOKEN, service_id=SERVICE, clock=clock, faults=faults)


@pytest.fixture
def base_url(history: DeploymentHistory, clock: ManualClock, faults: Faults) -> Iterator[str]:
    with served(standin(history, clock, faults), faults) as url:
        yield url


@pytest.fixture
def make(base_url: str, client: httpx.AsyncClient, clock: ManualClock) -> Make:
    def make(client: httpx.AsyncClient = client, **changes: Any) -> RenderRollback:
        fields: dict[str, Any] = {
            "kind": "render",
            "api_url": base_url,
            "service_id": SERVICE,
            "token": Secret(TOKEN),
        }
        config = RenderProvider(**(fields | changes))
        return RenderRollback(config, client, clock, sleep=advancing_sleep(clock))

    return make


@pytest.fixture
def provider(make: Make) -> RenderRollback:
    return make()


def auto_deploy(base_url: str, set_to: str | None = None) -> str:
    """The stand-in service's ``autoDeploy``, after setting it to ``set_to`` if given."""
    url, headers = f"{base_url}/v1/services/{SERVICE}", {"Authorization": f"Bearer {TOKEN}"}
    if set_to is not None:
        httpx.patch(url, headers=headers, json={"autoDeploy": set_to}).raise_for_status()
    return str(httpx.get(url, headers=headers).json()["autoDeploy"])


async def good_one(provider: RenderRollback) -> ProviderDeployment:
    good = await provider.known_good(await provider.live())
    assert good is not None
    return good


async def test_live_is_the_newest_live_deploy(provider: RenderRollback) -> None:
    assert await provider.live() == ProviderDeployment(
        id="dep-2",
        release=BAD_RELEASE,
        created_at=T0 - timedelta(minutes=5),
        status="live",
        live=True,
    )


async def test_known_good_is_the_deactivated_deploy_before(provider: RenderRollback) -> None:
    assert await good_one(provider) == ProviderDeployment(
        id="dep-1",
        release=GOOD_RELEASE,
        created_at=T0 - timedelta(days=1),
        status="deactivated",
        live=False,
    )


async def test_known_good_skips_deploys_that_never_went_live(
    make: Make, clock: ManualClock
) -> None:
    history = DeploymentHistory("acme-api", clock, delay=DELAY)
    history.add("dep-good", GOOD_RELEASE, created_at=T0 - timedelta(days=1), live=True)
    history.deploy(BAD_RELEASE, outcome=GoLive.FAIL)  # build_failed
    history.deploy(BAD_RELEASE)  # goes live after the failed one
    clock.advance(DELAY)
    history.deploy(GOOD_RELEASE, outcome=GoLive.NEVER)  # still building
    with serve(standin(history, clock)) as url:
        provider = make(api_url=url)
        live = await provider.live()
        good = await provider.known_good(live)
    assert [(d.id, d.state) for d in history.deployments()][1:3] == [
        ("dep-3", "live"),
        ("dep-2", "failed"),
    ]
    assert (live.id, good and good.id) == ("dep-3", "dep-good")


async def test_lists_page_with_the_last_cursor(
    make: Make, clock: ManualClock, sent: list[httpx.Request]
) -> None:
    history = DeploymentHistory("acme-api", clock)
    for n in range(150):
        at = T0 - timedelta(hours=150 - n)
        history.add(f"dep-{n:03}", GOOD_RELEASE, created_at=at, live=n == 149)
    with serve(standin(history, clock)) as url:
        provider = make(api_url=url)
        live = await provider.live()
        old = ProviderDeployment("dep-020", GOOD_RELEASE, T0 - timedelta(hours=130), "live", False)
        good = await provider.known_good(old)
        first = ProviderDeployment(
            "dep-000", GOOD_RELEASE, T0 - timedelta(hours=150), "live", False
        )
        none = await provider.known_good(first)
    assert (live.id, good and good.id, none) == ("dep-149", "dep-019", None)
    lists = [r.url.params for r in sent if r.url.path.endswith("/deploys")]
    assert [(p.get_list("status"), p["limit"], "cursor" in p) for p in lists] == [
        (["live"], "100", False),
        (["live", "deactivated"], "100", False),
        (["live", "deactivated"], "100", True),  # dep-019 is the 131st
        (["live", "deactivated"], "100", False),
        (["live", "deactivated"], "100", True),
        (["live", "deactivated"], "100", True),  # an empty page ends the list
    ]


async def test_a_rollback_serves_the_good_commit_again_and_stops_auto_deploy(
    provider: RenderRollback,
    history: DeploymentHistory,
    clock: ManualClock,
    served: list[str],
    base_url: str,
) -> None:
    good = await good_one(provider)
    assert not await provider.is_serving(good)

    with capture_logs() as logs:
        done = await provider.rollback(good, "error rate 4.2% > 1% for 2m")

    assert (done.to, done.handle) == (good, "dep-3")
    assert len(done.notes) == 1
    assert "auto-deploy of render service srv-acmeapi is now off" in done.notes[0].lower()
    assert "turn it back on after the fix" in done.notes[0]
    assert auto_deploy(base_url) == "no"
    assert [log["event"] for log in logs] == ["render.autodeploy_disabled"]
    assert served[-1] == BAD_RELEASE
    await provider.wait_live(done, timedelta(minutes=5))
    assert DELAY <= clock.now() - T0 < DELAY + timedelta(seconds=5)
    assert served[-1] == GOOD_RELEASE
    assert await provider.is_serving(good)  # dep-3 is live, of dep-1's commit
    assert (await provider.live()).id == "dep-3"
    assert (history.count("rollback"), history.count("update_service")) == (1, 1)
    assert_secret_free(TOKEN, done.notes, logs)


async def test_auto_deploy_is_left_alone_when_configured_so(
    make: Make, history: DeploymentHistory, base_url: str
) -> None:
    provider = make(disable_autodeploy=False)
    done = await provider.rollback(await good_one(provider), "bad")
    assert done.notes == ()
    assert (history.count("update_service"), auto_deploy(base_url)) == (0, "yes")


async def test_auto_deploy_already_off_is_not_touched_and_needs_no_note(
    provider: RenderRollback, history: DeploymentHistory, base_url: str
) -> None:
    assert auto_deploy(base_url, set_to="no") == "no"
    with capture_logs() as logs:
        done = await provider.rollback(await good_one(provider), "bad")
    assert (done.handle, done.notes) == ("dep-3", ())
    assert [log["event"] for log in logs] == ["render.autodeploy_already_off"]
    assert (history.count("rollback"), history.count("update_service")) == (1, 1)  # ours only
    assert auto_deploy(base_url) == "no"


@pytest.mark.parametrize(
    ("operation", "times", "note", "patches"),
    [
        ("update_service", 1, "AUTO-DEPLOY IS STILL ON", 1),
        ("get_service", 4, "AUTO-DEPLOY MAY STILL BE ON", 0),  # every attempt of the read
    ],
)
async def test_a_failed_auto_deploy_switch_keeps_the_rollback_and_says_so(
    provider: RenderRollback,
    faults: Faults,
    history: DeploymentHistory,
    base_url: str,
    operation: str,
    times: int,
    note: str,
    patches: int,
) -> None:
    faults.fail_next(times, 500, operation=operation)
    with capture_logs() as logs:
        done = await provider.rollback(await good_one(provider), "bad")
    assert done.handle == "dep-3"
    assert f"{note} for Render service srv-acmeapi" in done.notes[0]
    assert auto_deploy(base_url) == "yes"
    ours = [(log["event"], log["log_level"]) for log in logs if log["event"].startswith("render.")]
    assert ours == [("render.autodeploy_left_on", "warning")]  # after stamina's retries, if any
    assert (history.count("rollback"), history.count("update_service")) == (1, patches)
    assert_secret_free(TOKEN, done.notes, logs)


async def test_a_rollback_that_never_goes_live_times_out_naming_the_wait(
    provider: RenderRollback, faults: Faults, clock: ManualClock
) -> None:
    faults.go_live = GoLive.NEVER
    done = await provider.rollback(await good_one(provider), "bad")
    with pytest.raises(RollbackError, match="dep-3 is still update_in_progress after 2m") as caught:
        await provider.wait_live(done, timedelta(minutes=2))
    assert clock.now() - T0 == timedelta(minutes=2)
    assert (caught.value.provider, caught.value.deployment_id) == ("render", "dep-1")
    assert_secret_free(TOKEN, caught.value)


async def test_a_rollback_that_fails_fails_the_wait_at_once(
    provider: RenderRollback, faults: Faults, clock: ManualClock, served: list[str]
) -> None:
    faults.go_live = GoLive.FAIL
    good = await good_one(provider)
    done = await provider.rollback(good, "bad")
    with pytest.raises(RollbackError, match="dep-3 ended update_failed") as caught:
        await provider.wait_live(done, timedelta(minutes=5))
    assert clock.now() - T0 < DELAY + timedelta(seconds=5)
    assert served[-1] == BAD_RELEASE
    assert not await provider.is_serving(good)
    assert_secret_free(TOKEN, caught.value)


async def test_check_reads_the_service(provider: RenderRollback, sent: list[httpx.Request]) -> None:
    await provider.check()
    assert [(r.method, r.url.path) for r in sent] == [("GET", f"/v1/services/{SERVICE}")]
    assert sent[0].headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"token": Secret("wrong")}, "HTTP 401"),
        ({"service_id": "srv-gone"}, "service 'srv-gone' not found"),
    ],
)
async def test_check_fails_on_what_people_must_fix(
    make: Make, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        await make(**changes).check()
    assert_secret_free(TOKEN, caught.value)


async def test_a_rate_limited_read_is_retried(
    provider: RenderRollback, faults: Faults, sent: list[httpx.Request]
) -> None:
    faults.fail_next(2, 429, operation="list_deploys")
    assert (await provider.live()).id == "dep-2"
    assert len(sent) == 3


@pytest.mark.parametrize("status", [400, 409, 500])
async def test_a_refused_rollback_is_reached_and_never_resent(
    provider: RenderRollback, faults: Faults, history: DeploymentHistory, status: int
) -> None:
    good = await good_one(provider)
    faults.fail_next(1, status, operation="rollback")
    with pytest.raises(RollbackError, match=f"HTTP {status}") as caught:
        await provider.rollback(good, "bad")
    assert (caught.value.reached, caught.value.deployment_id) == (True, "dep-1")
    assert (history.count("rollback"), history.count("update_service")) == (1, 0)
    assert_secret_free(TOKEN, caught.value)


async def test_a_stalled_rollback_may_have_arrived(
    make: Make, faults: Faults, history: DeploymentHistory
) -> None:
    async with httpx.AsyncClient(timeout=0.2) as impatient:
        provider = make(client=impatient)
        good = await good_one(provider)
        faults.stall_next(1, 5, operation="rollback")
        with pytest.raises(RollbackError, match="may or may not have arrived") as caught:
            await provider.rollback(good, "bad")
    assert caught.value.reached is True
    assert history.count("rollback") == 1
    assert_secret_free(TOKEN, caught.value)


async def test_a_refused_connection_never_reached_render(make: Make) -> None:
    provider = make(api_url=refused_url())
    target = ProviderDeployment("dep-1", GOOD_RELEASE, T0, "deactivated", live=False)
    with pytest.raises(RollbackError, match="cannot connect") as sending:
        await provider.rollback(target, "bad")
    assert sending.value.reached is False
    with pytest.raises(RollbackError, match="no answer") as reading:
        await provider.live()
    assert_secret_free(TOKEN, sending.value, reading.value)


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        (
            "GET",
            [{"cursor": "c1", "deploy": {"id": "dep-1", "status": "live"}}],
            "0.deploy.createdAt",
        ),
        (
            "GET",
            [
                {
                    "cursor": "c1",
                    "deploy": {"id": "dep-1", "status": "live", "createdAt": "2026-01-28T12:00:00"},
                }
            ],
            "0.deploy.createdAt",
        ),
        ("GET", {"deploys": []}, "the body"),
        ("POST", {"status": "update_in_progress"}, "POST /v1/services/srv-acmeapi/rollback: id"),
        ("POST", None, "POST /v1/services/srv-acmeapi/rollback: the body"),
    ],
)
async def test_a_malformed_answer_is_a_rollback_error(
    clock: ManualClock, method: str, body: Any, message: str
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(201, content=b"") if body is None else httpx.Response(200, json=body)

    config = RenderProvider(kind="render", service_id=SERVICE, token=Secret(TOKEN))
    target = ProviderDeployment("dep-1", GOOD_RELEASE, T0, "deactivated", live=False)
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        provider = RenderRollback(config, client, clock)
        with pytest.raises(RollbackError, match=message) as caught:
            await (provider.live() if method == "GET" else provider.rollback(target, "bad"))
    assert caught.value.reached is True
    assert_secret_free(TOKEN, caught.value)


async def test_a_deploy_without_a_commit_serves_only_as_itself(clock: ManualClock) -> None:
    live = {"id": "dep-9", "status": "live", "createdAt": "2026-01-28T12:00:00Z"}

    def answer(request: httpx.Request) -> httpx.Response:
        listed = [] if "cursor" in request.url.params else [{"cursor": "c9", "deploy": live}]
        return httpx.Response(200, json=listed)

    config = RenderProvider(kind="render", service_id=SERVICE, token=Secret(TOKEN))
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        provider = RenderRollback(config, client, clock)
        image = await provider.live()
        assert (image.id, image.release) == ("dep-9", None)
        other = ProviderDeployment("dep-1", None, T0 - timedelta(days=1), "deactivated", False)
        assert await provider.is_serving(image)
        assert not await provider.is_serving(other)


async def test_a_list_that_repeats_its_page_is_an_error_not_a_loop(clock: ManualClock) -> None:
    old = {"id": "dep-1", "status": "deactivated", "createdAt": "2026-01-27T12:00:00Z"}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"cursor": "c1", "deploy": old}])  # ignores the cursor

    config = RenderProvider(kind="render", service_id=SERVICE, token=Secret(TOKEN))
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        with pytest.raises(RollbackError, match="repeats a page"):
            await RenderRollback(config, client, clock).live()
