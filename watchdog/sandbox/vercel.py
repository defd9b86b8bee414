"""A Vercel REST API stand-in over a ``DeploymentHistory``, answering as ``api-contracts.md`` §1
says, plus the signed webhook Vercel would send about a deployment.

A rollback or promote re-points production at an existing deployment (nothing is rebuilt): it is
accepted at once and shows as done in ``GET /v9/projects/{id}`` (``targets.production``,
``lastAliasRequest``, ``lastRollbackTarget``) ``history.delay`` later.

Choices where Vercel is vague:
- a missing or wrong token is 403 ``forbidden`` "Not authorized" (the contract's error table);
- ``teamId``/``slug`` naming another team is 403; naming none looks in the personal account,
  where the project does not exist, so 404;
- the project may be given by id or by name on every path, as ``GET /v9/projects`` allows;
- ``limit`` is 1..100 (default 20); lists are newest first; ``until``/``since`` are exclusive;
  ``rollbackCandidate`` means served production before and is not live now; ``branch``,
  ``app``, ``users`` and ``projectIds`` are ignored;
- promote answers 202 while the switch is pending and 201 when ``delay`` is zero;
- only built production deployments can be promoted or rolled back to (else 400).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse

from watchdog.clock import Clock
from watchdog.sandbox.deployments import (
    Cause,
    Delivery,
    Deployment,
    DeploymentHistory,
    State,
    Switch,
    SwitchStatus,
)
from watchdog.sandbox.faults import Faults, Refused, answer_refusals, bearer, rate_limit_headers

WEBHOOK_EVENTS = frozenset(
    {
        "deployment.created",
        "deployment.succeeded",
        "deployment.ready",
        "deployment.promoted",
        "deployment.error",
        "deployment.canceled",
    }
)
_READY_STATES = frozenset(
    {"BLOCKED", "BUILDING", "CANCELED", "DELETED", "ERROR", "INITIALIZING", "QUEUED", "READY"}
)
_READY_STATE = {
    State.BUILDING: "BUILDING",
    State.LIVE: "READY",
    State.INACTIVE: "READY",
    State.FAILED: "ERROR",
}
_JOB_STATUS = {
    SwitchStatus.PENDING: "in-progress",
    SwitchStatus.SUCCEEDED: "succeeded",
    SwitchStatus.FAILED: "failed",
}
_CREATOR = {"uid": "usr_sandbox", "username": "sandbox"}
_NO_DEPLOYMENT = "The deployment was not found"
_NO_PROJECT = "Project not found"


def create_app(
    history: DeploymentHistory,
    *,
    token: str,
    team_id: str,
    project_id: str,
    clock: Clock,
    team_slug: str | None = None,
    faults: Faults | None = None,
) -> FastAPI:
    """The Vercel API of one team holding one project, whose deployments are ``history``."""
    faults = faults if faults is not None else Faults()
    app = FastAPI(title="Vercel stand-in", openapi_url=None)
    answer_refusals(app, _render)
    rollback_description: dict[str, Any] = {}  # the project's, once a rollback gave one

    async def guard(request: Request, operation: str, subject: str | None = None) -> None:
        if request.method != "GET":
            history.record(operation, subject)
        await faults.admit(operation, clock.now())
        if bearer(request.headers.get("authorization")) != token:
            raise Refused(403, "Not authorized")
        team, slug = request.query_params.get("teamId"), request.query_params.get("slug")
        if team is None and slug is None:
            raise Refused(404, _NO_PROJECT)
        if team not in (None, team_id) or slug not in (None, team_slug):
            raise Refused(403, "Not authorized")

    def project(id_or_name: str) -> None:
        if id_or_name not in (project_id, history.name):
            raise Refused(404, _NO_PROJECT)

    def switch(project_ref: str, deployment_id: str, cause: Cause) -> Switch:
        project(project_ref)
        target = history.get(deployment_id)
        if target is None:
            raise Refused(404, _NO_DEPLOYMENT)
        if not (target.built and target.production):
            raise Refused(400, f"Deployment {deployment_id} is not a ready production deployment")
        return history.switch_to(deployment_id, cause, outcome=faults.go_live)

    @app.get("/v6/deployments")
    @app.get("/v7/deployments")
    async def list_deployments(
        request: Request,
        project_ref: Annotated[str | None, Query(alias="projectId")] = None,
        target: str | None = None,
        state: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        until: int | None = None,
        since: int | None = None,
        sha: str | None = None,
        candidate: Annotated[bool | None, Query(alias="rollbackCandidate")] = None,
    ) -> dict[str, Any]:
        await guard(request, "list_deployments")
        if project_ref is not None:
            project(project_ref)
        if target not in (None, "production", "preview"):
            raise Refused(400, f"Invalid target: {target}")
        states = set(state.split(",")) if state else _READY_STATES
        if not states <= _READY_STATES:
            raise Refused(400, f"Invalid state: {state}")
        matching = [
            d
            for d in history.deployments()
            if _READY_STATE[d.state] in states
            and (target is None or d.production == (target == "production"))
            and (until is None or _ms(d.created_at) < until)
            and (since is None or _ms(d.created_at) > since)
            and (sha is None or d.release == sha)
            and (candidate is None or _rollback_candidate(d) == candidate)
        ]
        page = matching[:limit]
        return {
            "pagination": {
                "count": len(page),
                "next": _ms(page[-1].created_at) if len(matching) > limit else None,
                "prev": _ms(page[0].created_at) if page else None,
            },
            "deployments": [_listed(history, d, project_id, team_id) for d in page],
        }

    @app.get("/v13/deployments/{id_or_url}")
    async def get_deployment(request: Request, id_or_url: str) -> dict[str, Any]:
        await guard(request, "get_deployment")
        host = id_or_url.removeprefix("https://")
        found = next(
            (d for d in history.deployments() if id_or_url == d.id or host == _host(history, d)),
            None,
        )
        if found is None:
            raise Refused(404, _NO_DEPLOYMENT)
        return _detail(history, found, project_id, team_id)

    @app.post("/v10/projects/{project_ref}/promote/{deployment_id}")
    async def promote(request: Request, project_ref: str, deployment_id: str) -> Response:
        await guard(request, "promote", deployment_id)
        switch(project_ref, deployment_id, Cause.PROMOTE)
        return Response(status_code=202 if history.delay else 201)

    @app.post("/v1/projects/{project_ref}/rollback/{deployment_id}")
    async def rollback(
        request: Request, project_ref: str, deployment_id: str, description: str | None = None
    ) -> Response:
        await guard(request, "rollback", deployment_id)
        asked = switch(project_ref, deployment_id, Cause.ROLLBACK)
        if description is not None:
            rollback_description.update(
                {
                    "userId": _CREATOR["uid"],
                    "username": _CREATOR["username"],
                    "description": description,
                    "createdAt": _ms(asked.requested_at),
                }
            )
        return Response(status_code=201)

    @app.get("/v9/projects/{id_or_name}")
    async def get_project(request: Request, id_or_name: str) -> dict[str, Any]:
        await guard(request, "get_project")
        project(id_or_name)
        deployments = history.deployments()
        live = next((d for d in deployments if d.state is State.LIVE), None)
        aliases = [s for s in history.switches() if s.cause in (Cause.ROLLBACK, Cause.PROMOTE)]
        rollbacks = [s for s in aliases if s.cause is Cause.ROLLBACK]
        return {
            "id": project_id,
            "name": history.name,
            "accountId": team_id,
            "createdAt": _ms(deployments[-1].created_at) if deployments else None,
            "updatedAt": _ms(max(d.updated_at for d in deployments)) if deployments else None,
            "framework": "nextjs",
            "targets": {"production": _summary(history, live, project_id, team_id)} if live else {},
            "latestDeployments": [
                _summary(history, d, project_id, team_id) for d in deployments[:5]
            ],
            "rollbackDescription": rollback_description or None,
            "lastRollbackTarget": _alias_request(rollbacks[-1]) if rollbacks else None,
            "lastAliasRequest": (
                {**_alias_request(aliases[-1]), "type": aliases[-1].cause.value}
                if aliases
                else None
            ),
        }

    return app


def _render(refused: Refused) -> Response:
    error: dict[str, Any] = {"code": refused.code, "message": refused.message}
    headers: dict[str, str] = {}
    if refused.throttle is not None:
        throttle = refused.throttle
        error["message"] = (
            f"The rate limit of {throttle.limit} exceeded. "
            f"Try again in {throttle.retry_after} seconds"
        )
        error["limit"] = {
            "remaining": 0,
            "reset": math.ceil(throttle.reset.timestamp()),
            "resetMs": _ms(throttle.reset),
            "total": throttle.limit,
        }
        headers = rate_limit_headers("X-RateLimit", throttle)
    return JSONResponse({"error": error}, status_code=refused.status, headers=headers)


def _ms(at: datetime) -> int:
    return math.floor(at.timestamp() * 1000)


def _host(history: DeploymentHistory, d: Deployment) -> str:
    return f"{history.name}-{re.sub('[^a-z0-9]', '', d.id.lower())}.vercel.app"


def _alias_request(switch: Switch) -> dict[str, Any]:
    return {
        "fromDeploymentId": switch.from_id or "",
        "toDeploymentId": switch.to_id,
        "jobStatus": _JOB_STATUS[switch.status],
        "requestedAt": _ms(switch.requested_at),
    }


def _common(
    history: DeploymentHistory, d: Deployment, project_id: str, team: str
) -> dict[str, Any]:
    """The fields every deployment shape has, named and valued as Vercel does."""
    common: dict[str, Any] = {
        "inspectorUrl": f"https://vercel.com/{team}/{history.name}/{d.id}",
        "aliasError": None,
        "errorCode": None,
        "errorMessage": None,
        "name": history.name,
        "projectId": project_id,
        "url": _host(history, d),
        "createdAt": _ms(d.created_at),
        "buildingAt": _ms(d.created_at),
        "ready": _ms(d.finished_at) if d.finished_at else None,
        "readyState": _READY_STATE[d.state],
        "target": "production" if d.production else None,
        "creator": _CREATOR,
        "meta": {"githubCommitSha": d.release, "githubCommitRef": "main"},
        "type": "LAMBDAS",
    }
    if d.built:  # PROMOTED once it has seen production traffic, STAGED before
        common["readySubstate"] = "PROMOTED" if d.live_at else "STAGED"
    return common


def _rollback_candidate(d: Deployment) -> bool:
    """A production deployment that served traffic before and could serve it again."""
    return d.production and d.state is State.INACTIVE and d.live_at is not None


def _alias(history: DeploymentHistory, d: Deployment) -> list[str]:
    return [f"{history.name}.vercel.app"] if d.state is State.LIVE else []


def _summary(
    history: DeploymentHistory, d: Deployment, project_id: str, team: str
) -> dict[str, Any]:
    return {
        "id": d.id,
        **_common(history, d, project_id, team),
        "alias": _alias(history, d),
        "aliasAssigned": _ms(d.live_at) if d.live_at else None,
    }


def _listed(
    history: DeploymentHistory, d: Deployment, project_id: str, team: str
) -> dict[str, Any]:
    return {
        "uid": d.id,
        **_common(history, d, project_id, team),
        "created": _ms(d.created_at),
        "state": _READY_STATE[d.state],
        "source": "git",
        "aliasAssigned": _ms(d.live_at) if d.live_at else None,
        "isRollbackCandidate": _rollback_candidate(d),
    }


def _detail(
    history: DeploymentHistory, d: Deployment, project_id: str, team: str
) -> dict[str, Any]:
    return {
        "id": d.id,
        **_common(history, d, project_id, team),
        "status": _READY_STATE[d.state],
        "bootedAt": _ms(d.created_at),
        "buildSkipped": False,
        "aliasAssigned": d.live_at is not None,
        "alias": _alias(history, d),
        "gitSource": {
            "type": "github",
            "repoId": "1",
            "ref": "main",
            "sha": d.release,
            "prId": None,
        },
        "regions": ["iad1"],
        "version": 2,
        "public": False,
    }


def vercel_signature(secret: str, body: bytes) -> str:
    """``x-vercel-signature``: hex HMAC-SHA1 of the raw body, keyed with the webhook secret."""
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def vercel_webhook(
    history: DeploymentHistory,
    deployment_id: str,
    event_type: str,
    *,
    team_id: str,
    project_id: str,
    secret: str,
    delivery_id: str,
) -> Delivery:
    """The delivery Vercel would POST about ``deployment_id`` (§1.6), signed with ``secret``.

    :raises ValueError: ``event_type`` is not a deployment event of ``WEBHOOK_EVENTS``.
    :raises KeyError: no such deployment.
    """
    if event_type not in WEBHOOK_EVENTS:
        raise ValueError(f"not a Vercel deployment event: {event_type}")
    d = history.get(deployment_id)
    if d is None:
        raise KeyError(deployment_id)
    payload: dict[str, Any] = {
        "team": {"id": team_id},
        "user": {"id": _CREATOR["uid"]},
        "deployment": {
            "id": d.id,
            "meta": {"githubCommitSha": d.release, "githubCommitRef": "main"},
            "url": _host(history, d),
            "name": history.name,
        },
        "links": {
            "deployment": f"https://vercel.com/{team_id}/{history.name}/{d.id}",
            "project": f"https://vercel.com/{team_id}/{history.name}",
        },
        "target": "production" if d.production else None,
        "project": {"id": project_id},
        "plan": "pro",
        "regions": ["iad1"],
    }
    if event_type == "deployment.created":
        payload["alias"] = [_host(history, d)]
    envelope = {
        "id": delivery_id,
        "type": event_type,
        "createdAt": _ms(history.clock.now()),
        "region": "iad1",
        "payload": payload,
    }
    body = json.dumps(envelope, separators=(",", ":")).encode()
    headers = {
        "content-type": "application/json",
        "x-vercel-signature": vercel_signature(secret, body),
    }
    return Delivery(body, headers)
