"""Railway: put a service's previous deployment back with ``deploymentRollback`` over the
public GraphQL API (``api-contracts.md`` §3), the API form of the runbook's "Redeploy".

``deploymentRollback`` answers a bare Boolean and Railway builds a new deployment of the old
commit, so the rollback is recognised by its commit (``meta.commitHash``), never by an id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from contextlib import aclosing
from datetime import timedelta
from functools import cached_property, partial
from typing import Any

import httpx
from pydantic import AwareDatetime, BaseModel, TypeAdapter

from watchdog.clock import Clock
from watchdog.durations import format_elapsed
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment, Rollback
from watchdog.providers.http import ProviderHTTP
from watchdog.providers.polling import Sleep, wait_until
from watchdog.settings import RailwayProvider

PATH = "/graphql/v2"
PAGE = 20
POLL = timedelta(seconds=5)
"""How often ``wait_live`` looks at the deployments."""

_FAILED = frozenset({"FAILED", "CRASHED"})
# Railway reports bad credentials only in the message; these are the ones its CLI treats so
# (railwayapp/cli src/client.rs parse_graphql_response).
_UNAUTHORIZED = ("not authorized", "project token not found")
_LIST = """
query deployments($input: DeploymentListInput!, $first: Int, $after: String) {
  deployments(input: $input, first: $first, after: $after) {
    edges { node { id status createdAt meta canRollback } }
    pageInfo { hasNextPage endCursor }
  }
}"""
_ROLLBACK = "mutation rollback($id: String!) { deploymentRollback(id: $id) }"


# The answer's shape: only the fields _LIST asks for, named as Railway names them.
class _Node(BaseModel):
    id: str
    status: str
    createdAt: AwareDatetime
    meta: dict[str, Any] | None = None  # commitHash, for deployments of a commit
    canRollback: bool | None


class _Edge(BaseModel):
    node: _Node


class _PageInfo(BaseModel):
    hasNextPage: bool
    endCursor: str | None = None


class _Connection(BaseModel):
    edges: list[_Edge]
    pageInfo: _PageInfo


_CONNECTION = TypeAdapter(_Connection)


class RailwayRollback:
    """One service in one environment of one Railway project."""

    name = "railway"

    def __init__(
        self,
        config: RailwayProvider,
        client: httpx.AsyncClient,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._config = config
        self._client = client
        # The clock and sleep serve only the wait for a rollback to go live.
        self._wait_until = partial(wait_until, clock=clock, sleep=sleep, every=POLL)
        self._ids = {
            "projectId": config.project_id,
            "environmentId": config.environment_id,
            "serviceId": config.service_id,
        }

    @cached_property
    def _http(self) -> ProviderHTTP:
        # Built on first use: an unset token fails the call that needs it, not the constructor.
        token = self._config.token.reveal()
        project = self._config.token_kind == "project"  # noqa: S105 - a kind, not a secret
        headers = (
            {"Project-Access-Token": token} if project else {"Authorization": f"Bearer {token}"}
        )
        return ProviderHTTP(self.name, self._client, self._config.api_url, headers)

    async def check(self) -> None:
        async with aclosing(self._deployments((), None, first=1)) as found:
            async for _ in found:
                return
        raise ConfigError(
            f"railway: no deployments of service {self._config.service_id} in environment "
            f"{self._config.environment_id} of project {self._config.project_id} "
            "(check the ids)"
        )

    async def live(self) -> ProviderDeployment:
        async with aclosing(self._deployments(("SUCCESS",), None, first=1)) as found:
            async for deployment, _ in found:
                return deployment
        raise RollbackError(
            self.name, None, f"no SUCCESS deployment of service {self._config.service_id}"
        )

    async def known_good(self, before: ProviderDeployment) -> ProviderDeployment | None:
        # A replaced deployment is REMOVED; canRollback says whether its image can serve again.
        async with aclosing(self._deployments(("SUCCESS", "REMOVED"), before.id)) as found:
            async for deployment, can_rollback in found:
                if can_rollback and deployment.created_at < before.created_at:
                    return deployment
        return None

    async def is_serving(self, to: ProviderDeployment) -> bool:
        return _same(await self.live(), to)

    async def rollback(self, to: ProviderDeployment, reason: str) -> Rollback:
        """``reason`` has nowhere to go: Railway's rollback takes only the deployment id."""
        payload = {"query": _ROLLBACK, "variables": {"id": to.id}}
        response = await self._http.send("POST", PATH, to.id, json=payload)
        try:
            body = response.json()
        except ValueError as exc:
            raise RollbackError(self.name, to.id, "answer is not JSON") from exc
        if self._data(body, to.id).get("deploymentRollback") is not True:
            raise RollbackError(self.name, to.id, f"Railway refused the rollback to {to.id}")
        note = "Railway deploys the next push as usual: revert or fix the bad commit first"
        return Rollback(to=to, notes=(note,))

    async def wait_live(self, rollback: Rollback, timeout: timedelta) -> None:
        to = rollback.to
        waited = await self._wait_until(lambda: self._arrived(to), timeout=timeout)
        if waited is not None:
            raise RollbackError(
                self.name, to.id, f"rollback to {to.id} not live after {format_elapsed(waited)}"
            )

    async def _arrived(self, to: ProviderDeployment) -> bool:
        """Whether the live (newest SUCCESS) deployment is ``to`` or its commit; a deployment of
        ``to`` newer than the live one that failed or crashed ends the wait."""
        async with aclosing(self._deployments((), to.id)) as found:
            async for deployment, _ in found:
                if deployment.status == "SUCCESS":
                    return _same(deployment, to)
                if deployment.status in _FAILED and _same(deployment, to):
                    raise RollbackError(
                        self.name,
                        to.id,
                        f"deployment {deployment.id} of the rollback to {to.id} is "
                        f"{deployment.status}",
                    )
        return False

    async def _deployments(
        self, statuses: tuple[str, ...], deployment_id: str | None, *, first: int = PAGE
    ) -> AsyncGenerator[tuple[ProviderDeployment, bool]]:
        """The service's deployments newest first, with their ``canRollback``, page by page."""
        wanted: dict[str, Any] = {"status": {"in": list(statuses)}} if statuses else {}
        variables: dict[str, Any] = {"input": self._ids | wanted, "first": first, "after": None}
        while True:
            body = await self._http.read(
                PATH, deployment_id, method="POST", json={"query": _LIST, "variables": variables}
            )
            found = self._data(body, deployment_id).get("deployments")
            page = self._http.parse(_CONNECTION, found, deployment_id, "the deployments query")
            for edge in page.edges:
                yield _deployment(edge.node), edge.node.canRollback is True
            if not page.pageInfo.hasNextPage or page.pageInfo.endCursor is None:
                return
            variables["after"] = page.pageInfo.endCursor

    def _data(self, body: Any, deployment_id: str | None) -> dict[str, Any]:
        """The ``data`` of a GraphQL answer; its ``errors`` as ConfigError or RollbackError."""
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            message = "; ".join(
                str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors
            )
            if any(words in message.lower() for words in _UNAUTHORIZED):
                raise ConfigError(
                    f"railway: {message} (check the token, token_kind "
                    f"({self._config.token_kind}) and the project/environment/service ids)"
                )
            raise RollbackError(self.name, deployment_id, message)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise RollbackError(self.name, deployment_id, "answer has no data")
        return data


def _deployment(node: _Node) -> ProviderDeployment:
    commit = (node.meta or {}).get("commitHash")
    return ProviderDeployment(
        id=node.id,
        release=str(commit) if commit else None,
        created_at=node.createdAt,
        status=node.status,
        live=node.status == "SUCCESS",
    )


def _same(deployment: ProviderDeployment, to: ProviderDeployment) -> bool:
    """``to`` itself, or a deployment of its commit (what a rollback creates)."""
    return deployment.id == to.id or (to.release is not None and deployment.release == to.release)
