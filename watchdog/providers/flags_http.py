"""The runbook's "Feature Flag Emergency Disable", Method 2: the app's flags API.

``httpx.HTTPError`` never leaves this module; no message or log carries the API token.
"""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import quote

import httpx
import structlog

from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.flags import OFF, ON, FlagState, Values, show
from watchdog.providers.http import ProviderHTTP
from watchdog.settings import ApiFlags

log = structlog.get_logger("watchdog.providers.flags")


class ApiFlagSwitch:
    """Method 2: ``PATCH /api/feature-flags/{key}``, ``POST /api/feature-flags/cache/clear``,
    then read the flag back from ``GET /api/feature-flags``: the app answers the PATCH with 200
    even for a flag that does not exist, so only the read-back proves the change. A failed
    cache clear is a note, not an error. The API keeps no earlier values: ``enable`` turns the
    flag fully on (true, 100 %)."""

    name = "flags-api"

    def __init__(self, config: ApiFlags, client: httpx.AsyncClient) -> None:
        self._config = config
        self._client = client

    async def disable(self, key: str, reason: str) -> FlagState:
        return await self._change(key, reason, "disabled", OFF)

    async def enable(self, key: str, reason: str) -> FlagState:
        return await self._change(key, reason, "enabled", ON)

    async def state(self, key: str) -> FlagState:
        state = await self._read(key)
        if state is None:
            problem = f"no flag {key!r} in GET /api/feature-flags"
            raise RollbackError(self.name, key, problem, reached=False)
        return state

    async def check(self) -> None:
        await self._http().read("/api/feature-flags")

    async def _change(self, key: str, reason: str, action: str, target: Values) -> FlagState:
        http = self._http()
        body = {"enabled_globally": target[0], "rollout_percentage": target[1]}
        await http.send("PATCH", f"/api/feature-flags/{quote(key, safe='')}", key, json=body)
        notes: tuple[str, ...] = ()
        try:
            await http.send("POST", "/api/feature-flags/cache/clear", key)
        except (RollbackError, ConfigError) as exc:
            notes = (
                f"the flag cache was not cleared ({exc}): the app may serve the old value until"
                " its cache expires; clear it with POST /api/feature-flags/cache/clear",
            )
        state = await self._read(key)
        if state is None:
            problem = f"GET /api/feature-flags does not list {key} (no such flag, or the app"
            raise RollbackError(self.name, key, f"{problem} could not read its flags)")
        if (state.enabled_globally, state.rollout_percentage) != target:
            problem = f"GET /api/feature-flags shows {key} at {show(state)} after the PATCH"
            raise RollbackError(self.name, key, problem)
        log.info(f"flags.{action}", switch=self.name, key=key, reason=reason, values=target)
        return replace(state, cache_cleared=not notes, notes=notes)

    async def _read(self, key: str) -> FlagState | None:
        body = await self._http().read("/api/feature-flags", key)
        flags = body.get("flags") if isinstance(body, dict) else None
        for flag in flags if isinstance(flags, list) else []:
            if isinstance(flag, dict) and flag.get("flag_key") == key:
                on, rollout = flag.get("enabled_globally"), flag.get("rollout_percentage")
                if not isinstance(on, bool) or not isinstance(rollout, int):
                    problem = f"GET /api/feature-flags shows {key} without usable values"
                    raise RollbackError(self.name, key, problem)
                return FlagState(key, on, rollout)
        return None

    def _http(self) -> ProviderHTTP:
        headers = {"Authorization": f"Bearer {self._config.token.reveal()}"}
        return ProviderHTTP(self.name, self._client, self._config.api_url, headers)
