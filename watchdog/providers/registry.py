"""Which implementation serves which ``kind`` of provider config. An explicit table: a kind
the config accepts but nothing here serves is a bug caught by tests, never a fallback."""

from __future__ import annotations

from datetime import timedelta

import httpx

from watchdog.clock import Clock
from watchdog.providers.base import RollbackProvider
from watchdog.providers.flags import FlagSwitch
from watchdog.providers.flags_http import ApiFlagSwitch
from watchdog.providers.flags_sql import SqlFlagSwitch
from watchdog.providers.git import GitRevert
from watchdog.providers.migrations import SqlMigrationRollback
from watchdog.providers.railway import RailwayRollback
from watchdog.providers.render import RenderRollback
from watchdog.providers.vercel import VercelRollback
from watchdog.settings import (
    ApiFlags,
    Flags,
    GitProvider,
    Provider,
    RailwayProvider,
    RenderProvider,
    SqlFlags,
    SqlMigrationsProvider,
    VercelProvider,
)

# The runbook's time targets: application < 5 min, database < 15 min, full system < 20 min.
TARGET_SECONDS = {"application": 300, "database": 900, "full": 1200}


def build_provider(config: Provider, client: httpx.AsyncClient, clock: Clock) -> RollbackProvider:
    """The provider for ``config``; ``client`` serves the HTTP providers (one per service)."""
    match config:
        case VercelProvider():
            return VercelRollback(config, client, clock)
        case RenderProvider():
            return RenderRollback(config, client, clock)
        case RailwayProvider():
            return RailwayRollback(config, client, clock)
        case GitProvider():
            return GitRevert(config, clock)
        case SqlMigrationsProvider():
            return SqlMigrationRollback(config, clock)


def build_flag_switch(config: Flags, client: httpx.AsyncClient) -> FlagSwitch:
    match config:
        case SqlFlags():
            return SqlFlagSwitch(config)
        case ApiFlags():
            return ApiFlagSwitch(config, client)


def live_timeout(config: Provider) -> timedelta:
    """How long a rollback may take to serve: the provider's ``live_timeout``; a migration
    rollback is one transaction bounded by its statement timeout."""
    if isinstance(config, SqlMigrationsProvider):
        return config.statement_timeout
    return config.live_timeout


def target_seconds(config: Provider) -> int:
    """How fast the runbook says this kind of rollback must be."""
    return TARGET_SECONDS["database" if config.kind == "sql-migrations" else "application"]
