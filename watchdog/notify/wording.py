"""How a message says what the store holds: durations against the runbook's targets,
times, the verification checklist as the template's lines, the evidence behind a decision and
the sources a blind watch could not read. Every line is Slack mrkdwn, its record text escaped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from watchdog.model import Decision
from watchdog.notify.blocks import escape
from watchdog.rules.explain import fmt_value
from watchdog.signals.base import ProbeError
from watchdog.store.records import ActionRecord, ActionStatus

EVIDENCE_SHOWN = 5


def span(seconds: float) -> str:
    """``0.4 s``, ``41 s``, ``4 min 12 s``, ``5 min``."""
    if seconds < 9.95:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


def clock(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%H:%M:%S UTC")


def rollback_time(action: ActionRecord, allowed_seconds: int) -> str:
    """``4 min 12 s of the 5 min allowed ✅ (live at 12:04:57 UTC)``, timed against the
    runbook's target."""
    allowed = span(allowed_seconds)
    if action.finished_at is None or action.seconds is None:
        return f"started {clock(action.started_at)}, {allowed} allowed"
    took = span(action.seconds)
    if action.status is ActionStatus.FAILED:
        return f"failed after {took} ({allowed} allowed)"
    if action.seconds <= allowed_seconds:
        return f"{took} of the {allowed} allowed ✅ (live at {clock(action.finished_at)})"
    return f"{took}, over the {allowed} allowed ⚠️ (live at {clock(action.finished_at)})"


def _check_group(name: str, target: str) -> tuple[str, str, str]:
    """(line, owner, check) for a verification check: a full rollback names each check's
    target (``backend: health api``); database checks and the error rate get lines of their
    own, the rest the line of their target."""
    owner, sep, check = name.partition(": ")
    if not sep:
        owner, check = "", name
    if check == "error rate":
        return "Error rate", owner, check
    if check in ("database connectivity", "integrity"):
        return "Database", owner, check
    line = owner or target
    return line[:1].upper() + line[1:], owner, check


def _said(owner: str, check: str, detail: str, line: str) -> str:
    """``frontend integrity: …``: the check named, leaving out what its line says already."""
    name = " ".join(p for p in (owner, check) if p and p.lower() != line.lower())
    return f"{name}: {detail}" if name else detail


def verification_lines(checks: Sequence[tuple[str, bool, str]], target: str) -> list[str]:
    """The template's "Frontend: ✅ Healthy … Error Rate: 0.05% (normal)", one line per part
    checked, in that order: the targets, then the database, then the error rate."""
    groups: dict[str, list[tuple[str, str, bool, str]]] = {}
    for name, passed, detail in checks:
        line, owner, check = _check_group(name, target)
        groups.setdefault(line, []).append((owner, check, passed, detail))
    lines = []
    for line in sorted(groups, key=lambda g: {"Database": 1, "Error rate": 2}.get(g, 0)):
        entries = groups[line]
        if any(not passed for _, _, passed, _ in entries):
            said = "; ".join(
                _said(o, c, d or "failed", line) for o, c, passed, d in entries if not passed
            )
            lines.append(f"• *{line}:* ❌ {escape(said)}")
        elif line == "Error rate":
            said = "; ".join(
                _said(o, c, d.removeprefix("error rate "), line) for o, c, _, d in entries if d
            )
            lines.append(f"• *{line}:* ✅ {escape(said)} (normal)" if said else f"• *{line}:* ✅")
        else:
            lines.append(f"• *{line}:* ✅ Healthy")
    return lines


def evidence_lines(decision: Decision) -> list[str]:
    """The readings behind a decision, newest last: what was observed, and when."""
    shown = decision.evidence[-EVIDENCE_SHOWN:]
    return [f"• `{escape(r.describe())}` {escape(fmt_value(r))} at {clock(r.at)}" for r in shown]


def failing_sources(errors: Sequence[tuple[datetime, ProbeError]]) -> list[str]:
    """Each source that could not be read: what it could not read, how, in how many ticks
    and when, and its last error; the latest to fail first."""
    by_source: dict[str, list[tuple[datetime, ProbeError]]] = {}
    for at, error in errors:
        by_source.setdefault(error.source, []).append((at, error))
    lines = []
    for source, seen in sorted(
        by_source.items(), key=lambda kv: (-kv[1][-1][0].timestamp(), kv[0])
    ):
        (first, _), (last, error) = seen[0], seen[-1]
        metrics = ", ".join(dict.fromkeys(e.metric for _, e in seen if e.metric))
        ticks = len({at for at, _ in seen})
        when = (
            f"at {clock(first)}"
            if ticks == 1
            else f"{ticks} ticks from {clock(first)} to {clock(last)}"
        )
        lines.append(
            f"• `{escape(source)}`{escape(f' ({metrics})' if metrics else '')}: "
            f"{error.failure}, {when}; last: {escape(error.message)}"
        )
    return lines
