"""One-sentence explanations with the observed values against the thresholds, as people read
them in Slack and in post-mortems: "error_rate 2.3 % over 4,120 requests > 1 % for 2 readings"."""

from __future__ import annotations

from watchdog.durations import format_duration
from watchdog.model import Reading
from watchdog.rules.metrics import CATALOG, Kind
from watchdog.rules.schema import AllOf, AnyOf, Leaf, Rule
from watchdog.rules.stats import wilson_bounds


def fmt_number(metric: str, value: float) -> str:
    """A value in the metric's own terms: 0.023 → ``2.3 %``; a change 2.1 → ``+210 %``."""
    kind = CATALOG[metric].kind if metric in CATALOG else Kind.CHANGE
    if kind is Kind.BINARY:
        return f"{value:g}"
    percent = value * 100
    sign = "+" if kind is Kind.CHANGE else ""
    text = f"{percent:{sign}.0f}" if abs(percent) >= 100 else f"{percent:{sign}.3g}"
    return f"{text} %"


def fmt_value(reading: Reading) -> str:
    """The reading's value with the traffic it was computed from."""
    text = fmt_number(reading.metric, reading.value)
    if reading.samples is not None and reading.metric in CATALOG:
        text += f" over {reading.samples:,} {CATALOG[reading.metric].samples_unit}"
    return text


def describe_breach(
    rule: Rule, leaf: Leaf, latest: Reading, held: int, trend: list[Reading]
) -> str:
    """``error_rate 2.3 % over 4,120 requests > 1 % (95 % lower bound 1.6 %) for 2 readings``."""
    metric = CATALOG[leaf.metric]
    if metric.kind is Kind.BINARY and leaf.op in ("==", "!="):
        text = f"{latest.describe()} is {latest.value:g}"
    else:
        if isinstance(leaf.value, tuple):
            low, high = (fmt_number(leaf.metric, v) for v in leaf.value)
            threshold = f"between {low} and {high}"
        else:
            threshold = f"{leaf.op} {fmt_number(leaf.metric, leaf.value)}"
        text = f"{latest.describe()} {fmt_value(latest)} {threshold}"
    evidence = rule.evidence
    if evidence and evidence.confidence is not None and latest.samples:
        low_b, high_b = wilson_bounds(latest.value, latest.samples, evidence.confidence)
        side, bound = ("lower", low_b) if leaf.op in (">", ">=") else ("upper", high_b)
        text += f" ({evidence.confidence * 100:g} % {side} bound {fmt_number(leaf.metric, bound)})"
    if isinstance(rule.hold, int) and rule.hold > 1:
        text += f" for {held} readings"
    elif rule.hold is not None and not isinstance(rule.hold, int):
        text += f" for {format_duration(rule.hold)}"
    if trend:
        steps = " → ".join(fmt_number(leaf.metric, r.value) for r in trend)
        direction = "rising" if rule.trend and rule.trend.direction == "increasing" else "falling"
        text += f", {direction} over {len(trend)} readings ({steps})"
    return text


def fmt_condition(node: Leaf | AllOf | AnyOf) -> str:
    """``error_rate > 1 %``; ``any(flow{flow=auth|payments} == 0, health == 0)``."""
    if isinstance(node, AllOf | AnyOf):
        children = node.all if isinstance(node, AllOf) else node.any
        name = "all" if isinstance(node, AllOf) else "any"
        return f"{name}(" + ", ".join(fmt_condition(c) for c in children) + ")"
    labels = ",".join(
        f"{k}={v if isinstance(v, str) else '|'.join(v)}" for k, v in node.labels.items()
    )
    subject = f"{node.metric}{{{labels}}}" if labels else node.metric
    if isinstance(node.value, tuple):
        low, high = (fmt_number(node.metric, v) for v in node.value)
        return f"{subject} between {low} and {high}"
    return f"{subject} {node.op} {fmt_number(node.metric, node.value)}"
