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
from typing import Protocol

import httpx

from watchdog.errors import StoreError
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


class LatencyStore(Protocol):
    """The part of the StateStore (watchdog/store/base.py) that keeps probe history."""

    async def add_latency_samples(
        self, target: str, check: str, at: datetime, seconds: Sequence[float]
    ) -> None: ...

    async def latency_samples(
        self, target: str, since: datetime
    ) -> dict[str, list[tuple[datetime, float]]]: ...

    async def prune_latency(self, target: str, before: datetime) -> None: ...


class LatencyHistory:
    """The rolling probe history of each check: (tick time, seconds) pairs, the oldest
    dropped once they are ``keep`` older than the newest, or beyond ``max_samples``.

    The daemon keeps one per target so that a deploy finds the probes of the ticks before it.
    With a ``store`` it also survives a restart: it loads what the store kept of ``target``
    once, and writes every record through (raising StoreError when the store fails).
    """

    def __init__(
        self,
        keep: timedelta = timedelta(hours=1),
        max_samples: int = 2000,
        store: LatencyStore | None = None,
        target: str | None = None,
    ) -> None:
        if store is not None and not target:
            raise ValueError("LatencyHistory: a store needs the target whose history it keeps")
        self._keep = keep
        self._max_samples = max_samples
        self._store = store
        self._target = target or ""
        self._loaded = store is None
        self._samples: dict[str, deque[tuple[datetime, float]]] = {}

    async def load(self, now: datetime) -> None:
        """Take in what the store kept from the last ``keep`` before ``now``; only once."""
        if self._loaded or self._store is None:
            return
        stored = await self._store.latency_samples(self._target, now - self._keep)
        self._samples = {
            check: deque(samples, maxlen=self._max_samples) for check, samples in stored.items()
        }
        self._loaded = True

    async def record(self, check: str, at: datetime, durations: Iterable[float]) -> None:
        durations = list(durations)
        await self.load(at)
        samples = self._samples.setdefault(check, deque(maxlen=self._max_samples))
        samples.extend((at, seconds) for seconds in durations)
        while samples and samples[0][0] < at - self._keep:
            samples.popleft()
        if self._store is not None:
            await self._store.add_latency_samples(self._target, check, at, durations)
            await self._store.prune_latency(self._target, at - self._keep)

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
        try:
            await self._history.load(at)
        except StoreError as exc:
            # Nothing to compare with until the history is back: no reading, say why.
            return Probe(errors=(self._error(Failure.DATABASE, f"latency history: {exc}"),))
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
        errors: list[ProbeError] = []
        baseline = self._history.before(probe.name, deployed_at)
        try:
            await self._history.record(probe.name, at, durations)
        except StoreError as exc:  # this tick still measures; only a restart would miss it
            errors.append(
                self._error(
                    Failure.DATABASE, f"latency probe {probe.name!r}: history not saved: {exc}"
                )
            )
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
