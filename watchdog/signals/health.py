"""The ``health`` signal: GET each configured URL and judge its status and JSON body.

Unlike other sources, an app that does not answer is a reading of 0, not a missing one: the
silence is the signal. It also carries a ProbeError saying why, for the logs and the report.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from watchdog.model import Deployment, Reading
from watchdog.settings import HealthCheck
from watchdog.signals.base import Probe, ProbeError
from watchdog.signals.httpprobe import Failed, send


def contains(actual: Any, expected: Any) -> bool:
    """True when ``expected`` is a subset of ``actual``: every key of a mapping is present
    with a matching value, recursively; anything else (lists included) must be equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and contains(actual[key], value) for key, value in expected.items()
        )
    return bool(actual == expected)


class HealthSignal:
    """Reads ``health{check=NAME}`` for every check, concurrently."""

    name = "health"

    def __init__(self, checks: Sequence[HealthCheck], client: httpx.AsyncClient) -> None:
        self._checks = tuple(checks)
        self._client = client

    async def read(self, deployment: Deployment, at: datetime) -> Probe:
        probes = await asyncio.gather(*(self._check(check, at) for check in self._checks))
        return sum(probes, Probe())

    async def _check(self, check: HealthCheck, at: datetime) -> Probe:
        answer = await send(self._client, "GET", check.url)
        if isinstance(answer, Failed):
            error = ProbeError(
                self.name, answer.failure, f"health check {check.name!r}: {answer.why}", "health"
            )
            return Probe((self._reading(check, at, healthy=False),), (error,))
        return Probe((self._reading(check, at, healthy=self._passes(check, answer)),))

    @staticmethod
    def _passes(check: HealthCheck, response: httpx.Response) -> bool:
        if response.status_code != check.expect_status:
            return False
        if check.expect_json is None:
            return True
        try:
            body = response.json()
        except ValueError:  # an answer that is not JSON cannot hold the expected fields
            return False
        return contains(body, check.expect_json)

    @staticmethod
    def _reading(check: HealthCheck, at: datetime, *, healthy: bool) -> Reading:
        return Reading(at, "health", 1.0 if healthy else 0.0, {"check": check.name}, samples=1)
