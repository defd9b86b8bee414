"""One deployment under watch: baseline → observing → (acting → verifying) → closed.

Every step is a plain coroutine on an injected clock, and the watch is stored after each one,
so a restarted daemon resumes it from the store and a test drives it tick by tick. Per tick:
read every signal (all at the tick's time), store the readings, decide on everything read so
far, store the decision, and act when the decision says so, unless the watch is held or a dry
run. Acting is the action runner's job; verifying is the checklist's; the watch only sequences.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

import httpx
import structlog

from watchdog.actions import ActionRunner
from watchdog.clock import Clock
from watchdog.durations import format_elapsed
from watchdog.errors import SignalError, WatchdogError
from watchdog.httpclient import new_client
from watchdog.model import Decision, Deployment, Reading, Scope, Verdict
from watchdog.probe import target_sources
from watchdog.providers.base import RollbackProvider
from watchdog.providers.flags import FlagSwitch
from watchdog.providers.registry import build_flag_switch, build_provider, live_timeout
from watchdog.rollback import ALL, manual_rollback
from watchdog.rules.engine import decide
from watchdog.rules.schema import RuleSet
from watchdog.settings import Settings
from watchdog.signals import database
from watchdog.signals.base import ProbeError, SignalSource, SourceHealth, read_all
from watchdog.store.base import StateStore
from watchdog.store.records import (
    ActionRecord,
    ActionStatus,
    Lease,
    Outcome,
    WatchRecord,
    WatchState,
)
from watchdog.verify import Sleep, verify

log = structlog.get_logger("watchdog.watch")

# How a watch that did not act ends, by its last decision. A held watch whose rules still
# said roll back would have acted: people took it over.
_CLOSING = {
    Verdict.ROLLBACK: Outcome.WOULD_ROLL_BACK,
    Verdict.NONE: Outcome.HEALTHY,
    Verdict.MONITOR: Outcome.MONITOR,
    Verdict.INCONCLUSIVE: Outcome.INCONCLUSIVE,
}

# What people are told (``Context.notify``) when a watch closes, by outcome.
_TOLD_AT_CLOSE = {
    Outcome.ROLLBACK_FAILED: "rollback_failed",
    Outcome.WOULD_ROLL_BACK: "would_roll_back",
    Outcome.INCONCLUSIVE: "watchdog_blind",
    Outcome.MONITOR: "consider_rollback",
}
# ... and when a tick decides, by verdict (once per watch: the outbox keys them).
_TOLD_AT_TICK = {Verdict.MONITOR: "consider_rollback", Verdict.INCONCLUSIVE: "watchdog_blind"}

Notify = Callable[[WatchRecord, str], Awaitable[None]]


@dataclass
class Context:
    """What every watch of one target shares: config, rules, store, clock and the target's
    signal sources, rollback provider and flag switch (built once, kept across ticks)."""

    settings: Settings
    rules: RuleSet
    store: StateStore
    clock: Clock
    sources: Sequence[SignalSource]
    provider: RollbackProvider
    flags: FlagSwitch | None = None
    health: SourceHealth | None = None
    sleep: Sleep = asyncio.sleep  # verification waits with it; tests move their clock instead
    on_probe_error: Callable[[ProbeError], None] | None = None  # the daemon counts them
    # Told each state change people must hear of (``rollback_started``…), after it is stored.
    notify: Notify | None = None


class Watch:
    def __init__(self, ctx: Context, record: WatchRecord, deployment: Deployment) -> None:
        self.ctx = ctx
        self.record = record
        self.deployment = deployment
        # Set by a daemon sharing the store with other replicas: every write of the watch and
        # every action is fenced by it, so a replica that lost the watch writes nothing.
        self.lease: Lease | None = None
        # Every reading stored so far, oldest first: read from the store once, then kept, so
        # a tick writes to the store and never reads its history back.
        self._readings: list[Reading] | None = None
        self._told: set[str] = set()  # what ticks told already (the outbox sends each once)
        self._log = log.bind(watch=record.id, target=record.target, deployment=deployment.id)

    @classmethod
    async def start(
        cls,
        ctx: Context,
        deployment: Deployment,
        *,
        window: timedelta,
        interval: timedelta,
        dry_run: bool,
    ) -> Watch:
        """Record the deployment and open its watch (or return the open one: announcing a
        deploy twice watches it once), taking the baseline the verification compares with."""
        await ctx.store.save_deployment(deployment)
        new_id = uuid.uuid4().hex
        opened = await ctx.store.open_watch(
            WatchRecord(
                id=new_id,
                target=deployment.target,
                deployment_id=deployment.id,
                state=WatchState.BASELINE,
                started_at=ctx.clock.now(),
                closes_at=deployment.deployed_at + window,
                interval=interval,
                dry_run=dry_run,
            )
        )
        stored = await ctx.store.deployment(deployment.target, deployment.id)
        watch = cls(ctx, opened, stored or deployment)
        if opened.id == new_id:  # this call opened it (announced twice: the first did)
            watch._readings = []
            await watch._save(state=WatchState.OBSERVING, baseline=await watch._row_counts())
            watch._log.info(
                "watch.started", closes_at=opened.closes_at.isoformat(), dry_run=dry_run
            )
        return watch

    @classmethod
    async def resume(cls, ctx: Context, record: WatchRecord) -> Watch:
        deployment = await ctx.store.deployment(record.target, record.deployment_id)
        assert deployment is not None, f"watch {record.id} has no deployment"
        watch = cls(ctx, record, deployment)
        watch._log.info("watch.resumed", state=str(record.state))
        return watch

    @property
    def closed(self) -> bool:
        return self.record.state is WatchState.CLOSED

    async def tick(self) -> Decision | None:
        """One tick at the clock's time; None once the watch is closed."""
        if self.closed:
            return None
        if self.record.state in (WatchState.ACTING, WatchState.VERIFYING):
            await self._carry_on()  # a restart came in the middle of acting
            return None
        now = self.ctx.clock.now()
        settings = self.ctx.settings
        probe = await read_all(
            self.ctx.sources, self.deployment, now, settings.watch.probe_timeout, self.ctx.health
        )
        if self.ctx.on_probe_error is not None:
            for error in probe.errors:
                self.ctx.on_probe_error(error)
        if self._readings is None:
            self._readings = await self.ctx.store.readings(self.record.id)
        readings = [*self._readings, *probe.readings]
        decision = decide(self.ctx.rules, self.deployment, readings, now, self.record.interval)
        stored = await self.ctx.store.add_tick(
            self.record.id, probe.readings, probe.errors, decision, self.lease
        )
        self._readings = readings
        # A hold or an ack may have come through any replica.
        self.record = replace(self.record, held=stored.held, acknowledged_at=stored.acknowledged_at)
        self._log.info(
            "decision.made",
            verdict=str(decision.verdict),
            rule=decision.rule,
            readings=len(probe.readings),
            errors=len(probe.errors),
        )
        told = _TOLD_AT_TICK.get(decision.verdict)
        if told is not None and told not in self._told:
            self._told.add(told)
            await self._tell(told)
        if decision.verdict is Verdict.ROLLBACK and not self.record.held:
            await self._roll_back(decision)
        elif (
            decision.verdict is Verdict.DISABLE_FLAG
            and not self.record.held
            and self.ctx.flags is not None
            and not self.record.dry_run
        ):
            await self._disable_flag(decision)
        if not self.closed and now >= self.record.closes_at:
            await self._close_at_end(readings)
        return decision

    async def supersede(self, by: str) -> None:
        """A newer deployment of the target replaced this one before the window ended."""
        await self._close(Outcome.SUPERSEDED, explanation=f"superseded by deployment {by}")

    async def _roll_back(self, decision: Decision) -> None:
        await self._save(
            state=WatchState.ACTING,
            decided_at=decision.at,
            rule=decision.rule,
            explanation=decision.explanation,
        )
        if self.record.dry_run:
            self._log.warning("rollback.would_execute", rule=decision.rule)
            await self._close(Outcome.WOULD_ROLL_BACK)
            return
        await self._tell("rollback_started")
        drills = self.ctx.settings.drills
        # A full rollback takes every target back, production included: never from staging.
        if decision.scope is Scope.FULL and (drills is None or drills.target != self.record.target):
            await self._full_rollback(decision)
            return
        runner = ActionRunner(self.ctx.store, self.ctx.clock, self.ctx.sleep, fence=self.lease)
        plan = await runner.plan(
            self.ctx.provider, self.record.target, self.deployment.id, self.deployment.previous_id
        )
        config = self.ctx.settings.targets[self.record.target].provider
        action = await runner.rollback(
            self.ctx.provider,
            plan,
            watch_id=self.record.id,
            reason=decision.explanation,
            timeout=live_timeout(config),
        )
        # The action may be an earlier one (this deployment was acted on before a restart):
        # what it went back to is what serves now, whatever a fresh plan would say.
        if action.status is not ActionStatus.DONE or action.to is None:
            await self._close(Outcome.ROLLBACK_FAILED, explanation=action.error)
            return
        await self._verify_rollback(action)

    async def _carry_on(self) -> None:
        """Finish what a crash interrupted, from what the store says was done, whatever the
        window: the rollback is never sent twice (the store refuses a second action), and a
        rollback that was done is still verified."""
        actions = [a for a in await self.ctx.store.actions(self.record.id) if a.kind == "rollback"]
        if not actions:  # the crash came before anything was sent: decide and act again
            decisions = await self.ctx.store.decisions(self.record.id)
            decision = next(d for d in reversed(decisions) if d.verdict is Verdict.ROLLBACK)
            await self._roll_back(decision)
            return
        if any(a.status is ActionStatus.FAILED for a in actions):
            failed = next(a for a in actions if a.status is ActionStatus.FAILED)
            await self._close(Outcome.ROLLBACK_FAILED, explanation=failed.error)
            return
        if any(a.status is ActionStatus.INTENDED for a in actions):
            if self.ctx.clock.now() >= self.record.closes_at + live_timeout(
                self.ctx.settings.targets[self.record.target].provider
            ):
                await self._close(
                    Outcome.ROLLBACK_FAILED,
                    explanation="the rollback was sent but the provider never confirmed it",
                )
            return  # the daemon reconciles it with the provider; look again next tick
        await self._verify_rollback(actions[-1])

    async def _full_rollback(self, decision: Decision) -> None:
        outcome = await manual_rollback(
            self.ctx.settings,
            ALL,
            store=self.ctx.store,
            clock=self.ctx.clock,
            to=None,
            reason=decision.explanation,
            dry_run=False,
            confirm=lambda plan: True,
            watch_id=self.record.id,
        )
        checks = (outcome.summary.get("verification") or {}).get("checks", [])
        await self._close(
            Outcome.ROLLED_BACK
            if outcome.summary["verdict"] == "rolled_back"
            else Outcome.ROLLBACK_FAILED,
            explanation=outcome.summary.get("explanation"),
            verification=tuple((c["name"], c["passed"], c.get("detail", "")) for c in checks),
        )

    async def _verify_rollback(self, action: ActionRecord) -> None:
        """Verify what the done ``action`` went back to, and close."""
        assert action.to is not None
        await self._save(state=WatchState.VERIFYING)
        serving = Deployment(
            target=action.target,
            id=action.to,
            release=action.to_release,
            deployed_at=action.finished_at or self.ctx.clock.now(),
        )
        result = await verify(
            self.ctx.settings,
            serving,
            self.ctx.clock,
            self.record.baseline or None,
            self.ctx.sleep,
        )
        self._log.info("rollback.verified", passed=result.passed)
        await self._close(
            Outcome.ROLLED_BACK,
            verification=tuple((c.name, c.passed, c.detail) for c in result.checks),
        )

    async def _disable_flag(self, decision: Decision) -> None:
        assert self.ctx.flags is not None
        assert decision.flag is not None
        runner = ActionRunner(self.ctx.store, self.ctx.clock, self.ctx.sleep, fence=self.lease)
        action = await runner.flag(
            self.ctx.flags,
            decision.flag,
            enable=False,
            reason=decision.explanation,
            target=self.record.target,
            deployment_id=self.deployment.id,
            watch_id=self.record.id,
        )
        if action.status is ActionStatus.DONE and self.record.decided_at is None:
            await self._save(
                decided_at=decision.at, rule=decision.rule, explanation=decision.explanation
            )
            await self._tell("flag_disabled")

    async def _close_at_end(self, readings: Sequence[Reading]) -> None:
        """The window is over: the verdict it ends with (blind is never healthy)."""
        decisions = await self.ctx.store.decisions(self.record.id)
        actions = await self.ctx.store.actions(self.record.id)
        watched = self.ctx.rules.inconclusive.metric
        if any(a.kind == "disable_flag" and a.status is ActionStatus.DONE for a in actions):
            outcome = Outcome.FLAG_DISABLED
        elif not any(r.metric == watched for r in readings):
            outcome = Outcome.INCONCLUSIVE
        else:
            outcome = _CLOSING.get(decisions[-1].verdict, Outcome.MONITOR)
        await self._close(outcome, explanation=decisions[-1].explanation if decisions else None)

    async def _close(
        self,
        outcome: Outcome,
        *,
        explanation: str | None = None,
        verification: tuple[tuple[str, bool, str], ...] | None = None,
    ) -> None:
        await self._save(
            state=WatchState.CLOSED,
            outcome=outcome,
            closed_at=self.ctx.clock.now(),
            explanation=explanation or self.record.explanation,
            verification=verification,
        )
        self._log.info("watch.closed", outcome=str(outcome))
        if outcome is Outcome.ROLLED_BACK:
            checks = verification or ()
            await self._tell(
                "rollback_executed" if all(p for _, p, _ in checks) else "verification_failed"
            )
        elif outcome in _TOLD_AT_CLOSE:
            await self._tell(_TOLD_AT_CLOSE[outcome])

    async def _save(self, **changes: object) -> None:
        record = replace(self.record, **changes)  # type: ignore[arg-type]
        await self.ctx.store.update_watch(record, self.lease)
        self.record = record

    async def _tell(self, kind: str) -> None:
        """Queue word of a stored change; failing to never undoes or stops the watch."""
        if self.ctx.notify is None:
            return
        try:
            await self.ctx.notify(self.record, kind)
        except WatchdogError as exc:
            self._log.error("notify.queue_failed", kind=kind, error=str(exc))

    async def _row_counts(self) -> dict[str, int]:
        target = self.ctx.settings.targets[self.record.target]
        if target.database is None or target.integrity is None:
            return {}
        try:
            return await database.row_counts(
                target.database.dsn.reveal(),
                target.integrity.tables,
                self.ctx.settings.watch.probe_timeout,
            )
        except (SignalError, WatchdogError) as exc:
            self._log.warning("baseline.failed", error=str(exc))
            return {}


def progress_line(decision: Decision, closes_at: datetime) -> str:
    """One tick of a foreground watch, as ``watchdog watch`` prints it."""
    left = format_elapsed(max(timedelta(0), closes_at - decision.at))
    return f"{decision.at:%H:%M:%S}  {decision.verdict!s:<13} {decision.explanation}  ({left} left)"


async def watch_until_closed(
    watch: Watch, clock: Clock, sleep: Sleep, on_decision: Callable[[Decision], None]
) -> None:
    """Tick ``watch`` on its interval until it closes (a foreground watch, in process)."""
    ticks = 0
    while not watch.closed:
        decision = await watch.tick()
        ticks += 1
        if decision is not None:
            on_decision(decision)
        if not watch.closed:
            due = watch.record.started_at + ticks * watch.record.interval
            await sleep(max(0.0, (due - clock.now()).total_seconds()))


@asynccontextmanager
async def target_context(
    settings: Settings,
    rules: RuleSet,
    store: StateStore,
    clock: Clock,
    target: str,
    sleep: Sleep = asyncio.sleep,
    api: httpx.AsyncClient | None = None,
) -> AsyncIterator[Context]:
    """A target's Context from the config, with its HTTP clients open for as long as it is
    used (kept across ticks): one for the target's own endpoints, and one for the outside
    APIs (Sentry, the provider, the flags service), which is ``api`` when given: the daemon
    shares one across every target, so its connections to those APIs stay open."""
    async with AsyncExitStack() as stack:
        if api is None:
            timeout = settings.watch.probe_timeout.total_seconds()
            api = await stack.enter_async_context(new_client(timeout=timeout))
        sources = await stack.enter_async_context(
            target_sources(settings, target, clock, store=store, api=api)
        )
        yield Context(
            settings,
            rules,
            store,
            clock,
            sources,
            build_provider(settings.targets[target].provider, api, clock),
            build_flag_switch(settings.flags, api) if settings.flags else None,
            SourceHealth(),
            sleep,
        )
