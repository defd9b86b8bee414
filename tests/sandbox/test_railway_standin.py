"""The Railway stand-in answers as api-contracts.md §3 says, over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from watchdog.clock import ManualClock
from watchdog.sandbox import railway
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE, DeploymentHistory
from watchdog.sandbox.faults import Faults

from .conftest import T0, serving

DELAY = timedelta(seconds=25)
TOKEN = "railway-account-token"
PROJECT_TOKEN = "railway-project-token"
IDS = {"projectId": "prj-1", "environmentId": "env-1", "serviceId": "svc-1"}

LIST = """
query deployments($input: DeploymentListInput!, $first: Int, $after: String) {
  deployments(input: $input, first: $first, after: $after) {
    edges { cursor node { id status createdAt meta canRollback } }
    pageInfo { hasNextPage endCursor }
  }
}"""
ROLLBACK = "mutation rollback($id: String!) { deploymentRollback(id: $id) }"


@pytest.fixture
def delay() -> timedelta:
    return DELAY


@pytest.fixture
def url(history: DeploymentHistory, clock: ManualClock, faults: Faults) -> Iterator[str]:
    app = railway.create_app(
        history,
        token=TOKEN,
        project_token=PROJECT_TOKEN,
        project_id=IDS["projectId"],
        environment_id=IDS["environmentId"],
        service_id=IDS["serviceId"],
        clock=clock,
        faults=faults,
    )
    with serving(app, faults) as base_url:
        yield f"{base_url}/graphql/v2"


@pytest.fixture
def gql(url: str) -> Iterator[Any]:
    """POST a query with an account token; return the response."""
    with httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as client:

        def post(query: str, **variables: Any) -> httpx.Response:
            return client.post(url, json={"query": query, "variables": variables})

        yield post


def errors(response: httpx.Response) -> list[str]:
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    return [e["message"] for e in body["errors"]]


def statuses(gql: Any) -> dict[str, str]:
    body = gql(LIST, input=IDS).json()
    return {e["node"]["id"]: e["node"]["status"] for e in body["data"]["deployments"]["edges"]}


def test_deployments_is_a_newest_first_connection_of_what_was_selected(gql: Any) -> None:
    response = gql(LIST, input=IDS, first=10)
    assert response.status_code == 200
    connection = response.json()["data"]["deployments"]
    assert connection["pageInfo"] == {
        "hasNextPage": False,
        "endCursor": connection["edges"][-1]["cursor"],
    }
    live, old = (edge["node"] for edge in connection["edges"])
    assert live == {
        "id": "dep-2",
        "status": "SUCCESS",
        "createdAt": "2026-01-28T11:55:00.000Z",
        "meta": {"commitHash": BAD_RELEASE, "branch": "main"},
        "canRollback": False,
    }
    assert (old["id"], old["status"], old["canRollback"]) == ("dep-1", "REMOVED", True)


def test_first_and_after_page_through(gql: Any, history: DeploymentHistory) -> None:
    for _ in range(3):
        history.deploy(BAD_RELEASE)
    seen: list[str] = []
    after = None
    while True:
        page = gql(LIST, input=IDS, first=2, after=after).json()["data"]["deployments"]
        seen += [edge["node"]["id"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ["dep-5", "dep-4", "dep-3", "dep-2", "dep-1"]


def test_status_in_and_not_in_filter(gql: Any) -> None:
    only = gql(LIST, input={**IDS, "status": {"in": ["SUCCESS"]}}).json()
    assert [e["node"]["id"] for e in only["data"]["deployments"]["edges"]] == ["dep-2"]
    others = gql(LIST, input={**IDS, "status": {"notIn": ["SUCCESS"]}}).json()
    assert [e["node"]["id"] for e in others["data"]["deployments"]["edges"]] == ["dep-1"]
    elsewhere = gql(LIST, input={**IDS, "serviceId": "svc-other"}).json()
    assert elsewhere["data"]["deployments"]["edges"] == []


@pytest.mark.parametrize(
    ("status", "message"),
    [
        ({"successfulOnly": True}, 'Field "successfulOnly" is not defined by type'),
        ({"in": ["GREAT"]}, 'Value "GREAT" does not exist in "DeploymentStatus" enum.'),
    ],
)
def test_the_documented_but_unschematic_filters_are_rejected(
    gql: Any, status: dict[str, Any], message: str
) -> None:
    [error] = errors(gql(LIST, input={**IDS, "status": status}))
    assert error.startswith(message)


def test_one_deployment_by_id_with_an_alias_and_literal_argument(gql: Any) -> None:
    body = gql('{ old: deployment(id: "dep-1") { id status __typename } }').json()
    assert body == {
        "data": {"old": {"id": "dep-1", "status": "REMOVED", "__typename": "Deployment"}}
    }
    assert errors(gql('{ deployment(id: "dep-9") { id } }')) == ["Deployment not found"]


def test_rollback_returns_true_and_a_new_deployment_goes_live(
    gql: Any, history: DeploymentHistory, clock: ManualClock, served: list[str]
) -> None:
    assert gql(ROLLBACK, id="dep-1").json() == {"data": {"deploymentRollback": True}}
    assert statuses(gql) == {"dep-3": "DEPLOYING", "dep-2": "SUCCESS", "dep-1": "REMOVED"}
    clock.advance(DELAY)
    assert statuses(gql) == {"dep-3": "SUCCESS", "dep-2": "REMOVED", "dep-1": "REMOVED"}
    assert served[-1] == GOOD_RELEASE
    assert history.count("deploymentRollback") == 1
    assert history.received()[0].subject == "dep-1"


def test_rollback_rejects_a_subselection_and_does_nothing(
    gql: Any, history: DeploymentHistory
) -> None:
    query = "mutation($id: String!) { deploymentRollback(id: $id) { id status } }"
    [error] = errors(gql(query, id="dep-1"))
    assert error.startswith('Field "deploymentRollback" must not have a selection')
    assert (history.count("deploymentRollback"), history.switches()) == (0, [])


def test_rollback_to_the_live_deployment_is_an_error(gql: Any) -> None:
    assert errors(gql(ROLLBACK, id="dep-2")) == ["Deployment cannot be rolled back to"]


def test_redeploys(gql: Any, clock: ManualClock) -> None:
    redeploy = "mutation($id: String!) { deploymentRedeploy(id: $id) { id status meta } }"
    body = gql(redeploy, id="dep-1").json()
    assert body["data"]["deploymentRedeploy"]["id"] == "dep-3"
    assert body["data"]["deploymentRedeploy"]["status"] == "BUILDING"
    instance = """mutation($e: String!, $s: String!) {
      serviceInstanceRedeploy(environmentId: $e, serviceId: $s) }"""
    assert gql(instance, e="env-1", s="svc-1").json() == {"data": {"serviceInstanceRedeploy": True}}
    assert errors(gql(instance, e="env-1", s="svc-2")) == ["Service instance not found"]
    clock.advance(DELAY)
    assert statuses(gql)["dep-4"] == "SUCCESS"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("{ deployment(id: 1) { id } }", 'Argument "id" expects type "String!".'),
        ("{ deployment { id } }", 'Field "deployment" argument "id" of type "String!" is required'),
        ('{ deployment(id: "dep-1") { creator } }', 'Cannot query field "creator" on type'),
        ('{ deployment(id: "dep-1") }', 'Field "deployment" of type "Deployment!" must have'),
        ('{ deployment(id: "dep-1", last: 1) { id } }', 'Unknown argument "last" on field'),
        ("{ me { id } }", 'Cannot query field "me" on type "Query".'),
        ('mutation { deployment(id: "dep-1") { id } }', 'Cannot query field "deployment"'),
        ('{ deployment(id: "dep-1") { ...F } }', "Fragments and directives are not supported"),
        (
            '{ a: deployment(id: "dep-1") { id } b: deployment(id: "dep-2") { id } }',
            "This stand-in answers one",
        ),
        ("{ deployment(id: ", "Syntax Error"),
        ("{ deployment(id: %) { id } }", "Syntax Error: Unexpected character"),
    ],
)
def test_anything_outside_the_supported_shapes_is_a_graphql_error(
    gql: Any, query: str, message: str
) -> None:
    [error] = errors(gql(query))
    assert error.startswith(message), error


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Bearer {PROJECT_TOKEN}"},  # a project token is not a bearer token
        {"Project-Access-Token": TOKEN},
    ],
)
def test_not_authorized(url: str, headers: dict[str, str]) -> None:
    response = httpx.post(
        url, headers=headers, json={"query": ROLLBACK, "variables": {"id": "dep-1"}}
    )
    assert errors(response) == ["Not Authorized"]


def test_a_project_token_goes_in_its_own_header(url: str) -> None:
    response = httpx.post(
        url,
        headers={"Project-Access-Token": PROJECT_TOKEN},
        json={"query": '{ deployment(id: "dep-1") { id } }'},
    )
    assert response.json() == {"data": {"deployment": {"id": "dep-1"}}}


def test_a_body_without_a_query_is_400(url: str) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(url, headers=headers, content=b"nope").status_code == 400
    assert httpx.post(url, headers=headers, json={"variables": {}}).status_code == 400


def test_429_is_data_null_with_retry_after(
    gql: Any, faults: Faults, history: DeploymentHistory, clock: ManualClock
) -> None:
    reset = T0 + timedelta(seconds=7)
    faults.rate_limit(reset)
    response = gql(ROLLBACK, id="dep-1")
    assert response.status_code == 429
    assert response.json() == {"data": None}
    assert response.headers["Retry-After"] == "7"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert response.headers["X-RateLimit-Reset"] == str(int(reset.timestamp()))
    assert "X-RateLimit-Limit" in response.headers
    clock.advance(timedelta(seconds=7))
    assert gql(ROLLBACK, id="dep-1").json() == {"data": {"deploymentRollback": True}}
    assert (history.count("deploymentRollback"), len(history.switches())) == (2, 1)


def test_armed_faults(gql: Any, faults: Faults) -> None:
    faults.fail_next(1, 500, operation="deploymentRollback")
    faults.fail_next(1, 401)
    broken = gql(ROLLBACK, id="dep-1")
    assert broken.status_code == 500
    assert broken.json()["data"] is None
    assert errors(gql(ROLLBACK, id="dep-1")) == ["Not Authorized"]
