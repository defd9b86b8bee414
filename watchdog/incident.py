"""The incident post-mortem: the runbook's template ("Create Incident Post-Mortem") filled from
the state store, so people start from the facts (times, readings, actions, checks) and only
write what a machine cannot know: root cause, prevention, action items.

The file is ``<incidents.dir>/YYYY-MM-DD-rollback-<target>-<rule>.md`` (the day the watchdog
decided, UTC; the same naming for a failed rollback, a disabled flag and a dry run, whose title
says which), with its chart beside it as ``<same stem>.svg``.

Written once, never rewritten: the first line names the watch (``<!-- watch: <id> -->``), so
asking again for the same watch returns the existing file untouched, and a different incident
that would take the same name gets ``-2``, ``-3``…. Each file is written in full to a hidden
temporary file, then hard-linked to its name, which fails if the name is taken: a crash or a
full disk never leaves a half-written report behind.

Severity, kept simple (the runbook's Critical / High / Medium):

- **SEV1 (Critical)**: the rollback failed; or an immediate rollback for a broken critical flow,
  a failing health check, a failed migration or a security alert (or any rollback that touches
  the database); or an error rate above 5 % was seen.
- **SEV2 (High)**: any other rollback (done, or decided in a dry run).
- **SEV3 (Medium)**: a feature flag was disabled and nothing worse was seen.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from watchdog.chart import render_chart, rule_thresholds
from watchdog.durations import format_elapsed
from watchdog.errors import WatchdogError
from watchdog.model import Decision, Deployment, Reading, Scope, Verdict
from watchdog.providers.registry import target_seconds
from watchdog.rules.explain import fmt_number, fmt_value
from watchdog.rules.schema import Rule, RuleSet
from watchdog.settings import Settings
from watchdog.store.base import StateStore
from watchdog.store.records import ActionRecord, ActionStatus, Outcome, WatchRecord

REPORTED = (
    Outcome.ROLLED_BACK,
    Outcome.ROLLBACK_FAILED,
    Outcome.FLAG_DISABLED,
    Outcome.WOULD_ROLL_BACK,
)
"""The outcomes that make an incident."""

_CRITICAL_METRICS = {"flow", "health", "migration_failed", "security_alert"}
_SEV1_ERROR_RATE = 0.05
_FLAG_TARGET_SECONDS = 60  # as the watch summary reports a flag change
_TROUBLE = (Verdict.MONITOR, Verdict.DISABLE_FLAG, Verdict.ROLLBACK)


async def write_incident(
    store: StateStore, settings: Settings, rules: RuleSet, watch_id: str
) -> Path:
    """Write the post-mortem of a closed watch that rolled back (or failed to, disabled a flag,
    or would have in a dry run) and return its path; the existing file when this watch already
    has one. Raises WatchdogError when the watch is unknown, made no incident, or the report
    cannot be written (naming the directory and the OS error; nothing is left half-written)."""
    watch = await store.watch(watch_id)
    if watch is None:
        raise WatchdogError(f"no watch {watch_id!r} in the state store")
    if watch.outcome not in REPORTED:
        ended = f"ended {watch.outcome}" if watch.outcome else f"is still {watch.state}"
        raise WatchdogError(
            f"watch {watch_id} {ended}: expected one that rolled back, failed to, disabled "
            "a flag or would have rolled back, to write an incident report for"
        )
    deployment = await store.deployment(watch.target, watch.deployment_id)
    if deployment is None:
        raise WatchdogError(f"watch {watch_id}: deployment {watch.deployment_id} is not stored")
    facts = _Facts(
        watch=watch,
        deployment=deployment,
        readings=await store.readings(watch_id),
        decisions=await store.decisions(watch_id),
        actions=await store.actions(watch_id),
        rule=next((r for r in rules.rules if r.name == watch.rule), None),
        settings=settings,
    )
    thresholds = rule_thresholds(rules)
    rollback_at = None if watch.outcome is Outcome.FLAG_DISABLED else watch.decided_at

    def chart() -> bytes:
        out = io.BytesIO()
        render_chart(facts.readings, thresholds, rollback_at, out)
        return out.getvalue()

    return await asyncio.to_thread(
        _write, settings.incidents.dir, facts.stem, watch.id, facts.markdown, chart
    )


def _slug(text: str) -> str:
    """``Error Rate (critical)`` → ``error-rate-critical``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "incident"


def _write(
    directory: Path,
    stem: str,
    watch_id: str,
    markdown: Callable[[str], str],
    chart: Callable[[], bytes],
) -> Path:
    """Link the chart and then the markdown (given the chart's file name) under the first free
    ``stem``, ``stem-2``…; the markdown last, so a report never lacks its chart."""
    marker = _marker(watch_id)
    staged: list[Path] = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
        found = _existing(directory, stem, marker)
        if found is not None:
            return found
        chart_tmp = _stage(directory, staged, chart())
        number = 1
        while True:
            name = stem if number == 1 else f"{stem}-{number}"
            number += 1
            svg, report = directory / f"{name}.svg", directory / f"{name}.md"
            try:
                os.link(chart_tmp, svg)
            except FileExistsError:
                continue
            try:
                os.link(_stage(directory, staged, markdown(svg.name).encode()), report)
            except FileExistsError:
                svg.unlink()
                continue
            except BaseException:
                svg.unlink(missing_ok=True)
                raise
            return report
    except OSError as exc:
        raise WatchdogError(
            f"cannot write the incident report in {directory}: {exc.strerror or exc}"
        ) from exc
    finally:
        for path in staged:
            path.unlink(missing_ok=True)


def _marker(watch_id: str) -> str:
    return f"<!-- watch: {watch_id} -->"


def _existing(directory: Path, stem: str, marker: str) -> Path | None:
    """This watch's report, found by the marker on its first line."""
    for path in sorted(directory.glob(f"{stem}*.md")):
        with path.open("rb") as report:
            if report.readline(len(marker) + 2).decode(errors="replace").strip() == marker:
                return path
    return None


def _stage(directory: Path, staged: list[Path], content: bytes) -> Path:
    """A hidden file in ``directory`` with the whole content, flushed to disk."""
    path = directory / f".incident-{uuid.uuid4().hex}.tmp"
    staged.append(path)
    with path.open("xb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    return path


@dataclass(frozen=True)
class _Facts:
    """Everything the store knows about one incident, and the report made of it."""

    watch: WatchRecord
    deployment: Deployment
    readings: list[Reading]
    decisions: list[Decision]
    actions: list[ActionRecord]
    rule: Rule | None
    settings: Settings

    @property
    def day(self) -> date:
        moment = self.watch.decided_at or self.watch.closed_at or self.watch.started_at
        return moment.astimezone(UTC).date()

    @property
    def stem(self) -> str:
        return (
            f"{self.day.isoformat()}-rollback-{_slug(self.watch.target)}-"
            f"{_slug(self.watch.rule or 'manual')}"
        )

    @property
    def detected(self) -> Decision | None:
        """The first decision that saw trouble (inconclusive is blindness, not trouble)."""
        return next((d for d in self.decisions if d.verdict in _TROUBLE), None)

    @property
    def decisive(self) -> Decision | None:
        """The decision the watchdog acted on."""
        acting = [d for d in self.decisions if d.verdict in _TROUBLE[1:]]
        return next(
            (d for d in acting if d.at == self.watch.decided_at),
            next((d for d in reversed(acting) if d.rule == self.watch.rule), None),
        )

    @property
    def verified_at(self) -> datetime | None:
        checks = self.watch.verification
        if self.watch.outcome is Outcome.ROLLED_BACK and checks and all(c[1] for c in checks):
            return self.watch.closed_at
        return None

    @property
    def flag(self) -> str | None:
        decision = self.decisive
        if decision is not None and decision.flag:
            return decision.flag
        return next((a.to for a in self.actions if a.kind == "disable_flag"), None)

    def peak(self, metric: str) -> Reading | None:
        found = [r for r in self.readings if r.metric == metric]
        return max(found, key=lambda r: r.value) if found else None

    def severity(self) -> tuple[str, str]:
        """(level, why): see the module docstring."""
        worst = self.peak("error_rate")
        rule = self.rule
        if self.watch.outcome is Outcome.ROLLBACK_FAILED:
            return "SEV1 (Critical)", "the rollback failed"
        if rule is not None and rule.verdict is Verdict.ROLLBACK:
            if rule.scope is not Scope.APPLICATION:
                return "SEV1 (Critical)", f"rollback of scope {rule.scope} ({rule.name})"
            touched = {leaf.metric for leaf in rule.leaves()} & _CRITICAL_METRICS
            if rule.urgency == "immediate" and touched:
                what = ", ".join(sorted(touched))
                return "SEV1 (Critical)", f"immediate rollback on {what} ({rule.name})"
        if worst is not None and worst.value > _SEV1_ERROR_RATE:
            return "SEV1 (Critical)", f"error rate reached {fmt_number('error_rate', worst.value)}"
        if self.watch.outcome is Outcome.FLAG_DISABLED:
            return "SEV3 (Medium)", "a feature flag was disabled"
        return "SEV2 (High)", f"rollback by rule {self.watch.rule or 'by hand'}"

    def title(self) -> str:
        target, rule = self.watch.target, self.watch.rule or "manual"
        match self.watch.outcome:
            case Outcome.ROLLED_BACK:
                return f"Incident Post-Mortem: {target} rolled back ({rule})"
            case Outcome.ROLLBACK_FAILED:
                return f"Incident Post-Mortem: {target} rollback failed ({rule})"
            case Outcome.FLAG_DISABLED:
                return (
                    f"Incident Post-Mortem: feature flag {self.flag} disabled on {target} "
                    f"({rule})"
                )
            case _:
                return (
                    f"Incident Post-Mortem (dry run): {target} would have been rolled back "
                    f"({rule})"
                )

    def markdown(self, chart_name: str) -> str:
        watch = self.watch
        severity, why = self.severity()
        lines = [
            _marker(watch.id),
            f"# {self.title()}",
            "",
            f"**Date:** {self.day.isoformat()}  ",
            f"**Duration:** {self.duration()}  ",
            f"**Severity:** {severity}: {why}  ",
            f"**Impact:** {self.impact()}",
            "",
            f"Target `{watch.target}`, deployment `{self.deployment.id}`"
            + "".join(
                f", {name} `{value}`"
                for name, value in (
                    ("release", self.deployment.release),
                    ("commit", self.deployment.commit),
                    ("previous deployment", self.deployment.previous_id),
                )
                if value
            )
            + f"; watch `{watch.id}`.",
        ]
        if watch.outcome is Outcome.WOULD_ROLL_BACK:
            lines += [
                "",
                "**This was a dry run:** the watchdog decided to roll back but sent nothing; "
                f"deployment `{self.deployment.id}` stayed live.",
            ]
        lines += ["", "## Timeline (UTC)", "", *self.timeline()]
        lines += ["", "## Decision", "", *self.decision()]
        lines += ["", "## Actions", "", *self.action_rows()]
        lines += ["", "## Verification", "", *self.verification()]
        lines += [
            "",
            "## Chart",
            "",
            f"![Error rate and latency change over the watch, with the rules' thresholds]"
            f"({chart_name})",
            "",
            "## Root Cause",
            "",
            f"_To be filled in: what went wrong in deployment `{self.deployment.id}`, "
            "and why it was not caught before production._",
            "",
            "## Resolution",
            "",
            self.resolution(),
            "",
            "_To be filled in: the fix, and when it is scheduled to deploy._",
            "",
            "## Prevention",
            "",
            "_To be filled in: what will be done to prevent this in the future._",
            "",
            "## Action Items",
            "",
            "- [ ] Fix underlying issue",
            "- [ ] Add test coverage",
            "- [ ] Update deployment checklist",
            "- [ ] Schedule fix deployment",
            "",
        ]
        return "\n".join(lines)

    def duration(self) -> str:
        start = self.deployment.deployed_at
        end = self.verified_at or self.watch.closed_at
        if end is None:
            return f"{_clock(start)} UTC, still open"
        until = "verified healthy" if self.verified_at else "watch closed, not verified healthy"
        return (
            f"{_clock(start, self.day)} to {_clock(end, self.day)} UTC "
            f"({format_elapsed(end - start)}, deploy to {until})"
        )

    def impact(self) -> str:
        users = self.peak("users_affected")
        if users is None:
            parts = ["users affected not measured (no users_affected readings)"]
        elif users.samples:
            count = round(users.value * users.samples)
            parts = [
                f"about {count:,} of {users.samples:,} active users affected at the peak "
                f"({fmt_number('users_affected', users.value)})"
            ]
        else:
            parts = [f"{fmt_number('users_affected', users.value)} of active users affected"]
        detected = self.detected
        end = self.verified_at or self.watch.closed_at
        if detected is not None and end is not None:
            elapsed = format_elapsed(end - detected.at)
            if self.verified_at:
                parts.append(f"{elapsed} of impact (detection to verified healthy)")
            else:
                parts.append(
                    f"at least {elapsed} of impact (detection to watch closed, never verified "
                    "healthy)"
                )
        worst = self.peak("error_rate")
        if worst is not None:
            parts.append(f"error rate peaked at {fmt_value(worst)}")
        return ", ".join(parts)

    def timeline(self) -> list[str]:
        watch, day = self.watch, self.day
        events: list[tuple[datetime, str]] = [
            (self.deployment.deployed_at, f"Deployment initiated: `{self.deployment.id}`")
        ]
        detected = self.detected
        if detected is not None:
            events.append(
                (
                    detected.at,
                    f"Issue first detected: {detected.verdict} by `{detected.rule}`: "
                    f"{_inline(detected.explanation)}",
                )
            )
        if watch.decided_at is not None:
            if watch.outcome is Outcome.FLAG_DISABLED:
                what = f"Flag decision made: disable `{self.flag}` (`{watch.rule}`)"
            elif watch.outcome is Outcome.WOULD_ROLL_BACK:
                what = f"Rollback decision made (`{watch.rule}`); dry run: nothing was sent"
            else:
                what = f"Rollback decision made (`{watch.rule or 'by hand'}`)"
            events.append((watch.decided_at, what))
        for action in self.actions:
            events += self.action_events(action)
        if self.verified_at is not None:
            events.append((self.verified_at, "System verified healthy"))
        elif watch.closed_at is not None:
            failed = [name for name, passed, _ in watch.verification or () if not passed]
            why = (
                f"verification failed ({', '.join(failed)})"
                if failed
                else str(watch.outcome).replace("_", " ")
            )
            events.append((watch.closed_at, f"Watch closed: {why}"))
        events.sort(key=lambda event: event[0])
        return [f"- **{_clock(at, day)}** - {what}" for at, what in events]

    def action_events(self, action: ActionRecord) -> list[tuple[datetime, str]]:
        if action.kind == "rollback":
            start = f"Rollback started: {action.provider} to `{action.to}`"
            done, failed = "Rollback executed", "Rollback failed"
        else:
            verb = action.kind.removesuffix("_flag")
            start = f"Flag `{action.to}`: {verb} started ({action.provider})"
            done, failed = f"Flag `{action.to}` {verb}d", f"Flag `{action.to}`: {verb} failed"
        events = [(action.started_at, start)]
        if action.finished_at is not None:
            if action.status is ActionStatus.DONE:
                events.append((action.finished_at, f"{done} ({self.timing(action)})"))
            else:
                error = _inline(action.error or "no detail recorded")
                events.append((action.finished_at, f"{failed}: {error}"))
        return events

    def decision(self) -> list[str]:
        decision, rule = self.decisive, self.rule
        if decision is None:
            return [f"No stored decision; the watch closed as {self.watch.outcome}."]
        lines = [f"At {_clock(decision.at, self.day)} UTC: **{decision.verdict}**"]
        if decision.rule:
            lines[0] += f" by rule `{decision.rule}`"
        if decision.urgency:
            lines[0] += f", urgency {decision.urgency}"
        if decision.scope:
            lines[0] += f", scope {decision.scope}"
        if rule is not None and rule.runbook:
            lines += ["", f"Runbook: “{rule.runbook}”"]
        explanation = decision.explanation or self.watch.explanation or ""
        lines += ["", *(f"> {line}" for line in explanation.splitlines())]
        if decision.evidence:
            lines += ["", "| time (UTC) | reading | value |", "| --- | --- | --- |"]
            lines += [
                f"| {_clock(r.at, self.day)} | `{_inline(r.describe())}` | {fmt_value(r)} |"
                for r in decision.evidence
            ]
        return lines

    def action_rows(self) -> list[str]:
        if not self.actions:
            if self.watch.outcome is Outcome.WOULD_ROLL_BACK:
                return ["None: dry run."]
            return ["No action recorded for this watch."]
        lines = [
            "| action | provider | to | status | started | finished | time |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for a in self.actions:
            finished = _clock(a.finished_at, self.day) if a.finished_at else "not finished"
            lines.append(
                f"| {a.kind} | {_inline(a.provider)} | `{_inline(a.to or '')}` | {a.status} | "
                f"{_clock(a.started_at, self.day)} | {finished} | {self.timing(a)} |"
            )
        errors = [f"- {a.kind}: {_inline(a.error)}" for a in self.actions if a.error]
        return lines + (["", *errors] if errors else [])

    def timing(self, action: ActionRecord) -> str:
        goal = self.target_seconds(action)
        if action.seconds is None:
            return f"not finished (target {goal} s)"
        if action.status is not ActionStatus.DONE:
            return f"failed after {action.seconds:.0f} s"
        late = " (over the target)" if action.seconds > goal else ""
        return f"{action.seconds:.0f} s of the {goal} s target{late}"

    def target_seconds(self, action: ActionRecord) -> int:
        if action.kind.endswith("_flag"):
            return _FLAG_TARGET_SECONDS
        target = self.settings.targets.get(action.target)
        return target_seconds(target.provider) if target else 300

    def verification(self) -> list[str]:
        checks = self.watch.verification
        if checks is None:
            return ["No verification ran."]
        passed = sum(1 for _, ok, _ in checks if ok)
        verdict = "Passed" if passed == len(checks) else "Failed"
        lines = [
            f"{verdict}: {passed} of {len(checks)} checks passed.",
            "",
            "| check | result | detail |",
            "| --- | --- | --- |",
        ]
        lines += [
            f"| {_inline(name)} | {'✅ pass' if ok else '❌ fail'} | {_inline(detail)} |"
            for name, ok, detail in checks
        ]
        return lines

    def resolution(self) -> str:
        watch, deployment = self.watch, self.deployment
        rollback = next((a for a in self.actions if a.kind == "rollback"), None)
        match watch.outcome:
            case Outcome.ROLLED_BACK if rollback is not None:
                return (
                    f"The watchdog rolled `{watch.target}` back from `{deployment.id}` to "
                    f"`{rollback.to}` through {rollback.provider} ({self.timing(rollback)})."
                )
            case Outcome.ROLLED_BACK:
                return f"The watchdog rolled `{watch.target}` back from `{deployment.id}`."
            case Outcome.FLAG_DISABLED:
                return f"The watchdog disabled feature flag `{self.flag}`; no rollback."
            case Outcome.ROLLBACK_FAILED:
                return (
                    "The watchdog's rollback failed: people had to take over "
                    f"({_inline(watch.explanation or 'no detail recorded')})."
                )
            case _:
                return "Nothing: dry run. The watchdog only reported what it would have done."


def _inline(text: str) -> str:
    """Stored text on one markdown line, table columns kept (explanations and errors may
    span lines or carry a ``|``)."""
    return " ".join(text.replace("|", "\\|").split())


def _clock(at: datetime, day: date | None = None) -> str:
    """``12:03:15``, with the date in front when it is not the report's day."""
    moment = at.astimezone(UTC)
    return f"{moment:%H:%M:%S}" if moment.date() == day else f"{moment:%Y-%m-%d %H:%M:%S}"
