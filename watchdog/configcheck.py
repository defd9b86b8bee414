"""``watchdog config check``: validate everything and show the thresholds that will apply."""

from __future__ import annotations

from typing import Any, TextIO

from watchdog.durations import format_duration
from watchdog.model import Verdict
from watchdog.rules.explain import fmt_condition
from watchdog.rules.schema import Rule
from watchdog.settings import LoadedConfig


def rule_row(rule: Rule) -> dict[str, Any]:
    hold = rule.hold
    evidence = []
    if rule.evidence and rule.evidence.min_samples:
        evidence.append(f"n>={rule.evidence.min_samples}")
    if rule.evidence and rule.evidence.confidence is not None:
        evidence.append(f"{rule.evidence.confidence * 100:g}% Wilson")
    action = str(rule.verdict)
    if rule.verdict is Verdict.ROLLBACK:
        action += f" ({rule.urgency_text}" + (
            f", {rule.scope})" if rule.scope != "application" else ")"
        )
    elif rule.monitor:
        action += f" ({format_duration(rule.monitor.hold_for)}, then {rule.monitor.then})"
    condition = fmt_condition(rule.when)
    if rule.trend:
        condition += f", {rule.trend.direction} over {rule.trend.readings} readings"
    return {
        "rule": rule.name,
        "action": action,
        "condition": condition,
        "for": (f"{hold} readings" if isinstance(hold, int) else format_duration(hold))
        if hold is not None
        else "",
        "within": format_duration(rule.within) if rule.within else "",
        "evidence": ", ".join(evidence),
    }


def report_json(config: LoadedConfig) -> dict[str, Any]:
    s = config.settings
    return {
        "ok": True,
        "config": str(config.path),
        "rules_file": str(s.rules),
        "warnings": [str(ref.error()) for ref in config.unset],
        "watch": {
            "window": format_duration(s.watch.window),
            "interval": format_duration(s.watch.interval),
            "dry_run": s.dry_run,
        },
        "inconclusive": config.rules.inconclusive.model_dump(),
        "targets": {
            name: {
                "provider": t.provider.kind,
                "health": len(t.health),
                "latency": len(t.latency),
                "flows": len(t.flows),
            }
            for name, t in s.targets.items()
        },
        "rules": [rule_row(rule) for rule in config.rules.rules],
    }


def write_text(config: LoadedConfig, out: TextIO, err: TextIO) -> None:
    report = report_json(config)
    for warning in report["warnings"]:
        err.write(f"warning: {warning}\n")
    s = config.settings
    out.write(f"{config.path}: valid; rules from {s.rules}\n")
    out.write(
        f"watch: window {report['watch']['window']}, interval "
        f"{report['watch']['interval']}, dry run {'on' if s.dry_run else 'off'}\n"
    )
    out.write("targets:\n")
    for name, t in report["targets"].items():
        out.write(
            f"  {name:<18} {t['provider']:<15} {t['health']} health, "
            f"{t['latency']} latency, {t['flows']} flows\n"
        )
    blind = config.rules.inconclusive
    out.write(
        f"rules (worst verdict wins: rollback > disable_flag > inconclusive > monitor; "
        f"then the first listed). Blind after {blind.missing_intervals} intervals "
        f"without {blind.metric}.\n"
    )
    columns = ["rule", "action", "condition", "for", "within", "evidence"]
    rows = report["rules"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}
    out.write("  " + "  ".join(c.ljust(widths[c]) for c in columns).rstrip() + "\n")
    for row in rows:
        out.write("  " + "  ".join(row[c].ljust(widths[c]) for c in columns).rstrip() + "\n")
