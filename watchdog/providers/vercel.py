"""Vercel: put the previous production deployment back without rebuilding it (instant rollback
or promote), as ``api-contracts.md`` §1 describes.

What production serves is read from the project's own pointer (``GET /v9/projects/{id}``,
``targets.production``), not from the deployment list: after a rollback the newest READY
production deployment is the one rolled back *from*, so only the project knows which one serves.
The same read shows the rollback's progress (``lastAliasRequest``), so one request answers
``live``, ``is_serving`` and each poll of ``wait_live``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import cached_property, partial
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import AliasChoices, BaseModel, Field, TypeAdapter

from watchdog.clock import Clock
from watchdog.durations import format_elapsed
from watchdog.errors import RollbackError
from watchdog.providers.base import ProviderDeployment, Rollback
from watchdog.providers.http import ProviderHTTP
from watchdog.providers.polling import Sleep, wait_until
from watchdog.settings import VercelProvider

POLL = timedelta(seconds=2)
"""Between two reads of the project while a rollback goes live (Vercel switches in seconds)."""
PAGE = 100
"""Deployments asked for per list request."""
PAUSED = (
    "Vercel paused auto-assignment of production domains with this instant rollback: new "
    "production deployments will not go live until one is promoted after the fix "
    "(vercel promote <deployment>)."
)
"""The note of an instant rollback: Vercel keeps production pinned until someone promotes."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ENDED_BADLY = frozenset({"failed", "skipped"})

_T = TypeVar("_T")


# The answers' shapes: only the fields the contract guarantees, named as Vercel names them.
class _Meta(BaseModel):
    githubCommitSha: str | None = None


class _Deployment(BaseModel):
    id: str = Field(validation_alias=AliasChoices("uid", "id"))  # uid in lists, id elsewhere
    createdAt: int
    readyState: str
    meta: _Meta | None = None
    isRollbackCandidate: bool | None = None  # lists only


class _Pagination(BaseModel):
    next: int | None = None


class _Page(BaseModel):
    pagination: _Pagination
    deployments: list[_Deployment]


class _Targets(BaseModel):
    production: _Deployment | None = None


class _AliasRequest(BaseModel):
    toDeploymentId: str
    jobStatus: str


class _Project(BaseModel):
    targets: _Targets | None = None
    lastAliasRequest: _AliasRequest | None = None

    @property
    def production(self) -> _Deployment | None:
        return self.targets.production if self.targets else None


_PAGE = TypeAdapter(_Page)
_PROJECT = TypeAdapter(_Project)


class VercelRollback:
    """One Vercel project's production; ``config.method`` picks instant rollback or promote."""

    name = "vercel"

    def __init__(
        self,
        config: VercelProvider,
        client: httpx.AsyncClient,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._client = client
        # The clock and sleep serve only the wait for a rollback to go live.
        self._wait_until = partial(wait_until, clock=clock, sleep=sleep, every=POLL)
        self._project = quote(config.project, safe="")
        self._scope = {"teamId": config.team_id} if config.team_id else {}

    @cached_property
    def _http(self) -> ProviderHTTP:
        # Built on first use: an unset token fails the call that needs it, not the constructor.
        headers = {"Authorization": f"Bearer {self._config.token.reveal()}"}
        return ProviderHTTP(self.name, self._client, self._config.api_url, headers)

    async def check(self) -> None:
        """Read the project, which needs a working token, team and project id."""
        where = (
            f"team {self._config.team_id}"
            if self._config.team_id
            else "the token's personal account (set team_id for a team project)"
        )
        await self._read_project(missing=f"project {self._config.project!r} not found in {where}")

    async def live(self) -> ProviderDeployment:
        production = (await self._read_project()).production
        if production is None:
            raise RollbackError(
                self.name, None, f"project {self._config.project} has no production deployment"
            )
        return _deployment(production, live=True)

    async def known_good(self, before: ProviderDeployment) -> ProviderDeployment | None:
        """The newest READY production deployment older than ``before`` that Vercel marks
        ``isRollbackCandidate`` (one that served production before). One without the mark, or
        without the field, is never chosen: nothing else says it could serve again."""
        until = (before.created_at - _EPOCH) // timedelta(milliseconds=1)
        while True:
            params = {
                "projectId": self._config.project,
                "target": "production",
                "state": "READY",
                "limit": PAGE,
                "until": until,
            }
            page = await self._read("/v7/deployments", _PAGE, before.id, params=params)
            for listed in page.deployments:
                found = _deployment(listed, live=False)
                if (
                    listed.isRollbackCandidate
                    and listed.readyState == "READY"
                    and found.id != before.id
                    and found.created_at < before.created_at
                ):
                    return found
            if page.pagination.next is None:
                return None
            if page.pagination.next >= until:
                raise RollbackError(self.name, before.id, "the deployment list does not page back")
            until = page.pagination.next

    async def is_serving(self, to: ProviderDeployment) -> bool:
        production = (await self._read_project(to.id)).production
        return production is not None and production.id == to.id

    async def rollback(self, to: ProviderDeployment, reason: str) -> Rollback:
        """Instant rollback (``POST /v1/projects/{id}/rollback/{to}``) or promote (``POST
        /v10/projects/{id}/promote/{to}``); both re-point production at ``to`` itself."""
        if self._config.method == "promote":
            path = f"/v10/projects/{self._project}/promote/{to.id}"
            await self._http.send("POST", path, to.id, params=self._scope)
            return Rollback(to)
        path = f"/v1/projects/{self._project}/rollback/{to.id}"
        await self._http.send("POST", path, to.id, params={**self._scope, "description": reason})
        return Rollback(to, notes=(PAUSED,))

    async def wait_live(self, rollback: Rollback, timeout: timedelta) -> None:
        """Read the project until production is ``rollback.to``; its alias request ending
        ``failed`` or ``skipped`` is a failure at once."""
        to = rollback.to
        waited = await self._wait_until(lambda: self._arrived(to), timeout=timeout)
        if waited is not None:
            raise RollbackError(
                self.name,
                to.id,
                f"production still does not serve {to.id} after {format_elapsed(waited)}",
            )

    async def _arrived(self, to: ProviderDeployment) -> bool:
        project = await self._read_project(to.id)
        if project.production is not None and project.production.id == to.id:
            return True
        request = project.lastAliasRequest
        if request and request.toDeploymentId == to.id and request.jobStatus in _ENDED_BADLY:
            raise RollbackError(
                self.name, to.id, f"switching production to {to.id} {request.jobStatus}"
            )
        return False

    async def _read_project(
        self, deployment_id: str | None = None, *, missing: str | None = None
    ) -> _Project:
        path = f"/v9/projects/{self._project}"
        return await self._read(path, _PROJECT, deployment_id, missing=missing)

    async def _read(
        self,
        path: str,
        shape: TypeAdapter[_T],
        deployment_id: str | None,
        *,
        params: dict[str, Any] | None = None,
        missing: str | None = None,
    ) -> _T:
        params = {**self._scope, **(params or {})}
        body = await self._http.read(path, deployment_id, missing=missing, params=params)
        return self._http.parse(shape, body, deployment_id, f"GET {path}")


def _deployment(raw: _Deployment, *, live: bool) -> ProviderDeployment:
    """``live`` comes from where it was found: the project's production pointer, or a list of
    rollback candidates (which by definition do not serve now)."""
    return ProviderDeployment(
        id=raw.id,
        release=raw.meta.githubCommitSha if raw.meta else None,
        created_at=_EPOCH + timedelta(milliseconds=raw.createdAt),
        status=raw.readyState,
        live=live,
    )
