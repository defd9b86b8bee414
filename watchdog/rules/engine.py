"""The decision: ``decide(rules, deployment, readings, now, interval) -> Decision``.

Pure and synchronous. The meaning it gives the rules:

* Readings of one tick carry the tick's time; ``now`` is the time of the tick being decided.
  A series (a metric with one set of labels) is *current* when its newest reading is less than
  one ``interval`` old. A series that is not current is missing, and missing never satisfies a
  rule: the watchdog does not act on the last thing it happened to see.
* A reading *breaches* a leaf when its value compares true and it carries the rule's evidence
  (enough samples; a Wilson bound beyond the threshold). A breach *holds* for the rule's
  ``for``: that many consecutive readings, or that long. Consecutive means no tick missing
  between them (a gap of two intervals or more breaks the run).
* A ``trend`` needs the last N readings of the series, with no gap, each breaching, to rise
  (fall) strictly: a jump from healthy into the range is not yet a rising error rate.
* Rules fire independently; the worst verdict wins (rollback > disable_flag > inconclusive >
  monitor > none) and, among rules of one verdict, the first in the file.
* Inconclusive: the rule set's ``inconclusive.metric`` has had no reading for
  ``missing_intervals`` intervals; the watch is blind and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise

from watchdog.durations import format_duration
from watchdog.model import Decision, Deployment, Reading, Scope, Verdict
from watchdog.rules.explain import describe_breach, fmt_value
from watchdog.rules.metrics import CATALOG
from watchdog.rules.schema import AllOf, AnyOf, Leaf, Rule, RuleSet
from watchdog.rules.stats import wilson_bounds

SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class _Series:
    labels: dict[str, str]
    readings: list[Reading]  # oldest first, one per time


@dataclass(frozen=True)
class _Hit:
    evidence: tuple[Reading, ...]
    since: datetime
    text: str


@dataclass(frozen=True)
class _Fired:
    rule: Rule
    verdict: Verdict
    hits: tuple[_Hit, ...]
    since: datetime
    suffix: str
    urgency: str | None = None
    deadline: datetime | None = None
    escalate: bool = False


def _series(
    readings: Iterable[Reading], start: datetime, now: datetime
) -> dict[str, list[_Series]]:
    """Group readings from ``start`` up to ``now`` by metric and labels (catalog defaults
    applied); a later duplicate of the same series and time replaces an earlier one."""
    grouped: dict[SeriesKey, dict[datetime, Reading]] = {}
    for reading in readings:
        if not start <= reading.at <= now:
            continue
        metric = CATALOG.get(reading.metric)
        labels = dict(reading.labels)
        if metric is not None:
            for name, default in metric.label_defaults.items():
                labels.setdefault(name, default)
        key = (reading.metric, tuple(sorted(labels.items())))
        grouped.setdefault(key, {})[reading.at] = reading
    out: dict[str, list[_Series]] = {}
    for (metric_name, labels_key), by_time in sorted(grouped.items()):
        ordered = [by_time[t] for t in sorted(by_time)]
        out.setdefault(metric_name, []).append(_Series(dict(labels_key), ordered))
    return out


class _Evaluator:
    def __init__(self, rule: Rule, now: datetime, interval: timedelta) -> None:
        self.rule = rule
        self.now = now
        self.interval = interval

    def breaches(self, leaf: Leaf, reading: Reading) -> bool:
        if not leaf.compare(reading.value):
            return False
        return self.has_evidence(leaf, reading)

    def has_evidence(self, leaf: Leaf, reading: Reading) -> bool:
        evidence = self.rule.evidence
        if evidence is None:
            return True
        if evidence.min_samples and (reading.samples or 0) < evidence.min_samples:
            return False
        if evidence.confidence is None:
            return True
        if not reading.samples:
            return False
        low, high = wilson_bounds(reading.value, reading.samples, evidence.confidence)
        return leaf.compare(low if leaf.op in (">", ">=") else high)

    def contiguous(self, earlier: Reading, later: Reading) -> bool:
        return later.at - earlier.at < 2 * self.interval

    def leaf(self, leaf: Leaf, series: Sequence[_Series]) -> list[_Hit]:
        hits = []
        for one in series:
            if leaf.matches(one.labels):
                hit = self.series_hit(leaf, one.readings)
                if hit is not None:
                    hits.append(hit)
        return hits

    def series_hit(self, leaf: Leaf, readings: list[Reading]) -> _Hit | None:
        latest = readings[-1]
        if latest.at <= self.now - self.interval:
            return None  # not read this tick: missing, and missing never satisfies a rule
        run: list[Reading] = []
        for reading in reversed(readings):
            if run and not self.contiguous(reading, run[-1]):
                break
            if not self.breaches(leaf, reading):
                break
            run.append(reading)
        if not run:
            return None
        run.reverse()
        hold = self.rule.hold
        if isinstance(hold, int):
            if len(run) < hold:
                return None
            used = run[-hold:]
        elif isinstance(hold, timedelta):
            if run[-1].at - run[0].at < hold:
                return None
            used = run
        else:
            used = run[-1:]
        trend_readings: list[Reading] = []
        if self.rule.trend is not None:
            trend_readings = self.trend(leaf, readings)
            if not trend_readings:
                return None
        evidence = tuple(
            sorted({id(r): r for r in trend_readings + used}.values(), key=lambda r: r.at)
        )
        text = describe_breach(self.rule, leaf, latest, len(used), trend_readings)
        return _Hit(evidence=evidence, since=run[0].at, text=text)

    def trend(self, leaf: Leaf, readings: list[Reading]) -> list[Reading]:
        trend = self.rule.trend
        assert trend is not None
        window = readings[-trend.readings :]
        if len(window) < trend.readings:
            return []
        for earlier, later in pairwise(window):
            if not self.contiguous(earlier, later):
                return []
            rising = later.value > earlier.value
            if rising != (trend.direction == "increasing") or later.value == earlier.value:
                return []
        if not all(self.breaches(leaf, r) for r in window):
            return []  # "0.5-1 %, rollback if increasing": every step of the rise is in range
        return window

    def node(
        self, node: Leaf | AllOf | AnyOf, series: dict[str, list[_Series]]
    ) -> tuple[list[_Hit], datetime] | None:
        if isinstance(node, Leaf):
            hits = self.leaf(node, series.get(node.metric, []))
            return (hits, min(h.since for h in hits)) if hits else None
        results = [
            self.node(child, series)
            for child in (node.all if isinstance(node, AllOf) else node.any)
        ]
        found = [r for r in results if r is not None]
        if isinstance(node, AllOf):
            if len(found) != len(results):
                return None
            return [h for hits, _ in found for h in hits], max(s for _, s in found)
        if not found:
            return None
        return [h for hits, _ in found for h in hits], min(s for _, s in found)


def _fire(
    rule: Rule,
    series: dict[str, list[_Series]],
    deployment: Deployment,
    now: datetime,
    interval: timedelta,
) -> _Fired | None:
    if rule.within is not None and now - deployment.deployed_at > rule.within:
        return None
    result = _Evaluator(rule, now, interval).node(rule.when, series)
    if result is None:
        return None
    hits, since = result
    within = f" in the first {format_duration(rule.within)}" if rule.within else ""
    if rule.verdict is Verdict.MONITOR:
        plan = rule.monitor
        if plan is None:
            return _Fired(rule, Verdict.MONITOR, tuple(hits), since, f"{within} → monitor")
        deadline = since + plan.hold_for
        if now < deadline:
            return _Fired(
                rule,
                Verdict.MONITOR,
                tuple(hits),
                since,
                f"{within} → monitor until {deadline:%H:%M:%S}Z",
                deadline=deadline,
            )
        held = f"{within}, still true after {format_duration(plan.hold_for)} of monitoring"
        if plan.then == "rollback":
            return _Fired(
                rule,
                Verdict.ROLLBACK,
                tuple(hits),
                since,
                f"{held} → rollback, immediate",
                urgency="immediate",
            )
        return _Fired(
            rule,
            Verdict.MONITOR,
            tuple(hits),
            since,
            f"{held} → alert again",
            deadline=deadline,
            escalate=True,
        )
    if rule.verdict is Verdict.DISABLE_FLAG:
        return _Fired(
            rule,
            Verdict.DISABLE_FLAG,
            tuple(hits),
            since,
            f"{within} → disable flag {_flag_of(hits)}",
        )
    urgency = rule.urgency_text
    act_by = since + rule.urgency if isinstance(rule.urgency, timedelta) else None
    scope = "" if rule.scope is Scope.APPLICATION else f", scope {rule.scope}"
    return _Fired(
        rule,
        Verdict.ROLLBACK,
        tuple(hits),
        since,
        f"{within} → rollback, {urgency}{scope}",
        urgency=urgency,
        deadline=act_by,
    )


def _flag_of(hits: Sequence[_Hit]) -> str:
    return hits[0].evidence[-1].labels.get("flag", "?")


def _blind(
    rules: RuleSet,
    series: dict[str, list[_Series]],
    deployment: Deployment,
    now: datetime,
    interval: timedelta,
) -> Decision | None:
    watched = rules.inconclusive
    times = [s.readings[-1].at for s in series.get(watched.metric, [])]
    last = max(times, default=None)
    reference = last if last is not None else deployment.deployed_at - interval
    missing = now - reference
    if missing < watched.missing_intervals * interval:
        return None
    since = (
        f"for {format_duration(missing)}"
        if last is not None
        else f"since the deploy {format_duration(now - deployment.deployed_at)} ago"
    )
    return Decision(
        verdict=Verdict.INCONCLUSIVE,
        at=now,
        explanation=(
            f"no {watched.metric} reading {since} ({watched.missing_intervals} "
            f"intervals of {format_duration(interval)}) → inconclusive: the watchdog "
            f"is blind to {watched.metric} and will not act on it"
        ),
    )


def _quiet(series: dict[str, list[_Series]], now: datetime, interval: timedelta) -> Decision:
    current = [
        s.readings[-1] for s in series.get("error_rate", []) if s.readings[-1].at > now - interval
    ]
    seen = f"error_rate {fmt_value(current[0])}" if current else "no error_rate reading now"
    return Decision(verdict=Verdict.NONE, at=now, explanation=f"no rule fired ({seen})")


def decide(
    rules: RuleSet,
    deployment: Deployment,
    readings: Iterable[Reading],
    now: datetime,
    interval: timedelta,
) -> Decision:
    """The verdict at ``now`` for ``deployment`` given every reading so far."""
    series = _series(readings, deployment.deployed_at, now)
    fired = [
        f
        for f in (_fire(rule, series, deployment, now, interval) for rule in rules.rules)
        if f is not None
    ]
    blind = _blind(rules, series, deployment, now, interval)
    best = max(fired, key=lambda f: f.verdict.severity, default=None)  # max keeps the first
    if best is None or (blind is not None and blind.verdict.severity > best.verdict.severity):
        if blind is not None:
            return blind
        return _quiet(series, now, interval)
    evidence: list[Reading] = []
    for reading in (r for hit in best.hits for r in hit.evidence):
        if reading not in evidence:  # branches of an any: may match the same reading
            evidence.append(reading)
    return Decision(
        verdict=best.verdict,
        at=now,
        rule=best.rule.name,
        explanation="; ".join(dict.fromkeys(hit.text for hit in best.hits)) + best.suffix,
        evidence=tuple(evidence),
        urgency=best.urgency,
        deadline=best.deadline,
        scope=best.rule.scope if best.verdict is Verdict.ROLLBACK else None,
        flag=_flag_of(best.hits) if best.verdict is Verdict.DISABLE_FLAG else None,
        escalate=best.escalate,
        also_fired=tuple(f.rule.name for f in fired if f is not best),
    )
