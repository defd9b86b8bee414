"""Render: roll a service back to an earlier deploy, as ``api-contracts.md`` §2 describes.

A Render rollback is a new deploy of the old build (trigger ``rollback``), so ``wait_live``
follows that new deploy. Render warns that a rollback "does not disable autodeploys": the next
push would undo it, so auto-deploy is turned off afterwards if it was on, unless the config says
not to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from functools import cached_property, partial
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from pydantic import AwareDatetime, BaseModel, TypeAdapter

from watchdog.clock import Clock
from watchdog.durations import format_elapsed
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment, Rollback
from watchdog.providers.http import ProviderHTTP
from watchdog.providers.polling import Sleep, wait_until
from watchdog.settings import RenderProvider

log = structlog.get_logger("watchdog.providers.render")

POLL = timedelta(seconds=5)
"""Between two reads of the rollback's deploy (Render takes tens of seconds to swap)."""
PAGE = 100
"""Deploys asked for per list request: Render's maximum."""
WENT_LIVE = ("live", "deactivated")
"""Statuses of deploys that served traffic: a deactivated deploy was live until replaced."""
STOPPED = frozenset(
    {"build_failed", "update_failed", "pre_deploy_failed", "canceled", "deactivated"}
)
"""Statuses that end the wait for a rollback's deploy without it serving: failed, canceled, or
already replaced by a newer one."""


# The answers' shapes: only the fields the contract guarantees, named as Render names them.
class _Commit(BaseModel):
    id: str | None = None


class _Deploy(BaseModel):
    id: str
    status: str
    createdAt: AwareDatetime
    commit: _Commit | None = None  # absent for image-backed deploys


class _Listed(BaseModel):
    cursor: str
    deploy: _Deploy


class _Started(BaseModel):
    id: str  # the rollback's answer: only the new deploy's id is needed


class _Progress(BaseModel):
    status: str


class _Service(BaseModel):
    autoDeploy: str


_PAGE = TypeAdapter(list[_Listed])
_STARTED = TypeAdapter(_Started)
_PROGRESS = TypeAdapter(_Progress)
_SERVICE = TypeAdapter(_Service)


class RenderRollback:
    """One Render service; turns auto-deploy off after a rollback when it was on and
    ``config.disable_autodeploy``."""

    name = "render"

    def __init__(
        self,
        config: RenderProvider,
        client: httpx.AsyncClient,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._client = client
        # The clock and sleep serve only the wait for a rollback to go live.
        self._wait_until = partial(wait_until, clock=clock, sleep=sleep, every=POLL)
        self._service = f"/v1/services/{quote(config.service_id, safe='')}"

    @cached_property
    def _http(self) -> ProviderHTTP:
        # Built on first use: an unset token fails the call that needs it, not the constructor.
        headers = {"Authorization": f"Bearer {self._config.token.reveal()}"}
        return ProviderHTTP(self.name, self._client, self._config.api_url, headers)

    async def check(self) -> None:
        """Read the service, which needs a working API key and service id."""
        missing = f"service {self._config.service_id!r} not found for this API key"
        await self._http.read(self._service, missing=missing)

    async def live(self) -> ProviderDeployment:
        live = await self._newest(("live",), None)
        if live is None:
            service = self._config.service_id
            raise RollbackError(self.name, None, f"service {service} has no live deploy")
        return live

    async def known_good(self, before: ProviderDeployment) -> ProviderDeployment | None:
        """The newest deploy created before ``before`` that went live (never a failed one)."""
        return await self._newest(
            WENT_LIVE,
            before.id,
            lambda d: d.id != before.id and d.created_at < before.created_at,
        )

    async def is_serving(self, to: ProviderDeployment) -> bool:
        """Whether the live deploy is ``to``, or a rollback to ``to``'s commit."""
        live = await self._newest(("live",), to.id)
        if live is None:
            return False
        return live.id == to.id or (to.release is not None and live.release == to.release)

    async def rollback(self, to: ProviderDeployment, reason: str) -> Rollback:
        """``POST /v1/services/{id}/rollback`` (Render keeps no reason), then auto-deploy off if
        it was on: a failure there is a loud note, never an error, since the rollback stands."""
        path = f"{self._service}/rollback"
        answer = await self._http.send("POST", path, to.id, json={"deployId": to.id})
        started = self._http.parse(_STARTED, _json(answer), to.id, f"POST {path}")
        note = None
        if self._config.disable_autodeploy:
            note = await self._autodeploy_off(to, started.id)
        return Rollback(to, handle=started.id, notes=(note,) if note else ())

    async def wait_live(self, rollback: Rollback, timeout: timedelta) -> None:
        """Read the rollback's new deploy until it is ``live``; ending any other way fails."""
        to, handle = rollback.to, rollback.handle
        if handle is None:
            raise RollbackError(self.name, to.id, "the rollback names no new deploy to follow")
        seen: list[str] = []  # the deploy's statuses, for the timeout's message
        waited = await self._wait_until(lambda: self._arrived(to, handle, seen), timeout=timeout)
        if waited is not None:
            raise RollbackError(
                self.name,
                to.id,
                f"rollback deploy {handle} is still {seen[-1]} after {format_elapsed(waited)}",
            )

    async def _arrived(self, to: ProviderDeployment, handle: str, seen: list[str]) -> bool:
        """Whether deploy ``handle`` is live, its status added to ``seen``; RollbackError once
        it stopped without serving."""
        path = f"{self._service}/deploys/{handle}"
        body = await self._http.read(path, to.id)
        status = self._http.parse(_PROGRESS, body, to.id, f"GET {path}").status
        seen.append(status)
        if status in STOPPED:
            raise RollbackError(self.name, to.id, f"rollback deploy {handle} ended {status}")
        return status == "live"

    async def _autodeploy_off(self, to: ProviderDeployment, new_id: str) -> str | None:
        """Turn auto-deploy off if it is on; the note people must read, or None when it was
        already off (nothing to turn back on after the fix)."""
        service = self._config.service_id
        state, step = "MAY STILL BE ON", "reading it"
        try:
            body = await self._http.read(self._service, to.id)
            if self._http.parse(_SERVICE, body, to.id, f"GET {self._service}").autoDeploy != "yes":
                log.info("render.autodeploy_already_off", service=service, deployment=new_id)
                return None
            state, step = "IS STILL ON", "turning it off"
            await self._http.send("PATCH", self._service, to.id, json={"autoDeploy": "no"})
        except (RollbackError, ConfigError) as exc:
            log.warning(
                "render.autodeploy_left_on", service=service, deployment=new_id, error=str(exc)
            )
            return (
                f"AUTO-DEPLOY {state} for Render service {service}: {step} failed ({exc}). The "
                "next push will undo this rollback; turn auto-deploy off in the dashboard now."
            )
        log.info("render.autodeploy_disabled", service=service, deployment=new_id)
        return (
            f"Auto-deploy of Render service {service} is now off, so a push cannot undo this "
            "rollback: turn it back on after the fix."
        )

    async def _newest(
        self,
        statuses: tuple[str, ...],
        deployment_id: str | None,
        wanted: Callable[[ProviderDeployment], bool] = lambda _: True,
    ) -> ProviderDeployment | None:
        """The newest deploy with one of ``statuses`` that is ``wanted``, reading page after
        page (each from the previous page's last cursor) until an empty one."""
        params: dict[str, Any] = {"status": list(statuses), "limit": PAGE}
        path = f"{self._service}/deploys"
        while True:
            body = await self._http.read(path, deployment_id, params=params)
            page = self._http.parse(_PAGE, body, deployment_id, f"GET {path}")
            if not page:
                return None
            for item in page:
                deploy = _deployment(item.deploy)
                if deploy.status in statuses and wanted(deploy):
                    return deploy
            if params.get("cursor") == page[-1].cursor:
                raise RollbackError(self.name, deployment_id, f"GET {path} repeats a page")
            params["cursor"] = page[-1].cursor


def _deployment(raw: _Deploy) -> ProviderDeployment:
    return ProviderDeployment(
        id=raw.id,
        release=raw.commit.id if raw.commit else None,
        created_at=raw.createdAt,
        status=raw.status,
        live=raw.status == "live",
    )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None  # reported by ProviderHTTP.parse as an unexpected answer
