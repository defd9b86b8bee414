"""A Railway public GraphQL API stand-in (``api-contracts.md`` §3) for one service in one
environment of one project, over a ``DeploymentHistory``.

It is not a GraphQL engine: it reads one operation written in this subset of the language,

    document  := [("query" | "mutation") [Name] ["(" ($var ":" Type ["=" value])* ")"]] selset
    selset    := "{" ([alias ":"] Name ["(" (Name ":" value)* ")"] [selset])+ "}"
    value     := $var | "string" | number | true | false | null | ENUM | "[" value* "]"
                 | "{" (Name ":" value)* "}"

with exactly one root field: ``deployments(input, first, after)`` or ``deployment(id)`` in a
query, ``deploymentRollback(id)``, ``deploymentRedeploy(id)`` or
``serviceInstanceRedeploy(environmentId, serviceId)`` in a mutation. Arguments, input fields and
selections are checked against ``_SCHEMA`` (an excerpt of Railway's introspected schema) with
graphql-js's wording, so ``deploymentRollback(id: $id) { id }`` is rejected as Railway would and
only the selected fields come back. Fragments, directives and anything else are an error.

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
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from watchdog.clock import Clock
from watchdog.sandbox.deployments import Cause, Deployment, DeploymentHistory, State
from watchdog.sandbox.faults import Faults, Refused, answer_refusals, bearer, rate_limit_headers

DEPLOYMENT_STATUSES = frozenset(
    {
        *("BUILDING", "CRASHED", "DEPLOYING", "FAILED", "INITIALIZING", "NEEDS_APPROVAL"),
        *("QUEUED", "REMOVED", "REMOVING", "SKIPPED", "SLEEPING", "SUCCESS", "WAITING"),
    }
)
_SCHEMA: dict[str, dict[str, str]] = {
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
}
_ARGUMENTS: dict[str, dict[str, str]] = {
    "deployments": {"input": "DeploymentListInput!", "first": "Int", "after": "String"},
    "deployment": {"id": "String!"},
    "deploymentRollback": {"id": "String!"},
    "deploymentRedeploy": {"id": "String!", "usePreviousImageTag": "Boolean"},
    "serviceInstanceRedeploy": {"environmentId": "String!", "serviceId": "String!"},
}
_SCALARS: dict[str, type] = {"String": str, "Int": int, "Boolean": bool}
_LIST_INPUT = {"projectId", "environmentId", "serviceId", "includeDeleted", "status"}
_TOKEN = re.compile(
    r'(?P<skip>[\s,]+|#[^\n]*)|(?P<string>"(?:[^"\\\n]|\\.)*")|(?P<number>-?\d+(?:\.\d+)?)'
    r"|(?P<name>[_A-Za-z]\w*)|(?P<punct>\.\.\.|[!$():=@\[\]{}])"
)


class _GraphQLError(Exception):
    """Answered as ``{"data": null, "errors": [{"message": ...}]}``."""


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    alias: str | None
    arguments: dict[str, Any]
    selections: tuple[_Field, ...] | None


class _Parser:
    """Recursive descent over the subset in the module docstring; variables are substituted
    while parsing, declared defaults included."""

    def __init__(self, text: str, variables: Mapping[str, Any]) -> None:
        self._tokens: list[tuple[str, str]] = []
        end = 0
        for match in _TOKEN.finditer(text):
            if match.start() != end:
                break
            end = match.end()
            if match.lastgroup != "skip":
                self._tokens.append((match.lastgroup or "", match.group()))
        if end != len(text):
            raise _GraphQLError(f'Syntax Error: Unexpected character: "{text[end]}".')
        self._variables = dict(variables)
        self._pos = 0

    def operation(self) -> tuple[str, _Field]:
        kind = "query"
        if self._peek() in ("query", "mutation"):
            kind = self._take()
            if self._peek() not in ("{", "("):
                self._name()
            if self._peek() == "(":
                self._variable_definitions()
        fields = self._selection_set()
        if self._peek() is not None or len(fields) != 1:
            raise _GraphQLError("This stand-in answers one operation with one root field.")
        return kind, fields[0]

    def _peek(self) -> str | None:
        return self._tokens[self._pos][1] if self._pos < len(self._tokens) else None

    def _take(self, expected: str | None = None) -> str:
        found = self._peek()
        if found is None or (expected is not None and found != expected):
            want = f'"{expected}"' if expected else "more"
            raise _GraphQLError(f"Syntax Error: Expected {want}, found {found or '<EOF>'}.")
        self._pos += 1
        return found

    def _name(self) -> str:
        if self._pos < len(self._tokens) and self._tokens[self._pos][0] == "name":
            return self._take()
        raise _GraphQLError(f"Syntax Error: Expected Name, found {self._peek() or '<EOF>'}.")

    def _variable_definitions(self) -> None:
        self._take("(")
        while self._peek() != ")":
            self._take("$")
            name = self._name()
            self._take(":")
            self._type()
            if self._peek() == "=":
                self._take("=")
                self._variables.setdefault(name, self._value())
        self._take(")")

    def _type(self) -> None:
        if self._peek() == "[":
            self._take("[")
            self._type()
            self._take("]")
        else:
            self._name()
        if self._peek() == "!":
            self._take("!")

    def _selection_set(self) -> tuple[_Field, ...]:
        self._take("{")
        fields: list[_Field] = []
        while self._peek() != "}":
            if self._peek() in ("...", "@"):
                raise _GraphQLError("Fragments and directives are not supported by this stand-in.")
            alias, name = None, self._name()
            if self._peek() == ":":
                self._take(":")
                alias, name = name, self._name()
            arguments: dict[str, Any] = {}
            if self._peek() == "(":
                self._take("(")
                while self._peek() != ")":
                    key = self._name()
                    self._take(":")
                    arguments[key] = self._value()
                self._take(")")
            selections = self._selection_set() if self._peek() == "{" else None
            fields.append(_Field(name, alias, arguments, selections))
        self._take("}")
        if not fields:
            raise _GraphQLError("Syntax Error: Expected Name, found }.")
        return tuple(fields)

    def _value(self) -> Any:
        kind = self._tokens[self._pos][0] if self._pos < len(self._tokens) else ""
        lexeme = self._take()
        if lexeme == "$":
            return self._variables.get(self._name())
        if lexeme == "[":
            items: list[Any] = []
            while self._peek() != "]":
                items.append(self._value())
            self._take("]")
            return items
        if lexeme == "{":
            fields: dict[str, Any] = {}
            while self._peek() != "}":
                key = self._name()
                self._take(":")
                fields[key] = self._value()
            self._take("}")
            return fields
        if kind in ("string", "number"):
            return json.loads(lexeme)
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(lexeme, lexeme)
        raise _GraphQLError(f"Syntax Error: Unexpected {lexeme}.")


def _check_selection(gql_type: str, field: _Field) -> None:
    """Reject what graphql-js's validation would: unknown fields, arguments on nested fields,
    sub-selections on scalars, and objects without one."""
    named = gql_type.strip("[]!")
    if named not in _SCHEMA:
        if field.selections is not None:
            raise _GraphQLError(
                f'Field "{field.name}" must not have a selection since type "{gql_type}" '
                "has no subfields."
            )
        return
    if field.selections is None:
        raise _GraphQLError(
            f'Field "{field.name}" of type "{gql_type}" must have a selection of subfields. '
            f'Did you mean "{field.name} {{ ... }}"?'
        )
    for sub in field.selections:
        if sub.name == "__typename" and sub.selections is None:
            continue
        if sub.name not in _SCHEMA[named]:
            raise _GraphQLError(f'Cannot query field "{sub.name}" on type "{named}".')
        if sub.arguments:
            raise _GraphQLError(f'Unknown argument "{next(iter(sub.arguments))}" on "{named}".')
        _check_selection(_SCHEMA[named][sub.name], sub)


def _check_arguments(root: str, field: _Field) -> None:
    declared = _ARGUMENTS[field.name]
    for key, value in field.arguments.items():
        if key not in declared:
            raise _GraphQLError(f'Unknown argument "{key}" on field "{root}.{field.name}".')
        expected = _SCALARS.get(declared[key].rstrip("!"))
        if expected is not None and value is not None and type(value) is not expected:
            raise _GraphQLError(f'Argument "{key}" expects type "{declared[key]}".')
    for key, gql_type in declared.items():
        if gql_type.endswith("!") and field.arguments.get(key) is None:
            raise _GraphQLError(
                f'Field "{field.name}" argument "{key}" of type "{gql_type}" is required, '
                "but it was not provided."
            )


def _project(value: Any, gql_type: str, selections: Sequence[_Field] | None) -> Any:
    """Keep only what was selected, under its alias, from a resolved value."""
    if value is None or selections is None:
        return value
    if isinstance(value, list):
        return [_project(item, gql_type, selections) for item in value]
    named = gql_type.strip("[]!")
    return {
        (f.alias or f.name): named
        if f.name == "__typename"
        else _project(value[f.name], _SCHEMA[named][f.name], f.selections)
        for f in selections
    }


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
            raise _GraphQLError("Deployment not found")
        return found

    def deployments(arguments: dict[str, Any]) -> dict[str, Any]:
        wanted = _list_filter(arguments["input"], ids)
        first, after = arguments.get("first"), arguments.get("after")
        if first is not None and first < 0:
            raise _GraphQLError("first must be a non-negative integer")
        listed = [d for d in history.deployments() if wanted(_status(d))]
        start = 0
        if after is not None:
            position = [_cursor(d.id) for d in listed]
            if after not in position:
                raise _GraphQLError("Invalid cursor")
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

    def resolve(field: _Field) -> Any:
        arguments = field.arguments
        if field.name == "deployments":
            return deployments(arguments)
        if field.name == "deployment":
            return node(deployment(arguments["id"]))
        if field.name == "serviceInstanceRedeploy":
            if (arguments["environmentId"], arguments["serviceId"]) != (environment_id, service_id):
                raise _GraphQLError("Service instance not found")
            source = next(iter(history.deployments()), None)
            if source is None:
                raise _GraphQLError("Service instance has no deployment to redeploy")
            history.deploy(source.release, cause=Cause.REDEPLOY, outcome=faults.go_live)
            return True
        source = deployment(arguments["id"])
        if field.name == "deploymentRollback":
            if source.state is not State.INACTIVE:
                raise _GraphQLError("Deployment cannot be rolled back to")
            history.deploy(source.release, cause=Cause.ROLLBACK, outcome=faults.go_live)
            return True
        if source.state is State.BUILDING:  # deploymentRedeploy
            raise _GraphQLError("Deployment cannot be redeployed while it is in progress")
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
            kind, field = _Parser(body["query"], variables).operation()
            root = "Query" if kind == "query" else "Mutation"
            if field.name not in _SCHEMA[root]:
                raise _GraphQLError(f'Cannot query field "{field.name}" on type "{root}".')
            _check_arguments(root, field)
            gql_type = _SCHEMA[root][field.name]
            _check_selection(gql_type, field)
        except _GraphQLError as exc:
            return _errors(str(exc))
        if kind == "mutation":
            arguments = field.arguments
            history.record(field.name, arguments.get("id") or arguments.get("serviceId"))
        await faults.admit(field.name, clock.now())
        if not authorized(request):
            return _errors("Not Authorized")
        try:
            value = resolve(field)
        except _GraphQLError as exc:
            return _errors(str(exc))
        data = {field.alias or field.name: _project(value, gql_type, field.selections)}
        return JSONResponse({"data": data})

    return app


def _list_filter(value: Any, ids: Mapping[str, str]) -> Callable[[str], bool]:
    """Check a ``DeploymentListInput``; return which statuses it lets through (none when it
    names another project, environment or service)."""
    if not isinstance(value, dict):
        raise _GraphQLError('Expected type "DeploymentListInput" to be an object.')
    for key in value.keys() - _LIST_INPUT:
        raise _GraphQLError(f'Field "{key}" is not defined by type "DeploymentListInput".')
    status = value.get("status") or {}
    if not isinstance(status, dict):
        raise _GraphQLError('Expected type "DeploymentStatusInput" to be an object.')
    for key in status.keys() - {"in", "notIn"}:
        raise _GraphQLError(f'Field "{key}" is not defined by type "DeploymentStatusInput".')
    chosen = {key: set(status.get(key) or ()) for key in ("in", "notIn")}
    for name in (chosen["in"] | chosen["notIn"]) - DEPLOYMENT_STATUSES:
        raise _GraphQLError(f'Value "{name}" does not exist in "DeploymentStatus" enum.')
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
