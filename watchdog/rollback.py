"""The runbook's automated rollback script, by hand: roll a target (or, with ``all``, the whole
system: flags first, then the applications in order, then the database) back to the last
known-good deployment, verify, and time each step against the runbook's targets.
``watchdog rollback`` runs this; the watch runs the same action runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from watchdog.actions import ActionRunner, Plan
from watchdog.clock import Clock
from watchdog.httpclient import new_client
from watchdog.model import Deployment
from watchdog.providers.base import RollbackProvider
from watchdog.providers.registry import (
    TARGET_SECONDS,
    build_flag_switch,
    build_provider,
    live_timeout,
    target_seconds,
)
from watchdog.settings import Settings
from watchdog.store.base import StateStore
from watchdog.store.records import ActionRecord, ActionStatus
from watchdog.summary import action_json, summary_json
from watchdog.verify import Check, Verification, verify

ALL = "all"


@dataclass(frozen=True)
class Outcome:
    summary: dict[str, Any]
    ok: bool


@dataclass
class _Run:
    """One rollback run: its settings, clock, runner and the HTTP client its providers share."""

    settings: Settings
    clock: Clock
    runner: ActionRunner
    client: httpx.AsyncClient
    reason: str
    watch_id: str | None = None  # the watch that decided it, when one did

    providers: dict[str, RollbackProvider] = field(default_factory=dict)

    def provider(self, target: str) -> RollbackProvider:
        """One provider per target for the whole run (planning and acting share it)."""
        if target not in self.providers:
            config = self.settings.targets[target].provider
            self.providers[target] = build_provider(config, self.client, self.clock)
        return self.providers[target]

    async def plan(self, target: str, to: str | None) -> tuple[str, Plan]:
        plan = await self.runner.plan(self.provider(target), target, None, to)
        return plan.deployment_id, plan

    async def act(self, target: str, plan: Plan) -> ActionRecord:
        config = self.settings.targets[target].provider
        return await self.runner.rollback(
            self.provider(target),
            plan,
            watch_id=self.watch_id,
            reason=self.reason,
            timeout=live_timeout(config),
        )

    async def verify(self, target: str, plan: Plan, action: ActionRecord) -> Verification:
        assert plan.to is not None
        serving = Deployment(
            target=target,
            id=plan.to.id,
            release=plan.to.release,
            deployed_at=action.finished_at or self.clock.now(),
        )
        return await verify(self.settings, serving, self.clock)


async def manual_rollback(
    settings: Settings,
    target: str,
    *,
    store: StateStore,
    clock: Clock,
    to: str | None,
    reason: str,
    dry_run: bool,
    confirm: Callable[[Plan], bool],
    watch_id: str | None = None,
) -> Outcome:
    """Plan; stop there on a dry run or when ``confirm`` says no; else roll back and verify.
    ``watch_id`` names the watch that decided it, so its actions show in its summary."""
    if target == ALL:
        return await _full_rollback(
            settings,
            store=store,
            clock=clock,
            reason=reason,
            dry_run=dry_run,
            confirm=confirm,
            watch_id=watch_id,
        )
    started = clock.now()
    async with new_client(timeout=settings.watch.probe_timeout.total_seconds()) as client:
        run = _Run(settings, clock, ActionRunner(store, clock), client, reason, watch_id)
        live, plan = await run.plan(target, to)

        def summary(
            verdict: str,
            actions: list[ActionRecord],
            verification: Verification | None,
            explanation: str,
        ) -> dict[str, Any]:
            config = settings.targets[target].provider
            return summary_json(
                target=target,
                deployment_id=live,
                previous_deployment_id=plan.to.id if plan.to else None,
                verdict=verdict,
                rule=None,
                dry_run=dry_run,
                started_at=started,
                decided_at=started,
                closed_at=clock.now(),
                actions=[action_json(a, target_seconds(config)) for a in actions],
                verification=verification,
                explanation=explanation,
            )

        if plan.to is None:
            return Outcome(summary("rollback_failed", [], None, plan.problem or ""), False)
        if dry_run:
            return Outcome(
                summary(
                    "would_roll_back",
                    [],
                    None,
                    f"would roll {target} back from {live} to {plan.to.id}",
                ),
                True,
            )
        if not confirm(plan):
            return Outcome(summary("none", [], None, "not confirmed: nothing done"), False)
        action = await run.act(target, plan)
        if action.status is not ActionStatus.DONE:
            return Outcome(summary("rollback_failed", [action], None, action.error or ""), False)
        verification = await run.verify(target, plan, action)
    return Outcome(
        summary(
            "rolled_back",
            [action],
            verification,
            f"rolled {target} back from {live} to {plan.to.id}: {reason}",
        ),
        verification.passed,
    )


async def _full_rollback(
    settings: Settings,
    *,
    store: StateStore,
    clock: Clock,
    reason: str,
    dry_run: bool,
    confirm: Callable[[Plan], bool],
    watch_id: str | None,
) -> Outcome:
    """Flags off, then each target in ``rollback_order``; stop at the first step that fails
    (what is left is for people, and the summary says where it stopped)."""
    started = clock.now()
    order = settings.rollback_order()
    actions: list[dict[str, Any]] = []
    checks: list[Check] = []

    def summary(verdict: str, explanation: str) -> dict[str, Any]:
        return summary_json(
            target=ALL,
            deployment_id=f"full-{started:%Y%m%dT%H%M%SZ}",
            previous_deployment_id=None,
            verdict=verdict,
            rule=None,
            dry_run=dry_run,
            started_at=started,
            decided_at=started,
            closed_at=clock.now(),
            actions=actions,
            verification=Verification(tuple(checks)) if checks else None,
            explanation=explanation + _elapsed(started, clock.now()),
        )

    async with new_client(timeout=settings.watch.probe_timeout.total_seconds()) as client:
        run = _Run(settings, clock, ActionRunner(store, clock), client, reason, watch_id)
        plans = [(target, *await run.plan(target, None)) for target in order]
        blocked = [(t, p.problem) for t, _, p in plans if p.to is None]
        if blocked:
            return Outcome(
                summary("rollback_failed", "; ".join(f"{t}: {problem}" for t, problem in blocked)),
                False,
            )
        steps = ", ".join(f"{t} {live} → {p.to.id}" for t, live, p in plans if p.to)
        flags = settings.full_rollback.flags
        if dry_run:
            off = f"flags off: {', '.join(flags)}; " if flags else ""
            return Outcome(summary("would_roll_back", f"would roll back all: {off}{steps}"), True)
        if not all(confirm(p) for _, _, p in plans):
            return Outcome(summary("none", "not confirmed: nothing done"), False)
        if flags and settings.flags is not None:
            switch = build_flag_switch(settings.flags, client)
            for key in flags:
                record = await run.runner.flag(
                    switch,
                    key,
                    enable=False,
                    reason=reason,
                    target=ALL,
                    deployment_id=f"full-{started:%Y%m%dT%H%M%SZ}",
                    watch_id=watch_id,
                )
                actions.append(action_json(record, 60))
                if record.status is not ActionStatus.DONE:
                    return Outcome(
                        summary("rollback_failed", f"stopped at flag {key}: {record.error}"), False
                    )
        for target, _, plan in plans:
            record = await run.act(target, plan)
            actions.append(action_json(record, target_seconds(settings.targets[target].provider)))
            if record.status is not ActionStatus.DONE:
                return Outcome(
                    summary("rollback_failed", f"stopped at {target}: {record.error}"), False
                )
            checks.extend(
                Check(f"{target}: {c.name}", c.passed, c.detail)
                for c in (await run.verify(target, plan, record)).checks
            )
    result = summary("rolled_back", f"rolled back all: {steps}: {reason}")
    return Outcome(result, all(c.passed for c in checks))


def _elapsed(started: datetime, now: datetime) -> str:
    seconds = (now - started).total_seconds()
    return f" ({seconds:.0f}s of the runbook's {TARGET_SECONDS['full'] // 60} minutes)"
