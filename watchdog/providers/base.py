"""The RollbackProvider seam: what every way of rolling back must offer the action runner.

The runner (not the provider) owns safety: it records an action as intended before sending,
asks ``is_serving`` before and after, never resends after an ambiguous failure, and times the
whole thing. A provider only speaks its API, exactly as ``api-contracts.md`` describes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True)
class ProviderDeployment:
    """A deployment as the provider reports it. ``release`` is its commit sha when known."""

    id: str
    release: str | None
    created_at: datetime
    status: str  # the provider's own word: READY, live, SUCCESS, …
    live: bool


@dataclass(frozen=True)
class Rollback:
    """What the provider accepted. ``handle`` is the new deployment a rollback created (Render,
    Railway), or None when traffic moved to ``to`` itself (Vercel). ``notes`` are things people
    must know afterwards ("auto-deploy is now off: turn it back on after the fix")."""

    to: ProviderDeployment
    handle: str | None = None
    notes: tuple[str, ...] = ()


class RollbackProvider(Protocol):
    """One way to put the previous deployment back in production.

    Every method raises ``watchdog.errors.RollbackError`` (with ``provider``,
    ``deployment_id`` and ``reached``) for anything the provider refuses or fails to answer,
    and ``watchdog.errors.ConfigError`` for credentials or ids that cannot work. Reads may be
    retried; ``rollback`` is sent at most once per call and never retried after a request that
    may have reached the provider.
    """

    name: str

    async def check(self) -> None:
        """Prove the credentials and ids work, changing nothing."""

    async def live(self) -> ProviderDeployment:
        """The production deployment serving traffic now."""

    async def known_good(self, before: ProviderDeployment) -> ProviderDeployment | None:
        """The newest deployment older than ``before`` that succeeded and could serve again."""

    async def is_serving(self, to: ProviderDeployment) -> bool:
        """Whether production already serves ``to`` (itself, or a rollback to its release)."""

    async def rollback(self, to: ProviderDeployment, reason: str) -> Rollback:
        """Ask the provider to serve ``to`` again."""

    async def wait_live(self, rollback: Rollback, timeout: timedelta) -> None:
        """Return once the rollback serves production; RollbackError when it failed or
        ``timeout`` passed first."""
