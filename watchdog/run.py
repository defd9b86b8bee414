"""``watchdog run``: the daemon and its HTTP API in one event loop until SIGTERM.

SIGTERM (or SIGINT) stops scheduling, lets the ticks in flight finish and persist, and exits within
10 s. SIGHUP re-reads the config: a valid one is used for watches started from then on, a bad one
is logged and counted and the running config kept. With ``WATCHDOG_SENTRY_DSN`` set, the daemon
reports its own errors and its discovery runs to Sentry (``selfmonitor``).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Generator
from pathlib import Path

import structlog
import uvicorn

from watchdog import logs, selfmonitor
from watchdog.api import create_api
from watchdog.clock import SystemClock
from watchdog.daemon import Watchdog, drill_trigger
from watchdog.errors import ConfigError
from watchdog.metrics import Metrics
from watchdog.settings import LoadedConfig, load_config
from watchdog.store import open_store

log = structlog.get_logger("watchdog.run")


class QuietServer(uvicorn.Server):
    """uvicorn, leaving the process's signals to its owner: the daemon (uvicorn would re-raise
    SIGTERM after it stops, killing the process before the ticks in flight are stored), or the
    demo (Ctrl-C stops the whole demo, not just the API)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def run(loaded: LoadedConfig, config_path: Path) -> None:
    settings = loaded.settings
    if selfmonitor.init_from_env(settings):
        log.info("selfmonitor.enabled")
    host, port = settings.api.listen.rsplit(":", 1)
    if settings.drills is not None:
        drill_trigger(loaded)  # a config the scheduler cannot use writes no state
    store = open_store(settings.state.url.reveal())
    clock = SystemClock()
    daemon = Watchdog(loaded, store, clock, Metrics())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    reloads: set[asyncio.Task[None]] = set()

    def reload() -> None:
        task = loop.create_task(_reload(daemon, config_path))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, int(port)))
    server = QuietServer(
        uvicorn.Config(
            create_api(daemon, clock=clock), lifespan="off", log_level="warning", access_log=False
        )
    )
    await daemon.start()
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    log.info("api.listening", listen=settings.api.listen)
    try:
        await stop.wait()
    finally:
        log.info("daemon.stopping")
        server.should_exit = True
        await serving
        await daemon.stop()
        await store.close()
        sock.close()


async def _reload(daemon: Watchdog, config_path: Path) -> None:
    try:
        fresh = load_config(config_path)
    except ConfigError as exc:
        daemon.metrics.reloads.labels("failed").inc()
        log.error("config.reload_failed", error=str(exc), kept="the running config")
        return
    logs.REDACTOR.add(logs.secrets_of(fresh.settings))
    await daemon.reload(fresh)
