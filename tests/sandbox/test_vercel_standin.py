"""The Vercel stand-in answers as api-contracts.md §1 says, over real loopback HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from watchdog.clock import ManualClock
from watchdog.sandbox import vercel
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE, DeploymentHistory, GoLive
from watchdog.sandbox.faults import Faults

from .conftest import T0, serving

DELAY = timedelta(seconds=20)
TOKEN = "vercel-sandbox-token"
TEAM = "team_1a2b3c"
PROJECT = "prj_acmeweb"


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


@pytest.fixture
def history(clock: ManualClock, served: list[str]) -> DeploymentHistory:
    """dpl_good served until dpl_bad replaced it; a preview was built in between."""
    history = DeploymentHistory("acme-web", clock, delay=DELAY, on_live=served.append)
    history.add("dpl_good", GOOD_RELEASE, created_at=T0 - timedelta(days=1), live=True)
    history.add_preview("dpl_preview", BAD_RELEASE, created_at=T0 - timedelta(hours=1))
    history.add("dpl_bad", BAD_RELEASE, created_at=T0 - timedelta(minutes=5), live=True)
    return history


@pytest.fixture
def base_url(history: DeploymentHistory, clock: ManualClock, faults: Faults) -> Iterator[str]:
    app = vercel.create_app(
        history,
        token=TOKEN,
        team_id=TEAM,
        project_id=PROJECT,
        clock=clock,
        team_slug="acme",
        faults=faults,
    )
    with serving(app, faults) as url:
        yield url


@pytest.fixture
def api(base_url: str) -> Iterator[httpx.Client]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=base_url, headers=headers, params={"teamId": TEAM}) as client:
        yield client


def project(api: httpx.Client) -> Any:
    response = api.get(f"/v9/projects/{PROJECT}")
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("version", ["v6", "v7"])
def test_list_is_newest_first_with_the_contract_fields(api: httpx.Client, version: str) -> None:
    response = api.get(f"/{version}/deployments", params={"projectId": PROJECT})
    assert response.status_code == 200
    body = response.json()
    assert [d["uid"] for d in body["deployments"]] == ["dpl_bad", "dpl_preview", "dpl_good"]
    assert body["pagination"] == {"count": 3, "next": None, "prev": ms(T0 - timedelta(minutes=5))}
    bad, preview, good = body["deployments"]
    required = {"uid", "name", "projectId", "url", "created", "createdAt", "readyState", "type"}
    assert required | {"creator", "inspectorUrl"} <= bad.keys()
    assert (bad["readyState"], bad["state"], bad["readySubstate"]) == ("READY", "READY", "PROMOTED")
    assert bad["target"] == "production"
    assert bad["meta"]["githubCommitSha"] == BAD_RELEASE
    assert bad["createdAt"] == bad["created"] == ms(T0 - timedelta(minutes=5))
    assert (bad["projectId"], bad["name"]) == (PROJECT, "acme-web")
    assert (preview["target"], preview["readySubstate"]) == (None, "STAGED")
    assert good["isRollbackCandidate"] is True
    assert bad["isRollbackCandidate"] is False


def test_until_pages_through_the_list(api: httpx.Client) -> None:
    seen: list[str] = []
    params: dict[str, str | int] = {"projectId": "acme-web", "limit": 2}
    while True:
        body = api.get("/v7/deployments", params=params).json()
        seen += [d["uid"] for d in body["deployments"]]
        assert body["pagination"]["count"] == len(body["deployments"])
        if body["pagination"]["next"] is None:
            break
        params["until"] = body["pagination"]["next"]
    assert seen == ["dpl_bad", "dpl_preview", "dpl_good"]


def test_list_filters_by_target_state_sha_and_rollback_candidate(
    api: httpx.Client, history: DeploymentHistory, clock: ManualClock
) -> None:
    production = api.get("/v6/deployments", params={"target": "production"}).json()
    assert [d["uid"] for d in production["deployments"]] == ["dpl_bad", "dpl_good"]
    history.deploy(GOOD_RELEASE)
    building = api.get("/v6/deployments", params={"state": "BUILDING,ERROR"}).json()
    assert [(d["uid"], d["readyState"]) for d in building["deployments"]] == [("dep-4", "BUILDING")]
    candidates = api.get("/v6/deployments", params={"rollbackCandidate": "true"}).json()
    assert [d["uid"] for d in candidates["deployments"]] == ["dpl_good"]
    by_sha = api.get("/v6/deployments", params={"sha": BAD_RELEASE}).json()
    assert [d["uid"] for d in by_sha["deployments"]] == ["dpl_bad", "dpl_preview"]
    bad = api.get("/v6/deployments", params={"state": "SHINY"})
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "bad_request"


def test_get_one_deployment_by_id_or_url(api: httpx.Client) -> None:
    by_id = api.get("/v13/deployments/dpl_bad")
    assert by_id.status_code == 200
    body = by_id.json()
    assert (body["id"], body["status"], body["readyState"], body["aliasAssigned"]) == (
        "dpl_bad",
        "READY",
        "READY",
        True,
    )
    assert body["alias"] == ["acme-web.vercel.app"]
    assert body["gitSource"]["sha"] == BAD_RELEASE
    assert api.get(f"/v13/deployments/{body['url']}").json()["id"] == "dpl_bad"
    missing = api.get("/v13/deployments/dpl_nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"code": "not_found", "message": "The deployment was not found"}
    }


@pytest.mark.parametrize(
    ("headers", "params", "status", "code"),
    [
        ({}, {"teamId": TEAM}, 403, "forbidden"),
        ({"Authorization": "Bearer wrong"}, {"teamId": TEAM}, 403, "forbidden"),
        ({"Authorization": f"Bearer {TOKEN}"}, {"teamId": "team_other"}, 403, "forbidden"),
        ({"Authorization": f"Bearer {TOKEN}"}, {"slug": "other"}, 403, "forbidden"),
        ({"Authorization": f"Bearer {TOKEN}"}, {}, 404, "not_found"),
    ],
)
def test_token_and_team_are_required(
    base_url: str, headers: dict[str, str], params: dict[str, str], status: int, code: str
) -> None:
    response = httpx.get(f"{base_url}/v9/projects/{PROJECT}", headers=headers, params=params)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_the_team_slug_works_like_its_id(base_url: str) -> None:
    response = httpx.get(
        f"{base_url}/v9/projects/acme-web",
        headers={"Authorization": f"Bearer {TOKEN}"},
        params={"slug": "acme"},
    )
    assert response.json()["id"] == PROJECT


def test_rollback_is_accepted_empty_and_done_after_the_delay(
    api: httpx.Client, history: DeploymentHistory, clock: ManualClock, served: list[str]
) -> None:
    response = api.post(
        f"/v1/projects/{PROJECT}/rollback/dpl_good", params={"description": "error rate 4%"}
    )
    assert (response.status_code, response.content) == (201, b"")
    pending = project(api)
    assert pending["targets"]["production"]["id"] == "dpl_bad"
    expected = {"fromDeploymentId": "dpl_bad", "toDeploymentId": "dpl_good", "requestedAt": ms(T0)}
    assert pending["lastRollbackTarget"] == {**expected, "jobStatus": "in-progress"}
    assert pending["lastAliasRequest"] == {
        **expected,
        "jobStatus": "in-progress",
        "type": "rollback",
    }
    assert pending["rollbackDescription"]["description"] == "error rate 4%"
    assert served[-1] == BAD_RELEASE

    clock.advance(DELAY)
    done = project(api)
    assert done["targets"]["production"]["id"] == "dpl_good"
    assert done["lastRollbackTarget"]["jobStatus"] == "succeeded"
    assert served[-1] == GOOD_RELEASE
    assert history.count("rollback") == 1


def test_promote_answers_202_and_shows_as_a_promote(api: httpx.Client, clock: ManualClock) -> None:
    response = api.post("/v10/projects/acme-web/promote/dpl_good")
    assert (response.status_code, response.content) == (202, b"")
    clock.advance(DELAY)
    body = project(api)
    assert body["lastAliasRequest"]["type"] == "promote"
    assert body["lastAliasRequest"]["jobStatus"] == "succeeded"
    assert body["lastRollbackTarget"] is None


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        (f"/v1/projects/{PROJECT}/rollback/dpl_nope", 404, "not_found"),
        ("/v1/projects/prj_other/rollback/dpl_good", 404, "not_found"),
        (f"/v1/projects/{PROJECT}/rollback/dpl_preview", 400, "bad_request"),
        (f"/v10/projects/{PROJECT}/promote/dpl_preview", 400, "bad_request"),
    ],
)
def test_a_rollback_needs_a_production_deployment_of_the_project(
    api: httpx.Client, history: DeploymentHistory, path: str, status: int, code: str
) -> None:
    response = api.post(path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code
    assert history.switches() == []


def test_a_500_then_a_retry_counts_two_rollbacks_received_and_one_done(
    api: httpx.Client, history: DeploymentHistory, faults: Faults
) -> None:
    faults.fail_next(1, 500, operation="rollback")
    first = api.post(f"/v1/projects/{PROJECT}/rollback/dpl_good")
    assert first.status_code == 500
    assert first.json()["error"]["code"] == "internal_server_error"
    assert api.post(f"/v1/projects/{PROJECT}/rollback/dpl_good").status_code == 201
    assert history.count("rollback") == 2
    assert len(history.switches()) == 1


def test_429_carries_the_limit_in_body_and_headers(
    api: httpx.Client, faults: Faults, clock: ManualClock
) -> None:
    reset = T0 + timedelta(seconds=42)
    faults.rate_limit(reset)
    response = api.get("/v7/deployments")
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "rate_limited"
    assert error["limit"] == {
        "remaining": 0,
        "reset": int(reset.timestamp()),
        "resetMs": ms(reset),
        "total": error["limit"]["total"],
    }
    assert response.headers["Retry-After"] == "42"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["X-RateLimit-Reset"] == str(int(reset.timestamp()))
    assert response.headers["X-RateLimit-Limit"] == str(error["limit"]["total"])
    clock.advance(timedelta(seconds=42))
    assert api.get("/v7/deployments").status_code == 200


def test_a_rollback_that_fails_to_go_live_reports_failed(
    api: httpx.Client, faults: Faults, clock: ManualClock
) -> None:
    faults.go_live = GoLive.FAIL
    assert api.post(f"/v1/projects/{PROJECT}/rollback/dpl_good").status_code == 201
    clock.advance(DELAY)
    body = project(api)
    assert body["lastRollbackTarget"]["jobStatus"] == "failed"
    assert body["targets"]["production"]["id"] == "dpl_bad"


def test_a_stalled_rollback_times_out_the_client_but_was_received(
    api: httpx.Client, faults: Faults, history: DeploymentHistory
) -> None:
    faults.stall_next(1, seconds=30, operation="rollback")
    with pytest.raises(httpx.ReadTimeout):
        api.post(f"/v1/projects/{PROJECT}/rollback/dpl_good", timeout=0.2)
    assert history.count("rollback") == 1


def test_webhook_signature_matches_the_contract_test_vector() -> None:
    body = b'{"type":"deployment.succeeded"}'
    expected = "642fdc53c985636635941582069b9582e420da65"
    assert vercel.vercel_signature("test-secret", body) == expected


def test_webhook_envelope_is_signed_over_its_raw_body(history: DeploymentHistory) -> None:
    delivery = vercel.vercel_webhook(
        history,
        "dpl_bad",
        "deployment.succeeded",
        team_id=TEAM,
        project_id=PROJECT,
        secret="whsec",
        delivery_id="uHt1",
    )
    signature = hmac.new(b"whsec", delivery.body, hashlib.sha1).hexdigest()
    assert delivery.headers["x-vercel-signature"] == signature
    envelope = json.loads(delivery.body)
    assert (envelope["id"], envelope["type"], envelope["createdAt"]) == (
        "uHt1",
        "deployment.succeeded",
        ms(T0),
    )
    payload = envelope["payload"]
    assert payload["deployment"]["id"] == "dpl_bad"
    assert payload["deployment"]["meta"]["githubCommitSha"] == BAD_RELEASE
    assert (payload["project"], payload["team"], payload["target"]) == (
        {"id": PROJECT},
        {"id": TEAM},
        "production",
    )
    assert "alias" not in payload
    with pytest.raises(ValueError, match="not a Vercel deployment event"):
        vercel.vercel_webhook(
            history,
            "dpl_bad",
            "deployment.rollback",
            team_id=TEAM,
            project_id=PROJECT,
            secret="whsec",
            delivery_id="x",
        )
