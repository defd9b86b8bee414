"""Reloading the config (SIGHUP): discovery follows the new config's targets; a watch started
before keeps its config's HTTP clients, and a replaced config's clients are closed once no
watch uses them, so a daemon reloaded every day does not grow."""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path

import httpx

from tests.conftest import T0
from tests.test_api import WITH_TOKEN, configured, running
from watchdog.clock import ManualClock
from watchdog.model import Deployment
from watchdog.sandbox import stack
from watchdog.sandbox.deployments import BAD_RELEASE
from watchdog.settings import load_config
from watchdog.store.records import Outcome
from watchdog.store.sql import SqlStore


def open_clients() -> int:
    """HTTP clients alive and open in this process."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, httpx.AsyncClient) and not o.is_closed)


async def test_a_replaced_configs_clients_close_once_its_last_watch_ends(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    config = configured(tmp_path, sandbox)
    before = open_clients()
    async with running(config, store, clock) as daemon:
        await daemon.start()
        started = open_clients()
        await daemon.reload(load_config(config.path))  # nothing uses the first config
        assert open_clients() == started

        first = await daemon.announce(Deployment("backend", "dep-2", T0, release=BAD_RELEASE))
        for _ in range(3):
            await daemon.reload(load_config(config.path))
        # The watch keeps the config it started with; the ones loaded since and unused are
        # closed as each is replaced.
        held = open_clients()
        assert held > started

        newer = Deployment("backend", "dep-3", T0, release=BAD_RELEASE)
        await daemon.announce(newer)  # supersedes the first watch: its config is unused
        superseded = await store.watch(first.id)
        assert superseded is not None
        assert superseded.outcome is Outcome.SUPERSEDED
        assert open_clients() == started
    assert open_clients() == before  # stopped: every client closed


async def test_a_target_a_reload_adds_is_discovered(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    path = tmp_path / "watchdog.yaml"
    text = sandbox.config(tmp_path)
    path.write_text(text.replace("window: 30s}", "window: 30s, discover: null}") + WITH_TOKEN)
    async with running(load_config(path), store, clock) as daemon:
        await daemon.start()
        # Discovery every second, and a second target on the same Render service.
        web = "  web:\n" + stack.target_yaml(sandbox.urls)
        path.write_text(
            text.replace("window: 30s}", "window: 30s, discover: 1s}") + web + WITH_TOKEN
        )
        await daemon.reload(load_config(path))

        # Someone keeps deploying: whatever discovery's first look noted, a later deploy is
        # new to it, and each target it discovers is watched.
        deadline = time.monotonic() + 20
        while not await store.open_watches("web") and time.monotonic() < deadline:
            sandbox.backend.deploy(f"{len(sandbox.backend.deployments()):040x}")
            await asyncio.sleep(0.5)
        assert await store.open_watches("web")
        assert await store.open_watches("backend")
