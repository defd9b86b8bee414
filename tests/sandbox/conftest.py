"""Fixtures for the sandbox stand-ins: one event log, one manual clock, one fault switch, one
deployment history, and real loopback servers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from watchdog.clock import ManualClock
from watchdog.sandbox import sentry, toyapp
from watchdog.sandbox.deployments import DEFAULT_DELAY, DeploymentHistory, good_then_bad
from watchdog.sandbox.events import EventLog
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
TOKEN = "sntrys-sandbox-token"
PASSWORD = "correct-horse"
PROJECTS = ("acme-api", "acme-web")


@contextmanager
def serving(app: Any, faults: Faults) -> Iterator[str]:
    """``serve(app)``, clearing ``faults`` on the way out so that a stalled request finishes
    and the server can stop."""
    with serve(app) as url:
        try:
            yield url
        finally:
            faults.clear()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def served() -> list[str]:
    """The releases a history put live, in order."""
    return []


@pytest.fixture
def delay() -> timedelta:
    """How long a change takes to go live; a module overrides it with its provider's."""
    return DEFAULT_DELAY


@pytest.fixture
def history(clock: ManualClock, served: list[str], delay: timedelta) -> DeploymentHistory:
    return good_then_bad("acme-api", clock, delay=delay, on_live=served.append)


@pytest.fixture
def log() -> EventLog:
    return EventLog()


def sentry_app(log: EventLog, clock: ManualClock, **kw: Any) -> Any:
    """The Sentry stand-in of organization ``acme`` and ``PROJECTS``; unless told otherwise,
    its rate limit is out of the way (1,000 requests a minute)."""
    kw.setdefault("rate_limit", sentry.RateLimit(limit=1000, window_seconds=60))
    return sentry.create_app(
        log, token=TOKEN, clock=clock, organization="acme", projects=PROJECTS, **kw
    )


@pytest.fixture
def sentry_url(log: EventLog, clock: ManualClock, faults: Faults) -> Iterator[str]:
    with serving(sentry_app(log, clock, faults=faults), faults) as url:
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
