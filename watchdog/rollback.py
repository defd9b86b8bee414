"""The runbook's automated rollback script, by hand: roll a target back to its last
known-good deployment, verify, and say how long it took against the runbook's target.
``watchdog rollback`` runs this; the watch runs the same action runner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from watchdog.actions import ActionRunner, Plan
from watchdog.clock import Clock
from watchdog.model import Deployment
from watchdog.providers.registry import build_provider, live_timeout, target_seconds
from watchdog.settings import Settings
from watchdog.store.base import StateStore
from watchdog.store.records import ActionStatus
from watchdog.summary import action_json, summary_json
from watchdog.verify import Verification, verify


@dataclass(frozen=True)
class Outcome:
    summary: dict[str, Any]
    ok: bool


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
) -> Outcome:
    """Plan; stop there on a dry run or when ``confirm`` says no; else roll back and verify."""
    config = settings.targets[target].provider
    started = clock.now()
    async with httpx.AsyncClient(timeout=settings.watch.probe_timeout.total_seconds()) as client:
        provider = build_provider(config, client, clock)
        live = await provider.live()
        runner = ActionRunner(store, clock)
        plan = await runner.plan(provider, target, live.id, to)

        def summary(
            verdict: str,
            actions: list[dict[str, Any]],
            verification: Verification | None,
            explanation: str,
        ) -> dict[str, Any]:
            return summary_json(
                target=target,
                deployment_id=live.id,
                previous_deployment_id=plan.to.id if plan.to else None,
                verdict=verdict,
                rule=None,
                dry_run=dry_run,
                started_at=started,
                decided_at=started,
                closed_at=clock.now(),
                actions=actions,
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
                    f"would roll {target} back from {live.id} to {plan.to.id}",
                ),
                True,
            )
        if not confirm(plan):
            return Outcome(summary("none", [], None, "not confirmed: nothing done"), False)
        action = await runner.rollback(
            provider, plan, watch_id=None, reason=reason, timeout=live_timeout(config)
        )
    actions = [action_json(action, target_seconds(config))]
    if action.status is not ActionStatus.DONE:
        return Outcome(summary("rollback_failed", actions, None, action.error or ""), False)
    serving = Deployment(
        target=target,
        id=plan.to.id,
        deployed_at=action.finished_at or clock.now(),
        release=plan.to.release,
    )
    verification = await verify(settings, serving, clock)
    return Outcome(
        summary(
            "rolled_back",
            actions,
            verification,
            f"rolled {target} back from {live.id} to {plan.to.id}: {reason}",
        ),
        verification.passed,
    )
