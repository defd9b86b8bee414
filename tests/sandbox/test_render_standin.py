"""The Render stand-in answers as api-contracts.md §2 says, over real loopback HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from watchdog.clock import ManualClock
from watchdog.sandbox import render
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE, DeploymentHistory, GoLive
from watchdog.sandbox.faults import Faults

from .conftest import T0, serving

DELAY = timedelta(seconds=40)
TOKEN = "rnd_sandbox_key"
SERVICE = "srv-acmeapi"


@pytest.fixture
def delay() -> timedelta:
    return DELAY


@pytest.fixture
def base_url(history: DeploymentHistory, clock: ManualClock, faults: Faults) -> Iterator[str]:
    app = render.create_app(history, token=TOKEN, service_id=SERVICE, clock=clock, faults=faults)
    with serving(app, faults) as url:
        yield url


@pytest.fixture
def api(base_url: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"{base_url}/v1", headers=headers) as client:
        yield client


def statuses(api: httpx.Client) -> dict[str, str]:
    listed = api.get(f"/services/{SERVICE}/deploys").json()
    return {item["deploy"]["id"]: item["deploy"]["status"] for item in listed}


def test_list_is_newest_first_cursor_and_deploy(api: httpx.Client) -> None:
    response = api.get(f"/services/{SERVICE}/deploys")
    assert response.status_code == 200
    listed = response.json()
    assert [item.keys() for item in listed] == [{"cursor", "deploy"}] * 2
    live, old = (item["deploy"] for item in listed)
    assert (live["id"], live["status"], live["trigger"]) == ("dep-2", "live", "new_commit")
    assert live["commit"]["id"] == BAD_RELEASE
    assert live["createdAt"] == "2026-01-28T11:55:00Z"
    assert (old["id"], old["status"], old["commit"]["id"]) == ("dep-1", "deactivated", GOOD_RELEASE)
    assert listed[0]["cursor"] != "dep-2"  # opaque, not the deploy id


def test_cursor_pages_until_an_empty_page(api: httpx.Client, history: DeploymentHistory) -> None:
    for _ in range(3):
        history.deploy(BAD_RELEASE)
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 2}
    while page := api.get(f"/services/{SERVICE}/deploys", params=params).json():
        assert len(page) <= 2
        seen += [item["deploy"]["id"] for item in page]
        params["cursor"] = page[-1]["cursor"]
    assert seen == ["dep-5", "dep-4", "dep-3", "dep-2", "dep-1"]


@pytest.mark.parametrize(
    "params",
    [{"limit": 101}, {"limit": 0}, {"cursor": "bm9wZQ"}, {"status": "shiny"}],
)
def test_bad_list_parameters_are_400_with_render_errors(
    api: httpx.Client, params: dict[str, str | int]
) -> None:
    response = api.get(f"/services/{SERVICE}/deploys", params=params)
    assert response.status_code == 400
    assert {"id", "message"} <= response.json().keys()


def test_status_filter_is_repeatable(api: httpx.Client, history: DeploymentHistory) -> None:
    history.deploy(GOOD_RELEASE)
    params = {"status": ["build_in_progress", "deactivated"]}
    listed = api.get(f"/services/{SERVICE}/deploys", params=params).json()
    assert [(i["deploy"]["id"], i["deploy"]["status"]) for i in listed] == [
        ("dep-3", "build_in_progress"),
        ("dep-1", "deactivated"),
    ]


def test_get_one_deploy(api: httpx.Client) -> None:
    assert api.get(f"/services/{SERVICE}/deploys/dep-1").json()["status"] == "deactivated"
    missing = api.get(f"/services/{SERVICE}/deploys/dep-9")
    assert missing.status_code == 404
    assert missing.json()["id"] == "not_found"


@pytest.mark.parametrize(
    ("headers", "path", "status"),
    [
        ({}, f"/services/{SERVICE}/deploys", 401),
        ({"Authorization": "Bearer nope"}, f"/services/{SERVICE}/deploys", 401),
        ({"Authorization": f"Bearer {TOKEN}"}, "/services/srv-other/deploys", 404),
    ],
)
def test_auth_and_unknown_services(
    base_url: str, headers: dict[str, str], path: str, status: int
) -> None:
    response = httpx.get(f"{base_url}/v1{path}", headers=headers)
    assert response.status_code == status
    assert {"id", "message"} <= response.json().keys()


def test_rollback_creates_a_deploy_that_updates_then_goes_live(
    api: httpx.Client, history: DeploymentHistory, clock: ManualClock, served: list[str]
) -> None:
    response = api.post(f"/services/{SERVICE}/rollback", json={"deployId": "dep-1"})
    assert response.status_code == 201
    new = response.json()
    assert (new["id"], new["status"], new["trigger"]) == ("dep-3", "update_in_progress", "rollback")
    assert new["commit"]["id"] == GOOD_RELEASE
    assert new["finishedAt"] is None
    assert statuses(api) == {"dep-3": "update_in_progress", "dep-2": "live", "dep-1": "deactivated"}
    clock.advance(DELAY)
    assert statuses(api) == {"dep-3": "live", "dep-2": "deactivated", "dep-1": "deactivated"}
    assert api.get(f"/services/{SERVICE}/deploys/dep-3").json()["finishedAt"] == (
        "2026-01-28T12:00:40Z"
    )
    assert served[-1] == GOOD_RELEASE
    assert history.count("rollback") == 1


def test_a_rollback_that_fails_leaves_the_bad_deploy_live(
    api: httpx.Client, faults: Faults, clock: ManualClock
) -> None:
    faults.go_live = GoLive.FAIL
    api.post(f"/services/{SERVICE}/rollback", json={"deployId": "dep-1"})
    clock.advance(DELAY)
    assert statuses(api) == {"dep-3": "update_failed", "dep-2": "live", "dep-1": "deactivated"}


@pytest.mark.parametrize(
    ("body", "status"),
    [({}, 400), ({"deployId": 7}, 400), ({"deployId": "dep-9"}, 404)],
)
def test_rollback_needs_a_known_deploy(
    api: httpx.Client, history: DeploymentHistory, body: dict[str, object], status: int
) -> None:
    response = api.post(f"/services/{SERVICE}/rollback", json=body)
    assert response.status_code == status
    assert {"id", "message"} <= response.json().keys()
    assert history.switches() == []


def test_trigger_a_deploy_of_a_commit(api: httpx.Client, clock: ManualClock) -> None:
    response = api.post(f"/services/{SERVICE}/deploys", json={"commitId": GOOD_RELEASE})
    assert response.status_code == 201
    deploy = response.json()
    assert (deploy["status"], deploy["trigger"], deploy["commit"]["id"]) == (
        "build_in_progress",
        "api",
        GOOD_RELEASE,
    )
    clock.advance(DELAY)
    assert statuses(api)[deploy["id"]] == "live"


def test_deploy_only_cannot_take_a_commit(api: httpx.Client) -> None:
    body = {"deployMode": "deploy_only", "commitId": GOOD_RELEASE}
    assert api.post(f"/services/{SERVICE}/deploys", json=body).status_code == 400
    empty = api.post(f"/services/{SERVICE}/deploys")
    assert (empty.status_code, empty.json()["commit"]["id"]) == (201, BAD_RELEASE)


def test_auto_deploy_can_be_turned_off(api: httpx.Client, history: DeploymentHistory) -> None:
    service = api.get(f"/services/{SERVICE}").json()
    assert (service["id"], service["autoDeploy"], service["type"]) == (
        SERVICE,
        "yes",
        "web_service",
    )
    patched = api.patch(f"/services/{SERVICE}", json={"autoDeploy": "no"})
    assert (patched.status_code, patched.json()["autoDeploy"]) == (200, "no")
    assert api.get(f"/services/{SERVICE}").json()["autoDeploy"] == "no"
    assert api.patch(f"/services/{SERVICE}", json={"autoDeploy": "maybe"}).status_code == 400
    assert history.count("update_service") == 1  # the invalid body never reached the service


def test_429_has_ratelimit_headers_and_retry_after(
    api: httpx.Client, faults: Faults, history: DeploymentHistory
) -> None:
    reset = T0 + timedelta(seconds=45)
    faults.rate_limit(reset, operation="rollback")
    response = api.post(f"/services/{SERVICE}/rollback", json={"deployId": "dep-1"})
    assert response.status_code == 429
    assert response.json()["id"] == "rate_limited"
    assert response.headers["Retry-After"] == "45"
    assert response.headers["Ratelimit-Remaining"] == "0"
    assert response.headers["Ratelimit-Reset"] == str(int(reset.timestamp()))
    assert "Ratelimit-Limit" in response.headers
    assert api.get(f"/services/{SERVICE}/deploys").status_code == 200  # only rollback throttled
    assert (history.count("rollback"), history.switches()) == (1, [])


def test_an_armed_409_and_500_are_render_errors(api: httpx.Client, faults: Faults) -> None:
    faults.fail_next(1, 409)
    faults.fail_next(1, 500)
    conflict = api.post(f"/services/{SERVICE}/deploys")
    broken = api.get(f"/services/{SERVICE}/deploys")
    assert (conflict.status_code, conflict.json()["id"]) == (409, "conflict")
    assert (broken.status_code, broken.json()["id"]) == (500, "internal_server_error")


def test_an_armed_garbled_answer_is_a_200_that_is_not_json(
    api: httpx.Client, faults: Faults
) -> None:
    faults.garble_next(1, operation="list_deploys")
    garbled = api.get(f"/services/{SERVICE}/deploys")
    assert garbled.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        garbled.json()
    assert api.get(f"/services/{SERVICE}/deploys").json()[0]["deploy"]["id"] == "dep-2"


def test_webhook_signature_matches_the_contract_test_vector() -> None:
    signature = render.render_signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_webhook_refers_to_an_event_the_api_can_fetch(
    api: httpx.Client, history: DeploymentHistory, clock: ManualClock
) -> None:
    api.post(f"/services/{SERVICE}/rollback", json={"deployId": "dep-1"})
    clock.advance(DELAY)
    [finished] = history.finished()
    secret = "whsec_" + base64.b64encode(b"render-sandbox-secret").decode()
    delivery = render.render_webhook(
        history, finished.id, service_id=SERVICE, secret=secret, msg_id="msg_1"
    )
    headers = delivery.headers
    assert (headers["webhook-id"], headers["webhook-timestamp"]) == (
        "msg_1",
        str(int((T0 + DELAY).timestamp())),
    )
    signed = b"msg_1." + headers["webhook-timestamp"].encode() + b"." + delivery.body
    mac = hmac.new(b"render-sandbox-secret", signed, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
    payload = json.loads(delivery.body)
    assert payload["type"] == "deploy_ended"
    assert payload["data"] == {
        "id": finished.id,
        "serviceId": SERVICE,
        "serviceName": "acme-api",
        "status": "succeeded",
    }
    event = api.get(f"/events/{finished.id}").json()
    assert event["details"] == {"deployId": "dep-3", "deployStatus": "succeeded"}
    assert api.get("/events/evt-404").status_code == 404
