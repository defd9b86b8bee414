"""The SignalSource seam, what a probe returns, and reading every source of a tick at once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import structlog

from watchdog.model import Deployment, Reading

log = structlog.get_logger("watchdog.signals")


class Failure(StrEnum):
    """Why a source gave no reading; the watch and the logs branch on this, never on text."""

    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # connection refused, DNS, TLS
    STATUS = "status"  # an unexpected HTTP status (5xx, or 4xx that is not one below)
    RATE_LIMITED = "rate_limited"
    CONFIG = "config"  # 401/403/404, an unset secret: people must fix the config
    MALFORMED = "malformed"  # an answer we cannot parse
    NO_DATA = "no_data"  # the service answered, but there is nothing to measure yet
    DATABASE = "database"


@dataclass(frozen=True)
class ProbeError:
    """One thing a source could not read this tick. ``message`` never contains a secret."""

    source: str
    failure: Failure
    message: str
    metric: str | None = None


@dataclass(frozen=True)
class Probe:
    """What one source (or a whole tick) saw: readings, and the errors in place of the rest."""

    readings: tuple[Reading, ...] = ()
    errors: tuple[ProbeError, ...] = ()

    def __add__(self, other: Probe) -> Probe:
        return Probe(self.readings + other.readings, self.errors + other.errors)


class SignalSource(Protocol):
    """Reads one kind of signal for one target.

    ``read`` is called once per tick with the deployment under watch and the tick's time ``at``
    (every reading it returns carries ``at``). It must not raise for anything the outside world
    does: failures are ProbeErrors in the returned Probe. It may be cancelled when the tick's
    timeout runs out; it then loses nothing but this tick's readings.
    """

    name: str

    async def read(self, deployment: Deployment, at: datetime) -> Probe: ...


@dataclass
class SourceHealth:
    """Remembers which sources are failing, to log when one starts failing and when it
    recovers rather than on every tick."""

    failing: dict[str, Failure] = field(default_factory=dict)

    def note(self, source: str, probe: Probe, **context: object) -> None:
        # "No data yet" (a release with no baseline) is not a source failing.
        errors = [e for e in probe.errors if e.failure is not Failure.NO_DATA]
        first = errors[0] if errors else None
        was = self.failing.get(source)
        if first is not None and was is None:
            self.failing[source] = first.failure
            log.warning(
                "signal.failing",
                source=source,
                failure=str(first.failure),
                error=first.message,
                **context,
            )
        elif first is None and was is not None:
            del self.failing[source]
            log.info("signal.recovered", source=source, after=str(was), **context)


async def read_all(
    sources: Sequence[SignalSource],
    deployment: Deployment,
    at: datetime,
    timeout: timedelta,
    health: SourceHealth | None = None,
) -> Probe:
    """Read every source concurrently; a source still running after ``timeout`` is cancelled
    and recorded as timed out, so a slow source never delays the tick."""

    async def one(source: SignalSource) -> Probe:
        try:
            async with asyncio.timeout(timeout.total_seconds()):
                return await source.read(deployment, at)
        except TimeoutError:
            return Probe(
                errors=(
                    ProbeError(
                        source.name,
                        Failure.TIMEOUT,
                        f"no answer within {timeout.total_seconds():g}s",
                    ),
                )
            )

    results = await asyncio.gather(*(one(s) for s in sources))
    total = Probe()
    for source, probe in zip(sources, results, strict=True):
        if health is not None:
            health.note(source.name, probe, target=deployment.target, deployment=deployment.id)
        total += probe
    return total
