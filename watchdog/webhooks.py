"""Deploy webhooks from Vercel, Render and GitHub (ARCHITECTURE §6): a production deploy that
succeeded starts a watch, exactly as ``POST /api/deploys`` would.

Every delivery goes through the same steps, so that nothing a forger sends is ever stored:

1. Verify the signature over the raw body with the secret from ``webhooks:``
   (``api-contracts.md`` §1.6, §2.4, §7.1). No secret configured, a missing header, a wrong
   signature, or a Render timestamp more than 5 minutes off the clock: 401, and the body is
   not even parsed. (An unconfigured secret is 401 rather than 404, as the API's missing token
   is: an endpoint never accepts what it cannot verify.)
2. Read the payload (400 naming the field when it is not the documented shape) and decide what
   it means. A Render delivery names only an event, so the Render API is asked which deploy
   ended (502 when it cannot say; the delivery is not remembered, so Render's retry can work).
3. Remember the delivery id: a redelivery answers 200 ``duplicate`` and changes nothing.
4. Watch the deployment on every target it belongs to (202 ``watching``), or answer 200
   ``ignored`` with the reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, NoReturn, TypeVar
from urllib.parse import quote

import pydantic
import structlog
from fastapi import APIRouter, Header, HTTPException, Request, Response, status
from pydantic import AwareDatetime, BaseModel, Field

from watchdog.clock import Clock
from watchdog.daemon import Watchdog
from watchdog.errors import ConfigError, RollbackError
from watchdog.httpclient import new_client
from watchdog.model import Deployment
from watchdog.providers.http import ProviderHTTP
from watchdog.secrets import Secret
from watchdog.settings import GitProvider, RenderProvider, Settings, VercelProvider

log = structlog.get_logger("watchdog.webhooks")

Source = Literal["vercel", "render", "github"]
TOLERANCE = timedelta(minutes=5)
"""How far a Render ``webhook-timestamp`` may be from our clock (Standard Webhooks' default)."""
RENDER_LOOKUP = timedelta(seconds=10)
"""The most the Render API may take to say which deploy ended: Render gives up after 15 s."""
VERCEL_EVENTS = frozenset({"deployment.succeeded", "deployment.ready"})

_M = TypeVar("_M", bound=BaseModel)
Decided = list[Deployment] | str
"""The deployments a delivery announces, or why it announces none."""


class WebhookAnswer(BaseModel):
    """What the daemon made of a verified delivery."""

    status: Literal["watching", "ignored", "duplicate"]
    watch_id: str | None = Field(
        None, description="the watch the deploy is under (the first, if several targets match)"
    )
    watches: dict[str, str] | None = Field(None, description="target → its watch's id")
    reason: str | None = Field(None, description="why the delivery starts no watch")


# The payloads' shapes: only what is used, named as each service names it.
class _Id(BaseModel):
    id: str


class _VercelEnvelope(BaseModel):
    id: str
    type: str
    createdAt: int = Field(description="ms since the epoch")
    payload: dict[str, Any]


class _VercelDeployment(BaseModel):
    id: str
    name: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class _VercelPayload(BaseModel):
    deployment: _VercelDeployment
    target: str | None = None
    project: _Id
    team: _Id | None = None


class _RenderEnvelope(BaseModel):
    type: str
    data: dict[str, Any]


class _RenderData(BaseModel):
    id: str  # the event's, not the deploy's
    serviceId: str
    status: str | None = None


class _RenderDetails(BaseModel):
    deployId: str
    deployStatus: str | None = None


class _RenderEvent(BaseModel):
    timestamp: AwareDatetime
    details: _RenderDetails


class _RenderCommit(BaseModel):
    id: str | None = None


class _RenderDeploy(BaseModel):
    id: str
    trigger: str | None = None
    commit: _RenderCommit | None = None


_EVENT = pydantic.TypeAdapter(_RenderEvent)
_DEPLOY = pydantic.TypeAdapter(_RenderDeploy)


class _GitHubStatus(BaseModel):
    state: str
    environment: str
    created_at: AwareDatetime


class _GitHubDeployment(BaseModel):
    sha: str


class _GitHubRepository(BaseModel):
    full_name: str


class _DeploymentStatus(BaseModel):
    deployment_status: _GitHubStatus
    deployment: _GitHubDeployment
    repository: _GitHubRepository


def _reject(source: Source, reason: str) -> NoReturn:
    log.warning("webhook.rejected", source=source, reason=reason)
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, reason)


def _signed(expected: bytes, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected, given.encode())


def _parse(shape: type[_M], data: Any, where: str) -> _M:
    """``data`` as ``shape``; a 400 naming the first field that does not fit."""
    try:
        return shape.model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join([where, *map(str, first["loc"])]).strip(".") or "the body"
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, f"unexpected payload: {field}: {first['msg']}"
        ) from None


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "expected a JSON body (content type application/json)"
        ) from None


def _deployed_at(at: Callable[[], datetime], now: datetime) -> datetime:
    """When the event says the deploy went live; never later than now (a fast clock). A time
    no watch window can be counted from is a 400, before anything is remembered."""
    try:
        when = at().astimezone(UTC)
        when + timedelta(days=1)
    except (OverflowError, OSError, ValueError):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, "unexpected payload: the deploy's time is out of range"
        ) from None
    return min(when, now)


def _vercel(envelope: _VercelEnvelope, settings: Settings, now: datetime) -> Decided:
    if envelope.type not in VERCEL_EVENTS:
        return f"a {envelope.type} event starts no watch (only {', '.join(sorted(VERCEL_EVENTS))})"
    payload = _parse(_VercelPayload, envelope.payload, "payload")
    deployment, project = payload.deployment, payload.project.id
    if payload.target != "production":
        return f"deployment {deployment.id} is for {payload.target or 'preview'}, not production"
    team = payload.team.id if payload.team else None
    targets = [
        name
        for name, target in settings.targets.items()
        if isinstance(target.provider, VercelProvider)
        and target.provider.project in (project, deployment.name)
        and target.provider.team_id in (None, team)
    ]
    if not targets:
        return f"no target deploys Vercel project {project} ({deployment.name})"
    at = _deployed_at(lambda: datetime.fromtimestamp(envelope.createdAt / 1000, UTC), now)
    commit = deployment.meta.get("githubCommitSha")
    return [
        Deployment(name, deployment.id, at, commit=commit if isinstance(commit, str) else None)
        for name in targets
    ]


async def _render_lookup(
    config: RenderProvider, event_id: str
) -> tuple[_RenderEvent, _RenderDeploy]:
    """Which deploy the event ended, and that deploy: ``GET /v1/events/{id}``, then the deploy.

    :raises RollbackError: Render did not answer, or not as documented.
    :raises ConfigError: the target's Render token is unset or refused.
    """
    headers = {"Authorization": f"Bearer {config.token.reveal()}"}
    async with new_client(timeout=RENDER_LOOKUP.total_seconds()) as client:
        http = ProviderHTTP(
            "render", client, config.api_url, headers, read_attempts=2, read_timeout=RENDER_LOOKUP
        )
        path = f"/v1/events/{quote(event_id, safe='')}"
        event = http.parse(_EVENT, await http.read(path), None, f"GET {path}")
        deploy_id, service = event.details.deployId, quote(config.service_id, safe="")
        path = f"/v1/services/{service}/deploys/{quote(deploy_id, safe='')}"
        deploy = http.parse(_DEPLOY, await http.read(path, deploy_id), deploy_id, f"GET {path}")
    return event, deploy


async def _render(envelope: _RenderEnvelope, settings: Settings, now: datetime) -> Decided:
    if envelope.type != "deploy_ended":
        return f"a {envelope.type} event starts no watch (only deploy_ended)"
    data = _parse(_RenderData, envelope.data, "data")
    if data.status not in (None, "succeeded"):
        return f"Render event {data.id}: the deploy ended {data.status}"
    matching = {
        name: target.provider
        for name, target in settings.targets.items()
        if isinstance(target.provider, RenderProvider)
        and target.provider.service_id == data.serviceId
    }
    if not matching:
        return f"no target deploys Render service {data.serviceId}"
    try:
        event, deploy = await _render_lookup(next(iter(matching.values())), data.id)
    except (RollbackError, ConfigError) as exc:
        log.warning("webhook.lookup_failed", source="render", render_event=data.id, error=str(exc))
        raise HTTPException(
            status.HTTP_502_BAD_GATEWAY, f"could not ask Render about event {data.id}: {exc}"
        ) from None
    ended = event.details.deployStatus or data.status
    if ended != "succeeded":
        return f"Render event {data.id}: deploy {deploy.id} ended {ended or 'without a status'}"
    if deploy.trigger == "rollback":  # ours, or someone's by hand: not a new release
        return f"deploy {deploy.id} is a rollback, not a new release"
    at = _deployed_at(lambda: event.timestamp, now)
    commit = deploy.commit.id if deploy.commit else None
    return [Deployment(name, deploy.id, at, commit=commit) for name in matching]


def _same_repository(configured: str, full_name: str) -> bool:
    """Whether a git target's ``repository`` (``https://github.com/acme/web.git``,
    ``git@github.com:acme/web``) is GitHub's ``owner/name``."""
    path = configured.lower().rstrip("/").removesuffix(".git")
    return path.endswith(("/" + full_name.lower(), ":" + full_name.lower()))


def _github(event: str, body: Any, settings: Settings, now: datetime) -> Decided:
    if event != "deployment_status":
        return f"a {event} event starts no watch (only deployment_status)"
    payload = _parse(_DeploymentStatus, body, "")
    state, sha = payload.deployment_status, payload.deployment.sha
    if state.state != "success":
        return f"deployment of {sha} is {state.state}, not success"
    if state.environment.lower() != "production":
        return f"deployment of {sha} is to {state.environment}, not production"
    repository = payload.repository.full_name
    targets = [
        name
        for name, target in settings.targets.items()
        if isinstance(target.provider, GitProvider)
        and _same_repository(target.provider.repository, repository)
    ]
    if not targets:
        return f"no git target deploys repository {repository}"
    at = _deployed_at(lambda: state.created_at, now)
    return [Deployment(name, sha, at, commit=sha) for name in targets]


def webhook_router(daemon: Watchdog, clock: Clock) -> APIRouter:
    """``POST /webhooks/{vercel,render,github}`` over ``daemon``; ``clock`` (the daemon's)
    judges Render's timestamps and dates remembered deliveries."""
    warned: set[Source] = set()
    router = APIRouter(prefix="/webhooks", tags=["webhooks"])

    def key(source: Source, secret: Secret | None) -> str:
        """The configured secret, or 401 (said in the log once per source)."""
        name = f"webhooks.{source}_secret"
        reason = f"{name} is not configured"
        if secret is not None:
            try:
                return secret.reveal()
            except ConfigError as exc:  # names the variable and the key, never a value
                reason = str(exc)
        unusable(source, reason)

    def unusable(source: Source, reason: str) -> NoReturn:
        if source not in warned:
            warned.add(source)
            log.warning("webhook.secret_missing", source=source, reason=reason, effect="401")
        _reject(source, f"webhooks.{source}_secret is not usable here: nothing can be verified")

    def ready() -> None:
        if not daemon.ready:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the daemon is not ready")

    async def settle(
        source: Source, delivery: str, decided: Decided, response: Response
    ) -> WebhookAnswer:
        if await daemon.store.delivered(source, delivery):
            log.info("webhook.redelivered", source=source, delivery=delivery)
            return WebhookAnswer(status="duplicate")
        if isinstance(decided, str):
            await daemon.store.remember_delivery(source, delivery, clock.now())
            log.info("webhook.ignored", source=source, delivery=delivery, reason=decided)
            return WebhookAnswer(status="ignored", reason=decided)
        # Remembered once acted on: a delivery that failed half-way is retried whole by the
        # provider (announcing is idempotent), never dropped as a duplicate.
        watches: dict[str, str] = {}
        for deployment in decided:
            record = await daemon.announce(deployment)
            watches[deployment.target] = record.id
            log.info(
                "webhook.accepted",
                source=source,
                delivery=delivery,
                target=deployment.target,
                deployment=deployment.id,
                watch=record.id,
            )
        await daemon.store.remember_delivery(source, delivery, clock.now())
        response.status_code = status.HTTP_202_ACCEPTED
        return WebhookAnswer(
            status="watching", watch_id=next(iter(watches.values())), watches=watches
        )

    answers: dict[int | str, dict[str, Any]] = {
        202: {"model": WebhookAnswer, "description": "watching: a production deploy succeeded"},
        400: {"description": "signed, but not the documented payload"},
        401: {"description": "no usable secret configured, or a missing or wrong signature"},
        503: {"description": "the daemon is starting or stopping: the provider retries"},
    }
    body = {"requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}}
    documented: dict[str, Any] = {
        "response_model": WebhookAnswer,
        "response_model_exclude_none": True,
        "openapi_extra": body,
    }

    @router.post(
        "/vercel",
        summary="A Vercel deployment webhook (x-vercel-signature: hex HMAC-SHA1 of the body)",
        responses=answers,
        **documented,
    )
    async def vercel(
        request: Request,
        response: Response,
        x_vercel_signature: Annotated[str | None, Header()] = None,
    ) -> WebhookAnswer:
        raw = await request.body()
        secret = key("vercel", daemon.config.settings.webhooks.vercel_secret)
        if x_vercel_signature is None:
            _reject("vercel", "no x-vercel-signature header")
        expected = hmac.new(secret.encode(), raw, hashlib.sha1).hexdigest()
        if not _signed(expected.encode(), x_vercel_signature):
            _reject("vercel", "x-vercel-signature does not match the body")
        ready()
        envelope = _parse(_VercelEnvelope, _json(raw), "")
        decided = _vercel(envelope, daemon.config.settings, clock.now())
        return await settle("vercel", envelope.id, decided, response)

    @router.post(
        "/render",
        summary="A Render webhook (Standard Webhooks: webhook-id, webhook-timestamp, "
        "webhook-signature)",
        responses={**answers, 502: {"description": "the Render API could not say which deploy"}},
        **documented,
    )
    async def render(
        request: Request,
        response: Response,
        webhook_id: Annotated[str | None, Header()] = None,
        webhook_timestamp: Annotated[str | None, Header()] = None,
        webhook_signature: Annotated[str | None, Header()] = None,
    ) -> WebhookAnswer:
        raw = await request.body()
        secret = key("render", daemon.config.settings.webhooks.render_secret)
        try:
            signing_key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            signing_key = b""
        if not signing_key:
            unusable("render", "webhooks.render_secret: expected whsec_ followed by base64")
        if webhook_id is None or webhook_timestamp is None or webhook_signature is None:
            _reject("render", "expected webhook-id, webhook-timestamp and webhook-signature")
        try:
            sent = datetime.fromtimestamp(int(webhook_timestamp), UTC)
        except (ValueError, OverflowError, OSError):
            _reject("render", "webhook-timestamp is not a time in unix seconds")
        if abs(clock.now() - sent) > TOLERANCE:
            _reject("render", f"webhook-timestamp {sent.isoformat()} is more than 5m from now")
        signed = f"{webhook_id}.{webhook_timestamp}.".encode() + raw
        mac = hmac.new(signing_key, signed, hashlib.sha256).digest()
        expected = b"v1," + base64.b64encode(mac)
        if not any(_signed(expected, given) for given in webhook_signature.split()):
            _reject("render", "no webhook-signature matches the body")
        ready()
        envelope = _parse(_RenderEnvelope, _json(raw), "")
        decided = await _render(envelope, daemon.config.settings, clock.now())
        return await settle("render", webhook_id, decided, response)

    @router.post(
        "/github",
        summary="A GitHub deployment_status webhook (X-Hub-Signature-256: sha256=<hex>)",
        responses=answers,
        **documented,
    )
    async def github(
        request: Request,
        response: Response,
        x_hub_signature_256: Annotated[str | None, Header()] = None,
        x_github_event: Annotated[str | None, Header()] = None,
        x_github_delivery: Annotated[str | None, Header()] = None,
    ) -> WebhookAnswer:
        raw = await request.body()
        secret = key("github", daemon.config.settings.webhooks.github_secret)
        if x_hub_signature_256 is None:
            _reject("github", "no X-Hub-Signature-256 header (the legacy SHA-1 one is not used)")
        expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        if not _signed(expected.encode(), x_hub_signature_256):
            _reject("github", "X-Hub-Signature-256 does not match the body")
        ready()
        if x_github_event is None or x_github_delivery is None:
            raise HTTPException(
                status.HTTP_400_BAD_REQUEST, "expected X-GitHub-Event and X-GitHub-Delivery"
            )
        decided = _github(x_github_event, _json(raw), daemon.config.settings, clock.now())
        return await settle("github", x_github_delivery, decided, response)

    return router
