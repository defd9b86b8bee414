"""The daemon's HTTP API (ARCHITECTURE §6), served by uvicorn from ``watchdog run``.

Probes and metrics are open; every call that changes something needs ``Authorization: Bearer
<api.token>``, and without a usable token they all answer 401: never open by default. Until
the daemon is ready every ``/api`` call answers 503, since before that it has no targets open.
The API keeps no state of its own: it validates, then asks the daemon.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

import structlog
from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from watchdog.clock import Clock, SystemClock
from watchdog.daemon import UnknownWatch, Watchdog
from watchdog.errors import ConfigError, StoreError
from watchdog.model import Deployment
from watchdog.webhooks import webhook_router

log = structlog.get_logger("watchdog.api")
T = TypeVar("T")
_Responses = dict[int | str, dict[str, Any]]  # what an endpoint may answer besides success

# auto_error off: a missing header must be our 401 (with the same answer as a wrong token).
_BEARER = HTTPBearer(auto_error=False, description="the daemon's `api.token`")


class _Body(BaseModel):
    """A request body: a misspelt field is an error, never silently dropped; a NUL character,
    which no store keeps, is refused at the door."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("expected text without NUL characters")
        return value


# A watch id as a path parameter: NUL is refused before any store sees it.
WatchId = Annotated[str, Path(pattern=r"^[^\x00]+$", description="the watch's id")]

# A deploy announced from further ahead than this is a clock or a client gone wrong.
_FUTURE = timedelta(minutes=5)


class DeployIn(_Body):
    """A deploy to watch, as CI or a provider announces it."""

    target: str = Field(description="a configured target, e.g. `backend`")
    deployment_id: str = Field(min_length=1, description="the provider's id of the deployment")
    previous_deployment_id: str | None = Field(
        None, description="the known-good deployment to go back to; found from the provider"
    )
    release: str | None = Field(None, description="the Sentry release; default the commit")
    commit: str | None = Field(None, description="the commit sha deployed")
    deployed_at: AwareDatetime | None = Field(
        None, description="ISO 8601 with a zone; the watch window starts here; default now"
    )
    migration_version: str | None = Field(None, description="the migration the deploy applies")
    migration_failed: bool = Field(False, description="the deploy says its migration failed")

    @field_validator("deployed_at")
    @classmethod
    def _plausible(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            utc = value.astimezone(UTC)
            utc + timedelta(days=1)  # room for the watch window after it
        except OverflowError:
            raise ValueError("expected a time between year 1 and 9999") from None
        if utc > datetime.now(UTC) + _FUTURE:
            raise ValueError("expected a time not in the future")
        return utc


class SignalIn(_Body):
    """An outside signal about a deployment, e.g. from a security scanner."""

    target: str = Field(description="a configured target")
    deployment_id: str | None = Field(
        None, description="default: the deployment the target's open watch is on"
    )
    kind: Literal["security_alert"] = Field(description="the metric it sets to 1")
    detail: str = Field(min_length=1, description="what was found, for people")


class Announced(BaseModel):
    """The watch the deploy is under: the same one however often it is announced."""

    watch_id: str
    state: str = Field(description="baseline, observing, acting, verifying or closed")


class Raised(BaseModel):
    """The stored signal; the watch of its deployment reads it at its next tick."""

    target: str
    deployment_id: str
    kind: str
    raised_at: datetime


class Acknowledged(BaseModel):
    """When people first took the watch over; acknowledging again keeps that time."""

    watch_id: str
    acknowledged_at: datetime | None


class Held(BaseModel):
    """The watch keeps reading and deciding, but acts on nothing any more."""

    watch_id: str
    held: bool


class Readiness(BaseModel):
    ready: bool


class _Shape(BaseModel):
    """Documents a part of the watch summary (ARCHITECTURE §4); a key the summary gains later
    passes through rather than being dropped."""

    model_config = ConfigDict(extra="allow")


class ActionOut(_Shape):
    kind: str = Field(description="rollback, disable_flag or enable_flag")
    provider: str
    to: str | None
    status: str = Field(description="intended, done or failed")
    started_at: str | None
    finished_at: str | None
    seconds: float | None
    target_seconds: int = Field(description="how long the runbook allows, in seconds")
    error: str | None = None
    notes: list[str] | None = None


class CheckOut(_Shape):
    name: str
    passed: bool
    detail: str | None = None


class VerificationOut(_Shape):
    passed: bool
    checks: list[CheckOut]


class Summary(_Shape):
    """One watch, the shape ``watch --json`` prints (ARCHITECTURE §4); times are ISO 8601."""

    target: str
    deployment_id: str
    previous_deployment_id: str | None
    verdict: str = Field(
        description="healthy, monitor, inconclusive, rolled_back, flag_disabled, "
        "would_roll_back, rollback_failed, superseded; an open watch's state until it closes"
    )
    rule: str | None
    dry_run: bool
    started_at: str | None
    decided_at: str | None
    closed_at: str | None
    actions: list[ActionOut]
    verification: VerificationOut | None
    incident_report: str | None
    explanation: str | None = None


class ListedSummary(Summary):
    """A summary with the watch's id, for following it up."""

    id: str


def _invalid(field: str, message: str, value: object) -> RequestValidationError:
    """A 422 in FastAPI's own shape, for a body that parses but names something unknown."""
    return RequestValidationError(
        [{"type": "value_error", "loc": ("body", field), "msg": message, "input": value}]
    )


async def _or_404(call: Awaitable[T], detail: str) -> T:
    try:
        return await call
    except UnknownWatch:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail) from None


def create_api(daemon: Watchdog, *, clock: Clock | None = None) -> FastAPI:
    """The API over ``daemon``. ``clock`` dates a deploy announced without ``deployed_at``:
    pass the daemon's (the default is the wall clock)."""
    now = (clock or SystemClock()).now
    warned = False

    def expected_token() -> str | None:
        nonlocal warned
        token = daemon.config.settings.api.token
        if token is None:
            reason = "api.token is not configured"
        else:
            try:
                return token.reveal()
            except ConfigError as exc:  # names the variable and the key, never a value
                reason = str(exc)
        if not warned:
            warned = True
            log.warning("api.token_missing", reason=reason, effect="mutating calls answer 401")
        return None

    expected_token()  # says at start, not at the first refused call, that the API is shut

    def valid(credentials: HTTPAuthorizationCredentials | None) -> bool:
        expected = expected_token()
        return (
            expected is not None
            and credentials is not None
            and hmac.compare_digest(credentials.credentials.encode(), expected.encode())
        )

    refused = {"detail": "a valid bearer token is required"}
    challenge = {"WWW-Authenticate": "Bearer"}

    # async, as every dependency here: FastAPI would run a plain def in a worker thread.
    async def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        if not valid(credentials):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, refused["detail"], challenge)

    async def ready() -> None:
        if not daemon.ready:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the daemon is not ready")

    def known(target: str) -> None:
        targets = daemon.config.settings.targets
        if target not in targets:
            raise _invalid("target", f"expected one of {', '.join(targets)}", target)

    reads = [Depends(ready)]
    writes = [Depends(authorized), Depends(ready)]
    not_ready: _Responses = {
        503: {"description": "the daemon is starting or stopping, or its store is down"}
    }
    unauthorized: _Responses = {**not_ready, 401: {"description": "no or wrong bearer token"}}
    with_body: _Responses = {**unauthorized, 400: {"description": "the body is not JSON text"}}
    missing: _Responses = {404: {"description": "no such watch"}}
    app = FastAPI(
        title="rollback-watchdog",
        summary="Watches every deploy and rolls it back when the runbook says so.",
        version="1",
    )

    @app.middleware("http")
    async def token_first(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # FastAPI reads a body before any dependency runs: without this, a stranger's
        # unparsable body would learn 422 or 400 where every other refusal is 401.
        if (
            request.method == "POST"
            and request.url.path.startswith("/api/")
            and not valid(await _BEARER(request))
        ):
            return JSONResponse(refused, status.HTTP_401_UNAUTHORIZED, challenge)
        return await call_next(request)

    @app.exception_handler(StoreError)
    async def store_failed(request: Request, exc: StoreError) -> JSONResponse:
        # The store is down, not the request wrong: a retryable 503 that names no database
        # (the log has the store's own, secret-free, message).
        log.error("api.store_failed", path=request.url.path, error=str(exc))
        return JSONResponse(
            {"detail": "the state store is unavailable; try again"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "5"},
        )

    @app.get("/healthz", tags=["probes"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["probes"],
        summary="The store is migrated and the scheduler runs",
        responses={503: {"model": Readiness, "description": "not ready"}},
    )
    async def readyz(response: Response) -> Readiness:
        if not daemon.ready:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return Readiness(ready=daemon.ready)

    @app.get(
        "/metrics",
        tags=["probes"],
        summary="The daemon's numbers, in the Prometheus text format",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics() -> Response:
        return Response(daemon.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/api/deploys",
        tags=["deploys"],
        summary="Announce a deploy: watch it (once, however often it is announced)",
        status_code=status.HTTP_202_ACCEPTED,
        dependencies=writes,
        responses=with_body,
    )
    async def announce(body: DeployIn) -> Announced:
        known(body.target)
        record = await daemon.announce(
            Deployment(
                target=body.target,
                id=body.deployment_id,
                deployed_at=body.deployed_at or now(),
                previous_id=body.previous_deployment_id,
                release=body.release,
                commit=body.commit,
                migration_version=body.migration_version,
                migration_failed=body.migration_failed,
            )
        )
        return Announced(watch_id=record.id, state=str(record.state))

    @app.get(
        "/api/watches",
        tags=["watches"],
        summary="The newest watches, open or closed",
        dependencies=reads,
        response_model=list[ListedSummary],
        response_model_exclude_unset=True,
        responses=not_ready,
    )
    async def watches(
        limit: Annotated[int, Query(ge=1, le=500, description="how many, newest first")] = 50,
    ) -> list[dict[str, Any]]:
        return await daemon.summaries(limit)

    @app.get(
        "/api/watches/{watch_id}",
        tags=["watches"],
        summary="One watch's summary",
        dependencies=reads,
        response_model=Summary,
        response_model_exclude_unset=True,
        responses={**not_ready, **missing},
    )
    async def watch(watch_id: WatchId) -> dict[str, Any]:
        return await _or_404(daemon.summary(watch_id), f"no watch {watch_id}")

    @app.post(
        "/api/watches/{watch_id}/ack",
        tags=["watches"],
        summary="Acknowledge a watch: stops its escalation",
        dependencies=writes,
        responses={**unauthorized, **missing},
    )
    async def ack(watch_id: WatchId) -> Acknowledged:
        record = await _or_404(daemon.ack(watch_id), f"no watch {watch_id}")
        log.info("watch.acknowledged", watch=watch_id)
        return Acknowledged(watch_id=record.id, acknowledged_at=record.acknowledged_at)

    @app.post(
        "/api/watches/{watch_id}/hold",
        tags=["watches"],
        summary="Hold an open watch: it still reads and decides, but acts on nothing",
        dependencies=writes,
        responses={**unauthorized, 404: {"description": "no such open watch"}},
    )
    async def hold(watch_id: WatchId) -> Held:
        record = await _or_404(daemon.hold(watch_id), f"no open watch {watch_id}")
        log.warning("watch.held", watch=watch_id)
        return Held(watch_id=record.id, held=record.held)

    @app.post(
        "/api/signals",
        tags=["signals"],
        summary="Raise an outside signal (a security alert) against a deployment",
        status_code=status.HTTP_202_ACCEPTED,
        dependencies=writes,
        responses=with_body,
    )
    async def signal(body: SignalIn) -> Raised:
        known(body.target)
        try:
            raised = await daemon.raise_signal(
                body.target, body.kind, body.detail, deployment_id=body.deployment_id
            )
        except UnknownWatch:
            raise _invalid(
                "deployment_id", f"no open watch of {body.target}: name the deployment", None
            ) from None
        return Raised(
            target=raised.target,
            deployment_id=raised.deployment_id,
            kind=raised.kind,
            raised_at=raised.raised_at,
        )

    app.include_router(webhook_router(daemon, clock or SystemClock()))
    return app
