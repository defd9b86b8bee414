"""What every provider test shares: a deployment history on a manual clock, faults to inject,
and retries without waiting."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import stamina

from tests.providers.helpers import DELAY, T0, recorder
from watchdog.clock import ManualClock
from watchdog.sandbox.deployments import DeploymentHistory, good_then_bad
from watchdog.sandbox.faults import Faults


@pytest.fixture(autouse=True)
def no_backoff() -> Iterator[None]:
    """Reads are retried as in production, without waiting between attempts."""
    with stamina.set_testing(True, attempts=4):
        yield


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def served() -> list[str]:
    """The releases the stand-in's app served, in order (its on_live callback)."""
    return []


@pytest.fixture
def history(clock: ManualClock, served: list[str]) -> DeploymentHistory:
    return good_then_bad("acme", clock, delay=DELAY, on_live=served.append)


@pytest.fixture
def faults() -> Faults:
    return Faults()


@pytest.fixture
def sent() -> list[httpx.Request]:
    """Every request the ``client`` fixture sends."""
    return []


@pytest.fixture
async def client(sent: list[httpx.Request]) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5, event_hooks=recorder(sent)) as client:
        yield client
