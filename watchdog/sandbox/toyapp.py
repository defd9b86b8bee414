"""A toy web app with a fault switch: the thing the sandbox deploys, breaks and rolls back.

Its routes are the runbook's verification checklist (home page, health, database health, login,
dashboard, payments, appointments). Every request it serves lands in the ``EventLog`` as a
transaction of the live release, plus an error when a fault made it fail, so the Sentry
stand-in reports the live release's error rate. ``Traffic`` writes the same events for
synthetic load without HTTP, so Sentry numbers are meaningful and exact.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchdog.clock import Clock
from watchdog.sandbox.events import FAILED_STATUS, Event, EventLog, Timeline, is_hit, write_timeline

_HEALTH_ROUTES = {"/health", "/api/health/database"}
_SERVER_ERROR = {"detail": "Internal Server Error"}
_APPOINTMENTS = [
    {"id": 1, "title": "Annual check-up", "starts_at": "2026-02-02T09:00:00Z"},
    {"id": 2, "title": "Follow-up call", "starts_at": "2026-02-03T14:30:00Z"},
]


class Faults(BaseModel):
    """How one release misbehaves; the defaults are a healthy release."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_fraction: float = Field(0.0, ge=0, le=1, description="share of app requests that 500")
    added_latency_ms: float = Field(0.0, ge=0, description="delay before every request, in ms")
    login_broken: bool = False
    payments_broken: bool = False
    database_broken: bool = Field(False, description="database health and /health answer 503")


class ToyState:
    """Which release is live and how each release behaves; changed at run time from tests
    (Python) or from outside (``POST /_sandbox/live``, ``POST /_sandbox/faults``)."""

    def __init__(self, live: str, *, password: str) -> None:
        self._lock = threading.Lock()
        self._live = live
        self._password = password
        self._faults: dict[str, Faults] = {}
        self._served: dict[str, int] = {}
        self._tokens: dict[str, str] = {}

    @property
    def live(self) -> str:
        with self._lock:
            return self._live

    def set_live(self, release: str) -> None:
        with self._lock:
            self._live = release

    def faults(self, release: str | None = None) -> Faults:
        """The faults of ``release`` (default: the live one)."""
        with self._lock:
            return self._faults.get(release or self._live, Faults())

    def set_faults(self, faults: Faults, release: str | None = None) -> None:
        """Replace the faults of ``release`` (default: the live one)."""
        with self._lock:
            self._faults[release or self._live] = faults

    def login(self, email: str, password: str) -> str | None:
        """A new bearer token for ``email``, or None when the password is wrong."""
        if not secrets.compare_digest(password, self._password):
            return None
        token = secrets.token_urlsafe(16)
        with self._lock:
            self._tokens[token] = email
        return token

    def user(self, authorization: str | None) -> str | None:
        """Who an ``Authorization: Bearer <token>`` header signs in, if anyone."""
        scheme, _, token = (authorization or "").partition(" ")
        with self._lock:
            return self._tokens.get(token) if scheme.lower() == "bearer" else None

    def next_request_fails(self, release: str) -> bool:
        """Count one more app request of ``release``; True when its error fraction picks it."""
        with self._lock:
            served = self._served.get(release, 0)
            self._served[release] = served + 1
            return is_hit(served, self._faults.get(release, Faults()).error_fraction)


class _Broken(Exception):
    """A switched-on fault: answered 500 and recorded as an error event titled ``title``."""

    def __init__(self, title: str) -> None:
        super().__init__(title)
        self.title = title


class _Login(BaseModel):
    email: str
    password: str


class _Switch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    release: str | None = None
    faults: Faults = Faults()


class _Live(BaseModel):
    release: str


def _span_status(code: int) -> str:
    """Sentry's transaction status for an HTTP status code (what ``failure_rate()`` reads)."""
    named = {
        401: "unauthenticated",
        403: "permission_denied",
        404: "not_found",
        429: "resource_exhausted",
        503: "unavailable",
    }
    if code < 400:
        return "ok"
    return named.get(code, "invalid_argument" if code < 500 else FAILED_STATUS)


def create_app(
    log: EventLog, *, clock: Clock, project: str, environment: str, state: ToyState
) -> FastAPI:
    """The toy app, reporting to Sentry ``project`` in ``environment``."""
    app = FastAPI(title="toy app")

    def record(request: Request, release: str, started: float, status: int) -> None:
        """Log ``request`` as Sentry would see it: a transaction, and an error if it broke."""
        client = request.client.host if request.client else "unknown"
        # Sentry falls back to the IP address when an event names no user.
        user = state.user(request.headers.get("authorization")) or f"ip:{client}"
        transaction = Event(
            clock.now(),
            project,
            environment,
            release,
            "transaction",
            user,
            (time.perf_counter() - started) * 1000,
            {"transaction": f"{request.method} {request.url.path}"},
            _span_status(status),
        )
        events = [transaction]
        if title := getattr(request.state, "error", None):
            events.append(
                replace(transaction, type="error", duration_ms=None, status="ok", title=title)
            )
        log.extend(events)

    # Plain ASGI, not ``@app.middleware("http")``: that runs every request in a task of its own,
    # which cost more CPU than serving it (bench/scale.py asks ~270 times a second). The events
    # are written as the response starts, before the client can read it, so a caller that got
    # its answer finds its request in the log.
    def observe(endpoints: ASGIApp) -> ASGIApp:
        async def observed(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope) if scope["type"] == "http" else None
            if request is None or request.url.path.startswith("/_sandbox/"):
                await endpoints(scope, receive, send)
                return
            started = time.perf_counter()
            release = state.live
            faults = state.faults(release)
            await asyncio.sleep(faults.added_latency_ms / 1000)

            async def send_recorded(message: Message) -> None:
                if message["type"] == "http.response.start":
                    record(request, release, started, message["status"])
                await send(message)

            if request.url.path not in _HEALTH_ROUTES and state.next_request_fails(release):
                request.state.error = "InternalServerError: injected fault"
                await JSONResponse(_SERVER_ERROR, 500)(scope, receive, send_recorded)
            else:
                await endpoints(scope, receive, send_recorded)

        return observed

    app.add_middleware(observe)

    @app.exception_handler(_Broken)
    async def broken(request: Request, exc: _Broken) -> Response:
        request.state.error = exc.title
        return JSONResponse(_SERVER_ERROR, 500)

    def signed_in(authorization: str | None) -> str:
        user = state.user(authorization)
        if user is None:
            raise HTTPException(401, "not signed in")
        return user

    # ``async def`` although nothing awaits: a plain ``def`` endpoint is sent to a worker thread
    # and back (twice, with its response check), and none of these block.
    @app.get("/", response_class=HTMLResponse)
    async def home() -> str:
        return f"<!doctype html><title>Toy app</title><h1>Toy app {state.live}</h1>"

    @app.get("/health")
    async def health(response: Response) -> dict[str, str]:
        if state.faults().database_broken:
            response.status_code = 503
            return {"status": "unhealthy"}
        return {"status": "healthy"}

    @app.get("/api/health/database")
    async def database(response: Response) -> dict[str, str]:
        if state.faults().database_broken:
            response.status_code = 503
            return {"status": "disconnected"}
        return {"status": "connected"}

    @app.post("/api/auth/login")
    async def login(body: _Login) -> dict[str, str]:
        if state.faults().login_broken:
            raise _Broken("AuthError: session store unavailable")
        token = state.login(body.email, body.password)
        if token is None:
            raise HTTPException(401, "wrong email or password")
        return {"token": token}

    @app.get("/api/dashboard")
    async def dashboard(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        return {"user": signed_in(authorization), "appointments": len(_APPOINTMENTS)}

    @app.post("/api/payments")
    async def payments(authorization: Annotated[str | None, Header()] = None) -> dict[str, str]:
        signed_in(authorization)
        if state.faults().payments_broken:
            raise _Broken("PaymentError: card processor rejected the request")
        return {"status": "succeeded"}

    @app.get("/api/appointments")
    async def appointments() -> list[dict[str, Any]]:
        return _APPOINTMENTS

    @app.post("/_sandbox/live")
    async def go_live(body: _Live) -> _Live:
        state.set_live(body.release)
        return body

    @app.post("/_sandbox/faults")
    async def switch_faults(body: _Switch) -> Faults:
        state.set_faults(body.faults, body.release)
        return state.faults(body.release)

    return app


class Traffic:
    """Synthetic load without HTTP: ``per_second`` requests' worth of events for the live
    release for every whole second the clock has moved since the last ``pump``. Failures follow
    the live release's ``error_fraction`` and durations its ``added_latency_ms``, counted across
    pumps, so a test knows exactly how many errors Sentry will see."""

    def __init__(
        self,
        state: ToyState,
        log: EventLog,
        clock: Clock,
        *,
        project: str,
        environment: str,
        per_second: int,
        users: int = 100,
        p95_ms: float = 100.0,
    ) -> None:
        self._state, self._log, self._clock = state, log, clock
        self._project, self._environment = project, environment
        self._per_second, self._users, self._p95_ms = per_second, users, p95_ms
        self._since: datetime = clock.now()
        self._sent: dict[str, int] = {}

    def pump(self) -> Timeline:
        """Write the events due since the last pump and say what was written."""
        seconds = int((self._clock.now() - self._since).total_seconds())
        start, self._since = self._since, self._since + timedelta(seconds=seconds)
        release = self._state.live
        faults = self._state.faults(release)
        written = write_timeline(
            self._log,
            project=self._project,
            environment=self._environment,
            release=release,
            start=start,
            end=self._since,
            per_minute=self._per_second * 60,
            error_fraction=faults.error_fraction,
            users=self._users,
            p95_ms=self._p95_ms + faults.added_latency_ms,
            first=self._sent.get(release, 0),
        )
        self._sent[release] = self._sent.get(release, 0) + written.transactions
        return written
