"""A Railway public GraphQL API stand-in (``api-contracts.md`` §3) for one service in one
environment of one project, over a ``DeploymentHistory``.

It is not a GraphQL engine: it reads one operation in the strict subset that
``watchdog.sandbox.graphql`` recognises, with exactly one root field:
``deployments(input, first, after)`` or ``deployment(id)`` in a query,
``deploymentRollback(id)``, ``deploymentRedeploy(id)`` or
``serviceInstanceRedeploy(environmentId, serviceId)`` in a mutation. Arguments, input fields and
selections are checked against ``_SCHEMA`` (an excerpt of Railway's introspected schema) with
graphql-js's wording, so ``deploymentRollback(id: $id) { id }`` is rejected as Railway would and
only the selected fields come back.

Choices where Railway is vague:
- GraphQL errors, "Not Authorized" included, are HTTP 200; a body without a ``query`` is 400;
- a rollback or redeploy creates a new deployment of the old commit (``DEPLOYING`` or
  ``BUILDING``, then ``SUCCESS`` ``history.delay`` later); the one it replaces turns
  ``REMOVED``; only ``REMOVED`` deployments can be rolled back to (``canRollback``);
- enum values are accepted as literals or strings; ``X-RateLimit-*`` come only with a 429;
- an armed fault other than 401/403 (Not Authorized) or 429 (``{"data": null}``) is answered
  with its HTTP status and a GraphQL error body.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from watchdog.clock import Clock
from watchdog.sandbox.deployments import Cause, Deployment, DeploymentHistory, State
from watchdog.sandbox.faults import Faults, Refused, answer_refusals, bearer, rate_limit_headers
from watchdog.sandbox.graphql import Field, GraphQLError, Schema, parse

DEPLOYMENT_STATUSES = frozenset(
    {
        *("BUILDING", "CRASHED", "DEPLOYING", "FAILED", "INITIALIZING", "NEEDS_APPROVAL"),
        *("QUEUED", "REMOVED", "REMOVING", "SKIPPED", "SLEEPING", "SUCCESS", "WAITING"),
    }
)
_SCHEMA = Schema(
    types={
        "Query": {"deployments": "QueryDeploymentsConnection!", "deployment": "Deployment!"},
        "Mutation": {
            "deploymentRollback": "Boolean!",
            "deploymentRedeploy": "Deployment!",
            "serviceInstanceRedeploy": "Boolean!",
        },
        "QueryDeploymentsConnection": {
            "edges": "[QueryDeploymentsConnectionEdge!]!",
            "pageInfo": "PageInfo!",
        },
        "QueryDeploymentsConnectionEdge": {"cursor": "String!", "node": "Deployment!"},
        "PageInfo": {
            "endCursor": "String",
            "hasNextPage": "Boolean!",
            "hasPreviousPage": "Boolean!",
            "startCursor": "String",
        },
        "Deployment": {
            **dict.fromkeys(["id"], "ID!"),
            **dict.fromkeys(["createdAt", "updatedAt"], "DateTime!"),
            **dict.fromkeys(["projectId", "environmentId"], "String!"),
            **dict.fromkeys(["serviceId", "url", "staticUrl"], "String"),
            **dict.fromkeys(["canRollback", "canRedeploy", "deploymentStopped"], "Boolean!"),
            "status": "DeploymentStatus!",
            "statusUpdatedAt": "DateTime",
            "meta": "DeploymentMeta",
        },
    },
    arguments={
        "deployments": {"input": "DeploymentListInput!", "first": "Int", "after": "String"},
        "deployment": {"id": "String!"},
        "deploymentRollback": {"id": "String!"},
        "deploymentRedeploy": {"id": "String!", "usePreviousImageTag": "Boolean"},
        "serviceInstanceRedeploy": {"environmentId": "String!", "serviceId": "String!"},
    },
)
_LIST_INPUT = {"projectId", "environmentId", "serviceId", "includeDeleted", "status"}


def create_app(
    history: DeploymentHistory,
    *,
    token: str,
    project_token: str,
    project_id: str,
    environment_id: str,
    service_id: str,
    clock: Clock,
    faults: Faults | None = None,
) -> FastAPI:
    """Railway's ``/graphql/v2`` for one service whose deployments are ``history``: ``token`` is
    an account token (``Authorization: Bearer``), ``project_token`` a project token
    (``Project-Access-Token``) of that service's project and environment."""
    faults = faults if faults is not None else Faults()
    app = FastAPI(title="Railway stand-in", openapi_url=None)
    answer_refusals(app, _render)
    ids = {"projectId": project_id, "environmentId": environment_id, "serviceId": service_id}

    def node(d: Deployment) -> dict[str, Any]:
        domain = f"{history.name}-production.up.railway.app"
        return {
            **ids,
            "id": d.id,
            "status": _status(d),
            "createdAt": _iso(d.created_at),
            "updatedAt": _iso(d.updated_at),
            "statusUpdatedAt": _iso(d.updated_at),
            "url": domain,
            "staticUrl": domain,
            "meta": {"commitHash": d.release, "branch": "main"},
            "canRollback": d.state is State.INACTIVE,
            "canRedeploy": d.state is not State.BUILDING,
            "deploymentStopped": False,
        }

    def deployment(deployment_id: str) -> Deployment:
        found = history.get(deployment_id)
        if found is None:
            raise GraphQLError("Deployment not found")
        return found

    def deployments(arguments: dict[str, Any]) -> dict[str, Any]:
        wanted = _list_filter(arguments["input"], ids)
        first, after = arguments.get("first"), arguments.get("after")
        if first is not None and first < 0:
            raise GraphQLError("first must be a non-negative integer")
        listed = [d for d in history.deployments() if wanted(_status(d))]
        start = 0
        if after is not None:
            position = [_cursor(d.id) for d in listed]
            if after not in position:
                raise GraphQLError("Invalid cursor")
            start = position.index(after) + 1
        page = listed[start:] if first is None else listed[start : start + first]
        edges = [{"cursor": _cursor(d.id), "node": node(d)} for d in page]
        return {
            "edges": edges,
            "pageInfo": {
                "startCursor": edges[0]["cursor"] if edges else None,
                "endCursor": edges[-1]["cursor"] if edges else None,
                "hasNextPage": start + len(page) < len(listed),
                "hasPreviousPage": start > 0,
            },
        }

    def resolve(field: Field) -> Any:
        arguments = field.arguments
        if field.name == "deployments":
            return deployments(arguments)
        if field.name == "deployment":
            return node(deployment(arguments["id"]))
        if field.name == "serviceInstanceRedeploy":
            if (arguments["environmentId"], arguments["serviceId"]) != (environment_id, service_id):
                raise GraphQLError("Service instance not found")
            source = next(iter(history.deployments()), None)
            if source is None:
                raise GraphQLError("Service instance has no deployment to redeploy")
            history.deploy(source.release, cause=Cause.REDEPLOY, outcome=faults.go_live)
            return True
        source = deployment(arguments["id"])
        if field.name == "deploymentRollback":
            if source.state is not State.INACTIVE:
                raise GraphQLError("Deployment cannot be rolled back to")
            history.deploy(source.release, cause=Cause.ROLLBACK, outcome=faults.go_live)
            return True
        if source.state is State.BUILDING:  # deploymentRedeploy
            raise GraphQLError("Deployment cannot be redeployed while it is in progress")
        return node(history.deploy(source.release, cause=Cause.REDEPLOY, outcome=faults.go_live))

    def authorized(request: Request) -> bool:
        project = request.headers.get("project-access-token")
        if project is not None:
            return project == project_token
        return bearer(request.headers.get("authorization")) == token

    @app.post("/graphql/v2")
    async def graphql(request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            raise Refused(400, "Body is not valid JSON") from None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            raise Refused(400, "Must provide query string.")
        variables = body.get("variables") or {}
        if not isinstance(variables, dict):
            raise Refused(400, "Variables must be an object.")
        try:
            kind, field = parse(body["query"], variables)
            gql_type = _SCHEMA.check(kind, field)
        except GraphQLError as exc:
            return _errors(str(exc))
        if kind == "mutation":
            arguments = field.arguments
            history.record(field.name, arguments.get("id") or arguments.get("serviceId"))
        await faults.admit(field.name, clock.now())
        if not authorized(request):
            return _errors("Not Authorized")
        try:
            value = resolve(field)
        except GraphQLError as exc:
            return _errors(str(exc))
        data = {field.alias or field.name: _SCHEMA.project(value, gql_type, field.selections)}
        return JSONResponse({"data": data})

    return app


def _list_filter(value: Any, ids: Mapping[str, str]) -> Callable[[str], bool]:
    """Check a ``DeploymentListInput``; return which statuses it lets through (none when it
    names another project, environment or service)."""
    if not isinstance(value, dict):
        raise GraphQLError('Expected type "DeploymentListInput" to be an object.')
    for key in value.keys() - _LIST_INPUT:
        raise GraphQLError(f'Field "{key}" is not defined by type "DeploymentListInput".')
    status = value.get("status") or {}
    if not isinstance(status, dict):
        raise GraphQLError('Expected type "DeploymentStatusInput" to be an object.')
    for key in status.keys() - {"in", "notIn"}:
        raise GraphQLError(f'Field "{key}" is not defined by type "DeploymentStatusInput".')
    chosen = {key: set(status.get(key) or ()) for key in ("in", "notIn")}
    for name in (chosen["in"] | chosen["notIn"]) - DEPLOYMENT_STATUSES:
        raise GraphQLError(f'Value "{name}" does not exist in "DeploymentStatus" enum.')
    ours = all(value.get(key) in (None, ids[key]) for key in ids)
    return lambda s: ours and (not chosen["in"] or s in chosen["in"]) and s not in chosen["notIn"]


def _render(refused: Refused) -> Response:
    if refused.throttle is not None:
        headers = rate_limit_headers("X-RateLimit", refused.throttle)
        return JSONResponse({"data": None}, status_code=429, headers=headers)
    if refused.status in (401, 403):
        return _errors("Not Authorized")
    return _errors(refused.message, status=refused.status)


def _errors(message: str, *, status: int = 200) -> Response:
    return JSONResponse({"data": None, "errors": [{"message": message}]}, status_code=status)


def _status(d: Deployment) -> str:
    if d.state is State.BUILDING:
        return "DEPLOYING" if d.cause is Cause.ROLLBACK else "BUILDING"
    return {State.LIVE: "SUCCESS", State.INACTIVE: "REMOVED"}.get(d.state, "FAILED")


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _cursor(deployment_id: str) -> str:
    return base64.b64encode(f"deployment:{deployment_id}".encode()).decode()
