"""The ``flow`` signal: run each critical user flow (log in, open the dashboard, pay) as a
user would, step by step, carrying values captured from one answer into the next request.

A flow that breaks is a reading of 0 with a ProbeError naming the step; a flow that cannot be
run as configured (an unset environment variable, a ``{{name}}`` nothing captured) is no
reading at all, since it says nothing about the app.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from watchdog.configfile import EnvRef
from watchdog.errors import ConfigError
from watchdog.model import Deployment, Reading
from watchdog.settings import Flow, FlowStep
from watchdog.signals.base import Failure, Probe, ProbeError
from watchdog.signals.httpprobe import Failed, send

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def render(value: Any, captured: dict[str, Any]) -> Any:
    """``value`` with every ``{{name}}`` replaced by what an earlier step captured.

    A string that is one placeholder becomes the captured value itself (a number stays a
    number in a JSON body). Raises ConfigError for an unset environment variable or a name
    nothing captured.
    """
    if isinstance(value, EnvRef):
        raise value.error()
    if isinstance(value, dict):
        return {key: render(item, captured) for key, item in value.items()}
    if isinstance(value, list):
        return [render(item, captured) for item in value]
    if not isinstance(value, str):
        return value

    def lookup(match: re.Match[str]) -> Any:
        if match[1] not in captured:
            raise ConfigError(f"{match[0]} names no value captured by an earlier step")
        return captured[match[1]]

    whole = _PLACEHOLDER.fullmatch(value)
    if whole:
        return lookup(whole)
    return _PLACEHOLDER.sub(lambda match: str(lookup(match)), value)


def dig(document: Any, path: str) -> Any:
    """The value at a dotted path (``data.items.0.id``); raises LookupError when absent."""
    for part in path.split("."):
        if isinstance(document, dict):
            document = document[part]
        elif isinstance(document, list) and part.isdigit():
            document = document[int(part)]
        else:
            raise LookupError(part)
    return document


class FlowSignal:
    """Reads ``flow{flow=NAME, critical=true|false}`` for every flow; flows run concurrently,
    the steps of one flow in order."""

    name = "flows"

    def __init__(self, flows: Sequence[Flow], client: httpx.AsyncClient) -> None:
        self._flows = tuple(flows)
        self._client = client

    async def read(self, deployment: Deployment, at: datetime) -> Probe:
        probes = await asyncio.gather(*(self._run(flow, at) for flow in self._flows))
        return sum(probes, Probe())

    async def _run(self, flow: Flow, at: datetime) -> Probe:
        captured: dict[str, Any] = {}
        for number, step in enumerate(flow.steps, 1):
            # The configured path, never the rendered URL: a captured token stays out of it.
            path = urlsplit(step.url).path or "/"
            where = f"flow {flow.name!r} step {number} ({step.method} {path})"
            try:
                failed = await self._step(step, captured)
            except ConfigError as exc:
                return Probe(errors=(self._error(Failure.CONFIG, f"{where}: {exc}"),))
            if failed is not None:
                error = self._error(failed.failure, f"{where}: {failed.why}")
                return Probe((self._reading(flow, at, works=False),), (error,))
        return Probe((self._reading(flow, at, works=True),))

    async def _step(self, step: FlowStep, captured: dict[str, Any]) -> Failed | None:
        """Send one step and capture its values; None when it passed."""
        headers = {key: str(render(value, captured)) for key, value in step.headers.items()}
        answer = await send(
            self._client,
            step.method,
            str(render(step.url, captured)),
            headers=headers,
            json=render(step.json_body, captured),
        )
        if isinstance(answer, Failed):
            return answer
        if answer.status_code != step.expect_status:
            return Failed(
                Failure.STATUS, f"expected status {step.expect_status}, got {answer.status_code}"
            )
        if not step.capture:
            return None
        try:
            body = answer.json()
        except ValueError:
            return Failed(Failure.MALFORMED, "answer is not JSON, so nothing can be captured")
        for name, path in step.capture.items():
            try:
                captured[name] = dig(body, path)
            except LookupError:
                return Failed(Failure.MALFORMED, f"answer has no {path!r} to capture as {name!r}")
        return None

    def _error(self, failure: Failure, message: str) -> ProbeError:
        return ProbeError(self.name, failure, message, "flow")

    @staticmethod
    def _reading(flow: Flow, at: datetime, *, works: bool) -> Reading:
        labels = {"flow": flow.name, "critical": "true" if flow.critical else "false"}
        return Reading(at, "flow", 1.0 if works else 0.0, labels, samples=1)
