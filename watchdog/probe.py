"""Building a target's signal sources from the config, and ``watchdog probe``: read them once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import TextIO

import httpx

from watchdog.clock import Clock
from watchdog.httpclient import new_client
from watchdog.model import Deployment
from watchdog.readings import reading_to_json
from watchdog.rules.explain import fmt_value
from watchdog.settings import Settings
from watchdog.signals.alerts import AlertSignal
from watchdog.signals.base import Failure, Probe, SignalSource, read_all
from watchdog.signals.database import DatabaseSignal
from watchdog.signals.flows import FlowSignal
from watchdog.signals.health import HealthSignal
from watchdog.signals.latency import LatencyHistory, LatencySignal
from watchdog.signals.sentry import SentrySignal
from watchdog.store.base import StateStore


@asynccontextmanager
async def target_sources(
    settings: Settings,
    target: str,
    clock: Clock,
    history: LatencyHistory | None = None,
    store: StateStore | None = None,
    api: httpx.AsyncClient | None = None,
) -> AsyncIterator[list[SignalSource]]:
    """Every source the config gives ``target``, with one HTTP client per outside service
    (Sentry; the target's own endpoints), closed on exit; Sentry's is ``api`` when given (the
    daemon shares one across targets, so its connections stay open). With a ``store``, also
    the outside signals raised against the deployment (``security_alert``), which only the
    store holds, and a latency probe history kept there, so a restart does not lose the
    baseline. Without a ``history``, one is made (in the store when there is one)."""
    config = settings.targets[target]
    if history is None:
        history = LatencyHistory(store=store, target=target)
    timeout = httpx.Timeout(settings.watch.probe_timeout.total_seconds())
    sources: list[SignalSource] = []
    async with AsyncExitStack() as stack:
        if config.sentry is not None and settings.sentry is not None:
            if api is None:
                api = await stack.enter_async_context(new_client(timeout=timeout))
            sources.append(SentrySignal(settings.sentry, config.sentry, api, clock))
        if config.health or config.flows or config.latency:
            app = await stack.enter_async_context(new_client(timeout=timeout))
            if config.health:
                sources.append(HealthSignal(config.health, app))
            if config.flows:
                sources.append(FlowSignal(config.flows, app))
            if config.latency:
                sources.append(LatencySignal(config.latency, app, history))
        if config.database is not None:
            sources.append(DatabaseSignal(config.database, settings.watch.probe_timeout))
        if store is not None:
            sources.append(AlertSignal(store, target))
        yield sources


async def probe(settings: Settings, deployment: Deployment, at: datetime, clock: Clock) -> Probe:
    """Read every signal of the deployment's target once."""
    async with target_sources(settings, deployment.target, clock) as sources:
        return await read_all(sources, deployment, at, settings.watch.probe_timeout)


def failed(result: Probe) -> bool:
    """A source failed: anything but "answered, nothing to measure yet"."""
    return any(error.failure is not Failure.NO_DATA for error in result.errors)


def write_json(result: Probe, out: TextIO, err: TextIO) -> None:
    """Readings as a readings file on ``out`` (``evaluate`` reads it); errors on ``err``."""
    for reading in result.readings:
        out.write(json.dumps(reading_to_json(reading)) + "\n")
    for error in result.errors:
        err.write(
            json.dumps(
                {
                    "error": {
                        "source": error.source,
                        "failure": str(error.failure),
                        "metric": error.metric,
                        "message": error.message,
                    }
                }
            )
            + "\n"
        )


def write_text(result: Probe, deployment: Deployment, at: datetime, out: TextIO) -> None:
    release = deployment.sentry_release or "unknown"
    out.write(f"{deployment.target} at {at:%Y-%m-%d %H:%M:%S}Z (release {release})\n")
    for reading in sorted(result.readings, key=lambda r: r.describe()):
        out.write(f"  {reading.describe():<48} {fmt_value(reading)}\n")
    if not result.readings:
        out.write("  no readings\n")
    for error in result.errors:
        metric = f" {error.metric}" if error.metric else ""
        out.write(f"  ! {error.source}{metric}: {error.failure}: {error.message}\n")
