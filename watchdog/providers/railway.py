"""Railway: put a service's previous deployment back with ``deploymentRollback`` over the
public GraphQL API (``api-contracts.md`` §3), the API form of the runbook's "Redeploy".

``deploymentRollback`` answers a bare Boolean and Railway builds a new deployment of the old
commit, so the rollback is recognised by its commit (``meta.commitHash``), never by an id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from datetime import datetime, timedelta
from typing import Any

import httpx

from watchdog.clock import Clock
from watchdog.durations import format_duration
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment, Rollback
from watchdog.providers.http import ProviderHTTP
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

Sleep = Callable[[float], Awaitable[None]]


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
        self._clock = clock
        self._sleep = sleep
        self._http: ProviderHTTP | None = None
        self._ids = {
            "projectId": config.project_id,
            "environmentId": config.environment_id,
            "serviceId": config.service_id,
        }

    def _api(self) -> ProviderHTTP:
        """Built on first use, so an unset token fails only the calls that need it."""
        if self._http is None:
            token = self._config.token.reveal()
            project = self._config.token_kind == "project"  # noqa: S105 - a kind, not a secret
            headers = (
                {"Project-Access-Token": token} if project else {"Authorization": f"Bearer {token}"}
            )
            self._http = ProviderHTTP(self.name, self._client, self._config.api_url, headers)
        return self._http

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
        response = await self._api().send("POST", PATH, to.id, json=payload)
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
        deadline = self._clock.now() + timeout
        while not await self._landed(to):
            left = deadline - self._clock.now()
            if left <= timedelta(0):
                raise RollbackError(
                    self.name,
                    to.id,
                    f"rollback to {to.id} not live after {format_duration(timeout)}",
                )
            await self._sleep(min(POLL, left).total_seconds())

    async def _landed(self, to: ProviderDeployment) -> bool:
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
            body = await self._api().read(
                PATH, deployment_id, method="POST", json={"query": _LIST, "variables": variables}
            )
            connection: Any = self._data(body, deployment_id).get("deployments")
            try:
                nodes = [edge["node"] for edge in connection["edges"]]
                found = [(_deployment(node), node["canRollback"] is True) for node in nodes]
                page = connection["pageInfo"]
                more, after = page["hasNextPage"], page["endCursor"]
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                raise RollbackError(
                    self.name, deployment_id, f"unexpected answer: {exc!r}"
                ) from exc
            for item in found:
                yield item
            if not more or after is None:
                return
            variables["after"] = after

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


def _deployment(node: dict[str, Any]) -> ProviderDeployment:
    meta = node.get("meta") or {}
    commit = meta.get("commitHash")
    return ProviderDeployment(
        id=str(node["id"]),
        release=str(commit) if commit else None,
        created_at=datetime.fromisoformat(node["createdAt"]),
        status=str(node["status"]),
        live=node["status"] == "SUCCESS",
    )


def _same(deployment: ProviderDeployment, to: ProviderDeployment) -> bool:
    """``to`` itself, or a deployment of its commit (what a rollback creates)."""
    return deployment.id == to.id or (to.release is not None and deployment.release == to.release)
