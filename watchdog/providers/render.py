"""Render: roll a service back to an earlier deploy, as ``api-contracts.md`` §2 describes.

A Render rollback is a new deploy of the old build (trigger ``rollback``), so ``wait_live``
follows that new deploy. Render warns that a rollback "does not disable autodeploys": the next
push would undo it, so auto-deploy is turned off afterwards unless the config says not to.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from functools import cached_property
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import structlog
from pydantic import AwareDatetime, BaseModel, TypeAdapter, ValidationError

from watchdog.clock import Clock
from watchdog.durations import format_duration
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment, Rollback
from watchdog.providers.http import ProviderHTTP, ProviderRefused
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

_T = TypeVar("_T")


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


_PAGE = TypeAdapter(list[_Listed])
_STARTED = TypeAdapter(_Started)
_PROGRESS = TypeAdapter(_Progress)


class RenderRollback:
    """One Render service; turns auto-deploy off after a rollback when
    ``config.disable_autodeploy``."""

    name = "render"

    def __init__(
        self,
        config: RenderProvider,
        client: httpx.AsyncClient,
        clock: Clock,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._config = config
        self._client = client
        self._clock = clock
        self._sleep = sleep
        self._service = f"/v1/services/{quote(config.service_id, safe='')}"

    @cached_property
    def _http(self) -> ProviderHTTP:
        # Built on first use: an unset token fails the call that needs it, not the constructor.
        headers = {"Authorization": f"Bearer {self._config.token.reveal()}"}
        return ProviderHTTP(self.name, self._client, self._config.api_url, headers)

    async def check(self) -> None:
        """Read the service, which needs a working API key and service id."""
        try:
            await self._http.read(self._service)
        except RollbackError as exc:
            refusal = exc.__context__  # ProviderHTTP keeps the refused answer as the context
            if isinstance(refusal, ProviderRefused) and refusal.response.status_code == 404:
                raise ConfigError(
                    f"render: service {self._config.service_id!r} not found for this API key"
                ) from None
            raise

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
        """``POST /v1/services/{id}/rollback`` (Render keeps no reason), then auto-deploy off:
        a failure there is a loud note, never an error, since the rollback stands."""
        path = f"{self._service}/rollback"
        answer = await self._http.send("POST", path, to.id, json={"deployId": to.id})
        started = _parse(_STARTED, _json(answer), to.id, f"POST {path}")
        notes: tuple[str, ...] = ()
        if self._config.disable_autodeploy:
            notes = (await self._autodeploy_off(to, started.id),)
        return Rollback(to, handle=started.id, notes=notes)

    async def wait_live(self, rollback: Rollback, timeout: timedelta) -> None:
        """Read the rollback's new deploy until it is ``live``; ending any other way fails."""
        to = rollback.to
        if rollback.handle is None:
            raise RollbackError(self.name, to.id, "the rollback names no new deploy to follow")
        path = f"{self._service}/deploys/{rollback.handle}"
        started = self._clock.now()
        while True:
            body = await self._http.read(path, to.id)
            status = _parse(_PROGRESS, body, to.id, f"GET {path}").status
            if status == "live":
                return
            if status in STOPPED:
                raise RollbackError(
                    self.name, to.id, f"rollback deploy {rollback.handle} ended {status}"
                )
            waited = self._clock.now() - started
            if waited >= timeout:
                raise RollbackError(
                    self.name,
                    to.id,
                    f"rollback deploy {rollback.handle} is still {status} after "
                    f"{format_duration(waited)}",
                )
            await self._sleep(min(POLL, timeout - waited).total_seconds())

    async def _autodeploy_off(self, to: ProviderDeployment, new_id: str) -> str:
        service = self._config.service_id
        try:
            await self._http.send("PATCH", self._service, to.id, json={"autoDeploy": "no"})
        except (RollbackError, ConfigError) as exc:
            log.warning(
                "render.autodeploy_left_on", service=service, deployment=new_id, error=str(exc)
            )
            return (
                f"AUTO-DEPLOY IS STILL ON for Render service {service}: turning it off failed "
                f"({exc}). The next push will undo this rollback; turn auto-deploy off in the "
                "dashboard now."
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
            page = _parse(_PAGE, body, deployment_id, f"GET {path}")
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
        return None  # reported by _parse as an unexpected answer


def _parse(shape: TypeAdapter[_T], body: Any, deployment_id: str | None, what: str) -> _T:
    try:
        return shape.validate_python(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise RollbackError(
            "render", deployment_id, f"unexpected answer to {what}: {where}: {first['msg']}"
        ) from None
