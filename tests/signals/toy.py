"""The toy app served over loopback for the HTTP signal tests, and a few helpers they share."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from watchdog.clock import ManualClock
from watchdog.model import Deployment
from watchdog.sandbox.events import EventLog
from watchdog.sandbox.server import serve
from watchdog.sandbox.toyapp import ToyState, create_app

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
PASSWORD = "correct-horse-battery-staple"
DEPLOY = Deployment("backend", "dep-2", T0, previous_id="dep-1", release="r2")


@dataclass(frozen=True)
class Toy:
    url: str
    state: ToyState


@contextmanager
def running() -> Iterator[Toy]:
    """The toy app on a free loopback port, healthy until a test switches a fault on."""
    state = ToyState("r1", password=PASSWORD)
    app = create_app(
        EventLog(), clock=ManualClock(T0), project="acme-api", environment="production", state=state
    )
    with serve(app) as url:
        yield Toy(url, state)


def closed_port_url() -> str:
    """A loopback URL nothing listens on: connecting to it is refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def rendezvous(expected: int) -> httpx.MockTransport:
    """Answers 200 only once ``expected`` requests are in flight at the same time, so a
    source that sends them one after another never gets an answer (and the test times out)."""
    arrived = 0
    everyone = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal arrived
        arrived += 1
        if arrived == expected:
            everyone.set()
        await everyone.wait()
        return httpx.Response(200, json={"status": "healthy", "token": "t"})

    return httpx.MockTransport(handler)
