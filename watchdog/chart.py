"""The post-mortem's chart: error rate and latency change over the watch, the rules'
thresholds as horizontal lines and the rollback as a vertical one, so a reader sees at a glance
what crossed which line and when the watchdog acted.

No pyplot: a ``Figure`` on the SVG canvas touches no global backend and opens no window, so it
renders the same on a server as on a laptop. The output is deterministic (fixed hash salt, no
date), texts stay ``<text>`` elements (searchable), and the artists carry ids
(``error_rate-threshold-1``, ``error_rate-rollback``) that tests and readers can find in the SVG.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import matplotlib
from matplotlib.axes import Axes
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.dates import AutoDateLocator, DateFormatter, date2num
from matplotlib.figure import Figure

from watchdog.model import Reading
from watchdog.rules.explain import fmt_number
from watchdog.rules.schema import RuleSet

PANELS = {"error_rate": "error rate (%)", "latency_change": "latency change (%)"}
"""The metrics charted, one panel each, top to bottom."""

_THRESHOLD_COLORS = ("tab:red", "tab:orange", "gold")  # highest line first
# rcParams are process-wide: one render at a time keeps another thread's style out of ours.
_LOCK = threading.Lock()


@dataclass(frozen=True)
class Threshold:
    """A line some rules draw on a metric: ``rules`` fire past ``value`` (a fraction)."""

    metric: str
    value: float
    rules: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{', '.join(self.rules)} ({fmt_number(self.metric, self.value)})"


def rule_thresholds(rules: RuleSet) -> list[Threshold]:
    """Where the rules over the charted metrics start to fire (the low end of a ``between``),
    rules sharing a value merged into one line."""
    found: dict[tuple[str, float], list[str]] = defaultdict(list)
    for rule in rules.rules:
        for leaf in rule.leaves():
            if leaf.metric in PANELS:
                value = leaf.value[0] if isinstance(leaf.value, tuple) else leaf.value
                names = found[(leaf.metric, value)]
                if rule.name not in names:
                    names.append(rule.name)
    return [Threshold(metric, value, tuple(names)) for (metric, value), names in found.items()]


def render_chart(
    points: Sequence[Reading],
    thresholds: Sequence[Threshold],
    rollback_at: datetime | None,
    path: Path | BinaryIO,
) -> None:
    """Draw the charted metrics of ``points`` (other metrics are ignored) as an SVG at
    ``path``; ``rollback_at`` is when the rollback was decided, None when there was none."""
    with (
        _LOCK,
        matplotlib.rc_context({"svg.hashsalt": "rollback-watchdog", "svg.fonttype": "none"}),
    ):
        figure = Figure(figsize=(9, 6), layout="constrained")
        FigureCanvasSVG(figure)
        axes = figure.subplots(len(PANELS), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (metric, title) in zip(axes, PANELS.items(), strict=True):
            _panel(ax, metric, title, points, thresholds, rollback_at)
        last = axes[-1]
        last.set_xlabel("time (UTC)")
        # matplotlib.dates has no type hints (hence the ignores); the axis is UTC.
        last.xaxis.set_major_locator(AutoDateLocator(tz=UTC))  # type: ignore[no-untyped-call]
        last.xaxis.set_major_formatter(
            DateFormatter("%H:%M:%S", tz=UTC)  # type: ignore[no-untyped-call]
        )
        figure.suptitle("Error rate and latency over the watch")
        figure.savefig(path, format="svg", metadata={"Date": None})


def _panel(
    ax: Axes,
    metric: str,
    title: str,
    points: Sequence[Reading],
    thresholds: Sequence[Threshold],
    rollback_at: datetime | None,
) -> None:
    series: dict[str, list[Reading]] = defaultdict(list)
    for reading in sorted(points, key=lambda r: r.at):
        if reading.metric == metric:
            series[reading.describe()].append(reading)
    for name, readings in sorted(series.items()):
        ax.plot(
            _days([r.at for r in readings]),
            [r.value * 100 for r in readings],
            marker=".",
            label=name,
        )
    if not series:
        ax.text(0.5, 0.5, f"no {metric} readings", transform=ax.transAxes, ha="center")
    mine = sorted((t for t in thresholds if t.metric == metric), key=lambda t: -t.value)
    for number, threshold in enumerate(mine, start=1):
        line = ax.axhline(
            threshold.value * 100,
            color=_THRESHOLD_COLORS[min(number, len(_THRESHOLD_COLORS)) - 1],
            linestyle="--",
            linewidth=1,
            label=threshold.label,
        )
        line.set_gid(f"{metric}-threshold-{number}")
    if rollback_at is not None:
        line = ax.axvline(
            _days([rollback_at])[0],
            color="black",
            linewidth=1.5,
            label=f"rollback {rollback_at.astimezone(UTC):%H:%M:%S}",
        )
        line.set_gid(f"{metric}-rollback")
    ax.set_ylabel(title)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize="small")


def _days(times: Sequence[datetime]) -> list[float]:
    """Times in matplotlib's date unit (days since its epoch), as its date axis wants them."""
    return [float(day) for day in date2num(times)]  # type: ignore[no-untyped-call]
