"""The runbook's monthly rollback drill, run by the watchdog on a staging target: make a
known-bad deployment live, let a watch catch it and roll it back on its own, time each phase
against the runbook's 5-minute target, run the verification checklist, then write the drill
report and post it. A drill never leaves staging broken: when the watchdog did not roll back,
the drill puts the known-good deployment back itself, and the report says so.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from watchdog import logs
from watchdog.clock import Clock
from watchdog.durations import format_duration, format_elapsed
from watchdog.errors import ConfigError, NotifyError, RollbackError
from watchdog.model import Decision, Deployment, Verdict
from watchdog.notify.base import Message, Notifier
from watchdog.providers.base import ProviderDeployment
from watchdog.providers.registry import live_timeout, target_seconds
from watchdog.settings import Drills, LoadedConfig
from watchdog.store.base import StateStore
from watchdog.store.records import ActionStatus, Outcome
from watchdog.summary import iso, verification_json
from watchdog.verify import Check, Sleep, Verification, verify
from watchdog.watch import Context, Watch, progress_line, target_context, watch_until_closed

log = structlog.get_logger("watchdog.drill")

Progress = Callable[[str], None]

# Decisions that mean the watch saw trouble. Inconclusive is blindness, not detection.
_TROUBLE = (Verdict.ROLLBACK, Verdict.DISABLE_FLAG, Verdict.MONITOR)
LIVE = "bad deployment live"


@dataclass(frozen=True)
class Phase:
    """One moment of the drill; ``at`` is None when it never came."""

    name: str
    at: datetime | None
    detail: str = ""


@dataclass
class DrillReport:
    """What one drill found, filled in as it runs. It passed when nothing failed."""

    target: str
    bad_deployment: str
    started_at: datetime
    target_seconds: int
    known_good: ProviderDeployment | None = None
    deployment_id: str | None = None  # the bad deployment as it went live (Render: a new deploy)
    watch_id: str | None = None
    outcome: str | None = None
    rule: str | None = None
    phases: list[Phase] = field(default_factory=list)
    rollback_seconds: float | None = None  # bad deployment live → known-good serving again
    verification: Verification | None = None
    restored: str | None = None  # what the drill itself did to put the known-good back
    failures: list[str] = field(default_factory=list)
    improvements: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # the providers' notes for people
    path: Path | None = None
    undelivered: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    def at(self, phase: str) -> datetime | None:
        return next((p.at for p in self.phases if p.name == phase), None)

    def headline(self) -> str:
        if self.passed and self.rollback_seconds is not None:
            return (
                f"the watchdog caught {self.deployment_id} ({self.rule}) and rolled it back to "
                f"{self.known_good.id if self.known_good else '?'} in "
                f"{_seconds(self.rollback_seconds)} (target {self.target_seconds // 60} minutes)"
            )
        return "; ".join(self.failures)


async def run_drill(
    config: LoadedConfig,
    store: StateStore,
    clock: Clock,
    *,
    target: str | None = None,
    notifiers: Sequence[Notifier] = (),
    sleep: Sleep = asyncio.sleep,
    progress: Progress | None = None,
) -> DrillReport:
    """Drill ``target`` (default ``drills.target``), write the report to ``drills.reports``
    and post it to every notifier (a failed delivery is logged and listed, never a failed
    drill). Raises ConfigError, before anything changes, when the config cannot drill."""
    drills, name, bad = _drill_config(config, target)
    settings = config.settings
    report = DrillReport(
        name, bad, clock.now(), target_seconds(settings.targets[name].provider)
    )
    log.info("drill.started", target=name, bad_deployment=bad)
    async with target_context(settings, config.rules, store, clock, name, sleep) as ctx:
        await _Drill(ctx, report, progress).run()
    report.path = write_report(report, drills.reports)
    await _post(report, notifiers)
    log.info("drill.finished", target=name, passed=report.passed, report=str(report.path))
    return report


def _drill_config(config: LoadedConfig, target: str | None) -> tuple[Drills, str, str]:
    settings, where = config.settings, config.path
    if settings.drills is None:
        raise ConfigError(
            f"{where}: drills: expected a 'drills' section (target, bad_deployment) to drill with"
        )
    name = target or settings.drills.target
    if settings.drills.bad_deployment is None:
        raise ConfigError(
            f"{where}: drills.bad_deployment: expected the id of a known-bad deployment of "
            f"{name} to make live for the drill"
        )
    if settings.targets[name].provider.kind == "sql-migrations":
        raise ConfigError(
            f"{where}: targets.{name}.provider: expected an application target to drill on "
            "(vercel, render, railway, git), found sql-migrations"
        )
    if settings.dry_run:
        raise ConfigError(
            f"{where}: dry_run: a drill deploys and rolls back for real; expected false"
        )
    return settings.drills, name, settings.drills.bad_deployment


class _Drill:
    """One drill's steps on one target context, writing into its report."""

    def __init__(self, ctx: Context, report: DrillReport, progress: Progress | None) -> None:
        self.ctx = ctx
        self.report = report
        self._progress = progress
        self._config = ctx.settings.targets[report.target].provider

    async def run(self) -> None:
        r, provider = self.report, self.ctx.provider
        try:
            good = await provider.live()
        except RollbackError as exc:
            self._fail(
                f"could not read what {r.target} serves ({exc}); nothing was changed",
                f"Check targets.{r.target}.provider (watchdog config check).",
            )
            return
        r.known_good = good
        if good.id == r.bad_deployment:
            self._fail(
                f"{r.target} serves the known-bad deployment {good.id} already; nothing was "
                "changed",
                f"Put {r.target} back on a good deployment (watchdog rollback {r.target}) "
                "before the next drill.",
            )
            return
        self._say(f"{r.target} serves {good.id} (known-good); making {r.bad_deployment} live")
        bad = ProviderDeployment(r.bad_deployment, None, self.ctx.clock.now(), "", False)
        self._phase("bad deployment requested", bad.created_at)
        try:
            live = await self._make_live(bad, f"rollback drill: deploy known-bad {bad.id}")
        except (RollbackError, ConfigError) as exc:
            self._fail(
                f"could not make {bad.id} live ({exc})",
                f"Check that drills.bad_deployment names a built deployment of {r.target}.",
            )
            await self._restore(good)
            return
        try:
            watch = await self._watch(live, good)
        except BaseException:  # interrupted or crashed mid-watch: never leave staging broken
            await self._restore(good)
            raise
        await self._judge(watch, good)

    async def _make_live(self, to: ProviderDeployment, reason: str) -> ProviderDeployment:
        sent = await self.ctx.provider.rollback(to, reason)
        await self.ctx.provider.wait_live(sent, live_timeout(self._config))
        self.report.notes.extend(f"{reason}: {note}" for note in sent.notes)
        return await self.ctx.provider.live()

    async def _watch(self, live: ProviderDeployment, good: ProviderDeployment) -> Watch:
        r, settings, clock = self.report, self.ctx.settings, self.ctx.clock
        live_at = clock.now()
        r.deployment_id = live.id
        self._phase(LIVE, live_at, f"{r.bad_deployment} live as {live.id}")
        self._say(f"{r.bad_deployment} live as {live.id}; watching it")
        log.info("drill.deployed", target=r.target, deployment=live.id, known_good=good.id)
        deployment = Deployment(
            r.target,
            live.id,
            live_at,
            previous_id=good.id,
            release=live.release,
            previous_release=good.release,
        )
        watch = await Watch.start(
            self.ctx,
            deployment,
            window=settings.watch.window,
            interval=settings.watch.interval,
            dry_run=False,
        )
        r.watch_id = watch.record.id

        def tick(decision: Decision) -> None:
            self._print(progress_line(decision, watch.record.closes_at))

        await watch_until_closed(watch, clock, self.ctx.sleep, tick)
        return watch

    async def _judge(self, watch: Watch, good: ProviderDeployment) -> None:
        """Read the closed watch: when it detected, decided, rolled back and verified."""
        r, record, store = self.report, watch.record, self.ctx.store
        r.outcome, r.rule = str(record.outcome), record.rule
        decisions = await store.decisions(record.id)
        seen = next((d for d in decisions if d.verdict in _TROUBLE), None)
        self._phase("detected", seen.at if seen else None, seen.explanation if seen else "")
        self._phase("rollback decided", record.decided_at, record.rule or "")
        done = next(
            (
                a
                for a in await store.actions(record.id)
                if a.kind == "rollback" and a.status is ActionStatus.DONE
            ),
            None,
        )
        live_at = r.at(LIVE)
        assert live_at is not None
        if record.outcome is Outcome.ROLLED_BACK and done and done.finished_at:
            self._phase("rollback done", done.finished_at, f"via {done.provider} to {done.to}")
            self._phase("verified", record.closed_at)
            r.notes.extend(f"the watchdog's rollback: {note}" for note in done.notes)
            r.rollback_seconds = (done.finished_at - live_at).total_seconds()
            r.verification = Verification(tuple(Check(*c) for c in record.verification or ()))
            self._say(f"rolled back to {done.to} {_seconds(r.rollback_seconds)} after going live")
            if r.rollback_seconds > r.target_seconds:
                detect = (seen.at - live_at) if seen else None
                self._fail(
                    f"the rollback took {_seconds(r.rollback_seconds)}, over the "
                    f"{r.target_seconds // 60}-minute target",
                    "Detection took "
                    + (format_elapsed(detect) if detect is not None else "unknown time")
                    + f" and the rollback {format_elapsed(done.finished_at - done.started_at)}: "
                    "shorten watch.interval or the rules' holds when detection is the slow "
                    f"part, else look at {done.provider}'s deploy times.",
                )
        else:
            window = format_duration(self.ctx.settings.watch.window)
            why = f" ({record.explanation})" if record.explanation else ""
            self._fail(
                f"the watchdog did not roll {r.deployment_id} back within its {window} watch: "
                f"it closed {record.outcome}{why}",
                f"Check that {r.bad_deployment} is broken in a way the rules see, or tighten "
                "config/rules.yaml; the watch's readings and decisions are in the state store "
                "(watchdog status).",
            )
            if await self._restore(good):
                clock = self.ctx.clock
                serving = Deployment(r.target, good.id, clock.now(), release=good.release)
                r.verification = await verify(
                    self.ctx.settings, serving, clock, sleep=self.ctx.sleep
                )
                self._phase("verified", clock.now())
        if r.verification is not None and not r.verification.passed:
            failed = [c for c in r.verification.checks if not c.passed]
            self._fail(
                "verification failed: " + ", ".join(c.name for c in failed),
                "Fix what the failing checks show before the next drill: "
                + "; ".join(f"{c.name}: {c.detail or 'failed'}" for c in failed),
            )

    async def _restore(self, good: ProviderDeployment) -> bool:
        """Put ``good`` back unless it serves already; whether it serves afterwards."""
        r, provider, clock = self.report, self.ctx.provider, self.ctx.clock
        try:
            if await provider.is_serving(good):
                return True
            self._say(f"the drill puts {good.id} back itself")
            started = clock.now()
            await self._make_live(good, f"rollback drill: put known-good {good.id} back")
        except (RollbackError, ConfigError) as exc:
            log.error("drill.restore_failed", target=r.target, to=good.id, error=str(exc))
            self._fail(
                f"STAGING IS LEFT BROKEN: the drill could not put {good.id} back ({exc})",
                f"Roll {r.target} back by hand now: watchdog rollback {r.target} --to {good.id}",
            )
            return False
        r.restored = (
            f"The drill rolled {r.target} back to {good.id} itself, in "
            f"{format_elapsed(clock.now() - started)}."
        )
        self._phase("restored by the drill", clock.now(), f"to {good.id}")
        log.warning("drill.restored", target=r.target, to=good.id)
        return True

    def _phase(self, name: str, at: datetime | None, detail: str = "") -> None:
        self.report.phases.append(Phase(name, at, detail))

    def _fail(self, failure: str, improvement: str) -> None:
        self.report.failures.append(failure)
        self.report.improvements.append(improvement)
        self._say(f"FAIL: {failure}")

    def _say(self, text: str) -> None:
        self._print(f"{self.ctx.clock.now():%H:%M:%S}  {text}")

    def _print(self, line: str) -> None:
        if self._progress is not None:
            self._progress(line)


def _seconds(seconds: float) -> str:
    if abs(seconds) >= 60:
        return format_elapsed(timedelta(seconds=seconds))
    return f"{round(seconds, 1) + 0.0:.1f}s"  # + 0.0: never "-0.0s"


def _since(at: datetime | None, start: datetime | None) -> float | None:
    return None if at is None or start is None else (at - start).total_seconds()


def report_json(report: DrillReport) -> dict[str, Any]:
    """The report as JSON: what ``drill --json`` prints and the message's ``data``."""
    live_at = report.at(LIVE)
    return {
        "target": report.target,
        "passed": report.passed,
        "bad_deployment": report.bad_deployment,
        "deployment_id": report.deployment_id,
        "known_good": report.known_good.id if report.known_good else None,
        "watch_id": report.watch_id,
        "verdict": report.outcome,
        "rule": report.rule,
        "phases": [
            {
                "phase": p.name,
                "at": iso(p.at),
                "seconds": _since(p.at, live_at),
                **({"detail": p.detail} if p.detail else {}),
            }
            for p in report.phases
        ],
        "rollback_seconds": report.rollback_seconds,
        "target_seconds": report.target_seconds,
        "verification": verification_json(report.verification),
        "restored_by_drill": report.restored,
        "failures": report.failures,
        "improvements": report.improvements,
        "notes": report.notes,
        "report": str(report.path) if report.path else None,
        "undelivered": report.undelivered,
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(report: DrillReport) -> str:
    """The drill report, laid out like the runbook's post-mortem: facts, timeline, the
    rollback time against the target, the checklist, what to improve, lessons learned."""
    verdict = "PASS" if report.passed else "FAIL"
    good, live_at = report.known_good, report.at(LIVE)
    minutes = report.target_seconds // 60
    rows = [
        f"| {p.name} | {f'{p.at:%H:%M:%S}' if p.at else 'never'} | "
        f"{'' if (s := _since(p.at, live_at)) is None else _seconds(s)} | {_cell(p.detail)} |"
        for p in report.phases
    ]
    seconds = report.rollback_seconds
    if seconds is None:
        timing = f"The watchdog did not roll back: **FAIL** (target: under {minutes} minutes)."
    else:
        timing = (
            f"**{_seconds(seconds)}** from the bad deployment going live to the known-good "
            f"serving again; the runbook's target is under {minutes} minutes: "
            f"**{'PASS' if seconds <= report.target_seconds else 'FAIL'}**."
        )
    checks = (
        [
            f"- [{'x' if c.passed else ' '}] {c.name}" + (f": {c.detail}" if c.detail else "")
            for c in report.verification.checks
        ]
        if report.verification is not None
        else ["Not run: staging was not back on the known-good deployment."]
    )
    improve = [f"- {line}" for line in report.improvements] or [
        "- Nothing failed: review the timeline with the team and compare it with earlier drills."
    ]
    notes = [f"- {line}" for line in [*(filter(None, [report.restored])), *report.notes]]
    lines = [
        f"# Rollback drill: {report.target}, {report.started_at:%Y-%m-%d}: {verdict}",
        "",
        f"**Date:** {report.started_at:%Y-%m-%d %H:%M:%S} UTC  ",
        f"**Target:** {report.target}  ",
        "**Known-good:** "
        + (f"{good.id}" + (f" (release {good.release})" if good.release else "") if good else "?")
        + "  ",
        f"**Known-bad:** {report.bad_deployment}"
        + (f", live as {report.deployment_id}" if report.deployment_id else "")
        + "  ",
        f"**Watch:** {report.watch_id or 'none'}"
        + (f", closed {report.outcome}" if report.outcome else "")
        + (f" by rule {report.rule}" if report.rule else "")
        + "  ",
        f"**Result:** {verdict}: {report.headline()}",
        "",
        "## Timeline",
        "",
        "| phase | time (UTC) | after the bad deployment went live | detail |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        "## Rollback time",
        "",
        timing,
        "",
        "## Verification checklist",
        "",
        *checks,
        "",
        "## What to improve",
        "",
        *improve,
        "",
        *(["## Notes", "", *notes, ""] if notes else []),
        "## Lessons learned",
        "",
        "- [ ] (at the drill review: what to change in the procedure, the rules or the runbook)",
        "",
    ]
    return "\n".join(lines)


def write_report(report: DrillReport, directory: Path) -> Path:
    """Write ``<directory>/YYYY-MM-DD-drill-<target>.md``, never over an earlier report (a
    second drill the same day is ``-2``, then ``-3``…). Known secrets are masked."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{report.started_at:%Y-%m-%d}-drill-{report.target}"
    text = logs.REDACTOR.mask(markdown(report))
    for number in itertools.count(1):
        path = directory / (f"{stem}.md" if number == 1 else f"{stem}-{number}.md")
        try:
            with path.open("x", encoding="utf-8") as out:
                out.write(text)
        except FileExistsError:
            continue
        return path
    raise AssertionError("unreachable")  # pragma: no cover


def drill_message(report: DrillReport) -> Message:
    """The drill's outcome for Slack: a header, then sections for the result, the timeline
    and the checklist, and where the report is."""
    mask = logs.REDACTOR.mask
    title = f"Rollback drill on {report.target}: {'PASS' if report.passed else 'FAIL'}"
    live_at = report.at(LIVE)
    timeline = "\n".join(
        f"{p.name}: "
        + (f"{p.at:%H:%M:%S}" if p.at else "never")
        + ("" if (s := _since(p.at, live_at)) is None else f" ({'+' * (s >= 0)}{_seconds(s)})")
        for p in report.phases
    )
    checks = (
        "\n".join(f"{'✅' if c.passed else '❌'} {c.name}" for c in report.verification.checks)
        if report.verification is not None
        else "not run"
    )
    where = f"Report: {report.path}" if report.path else "No report written"
    section = [
        mask(report.headline()),
        mask(f"*Timeline (UTC)*\n{timeline}"),
        mask(f"*Verification*\n{checks}"),
    ]
    blocks: tuple[dict[str, Any], ...] = (
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        *({"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in section),
        {"type": "context", "elements": [{"type": "mrkdwn", "text": mask(where)}]},
    )
    text = mask(f"{'✅' if report.passed else '❌'} {title}: {report.headline()}. {where}")
    return Message("drill_report", text, blocks, report_json(report))


async def _post(report: DrillReport, notifiers: Sequence[Notifier]) -> None:
    """Send the report to every notifier; a failure is logged and added to the report."""
    if not notifiers:
        return
    message = drill_message(report)
    for notifier in notifiers:
        try:
            await notifier.send(message)
        except NotifyError as exc:
            log.warning("notify.failed", notifier=notifier.name, kind=message.kind, error=str(exc))
            report.undelivered.append(str(exc))
    if report.undelivered and report.path is not None:
        lines = report.undelivered
        with report.path.open("a", encoding="utf-8") as out:
            out.write("\n## Notifications\n\n")
            out.writelines(f"- not delivered: {logs.REDACTOR.mask(line)}\n" for line in lines)
