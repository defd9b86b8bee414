"""What the provider tests share: time that moves only when told, a port that refuses
connections, and the check that a token shows up nowhere."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from watchdog.clock import ManualClock
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
DELAY = timedelta(seconds=20)
"""How long a stand-in's deployment takes to go live (``conftest.history``)."""


def advancing_sleep(clock: ManualClock) -> Callable[[float], Awaitable[None]]:
    """A ``sleep`` that moves ``clock`` instead of waiting: a poll loop runs in no real time."""

    async def sleep(seconds: float) -> None:
        clock.advance(timedelta(seconds=seconds))

    return sleep


def refused_url() -> str:
    """The origin of a loopback port nothing listens on: connecting is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def recorder(
    seen: list[httpx.Request],
) -> dict[str, list[Callable[[httpx.Request], Awaitable[None]]]]:
    """``event_hooks`` for an AsyncClient that keeps every request it sends in ``seen``."""

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    return {"request": [record]}


def assert_secret_free(token: str, *things: object) -> None:
    """``token`` is in none of ``things``: texts, notes, or exceptions with their whole chain."""
    for thing in things:
        for text in _texts(thing):
            assert token not in text, f"the token leaked into {text!r}"


def _texts(thing: object) -> Iterable[str]:
    seen: set[int] = set()
    pending = [thing]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield str(current)
        yield repr(current)
        if isinstance(current, BaseException):
            pending += [current.__cause__, current.__context__, *current.args]
        elif isinstance(current, tuple | list):
            pending += list(current)
        elif isinstance(current, dict):
            pending += list(current.values())


@contextmanager
def served(app: Any, faults: Faults) -> Iterator[str]:
    """A stand-in on loopback; on the way out its faults are cleared, which lets a stalled
    request finish so the server can stop."""
    with serve(app) as url:
        try:
            yield url
        finally:
            faults.clear()
