"""Outside signals, read back from the state store: the ``security_alert`` metric.

An alert is raised through ``POST /api/signals`` and stored; this source only reads the store,
so an alert raised on any replica, or before a restart, still reaches the rule engine.
"""

from __future__ import annotations

from datetime import datetime

from watchdog.errors import StoreError
from watchdog.model import Deployment, Reading
from watchdog.signals.base import Failure, Probe, ProbeError
from watchdog.store.base import StateStore

METRIC = "security_alert"


class AlertSignal:
    """Reads ``security_alert`` for one target (a SignalSource): 1 once an alert was raised
    against the deployment at or before the tick, else 0. A store that cannot be read gives
    no reading and a probe error, never a 0 that would hide an alert."""

    name = "alerts"

    def __init__(self, store: StateStore, target: str) -> None:
        self._store = store
        self._target = target

    async def read(self, deployment: Deployment, at: datetime) -> Probe:
        try:
            raised = await self._store.raised_signals(self._target, deployment.id)
        except StoreError as exc:
            return Probe(errors=(ProbeError(self.name, Failure.DATABASE, str(exc), METRIC),))
        alert = any(s.kind == METRIC and s.raised_at <= at for s in raised)
        return Probe(readings=(Reading(at, METRIC, float(alert)),))
