"""The ``latency_change`` signal from direct probes: time a few GETs every tick and compare
their percentiles with the daemon's own probe history from before the deploy.

Percentiles are nearest-rank (the smallest sample with at least p % of samples at or below
it): always a latency that was really measured, and well defined for the handful of samples
a tick takes.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

import httpx

from watchdog.model import Deployment, Reading
from watchdog.settings import LatencyProbe
from watchdog.signals.base import Failure, Probe, ProbeError
from watchdog.signals.httpprobe import Failed, send

PERCENTILES = {"p50": 50, "p75": 75, "p95": 95}
# A timer too coarse to see a request must not make a baseline of zero to divide by.
_RESOLUTION = 1e-6


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank ``p``-th percentile (0 < p <= 100) of non-empty ``values``."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


class LatencyHistory:
    """The rolling probe history of each check: (tick time, seconds) pairs, the oldest
    dropped once they are ``keep`` older than the newest, or beyond ``max_samples``.

    In memory for now; the daemon keeps one per target so that a deploy finds the probes of
    the ticks before it.
    """

    def __init__(self, keep: timedelta = timedelta(hours=1), max_samples: int = 2000) -> None:
        self._keep = keep
        self._max_samples = max_samples
        self._samples: dict[str, deque[tuple[datetime, float]]] = {}

    def record(self, check: str, at: datetime, durations: Iterable[float]) -> None:
        samples = self._samples.setdefault(check, deque(maxlen=self._max_samples))
        samples.extend((at, seconds) for seconds in durations)
        while samples and samples[0][0] < at - self._keep:
            samples.popleft()

    def before(self, check: str, when: datetime) -> list[float]:
        """The durations of ``check`` recorded at tick times before ``when``."""
        return [seconds for at, seconds in self._samples.get(check, ()) if at < when]


class LatencySignal:
    """Reads ``latency_change{check=NAME, percentile=p50|p75|p95}`` for every probe.

    Probes run concurrently; the samples of one probe are taken one after another, so that
    they time the app and not the contention between them.
    """

    name = "latency"

    def __init__(
        self,
        probes: Sequence[LatencyProbe],
        client: httpx.AsyncClient,
        history: LatencyHistory,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._probes = tuple(probes)
        self._client = client
        self._history = history
        self._timer = timer

    async def read(self, deployment: Deployment, at: datetime) -> Probe:
        probes = await asyncio.gather(
            *(self._probe(probe, deployment.deployed_at, at) for probe in self._probes)
        )
        return sum(probes, Probe())

    async def _probe(self, probe: LatencyProbe, deployed_at: datetime, at: datetime) -> Probe:
        durations: list[float] = []
        failures: list[Failed] = []
        for _ in range(probe.samples):
            started = self._timer()
            answer = await send(self._client, "GET", probe.url)
            elapsed = max(self._timer() - started, _RESOLUTION)
            if isinstance(answer, Failed):
                failures.append(answer)
            elif answer.is_error:  # an error page times another code path than the app's
                failures.append(Failed(Failure.STATUS, f"answered {answer.status_code}"))
            else:
                durations.append(elapsed)
        baseline = self._history.before(probe.name, deployed_at)
        self._history.record(probe.name, at, durations)

        errors: list[ProbeError] = []
        if failures:
            first = failures[0]
            errors.append(
                self._error(
                    first.failure,
                    f"latency probe {probe.name!r}: {len(failures)} of {probe.samples} samples "
                    f"failed, first: {first.why}",
                )
            )
        if not baseline:
            errors.append(
                self._error(
                    Failure.NO_DATA,
                    f"latency probe {probe.name!r}: no probe history from before the deploy",
                )
            )
        if not baseline or not durations:
            return Probe(errors=tuple(errors))
        readings = tuple(
            Reading(
                at,
                "latency_change",
                percentile(durations, p) / percentile(baseline, p) - 1,
                {"check": probe.name, "percentile": label},
                samples=len(durations),
            )
            for label, p in PERCENTILES.items()
        )
        return Probe(readings, tuple(errors))

    def _error(self, failure: Failure, message: str) -> ProbeError:
        return ProbeError(self.name, failure, message, "latency_change")
