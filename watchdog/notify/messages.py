"""What each state change of a watch tells people: one Message, laid out in Slack Block Kit
after the runbook's "Slack Message Template" (deployment, reason, rollback time, status,
verification, next steps), with a plain-text fallback and the same facts as JSON.

``compose`` reads what a message needs from the store; everything below it is pure, so tests
build messages from literal records. Only facts from the store go in, never a setting beyond
the API's address, so no token, DSN or webhook URL can reach a message.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from watchdog.errors import NotifyError
from watchdog.evaluate import decision_json
from watchdog.model import Decision, Deployment, Scope, Verdict
from watchdog.notify.base import Message
from watchdog.notify.blocks import SECTION_LIMIT, clip, code, context, escape, header, section
from watchdog.notify.wording import (
    clock,
    evidence_lines,
    failing_sources,
    rollback_time,
    span,
    verification_lines,
)
from watchdog.providers.registry import TARGET_SECONDS, target_seconds
from watchdog.readings import reading_to_json
from watchdog.settings import EscalationStep, Settings
from watchdog.signals.base import ProbeError
from watchdog.store.base import StateStore
from watchdog.store.records import ActionRecord, ActionStatus, Outcome, WatchRecord
from watchdog.summary import watch_summary

KINDS = (
    "rollback_started",
    "rollback_executed",
    "rollback_failed",
    "verification_failed",
    "consider_rollback",
    "watchdog_blind",
    "would_roll_back",
    "flag_disabled",
    "escalation",
)


def api_base(settings: Settings) -> str:
    return (settings.api.public_url or f"http://{settings.api.listen}").rstrip("/")


def watch_url(settings: Settings, watch_id: str) -> str:
    """Where people read the whole watch: ``GET /api/watches/{id}`` of the daemon's API."""
    return f"{api_base(settings)}/api/watches/{watch_id}"


@dataclass(frozen=True)
class Facts:
    """Everything a message may say about one watch, as the store has it."""

    watch: WatchRecord
    deployment: Deployment | None
    decisions: Sequence[Decision]
    actions: Sequence[ActionRecord]
    probe_errors: Sequence[tuple[datetime, ProbeError]]
    allowed_seconds: int  # the runbook's rollback time target for this watch
    url: str  # the watch in the API
    summary: Mapping[str, Any]  # the watch summary (ARCHITECTURE §4): the data's core

    def decision(self, verdict: Verdict) -> Decision | None:
        """The latest decision with ``verdict``."""
        return next((d for d in reversed(self.decisions) if d.verdict is verdict), None)

    def action(self, kind: str) -> ActionRecord | None:
        return next((a for a in reversed(self.actions) if a.kind == kind), None)

    def reason(self, verdict: Verdict) -> str:
        """The one-sentence explanation of the decision behind the message."""
        decision = self.decision(verdict)
        if decision is not None:
            return decision.explanation
        acted = self.action("rollback")
        return self.watch.explanation or (acted.reason if acted else "") or "not recorded"

    @property
    def rolled_back_to(self) -> str | None:
        acted = self.action("rollback")
        if acted is not None and acted.to:
            return acted.to
        return self.deployment.previous_id if self.deployment else None

    @property
    def to_said(self) -> str:
        return self.rolled_back_to or "the last good deployment"

    @property
    def verification_passed(self) -> bool | None:
        checks = self.watch.verification
        return None if checks is None else all(passed for _, passed, _ in checks)


def _decision_json(decision: Decision | None) -> dict[str, Any] | None:
    """The decision as ``evaluate --json`` prints one, with the readings behind it."""
    if decision is None:
        return None
    return {**decision_json(decision), "evidence": [reading_to_json(r) for r in decision.evidence]}


def _message(
    kind: str,
    facts: Facts,
    decision: Decision | None,
    *,
    title: str,
    text: str,
    lines: Iterable[str],
    verification: Sequence[str] = (),
    steps: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
) -> Message:
    """Blocks in the template's order (header, facts, verification, next steps) and a footer
    linking the watch; ``data`` is the watch summary, the decision and ``data``."""
    watch = facts.watch
    blocks = [header(title), section("\n".join(lines))]
    if verification:
        blocks += [{"type": "divider"}, section("*Verification:*\n" + "\n".join(verification))]
    if steps:
        numbered = (f"{n}. {step}" for n, step in enumerate(steps, 1))
        blocks.append(section("*Next steps:*\n" + "\n".join(numbered)))
    footer = [f"<{facts.url}|Watch {watch.id[:8]}>", f"target {escape(watch.target)}"]
    rule = decision.rule if decision else watch.rule
    if rule:
        footer.append(f"rule `{escape(rule)}`")
    blocks.append(context(" · ".join(footer)))
    return Message(
        kind=kind,
        text=clip(f"{text} Watch: {facts.url}", SECTION_LIMIT),
        blocks=tuple(blocks),
        data={
            "watch_id": watch.id,
            "url": facts.url,
            **facts.summary,
            "decision": _decision_json(decision),
            **(data or {}),
        },
    )


def _deployment(facts: Facts, then: str = "") -> str:
    dep = facts.deployment
    release = f", release {code(dep.release)}" if dep and dep.release else ""
    watched = f"{code(facts.watch.deployment_id)} on *{escape(facts.watch.target)}*"
    return f"*Deployment:* {watched}{release}{then}"


def _how(facts: Facts) -> str:
    """`` via render`` and, for a full rollback, what it covers."""
    acted, decision = facts.action("rollback"), facts.decision(Verdict.ROLLBACK)
    via = f" via {escape(acted.provider)}" if acted else ""
    full = decision is not None and decision.scope is Scope.FULL
    return via + (" (full system: applications, then the database)" if full else "")


def _by_hand(facts: Facts) -> str:
    to = f" --to {facts.rolled_back_to}" if facts.rolled_back_to else ""
    return f"`watchdog rollback {escape(facts.watch.target)}{escape(to)}`"


def _rollback_lines(facts: Facts, *status: str) -> list[str]:
    acted = facts.action("rollback")
    lines = [
        _deployment(facts, f", rolled back to {code(facts.rolled_back_to)}{_how(facts)}"),
        f"*Reason:* {escape(facts.reason(Verdict.ROLLBACK))}",
    ]
    if acted is not None:
        lines.append(f"*Rollback time:* {rollback_time(acted, facts.allowed_seconds)}")
    return [*lines, *status]


def _timing(facts: Facts) -> dict[str, Any]:
    acted = facts.action("rollback")
    return {
        "rollback_seconds": acted.seconds if acted else None,
        "target_seconds": facts.allowed_seconds,
    }


def _verification(facts: Facts) -> list[str]:
    if facts.watch.verification is None:
        return ["• _not run_"]
    return verification_lines(facts.watch.verification, facts.watch.target)


def _subject(facts: Facts) -> str:
    return f"{facts.watch.target} {facts.watch.deployment_id}"


def _rollback_started(facts: Facts) -> Message:
    decision, acted = facts.decision(Verdict.ROLLBACK), facts.action("rollback")
    reason, to = facts.reason(Verdict.ROLLBACK), facts.rolled_back_to
    started = acted.started_at if acted else facts.watch.decided_at
    when = f"started {clock(started)}, " if started else ""
    return _message(
        "rollback_started",
        facts,
        decision,
        title="🔄 ROLLBACK IN PROGRESS",
        text=f"🔄 Rolling back {_subject(facts)} to {facts.to_said}: {reason}.",
        lines=[
            _deployment(facts, f" → rolling back to {code(to)}{_how(facts)}"),
            f"*Reason:* {escape(reason)}",
            f"*Rollback time:* {when}{span(facts.allowed_seconds)} allowed",
            "*Status:* ⚠️ In progress",
        ],
        data=_timing(facts),
    )


def _rollback_executed(facts: Facts) -> Message:
    acted, verified = facts.action("rollback"), facts.verification_passed
    took = f" in {span(acted.seconds)}" if acted and acted.seconds is not None else ""
    checked = {True: "verified", False: "verification FAILED", None: "not verified"}[verified]
    report = facts.watch.incident_report
    return _message(
        "rollback_executed",
        facts,
        facts.decision(Verdict.ROLLBACK),
        title="🔄 ROLLBACK EXECUTED",
        text=(
            f"🔄 Rolled back {_subject(facts)} to {facts.to_said}{took} "
            f"({span(facts.allowed_seconds)} allowed), {checked}. "
            f"Reason: {facts.reason(Verdict.ROLLBACK)}."
        ),
        lines=_rollback_lines(facts, "*Status:* ✅ Complete"),
        verification=_verification(facts),
        steps=[
            f"Root cause analysis: what broke in {code(facts.watch.deployment_id)}",
            "Fix deployment: fix forward, test on staging, deploy, and let the watchdog watch it",
            "Post-mortem document: "
            + (f"`{escape(report)}`" if report else f"<{facts.url}|the watch's timeline>"),
        ],
        data=_timing(facts),
    )


def _verification_failed(facts: Facts) -> Message:
    checks = facts.watch.verification or ()
    failed = [name for name, passed, _ in checks if not passed]
    target = escape(facts.watch.target)
    return _message(
        "verification_failed",
        facts,
        facts.decision(Verdict.ROLLBACK),
        title="⚠️ ROLLBACK VERIFICATION FAILED",
        text=(
            f"⚠️ Rolled back {_subject(facts)} to {facts.to_said}, but verification "
            f"failed: {', '.join(failed)}."
        ),
        lines=_rollback_lines(
            facts, f"*Status:* ✅ Rolled back · ❌ {len(failed)} of {len(checks)} checks failed"
        ),
        verification=_verification(facts),
        steps=[
            "Check what still fails: the release rolled back to may share the problem "
            "(database, configuration, an outside service)",
            f"Check again: `watchdog verify {target}`",
            "If the database is at fault: `watchdog rollback all` (applications, then the "
            "database)",
        ],
        data={**_timing(facts), "failed_checks": failed},
    )


def _rollback_failed(facts: Facts) -> Message:
    acted = facts.action("rollback")
    error = (acted.error if acted else None) or facts.watch.explanation or "not recorded"
    target = escape(facts.watch.target)
    return _message(
        "rollback_failed",
        facts,
        facts.decision(Verdict.ROLLBACK),
        title="❌ ROLLBACK FAILED",
        text=(
            f"❌ The rollback of {_subject(facts)} failed: {error}. Roll back by hand: "
            f"watchdog rollback {facts.watch.target}."
        ),
        lines=_rollback_lines(facts, f"*Error:* {escape(error)}", "*Status:* ❌ Failed"),
        steps=[
            f"Roll back by hand now: {_by_hand(facts)} (else the runbook's manual steps on the "
            "provider's dashboard)",
            f"Verify afterwards: `watchdog verify {target}`",
            f"Acknowledge to stop the escalation: `watchdog ack {facts.watch.id}`",
        ],
        data={**_timing(facts), "error": error},
    )


def _would_roll_back(facts: Facts) -> Message:
    reason, to = facts.reason(Verdict.ROLLBACK), facts.rolled_back_to
    return _message(
        "would_roll_back",
        facts,
        facts.decision(Verdict.ROLLBACK),
        title="🧪 WOULD ROLL BACK (dry run)",
        text=(
            f"🧪 Dry run: would roll back {_subject(facts)} to {facts.to_said}: {reason}. "
            "Nothing was changed."
        ),
        lines=[
            _deployment(facts, f" → would roll back to {code(to)}{_how(facts)}"),
            f"*Reason:* {escape(reason)}",
            f"*Rollback time:* {span(facts.allowed_seconds)} allowed",
            "*Status:* 🧪 Dry run: nothing was changed",
        ],
        steps=[f"If it is real, roll back by hand: {_by_hand(facts)}"],
        data={"target_seconds": facts.allowed_seconds},
    )


def _consider_rollback(facts: Facts) -> Message:
    decision = facts.decision(Verdict.MONITOR)
    observed = facts.reason(Verdict.MONITOR)
    until = f" until {clock(decision.deadline)}" if decision and decision.deadline else ""
    evidence = evidence_lines(decision) if decision else []
    return _message(
        "consider_rollback",
        facts,
        decision,
        title="🟡 CONSIDER ROLLBACK",
        text=f"🟡 Consider rolling back {_subject(facts)}: {observed}.",
        lines=[
            _deployment(facts),
            f"*Observed:* {escape(observed)}",
            *(["*Evidence:*", *evidence] if evidence else []),
            f"*Status:* 🟡 Monitoring closely{until}",
        ],
        steps=[
            f"If it gets worse, roll back by hand: `watchdog rollback "
            f"{escape(facts.watch.target)}`",
            f"To stop automatic action on this deploy: `POST {facts.url}/hold`",
        ],
    )


def _watchdog_blind(facts: Facts) -> Message:
    why = facts.reason(Verdict.INCONCLUSIVE)
    failing = sorted({error.source for _, error in facts.probe_errors})
    return _message(
        "watchdog_blind",
        facts,
        facts.decision(Verdict.INCONCLUSIVE),
        title="🙈 WATCHDOG BLIND (inconclusive)",
        text=(
            f"🙈 The watchdog cannot judge {_subject(facts)}: {why}. Failing sources: "
            f"{', '.join(failing) or 'none recorded'}."
        ),
        lines=[
            _deployment(facts),
            f"*Why:* {escape(why)}",
            "*Failing sources:*",
            *(failing_sources(facts.probe_errors) or ["• none recorded: no data to read"]),
            "*Status:* ⚪ Inconclusive: no automatic rollback on what it cannot see",
        ],
        steps=[
            "Check the deploy by hand (Sentry, health endpoints): the watchdog cannot",
            "Fix the failing sources (token, service status), then test them: "
            f"`watchdog probe {escape(facts.watch.target)}`",
        ],
        data={"failing_sources": failing},
    )


def _flag_disabled(facts: Facts) -> Message:
    acted, decision = facts.action("disable_flag"), facts.decision(Verdict.DISABLE_FLAG)
    flag = (acted.to if acted else None) or (decision.flag if decision else None) or "?"
    reason = facts.reason(Verdict.DISABLE_FLAG)
    how = ""
    if acted is not None:
        how = f" via {escape(acted.provider)}"
        how += f" in {span(acted.seconds)}" if acted.seconds is not None else ""
        how += f" ({escape(acted.notes[0])})" if acted.notes else ""
    if acted is None:
        status = "⚠️ No change recorded yet"
    elif acted.status is ActionStatus.FAILED:
        status = f"❌ Not disabled: {escape(acted.error or 'failed')}"
    else:
        status = "✅ Disabled" if acted.status is ActionStatus.DONE else "⚠️ In progress"
    return _message(
        "flag_disabled",
        facts,
        decision,
        title="🚩 FEATURE FLAG DISABLED",
        text=f"🚩 Turned feature flag {flag} off for {_subject(facts)}: {reason}.",
        lines=[
            f"*Flag:* {code(flag)} turned off{how}",
            _deployment(facts),
            f"*Reason:* {escape(reason)}",
            f"*Status:* {status}",
        ],
        steps=[f"Fix the feature, then turn it back on: `watchdog flags enable {escape(flag)}`"],
        data={"flag": flag},
    )


_STATE_SAID = {
    Outcome.ROLLBACK_FAILED: "the automatic rollback failed",
    Outcome.INCONCLUSIVE: "the watchdog is blind (inconclusive)",
    Outcome.WOULD_ROLL_BACK: "it would roll back (dry run, nothing changed)",
    Outcome.FLAG_DISABLED: "a feature flag was turned off",
    Outcome.MONITOR: "it is being monitored",
}


def incident_summary(facts: Facts) -> str:
    """One line on where the incident stands, for people paged into it."""
    watch = facts.watch
    if watch.outcome is Outcome.ROLLED_BACK:
        failed = facts.verification_passed is False
        state = "rolled back, but verification failed" if failed else "rolled back"
    elif watch.outcome is not None:
        state = _STATE_SAID.get(watch.outcome, str(watch.outcome))
    else:
        state = f"watch {watch.state}"
    why = watch.explanation or (facts.decisions[-1].explanation if facts.decisions else None)
    return f"{_subject(facts)}: {state}" + (f": {why}" if why else "")


def _escalation(facts: Facts, level: EscalationStep) -> Message:
    summary, watch = incident_summary(facts), facts.watch
    ack = f"watchdog ack {watch.id} / POST {facts.url}/ack"
    since = watch.decided_at or watch.closed_at or watch.started_at
    return _message(
        "escalation",
        facts,
        facts.decisions[-1] if facts.decisions else None,
        title=f"🚨 ESCALATION: {level.name}",
        text=f"{level.mention} 🚨 Escalation to {level.name}: {summary}. Acknowledge with: {ack}",
        lines=[
            f"{level.mention} *{escape(level.name)}*: this needs a person, and nobody has "
            "acknowledged it yet.",
            f"*Incident:* {escape(summary)}",
            f"*Since:* {clock(since)}",
            f"*Acknowledge with:* `watchdog ack {watch.id}` / `POST {facts.url}/ack`",
        ],
        data={"level": level.name, "mention": level.mention, "incident": summary},
    )


_BUILDERS: dict[str, Callable[[Facts], Message]] = {
    "rollback_started": _rollback_started,
    "rollback_executed": _rollback_executed,
    "rollback_failed": _rollback_failed,
    "verification_failed": _verification_failed,
    "consider_rollback": _consider_rollback,
    "watchdog_blind": _watchdog_blind,
    "would_roll_back": _would_roll_back,
    "flag_disabled": _flag_disabled,
}


def build(kind: str, facts: Facts, level: EscalationStep | None = None) -> Message:
    """The message of ``kind`` (one of KINDS) about the watch in ``facts``; ``escalation``
    needs the ``level`` being paged."""
    if kind == "escalation":
        if level is None:
            raise ValueError("an escalation message needs the level being paged")
        return _escalation(facts, level)
    if kind not in _BUILDERS:
        raise ValueError(f"expected a message kind among {', '.join(KINDS)}, found {kind!r}")
    return _BUILDERS[kind](facts)


def allowed_seconds(settings: Settings, target: str, decisions: Sequence[Decision]) -> int:
    """The runbook's time target: application 5, database 15, full system 20 minutes."""
    if any(d.scope is Scope.FULL for d in decisions if d.verdict is Verdict.ROLLBACK):
        return TARGET_SECONDS["full"]
    if target not in settings.targets:
        return TARGET_SECONDS["application"]
    return target_seconds(settings.targets[target].provider)


async def compose(
    store: StateStore,
    settings: Settings,
    watch_id: str,
    kind: str,
    *,
    level: EscalationStep | None = None,
) -> Message:
    """The message of ``kind`` about watch ``watch_id`` as the store has it now.

    :raises NotifyError: no such watch.
    :raises ValueError: an unknown kind, or an escalation without its level.
    :raises StoreError: the store cannot be read.
    """
    watch = await store.watch(watch_id)
    if watch is None:
        raise NotifyError(f"cannot compose {kind}: no watch {watch_id!r} in the store")
    decisions = await store.decisions(watch_id)
    facts = Facts(
        watch=watch,
        deployment=await store.deployment(watch.target, watch.deployment_id),
        decisions=decisions,
        actions=await store.actions(watch_id),
        probe_errors=await store.probe_errors(watch_id),
        allowed_seconds=allowed_seconds(settings, watch.target, decisions),
        url=watch_url(settings, watch_id),
        summary=await watch_summary(store, settings, watch),
    )
    return build(kind, facts, level)
