"""What the benchmarks share: the stand-ins in a child process, a store that notes when each
tick's readings and decision reach it, a state store of either kind, and the one table each
benchmark prints with the command and the machine in its header.

The stand-ins run in a child process so that the daemon's process (the benchmark's own) holds
only the daemon: its CPU time, memory and event loop are what is measured, as in production,
where Sentry and the providers are somewhere else.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import multiprocessing
import os
import platform
import sys
import time
import traceback
import uuid
from array import array
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

import psycopg
import structlog
from psycopg import sql

from watchdog import logs
from watchdog.model import Decision, Reading
from watchdog.signals.base import ProbeError
from watchdog.store.base import StateStore

LOAD_BEFORE = os.getloadavg()[0]  # other work on the machine skews every figure: shown
PG_URL = os.environ.get("WATCHDOG_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


# --- the stand-ins, in a child process ---------------------------------------------------


class Remote:
    """An object built by ``factory`` in a spawned child process; ``call`` runs one of its
    methods there and returns the (picklable) result. Exceptions come back as RuntimeError."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory

    def __enter__(self) -> Remote:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, self._factory), daemon=True)
        self._process.start()
        child.close()
        return self

    def call(self, method: str, *args: Any) -> Any:
        self._conn.send((method, args))
        ok, value = self._conn.recv()
        if not ok:
            raise RuntimeError(f"stand-ins: {method} failed:\n{value}")
        return value

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._conn.send(None)
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.kill()


def _serve(conn: Connection, factory: Callable[[], Any]) -> None:
    target = factory()
    while (message := conn.recv()) is not None:
        method, args = message
        try:
            conn.send((True, getattr(target, method)(*args)))
        except Exception:
            conn.send((False, traceback.format_exc()))
    close = getattr(target, "close", None)
    if close is not None:
        close()


def cpu_seconds() -> float:
    """CPU time (user + system, every thread) this process has used so far."""
    usage = os.times()
    return usage.user + usage.system


# --- the store, timed --------------------------------------------------------------------


@dataclass
class Tick:
    """One tick as the store saw it (wall-clock seconds since the epoch)."""

    at: float  # the tick's own time: when it started reading
    read: float  # when its readings reached the store: every signal read, the engine decided
    errors: int  # probe errors (signals that gave no reading)
    decided: float  # when its readings and decision were stored (one transaction)
    verdict: str


class TimedStore:
    """The real store, unchanged, noting how long every call takes (``calls``: when each
    returned, and its latency), when each tick's readings and decision arrive (the watch
    stores them together the moment the last signal is read and the engine has decided: ~0.1
    ms, ``bench/engine.py``) and are stored, and when each of the writes a rollback makes on
    its way out (``MARKED``) returns."""

    MARKED = frozenset({"update_watch", "queue_notification", "begin_action"})

    def __init__(self, store: StateStore) -> None:
        self._store = store
        self.ticks: dict[str, list[Tick]] = defaultdict(list)
        self.marks: list[tuple[str, float]] = []  # (method, when it returned)
        self.returned, self.latency = array("d"), array("d")

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        if not inspect.iscoroutinefunction(method):
            return method

        async def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.time()
            result = await method(*args, **kwargs)
            self._returned(name, began)
            return result

        return timed

    def _returned(self, name: str, began: float) -> None:
        now = time.time()
        self.returned.append(now)
        self.latency.append(now - began)
        if name in self.MARKED:
            self.marks.append((name, now))

    def mark(self, name: str, after: float) -> float:
        """When the first ``name`` call after ``after`` returned."""
        return next(at for method, at in self.marks if method == name and at > after)

    async def add_tick(
        self,
        watch_id: str,
        readings: Sequence[Reading],
        errors: Sequence[ProbeError],
        decision: Decision,
        *more: Any,
    ) -> Any:
        read = time.time()
        stored = await self._store.add_tick(watch_id, readings, errors, decision, *more)
        self._returned("add_tick", read)
        tick = Tick(decision.at.timestamp(), read, len(errors), time.time(), str(decision.verdict))
        self.ticks[watch_id].append(tick)
        return stored

    def as_store(self) -> StateStore:
        return cast(StateStore, self)


@asynccontextmanager
async def state_url(kind: str, directory: Path) -> AsyncIterator[str]:
    """Where an empty store lives: SQLite in ``directory``, or a fresh PostgreSQL database on
    the server WATCHDOG_TEST_DATABASE_URL names (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{directory / 'state.db'}"
        return
    name = f"watchdog_bench_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(PG_URL, autocommit=True) as admin:
        await admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield urlsplit(PG_URL)._replace(path=f"/{name}").geturl()
        finally:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            await admin.execute(drop.format(sql.Identifier(name)))


def quiet_logs() -> Counter[str]:
    """The daemon's logs rendered as in production (JSON lines), into /dev/null; returns
    the count of each warning and error event, filled as the daemon logs them."""
    logs.configure(open(os.devnull, "w"))  # noqa: SIM115 - open for the whole run
    counted: Counter[str] = Counter()

    def count(logger: Any, level: str, event: MutableMapping[str, Any]) -> Any:
        if level in ("warning", "error", "critical", "exception"):
            counted[str(event.get("event"))] += 1
        return event

    structlog.configure(processors=[count, *structlog.get_config()["processors"]])
    return counted


class SchedulerLog(logging.Handler):
    """Collects what APScheduler warns about (skipped or missed runs, failed jobs) instead of
    printing tracebacks over the table; the benchmarks count and report them."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        logger = logging.getLogger("apscheduler")
        logger.addHandler(self)
        logger.propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def until(check: Callable[[], Any], seconds: float, what: str) -> Any:
    """Poll ``check`` (a coroutine function) until it returns something truthy."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := await check():
            return found
        await asyncio.sleep(0.05)
    raise TimeoutError(f"gave up waiting for {what} after {seconds:g}s")


# --- figures and the table ---------------------------------------------------------------


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile: a value that was measured (p99 of 20 runs is the max)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def seconds(value: float) -> str:
    """A duration for the table: ms below 10 s, else s."""
    return f"{value * 1000:,.1f} ms" if abs(value) < 10 else f"{value:,.2f} s"


def machine() -> str:
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = names[0] if names else model
    return (
        f"{os.cpu_count()} cores ({model}), {platform.system()}, "
        f"Python {platform.python_version()}, load average {LOAD_BEFORE:.1f} before the run"
    )


def command() -> str:
    python = Path(sys.executable)
    shown = ".venv/bin/python" if python.parent.parent.name == ".venv" else str(python)
    return " ".join([shown, *sys.argv])


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """One markdown table, with the command and the machine above it, ready for a README."""
    print(f"**{title}** — `{command()}` on {machine()}\n")
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    print(line(headers))
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows:
        print(line(row))
