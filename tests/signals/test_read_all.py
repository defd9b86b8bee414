"""A tick reads every source; a failing source is logged when it starts and when it recovers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from structlog.testing import capture_logs

from watchdog.model import Deployment, Reading
from watchdog.signals.base import Failure, Probe, ProbeError, SourceHealth, read_all

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
DEPLOY = Deployment("backend", "dep-2", T0)


class Scripted:
    """A source that answers from a script, one Probe a tick."""

    name = "scripted"

    def __init__(self, *probes: Probe) -> None:
        self._probes = list(probes)

    async def read(self, deployment: Deployment, at: datetime) -> Probe:
        return self._probes.pop(0)


async def test_failing_is_logged_once_and_recovery_once() -> None:
    ok = Probe(readings=(Reading(T0, "error_rate", 0.001, samples=100),))
    down = Probe(errors=(ProbeError("scripted", Failure.TIMEOUT, "no answer within 10s"),))
    source, health = Scripted(ok, down, down, down, ok, ok), SourceHealth()
    with capture_logs() as logged:
        for tick in range(6):
            await read_all(
                [source], DEPLOY, T0 + tick * timedelta(seconds=15), timedelta(seconds=10), health
            )
    assert [(e["event"], e["source"]) for e in logged] == [
        ("signal.failing", "scripted"),
        ("signal.recovered", "scripted"),
    ]
    assert logged[0]["failure"] == "timeout"
    assert logged[0]["deployment"] == "dep-2"
