"""The daemon's own numbers for Prometheus (``GET /metrics``), in a registry of its own: nothing
is registered globally at import."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_watches = Gauge("watchdog_active_watches", "Watches not closed yet", registry=r)
        self.decisions = Counter(
            "watchdog_decisions_total", "Decisions made, by verdict", ["verdict"], registry=r
        )
        self.rollbacks = Counter(
            "watchdog_rollbacks_total",
            "Rollbacks attempted, by provider and result",
            ["provider", "result"],
            registry=r,
        )
        self.probe_errors = Counter(
            "watchdog_probe_errors_total",
            "Signals that could not be read, by source and failure",
            ["source", "failure"],
            registry=r,
        )
        self.tick_lag = Histogram(
            "watchdog_tick_lag_seconds",
            "How late a tick started after it was due",
            registry=r,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.rollback_seconds = Histogram(
            "watchdog_rollback_duration_seconds",
            "From sending a rollback to it serving",
            registry=r,
            buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1200),
        )
        self.reloads = Counter(
            "watchdog_config_reloads_total", "Config reloads, by result", ["result"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
