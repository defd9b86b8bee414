"""Watches written into a real store the way the daemon writes them: each tick's readings and
probe errors, the rule engine's decision on everything read so far (the shipped rules), then
what was done and how the watch ended. Messages are composed from these."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from tests.conftest import REPO
from watchdog.model import Decision, Deployment, Reading
from watchdog.rules.engine import decide
from watchdog.settings import load_rules
from watchdog.signals.base import ProbeError
from watchdog.store.base import StateStore
from watchdog.store.records import ActionRecord, ActionStatus, Outcome, WatchRecord, WatchState

T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
TICK = timedelta(seconds=15)
RULES = load_rules(REPO / "config" / "rules.yaml")
BAD = Deployment(
    "backend",
    "dep-2",
    T0,
    previous_id="dep-1",
    release="rel-2f9c",
    previous_release="rel-81ab",
    commit="2f9c0de",
)
HEALTHY_CHECKS = (
    ("health api", True, ""),
    ("database connectivity", True, ""),
    ("integrity", True, ""),
    ("error rate", True, "error rate 0.05 % over 5,400 requests < 0.1 %"),
)


class Story:
    def __init__(self, store: StateStore, deployment: Deployment = BAD) -> None:
        self.store = store
        self.deployment = deployment
        self.readings: list[Reading] = []
        self.record: WatchRecord | None = None

    @property
    def watch(self) -> WatchRecord:
        assert self.record is not None, "open the watch first"
        return self.record

    async def open(self, *, dry_run: bool = False) -> Story:
        await self.store.save_deployment(self.deployment)
        self.record = await self.store.open_watch(
            WatchRecord(
                id=uuid.uuid4().hex,
                target=self.deployment.target,
                deployment_id=self.deployment.id,
                state=WatchState.OBSERVING,
                started_at=T0,
                closes_at=T0 + timedelta(minutes=10),
                interval=TICK,
                dry_run=dry_run,
            )
        )
        return self

    async def tick(
        self,
        n: int,
        readings: Sequence[tuple[str, float, dict[str, str], int | None]] = (),
        errors: Sequence[ProbeError] = (),
    ) -> Decision:
        """Tick ``n`` (at T0 + n ticks): decide on what was read, store both."""
        at = T0 + n * TICK
        read = [
            Reading(at, metric, value, labels, samples)
            for metric, value, labels, samples in readings
        ]
        self.readings += read
        decision = decide(RULES, self.deployment, self.readings, at, TICK)
        await self.store.add_tick(self.watch.id, read, errors, decision)
        return decision

    async def error_rates(self, *rates: float, samples: int = 5400) -> Decision:
        """One tick per rate, with a healthy API beside it; the last decision."""
        decision = None
        for n, rate in enumerate(rates, 1):
            decision = await self.tick(
                n, [("error_rate", rate, {}, samples), ("health", 1, {"check": "api"}, None)]
            )
        assert decision is not None
        return decision

    async def decided(self, decision: Decision) -> None:
        await self.save(
            state=WatchState.ACTING,
            decided_at=decision.at,
            rule=decision.rule,
            explanation=decision.explanation,
        )

    async def act(
        self,
        *,
        took: timedelta | None,
        status: ActionStatus = ActionStatus.DONE,
        kind: str = "rollback",
        provider: str = "render",
        to: str = "dep-1",
        error: str | None = None,
        notes: Sequence[str] = (),
    ) -> ActionRecord:
        """An action started when the watch decided, finished ``took`` later (None: still
        intended)."""
        started = self.watch.decided_at or T0
        action = await self.store.begin_action(
            ActionRecord(
                id=uuid.uuid4().hex,
                key=f"{kind}:{self.watch.target}:{self.watch.deployment_id}:{to}",
                watch_id=self.watch.id,
                target=self.watch.target,
                deployment_id=self.watch.deployment_id,
                kind=kind,
                provider=provider,
                to=to,
                to_release="rel-81ab" if kind == "rollback" else None,
                status=ActionStatus.INTENDED,
                started_at=started,
                reason=self.watch.explanation or "",
            )
        )
        if took is None:
            return action
        return await self.store.finish_action(action.id, status, started + took, error, notes)

    async def close(
        self,
        outcome: Outcome,
        *,
        verification: tuple[tuple[str, bool, str], ...] | None = None,
        explanation: str | None = None,
        at: datetime | None = None,
    ) -> None:
        await self.save(
            state=WatchState.CLOSED,
            outcome=outcome,
            closed_at=at or T0 + timedelta(minutes=6),
            verification=verification,
            explanation=explanation or self.watch.explanation,
        )

    async def save(self, **changes: object) -> None:
        self.record = replace(self.watch, **changes)  # type: ignore[arg-type]
        await self.store.update_watch(self.record)


async def rolled_back(
    store: StateStore,
    *,
    took: timedelta = timedelta(minutes=4, seconds=12),
    verification: tuple[tuple[str, bool, str], ...] = HEALTHY_CHECKS,
) -> Story:
    """The runbook's worst case: the error rate jumps past 1 %, held for two readings, and the
    watch rolls back to dep-1 through Render, then verifies."""
    story = await Story(store).open()
    decision = await story.error_rates(0.002, 0.023, 0.025)
    await story.decided(decision)
    await story.act(took=took)
    await story.close(Outcome.ROLLED_BACK, verification=verification)
    return story
