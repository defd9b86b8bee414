"""Fixtures for the sandbox stand-ins: one event log, one manual clock, real loopback servers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from watchdog.clock import ManualClock
from watchdog.sandbox import sentry, toyapp
from watchdog.sandbox.events import EventLog
from watchdog.sandbox.server import serve

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
TOKEN = "sntrys-sandbox-token"
PASSWORD = "correct-horse"
PROJECTS = ("acme-api", "acme-web")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def log() -> EventLog:
    return EventLog()


@pytest.fixture
def switch() -> sentry.FaultSwitch:
    return sentry.FaultSwitch()


@pytest.fixture
def sentry_url(log: EventLog, clock: ManualClock, switch: sentry.FaultSwitch) -> Iterator[str]:
    app = sentry.create_app(
        log,
        token=TOKEN,
        clock=clock,
        organization="acme",
        projects=PROJECTS,
        rate_limit=sentry.RateLimit(limit=1000, window_seconds=60),
        faults=switch,
    )
    with serve(app) as url:
        yield url


@pytest.fixture
def api(sentry_url: str) -> Iterator[httpx.Client]:
    """A client of the stand-in's organization ``acme``, signed in."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=f"{sentry_url}/api/0/organizations/acme", headers=headers) as c:
        yield c


@pytest.fixture
def state() -> toyapp.ToyState:
    return toyapp.ToyState("r1", password=PASSWORD)


@pytest.fixture
def toy(log: EventLog, clock: ManualClock, state: toyapp.ToyState) -> Iterator[httpx.Client]:
    app = toyapp.create_app(
        log, clock=clock, project="acme-api", environment="production", state=state
    )
    with serve(app) as url, httpx.Client(base_url=url) as client:
        yield client
