"""A stand-in for the app's feature-flags API (the runbook's "Feature Flag Emergency Disable",
Method 2), answering as the app's ``backend/src/routes/feature-flags.ts`` does:

- ``GET /api/feature-flags`` → ``{"success": true, "flags": [...], "count": n}``;
- ``PATCH /api/feature-flags/{key}`` with ``enabled_globally`` and/or ``rollout_percentage`` →
  ``{"success": true, "message": ..., "flag_key": ..., "updates": {...}}``;
- ``POST /api/feature-flags/cache/clear`` → ``{"success": true, "message": ...}``;
- errors → ``{"success": false, "error": "..."}``.

Choices where the app differs or is vague: a missing or wrong bearer token is 401; an unknown
flag is 404 (the app answers 200 and changes nothing; ``ApiFlagSwitch`` reads back to catch
that); a body with other fields or wrong types is 400. Faults are armed per operation:
``list``, ``patch``, ``cache_clear``. Every request is recorded, refused ones too.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from watchdog.clock import Clock
from watchdog.sandbox.faults import Faults, Refused, answer_refusals, bearer


@dataclass(frozen=True)
class Received:
    """One request as it arrived: its JSON body, or None without one."""

    method: str
    path: str
    body: Any


class FlagStore:
    """The flags behind the API, how often its cache was cleared, and every request received;
    thread-safe, since tests read it while the server thread writes it."""

    def __init__(self, flags: Mapping[str, tuple[bool, int]]) -> None:
        self._lock = threading.Lock()
        self._flags: dict[str, dict[str, Any]] = {
            key: {"enabled_globally": on, "rollout_percentage": rollout}
            for key, (on, rollout) in flags.items()
        }
        self._received: list[Received] = []
        self.cache_clears = 0

    def flags(self) -> list[dict[str, Any]]:
        """Every flag as the API lists it, by key."""
        with self._lock:
            return [
                {"flag_key": key, "flag_name": key.replace("_", " ").title(), **values}
                for key, values in sorted(self._flags.items())
            ]

    def values(self, key: str) -> tuple[bool, int] | None:
        with self._lock:
            flag = self._flags.get(key)
            return None if flag is None else (flag["enabled_globally"], flag["rollout_percentage"])

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    def update(self, key: str, updates: Mapping[str, Any]) -> bool:
        """Apply ``updates`` to flag ``key``; False when there is no such flag."""
        with self._lock:
            if key not in self._flags:
                return False
            self._flags[key] |= updates
            return True

    def clear_cache(self) -> None:
        with self._lock:
            self.cache_clears += 1


def create_app(
    store: FlagStore, *, token: str, clock: Clock, faults: Faults | None = None
) -> FastAPI:
    """The flags API over ``store``, accepting ``Authorization: Bearer <token>``."""
    faults = faults if faults is not None else Faults()
    app = FastAPI(title="Feature-flags API stand-in", openapi_url=None)
    answer_refusals(app, _render)

    async def guard(request: Request, operation: str) -> Any:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        store.record(Received(request.method, request.url.path, body))
        await faults.admit(operation, clock.now())
        if bearer(request.headers.get("authorization")) != token:
            raise Refused(401, "Unauthorized")
        return body

    @app.get("/api/feature-flags")
    async def list_flags(request: Request) -> dict[str, Any]:
        await guard(request, "list")
        flags = store.flags()
        return {"success": True, "flags": flags, "count": len(flags)}

    @app.post("/api/feature-flags/cache/clear")
    async def clear_cache(request: Request) -> dict[str, Any]:
        await guard(request, "cache_clear")
        store.clear_cache()
        return {"success": True, "message": "Feature flag cache cleared"}

    @app.patch("/api/feature-flags/{key}")
    async def update(request: Request, key: str) -> dict[str, Any]:
        updates = _updates(await guard(request, "patch"))
        if not store.update(key, updates):
            raise Refused(404, f'Feature flag "{key}" not found')
        message = f'Feature flag "{key}" updated'
        return {"success": True, "message": message, "flag_key": key, "updates": updates}

    return app


def _updates(body: Any) -> dict[str, Any]:
    """The PATCH body, checked: only the two fields, a bool and an int in 0..100."""
    if (
        not isinstance(body, dict)
        or not body
        or set(body) - {"enabled_globally", "rollout_percentage"}
    ):
        raise Refused(400, "expected enabled_globally and/or rollout_percentage")
    on, rollout = body.get("enabled_globally", False), body.get("rollout_percentage", 0)
    if not isinstance(on, bool) or type(rollout) is not int or not 0 <= rollout <= 100:
        raise Refused(400, "expected a boolean enabled_globally and rollout_percentage 0..100")
    return body


def _render(refused: Refused) -> Response:
    headers = {"Retry-After": str(refused.throttle.retry_after)} if refused.throttle else {}
    body = {"success": False, "error": refused.message}
    return JSONResponse(body, status_code=refused.status, headers=headers)
