"""The state store: every deployment, watch, reading, decision, action and notification.

``base.py`` holds the StateStore protocol and its records; ``sqlite.py`` is the embedded
default (one replica), ``postgres.py`` the one for production and several replicas.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from watchdog.errors import ConfigError
from watchdog.store.postgres import postgres_store
from watchdog.store.sql import SqlStore
from watchdog.store.sqlite import sqlite_store


def open_store(url: str) -> SqlStore:
    """The store ``state.url`` names: ``sqlite:///PATH`` (relative, or ``sqlite:////abs``) or
    ``postgresql://…``. Call ``migrate()`` before use."""
    if url.startswith("sqlite:///"):
        return sqlite_store(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        return postgres_store(url)
    raise ConfigError(
        f"state.url: expected sqlite:///PATH or postgresql://…, found {url.split(':', 1)[0]}:…"
    )


@asynccontextmanager
async def opened(url: str) -> AsyncIterator[SqlStore]:
    """The store ``url`` names, migrated, and closed on the way out."""
    store = open_store(url)
    try:
        await store.migrate()
        yield store
    finally:
        await store.close()
