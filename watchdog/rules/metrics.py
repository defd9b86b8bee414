"""The metric catalog: which metrics exist, what their values mean, which labels they carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Kind(StrEnum):
    FRACTION = "fraction"  # 0..1, shown as a percentage; may carry samples
    BINARY = "binary"  # 1 or 0
    CHANGE = "change"  # relative to a baseline: 0.5 = +50 %; never below -1


@dataclass(frozen=True)
class Metric:
    name: str
    kind: Kind
    labels: tuple[str, ...] = ()
    label_defaults: dict[str, str] = field(default_factory=dict)
    label_values: dict[str, tuple[str, ...]] = field(default_factory=dict)
    samples_unit: str = "samples"
    meaning: str = ""

    def value_problem(self, value: float) -> str | None:
        """Why ``value`` cannot be a reading of this metric, or None when it can."""
        if self.kind is Kind.FRACTION and not 0 <= value <= 1:
            return "expected a fraction between 0 and 1"
        if self.kind is Kind.BINARY and value not in (0, 1):
            return "expected 0 or 1"
        if self.kind is Kind.CHANGE and value < -1:
            return "expected a relative change of at least -1 (-100 %)"
        return None


CATALOG: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric(
            "error_rate",
            Kind.FRACTION,
            samples_unit="requests",
            meaning="share of requests that errored",
        ),
        Metric(
            "users_affected",
            Kind.FRACTION,
            samples_unit="users",
            meaning="share of active users who hit an error new in this release",
        ),
        Metric(
            "latency_change",
            Kind.CHANGE,
            labels=("check", "percentile"),
            label_defaults={"percentile": "p95"},
            label_values={"percentile": ("p50", "p75", "p95")},
            samples_unit="requests",
            meaning="latency relative to the pre-deploy baseline",
        ),
        Metric(
            "health",
            Kind.BINARY,
            labels=("check",),
            samples_unit="checks",
            meaning="1 healthy, 0 not",
        ),
        Metric(
            "flow",
            Kind.BINARY,
            labels=("flow", "critical"),
            label_values={"critical": ("true", "false")},
            samples_unit="runs",
            meaning="1 the critical user flow works, 0 broken",
        ),
        Metric("migration_failed", Kind.BINARY, meaning="1 when the deploy's migration failed"),
        Metric(
            "flag_error_rate",
            Kind.FRACTION,
            labels=("flag",),
            samples_unit="requests",
            meaning="error rate of events carrying a feature flag",
        ),
        Metric(
            "security_alert",
            Kind.BINARY,
            meaning="1 when a security problem was reported for this deploy",
        ),
    )
}
