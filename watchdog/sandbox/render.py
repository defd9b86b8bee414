"""A Render API stand-in for one service over a ``DeploymentHistory``, answering as
``api-contracts.md`` §2 says, plus the Standard Webhooks delivery Render would send.

A rollback creates a new deploy of the old commit with ``trigger: "rollback"``: it is
``update_in_progress`` at once and ``live`` ``history.delay`` later, when the deploy it replaces
turns ``deactivated``. ``GET/PATCH /v1/services/{id}`` expose ``autoDeploy`` so a client can stop
an autodeploy from undoing the rollback (Render's own caveat).

Choices where Render is vague:
- a missing or wrong API key is 401; a service other than the configured one is 404;
- cursors are opaque (not the deploy id); an unknown one, an unknown ``status`` or a ``limit``
  outside 1..100 is a 400; lists are newest first; the ``createdBefore``… filters are ignored;
- ``POST .../deploys`` always answers 201 with the Deploy, never the 202 without a body;
- only a deploy that was built (live or deactivated) can be rolled back to, else 400;
- ``Ratelimit-*`` headers come only with a 429, ``Ratelimit-Reset`` in epoch seconds;
- ``GET /v1/events/{id}`` answers the ``deploy_ended`` events the webhook refers to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from watchdog.clock import Clock
from watchdog.sandbox.deployments import Cause, Delivery, Deployment, DeploymentHistory, State
from watchdog.sandbox.faults import Faults, Refused, answer_refusals, bearer, rate_limit_headers

DEPLOY_STATUSES = frozenset(
    {
        "created",
        "queued",
        "build_in_progress",
        "update_in_progress",
        "live",
        "deactivated",
        "build_failed",
        "update_failed",
        "canceled",
        "pre_deploy_in_progress",
        "pre_deploy_failed",
    }
)
_TRIGGER = {
    Cause.NEW_COMMIT: "new_commit",
    Cause.REDEPLOY: "api",
    Cause.ROLLBACK: "rollback",
    Cause.PROMOTE: "api",
}


# Request bodies, with Render's own (camelCase) field names.
class _CreateDeploy(BaseModel):
    clearCache: Literal["clear", "do_not_clear"] | None = None
    commitId: str | None = None
    deployMode: Literal["build_and_deploy", "deploy_only"] | None = None


class _Rollback(BaseModel):
    deployId: str


class _ServiceUpdate(BaseModel):
    autoDeploy: Literal["yes", "no"] | None = None


def create_app(
    history: DeploymentHistory,
    *,
    token: str,
    service_id: str,
    clock: Clock,
    faults: Faults | None = None,
) -> FastAPI:
    """The Render API of one account holding one service, whose deploys are ``history``."""
    faults = faults if faults is not None else Faults()
    app = FastAPI(title="Render stand-in", openapi_url=None)
    answer_refusals(app, _render)
    created = clock.now()
    service: dict[str, Any] = {"autoDeploy": "yes", "updatedAt": created}

    async def guard(
        request: Request, operation: str, service_ref: str | None, subject: str | None = None
    ) -> None:
        if request.method != "GET":
            history.record(operation, subject)
        await faults.admit(operation, clock.now())
        if bearer(request.headers.get("authorization")) != token:
            raise Refused(401, "Unauthorized")
        if service_ref not in (None, service_id):
            raise Refused(404, "Service not found")

    def found(deploy_id: str) -> Deployment:
        deploy = history.get(deploy_id)
        if deploy is None:
            raise Refused(404, "Deploy not found")
        return deploy

    def service_json() -> dict[str, Any]:
        return {
            "id": service_id,
            "name": history.name,
            "slug": history.name,
            "type": "web_service",
            "autoDeploy": service["autoDeploy"],
            "branch": "main",
            "suspended": "not_suspended",
            "suspenders": [],
            "createdAt": _iso(created),
            "updatedAt": _iso(service["updatedAt"]),
            "dashboardUrl": f"https://dashboard.render.com/web/{service_id}",
        }

    @app.get("/v1/services/{service_ref}/deploys")
    async def list_deploys(
        request: Request,
        service_ref: str,
        status: Annotated[list[str] | None, Query()] = None,
        cursor: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> list[dict[str, Any]]:
        await guard(request, "list_deploys", service_ref)
        if not set(status or ()) <= DEPLOY_STATUSES:
            raise Refused(400, f"invalid status: {status}")
        deploys = history.deployments()
        start = 0
        if cursor is not None:
            ids = [d.id for d in deploys]
            after = _decode(cursor)
            if after not in ids:
                raise Refused(400, "invalid cursor")
            start = ids.index(after) + 1
        wanted = [d for d in deploys[start:] if not status or _status(d) in status]
        return [{"cursor": _encode(d.id), "deploy": _deploy(d)} for d in wanted[:limit]]

    @app.get("/v1/services/{service_ref}/deploys/{deploy_id}")
    async def get_deploy(request: Request, service_ref: str, deploy_id: str) -> dict[str, Any]:
        await guard(request, "get_deploy", service_ref)
        return _deploy(found(deploy_id))

    @app.post("/v1/services/{service_ref}/deploys", status_code=201)
    async def create_deploy(
        request: Request, service_ref: str, body: _CreateDeploy | None = None
    ) -> dict[str, Any]:
        body = body or _CreateDeploy()
        await guard(request, "create_deploy", service_ref, body.commitId)
        if body.deployMode == "deploy_only" and (body.commitId or body.clearCache):
            raise Refused(
                400, "deployMode deploy_only cannot be combined with commitId or clearCache"
            )
        source = (
            history.live()
            if body.deployMode == "deploy_only"
            else next(iter(history.deployments()), None)
        )
        release = body.commitId or (source.release if source else None)
        if release is None:
            raise Refused(400, "the service has nothing to deploy")
        return _deploy(history.deploy(release, cause=Cause.REDEPLOY, outcome=faults.go_live))

    @app.post("/v1/services/{service_ref}/rollback", status_code=201)
    async def rollback(request: Request, service_ref: str, body: _Rollback) -> dict[str, Any]:
        await guard(request, "rollback", service_ref, body.deployId)
        target = found(body.deployId)
        if not target.built:
            raise Refused(400, f"deploy {target.id} was never built and cannot be rolled back to")
        new = history.deploy(target.release, cause=Cause.ROLLBACK, outcome=faults.go_live)
        return _deploy(new)

    @app.get("/v1/services/{service_ref}")
    async def get_service(request: Request, service_ref: str) -> dict[str, Any]:
        await guard(request, "get_service", service_ref)
        return service_json()

    @app.patch("/v1/services/{service_ref}")
    async def update_service(
        request: Request, service_ref: str, body: _ServiceUpdate
    ) -> dict[str, Any]:
        await guard(request, "update_service", service_ref, body.autoDeploy)
        if body.autoDeploy is not None:
            service.update(autoDeploy=body.autoDeploy, updatedAt=clock.now())
        return service_json()

    @app.get("/v1/events/{event_id}")
    async def get_event(request: Request, event_id: str) -> dict[str, Any]:
        await guard(request, "get_event", None)
        event = next((e for e in history.finished() if e.id == event_id), None)
        if event is None:
            raise Refused(404, "Event not found")
        return {
            "id": event.id,
            "serviceId": service_id,
            "timestamp": _iso(event.at),
            "type": "deploy_ended",
            "details": {
                "deployId": event.deployment_id,
                "deployStatus": "succeeded" if event.succeeded else "failed",
            },
        }

    return app


def _render(refused: Refused) -> Response:
    headers = rate_limit_headers("Ratelimit", refused.throttle) if refused.throttle else {}
    body = {"id": refused.code, "message": refused.message}
    return JSONResponse(body, status_code=refused.status, headers=headers)


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _encode(deploy_id: str) -> str:
    return base64.urlsafe_b64encode(deploy_id.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str | None:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _status(d: Deployment) -> str:
    """Render's word for ``d``'s state: a rollback updates, anything else builds."""
    rollback = d.cause is Cause.ROLLBACK
    if d.state is State.BUILDING:
        return "update_in_progress" if rollback else "build_in_progress"
    if d.state is State.FAILED:
        return "update_failed" if rollback else "build_failed"
    return "live" if d.state is State.LIVE else "deactivated"


def _deploy(d: Deployment) -> dict[str, Any]:
    return {
        "id": d.id,
        "commit": {"id": d.release, "createdAt": _iso(d.created_at)},
        "status": _status(d),
        "trigger": _TRIGGER[d.cause],
        "createdAt": _iso(d.created_at),
        "startedAt": _iso(d.created_at),
        "finishedAt": _iso(d.finished_at) if d.finished_at else None,
        "updatedAt": _iso(d.updated_at),
    }


def render_signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``webhook-signature`` (Standard Webhooks): ``v1,`` and the base64 HMAC-SHA256 of
    ``{id}.{timestamp}.{body}``, keyed with the base64-decoded ``whsec_`` secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def render_webhook(
    history: DeploymentHistory, event_id: str, *, service_id: str, secret: str, msg_id: str
) -> Delivery:
    """The ``deploy_ended`` delivery Render would POST about ``event_id`` (an id from
    ``history.finished()``), signed now by the history's clock.

    :raises KeyError: no such event.
    """
    event = next((e for e in history.finished() if e.id == event_id), None)
    if event is None:
        raise KeyError(event_id)
    now = history.clock.now()
    payload = {
        "type": "deploy_ended",
        "timestamp": _iso(now),
        "data": {
            "id": event.id,
            "serviceId": service_id,
            "serviceName": history.name,
            "status": "succeeded" if event.succeeded else "failed",
        },
    }
    return signed_delivery(payload, secret=secret, msg_id=msg_id, at=now)


def signed_delivery(
    payload: Mapping[str, Any], *, secret: str, msg_id: str, at: datetime
) -> Delivery:
    """``payload`` as Render POSTs it at ``at`` (Standard Webhooks): ``webhook-id``,
    ``webhook-timestamp`` in unix seconds and ``webhook-signature``."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = math.floor(at.timestamp())
    headers = {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": render_signature(secret, msg_id, timestamp, body),
    }
    return Delivery(body, headers)
