"""What the Sentry, provider and Slack stand-ins share: the fault switch a test arms, the
refusal (and the garbled answer) that each stand-in renders in its own provider's shape, and
bearer-token parsing.

Faults are armed per operation name (``"rollback"``, ``"deploymentRollback"``, ``"post"``,
``"issues"``…) or for every request, and are consumed in the order they were armed.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from watchdog.sandbox.deployments import GoLive

NOMINAL_LIMIT = 100
"""The limit a 429 reports: the stand-ins only throttle when told to, so it is a made-up total."""
GARBLED_BODY = '{"data": ['
"""What ``answer_refusals`` answers a garbled request with: JSON cut off, as by a broken proxy."""

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_unknown",
    409: "conflict",
    429: "rate_limited",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
}
_MESSAGES = {
    401: "Not authorized",
    403: "Not authorized",
    409: "The request conflicts with an operation in progress",
    429: "Too many requests",
    500: "An unexpected internal error occurred",
}


@dataclass(frozen=True, slots=True)
class Throttle:
    """Why a 429: the window's total, when it resets, and the whole seconds until then."""

    limit: int
    reset: datetime
    retry_after: int


class Refused(Exception):
    """Stop handling a request and answer ``status``; each stand-in renders it in its shape."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        throttle: Throttle | None = None,
    ) -> None:
        self.status = status
        self.message = message or _MESSAGES.get(status, "Request refused")
        self.code = code or _CODES.get(status, "error")
        self.throttle = throttle
        super().__init__(f"{status} {self.code}: {self.message}")


class Garbled(Exception):
    """Stop handling a request and answer 200 with a body that is not JSON; each stand-in
    renders it (``answer_refusals``: ``GARBLED_BODY``)."""


@dataclass(slots=True)
class _Armed:
    operation: str | None  # None: any request
    answer: int | Literal["stall", "garble"]  # a status to refuse with, or what to do instead
    remaining: int | None  # None: until `until`
    until: datetime | None = None
    seconds: float = 0.0


class Faults:
    """The fault switch of one stand-in, thread-safe: tests arm it from their thread while the
    server consumes it from its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._release = threading.Event()
        self.go_live = GoLive.OK
        """How the changes the stand-in accepts from now on will end."""

    def fail_next(self, n: int, status: int = 500, *, operation: str | None = None) -> None:
        """Answer the next ``n`` matching requests with ``status`` (500, 401, 409…)."""
        with self._lock:
            self._armed.append(_Armed(operation, status, n))

    def rate_limit(self, until: datetime, *, operation: str | None = None) -> None:
        """Answer 429 to matching requests until the stand-in's clock reaches ``until``."""
        with self._lock:
            self._armed.append(_Armed(operation, 429, None, until=until))

    def stall_next(self, n: int, seconds: float, *, operation: str | None = None) -> None:
        """Hold the next ``n`` matching requests for ``seconds`` of real time (or until
        ``clear``), then answer them normally: the client's timeout fires, the change still
        happens."""
        with self._lock:
            self._armed.append(_Armed(operation, "stall", n, seconds=seconds))

    def garble_next(self, n: int, *, operation: str | None = None) -> None:
        """Answer the next ``n`` matching requests 200 with a body that is not JSON."""
        with self._lock:
            self._armed.append(_Armed(operation, "garble", n))

    def clear(self) -> None:
        """Disarm everything and let stalled requests go on at once."""
        with self._lock:
            self._armed.clear()
            self._release.set()
            self._release = threading.Event()
            self.go_live = GoLive.OK

    async def admit(self, operation: str, now: datetime) -> None:
        """Let a request through, hold it, or refuse it as the first matching fault says.

        :raises Refused: an armed status, or 429 with its ``Throttle``.
        :raises Garbled: an armed garbled answer.
        """
        with self._lock:
            self._armed = [a for a in self._armed if a.remaining != 0 and not _expired(a, now)]
            armed = next((a for a in self._armed if a.operation in (None, operation)), None)
            if armed is not None and armed.remaining is not None:
                armed.remaining -= 1
            release = self._release
        if armed is None:
            return
        if armed.answer == "stall":
            await asyncio.to_thread(release.wait, armed.seconds)
        elif armed.answer == "garble":
            raise Garbled
        elif armed.until is not None:
            wait = math.ceil((armed.until - now).total_seconds())
            raise Refused(429, throttle=Throttle(NOMINAL_LIMIT, armed.until, max(wait, 1)))
        else:
            raise Refused(armed.answer)


def _expired(armed: _Armed, now: datetime) -> bool:
    return armed.until is not None and now >= armed.until


def rate_limit_headers(prefix: str, throttle: Throttle) -> dict[str, str]:
    """``{prefix}-Limit``, ``-Remaining``, ``-Reset`` (epoch seconds) and ``Retry-After``."""
    return {
        f"{prefix}-Limit": str(throttle.limit),
        f"{prefix}-Remaining": "0",
        f"{prefix}-Reset": str(math.ceil(throttle.reset.timestamp())),
        "Retry-After": str(throttle.retry_after),
    }


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def answer_refusals(app: FastAPI, render: Callable[[Refused], Response]) -> None:
    """Render refusals, invalid parameters (400) and unknown routes in the provider's shape,
    instead of FastAPI's ``{"detail": ...}``; a garbled answer is ``GARBLED_BODY``."""

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refused)
        return render(exc)

    async def garbled(request: Request, exc: Exception) -> Response:
        return Response(GARBLED_BODY, media_type="application/json")

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = (
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        return render(Refused(400, "; ".join(problems)))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return render(Refused(exc.status_code, str(exc.detail)))

    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(Garbled, garbled)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
