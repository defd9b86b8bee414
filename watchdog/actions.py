"""Running a rollback safely, whatever the provider.

The order never changes: read the provider's state; record the action as *intended* (the
store refuses a second action for the same deployment); ask whether production already serves
the known-good deployment (then send nothing); send once; wait until it is live; record
*done* or *failed*. A send that may have reached the provider is never repeated: a failure is
followed by a state check. A crash between "intended" and "done" is settled on restart by
``reconcile``, again by asking the provider, never by sending again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from functools import partial

import stamina
import structlog

from watchdog.clock import Clock
from watchdog.errors import ConfigError, RollbackError
from watchdog.providers.base import ProviderDeployment, Rollback, RollbackProvider
from watchdog.providers.flags import FlagSwitch, show
from watchdog.providers.polling import Sleep, wait_until
from watchdog.store.base import StateStore
from watchdog.store.records import ActionRecord, ActionStatus, Lease

log = structlog.get_logger("watchdog.actions")


def rollback_key(target: str, deployment_id: str) -> str:
    """The idempotency key: one rollback per deployment of a target, ever."""
    return f"rollback:{target}:{deployment_id}"


@dataclass(frozen=True)
class Plan:
    """What a rollback would do, decided before anything is recorded or sent."""

    target: str
    deployment_id: str
    to: ProviderDeployment | None
    problem: str | None = None  # why it cannot go ahead


class ActionRunner:
    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        fence: Lease | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._fence = fence  # the watch's lease: a replica that lost it records no action

    async def plan(
        self,
        provider: RollbackProvider,
        target: str,
        deployment_id: str | None,
        to: str | None = None,
    ) -> Plan:
        """Find the deployment to go back to; reads only. ``deployment_id`` is the bad one, and
        only the deployment live now is rolled back (when production serves something else,
        someone or something moved first); None means whatever is live. A provider that
        cannot be read gives a plan with the problem, which ``rollback`` records as failed."""
        try:
            live = await provider.live()
            if deployment_id is not None and live.id != deployment_id:
                return Plan(
                    target,
                    deployment_id,
                    None,
                    f"{provider.name} serves {live.id}, not {deployment_id}: nothing to roll "
                    "back (superseded, or rolled back already)",
                )
            good = await self._known_good(provider, target, live, to)
        except (RollbackError, ConfigError) as exc:
            return Plan(target, deployment_id or "(unknown)", None, str(exc))
        if good is None:
            wanted = f" named {to}" if to else ""
            return Plan(
                target,
                live.id,
                None,
                f"{provider.name} has no earlier good deployment{wanted} to go back to",
            )
        return Plan(target, live.id, good)

    async def _known_good(
        self, provider: RollbackProvider, target: str, live: ProviderDeployment, wanted: str | None
    ) -> ProviderDeployment | None:
        """Walk back from the live deployment. Skipped: deployments this watchdog rolled back
        from (known bad; after a Render or Railway rollback the deploy before the live one is
        the bad one), and any that serves the live release already."""
        bad = await self._store.rolled_back(target)
        candidate = live
        while (found := await provider.known_good(candidate)) is not None:
            candidate = found
            if wanted is not None:
                if wanted in (found.id, found.release):
                    return found
            elif found.id not in bad and not (found.release and found.release == live.release):
                return found
        return None

    async def rollback(
        self,
        provider: RollbackProvider,
        plan: Plan,
        *,
        watch_id: str | None,
        reason: str,
        timeout: timedelta,
    ) -> ActionRecord:
        """Carry the plan out once; returns the stored action (an earlier one when this
        deployment was already acted on)."""
        bound = log.bind(target=plan.target, deployment=plan.deployment_id, provider=provider.name)
        intended = ActionRecord(
            id=uuid.uuid4().hex,
            key=rollback_key(plan.target, plan.deployment_id),
            watch_id=watch_id,
            target=plan.target,
            deployment_id=plan.deployment_id,
            kind="rollback",
            provider=provider.name,
            to=plan.to.id if plan.to else None,
            to_release=plan.to.release if plan.to else None,
            status=ActionStatus.INTENDED,
            started_at=self._clock.now(),
            reason=reason,
        )
        record = await self._store.begin_action(intended, self._fence)
        if record.id != intended.id:
            bound.info("rollback.skipped", why="already acted on", action=record.id)
            return record
        if plan.to is None:
            return await self._finish(record, ActionStatus.FAILED, plan.problem)
        try:
            if await provider.is_serving(plan.to):
                return await self._finish(
                    record, ActionStatus.DONE, None, [f"already serving {plan.to.id}: nothing sent"]
                )
            bound.info("rollback.sending", to=plan.to.id)
            sent = await self._send(provider, plan.to, reason)
            await provider.wait_live(sent, timeout)
        except RollbackError as exc:
            return await self._after_failure(provider, record, plan.to, exc, timeout)
        except ConfigError as exc:
            return await self._finish(record, ActionStatus.FAILED, str(exc))
        done = await self._finish(record, ActionStatus.DONE, None, sent.notes)
        bound.info("rollback.executed", to=plan.to.id, seconds=done.seconds)
        return done

    async def _send(
        self, provider: RollbackProvider, to: ProviderDeployment, reason: str
    ) -> Rollback:
        # Resent only when nothing reached the provider (the connection was refused).
        async for attempt in stamina.retry_context(
            on=lambda exc: isinstance(exc, RollbackError) and not exc.reached, attempts=3
        ):
            with attempt:
                return await provider.rollback(to, reason)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _after_failure(
        self,
        provider: RollbackProvider,
        record: ActionRecord,
        to: ProviderDeployment,
        exc: RollbackError,
        timeout: timedelta,
    ) -> ActionRecord:
        """The send or the wait failed: look, do not resend. When no answer came, the
        rollback may still be under way: watch for it as long as it may take to go live."""
        try:
            if exc.answered:
                serving = await provider.is_serving(to)
            else:
                serving = (
                    await wait_until(
                        partial(provider.is_serving, to),
                        clock=self._clock,
                        sleep=self._sleep,
                        timeout=timeout,
                        every=timedelta(seconds=1),
                    )
                    is None
                )
        except (RollbackError, ConfigError):
            serving = False
        if serving:
            return await self._finish(
                record, ActionStatus.DONE, None, [f"{exc}; but production serves {to.id} now"]
            )
        log.error(
            "rollback.failed",
            target=record.target,
            deployment=record.deployment_id,
            provider=provider.name,
            error=str(exc),
        )
        return await self._finish(record, ActionStatus.FAILED, str(exc))

    async def _finish(
        self,
        record: ActionRecord,
        status: ActionStatus,
        error: str | None,
        notes: tuple[str, ...] | list[str] = (),
    ) -> ActionRecord:
        return await self._store.finish_action(
            record.id, status, self._clock.now(), error, list(notes)
        )

    async def flag(
        self,
        switch: FlagSwitch,
        key: str,
        *,
        enable: bool,
        reason: str,
        target: str,
        deployment_id: str,
        watch_id: str | None,
    ) -> ActionRecord:
        """Turn a feature flag off (or back on), recorded like a rollback: once per flag and
        deployment, intended before it is sent, done or failed after."""
        kind = "enable_flag" if enable else "disable_flag"
        intended = ActionRecord(
            id=uuid.uuid4().hex,
            key=f"{kind}:{target}:{deployment_id}:{key}",
            watch_id=watch_id,
            target=target,
            deployment_id=deployment_id,
            kind=kind,
            provider=switch.name,
            to=key,
            status=ActionStatus.INTENDED,
            started_at=self._clock.now(),
            reason=reason,
        )
        record = await self._store.begin_action(intended, self._fence)
        if record.id != intended.id:
            return record
        try:
            state = await (switch.enable if enable else switch.disable)(key, reason)
        except (RollbackError, ConfigError) as exc:
            log.error("flag.failed", flag=key, kind=kind, error=str(exc))
            return await self._finish(record, ActionStatus.FAILED, str(exc))
        log.info("flag.changed", flag=key, kind=kind, state=show(state))
        return await self._finish(record, ActionStatus.DONE, None, [show(state), *state.notes])

    async def reconcile(
        self,
        providers: Mapping[str, RollbackProvider],
        waits: Mapping[str, timedelta] | None = None,
    ) -> list[ActionRecord]:
        """Settle actions a crash left *intended*, by asking each provider what it serves. A
        rollback may still be going live: wait up to ``waits[target]`` for it (never resend)."""
        settled = []
        for record in await self._store.unfinished_actions():
            provider = providers.get(record.target)
            if provider is None or record.to is None:
                settled.append(
                    await self._finish(
                        record, ActionStatus.FAILED, "interrupted; cannot ask the provider now"
                    )
                )
                continue
            to = ProviderDeployment(record.to, record.to_release, record.started_at, "", False)
            try:
                waited = await wait_until(
                    partial(provider.is_serving, to),
                    clock=self._clock,
                    sleep=self._sleep,
                    timeout=(waits or {}).get(record.target, timedelta(0)),
                    every=timedelta(seconds=1),
                )
                live = (await provider.live()).id
            except (RollbackError, ConfigError) as exc:
                waited, live = timedelta(0), f"(unknown: {exc})"
            if waited is None:
                settled.append(
                    await self._finish(
                        record,
                        ActionStatus.DONE,
                        None,
                        [f"interrupted; reconciled: production serves {record.to}"],
                    )
                )
            else:
                settled.append(
                    await self._finish(
                        record,
                        ActionStatus.FAILED,
                        f"interrupted before it was confirmed; {provider.name} serves {live}; "
                        "not resent: roll back by hand",
                    )
                )
        return settled
