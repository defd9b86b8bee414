"""The daemon: every open watch ticking on the scheduler, deploys announced or discovered,
graceful stop and config reload. The only module that imports APScheduler.

A tick is ``Watch.tick`` (a plain coroutine); this module only decides *when* it runs: one
interval job per watch with ``max_instances=1, coalesce=True`` and a misfire grace of one
interval, so a slow tick is never run twice at once and missed ticks are not replayed.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from watchdog.actions import ActionRunner
from watchdog.clock import Clock
from watchdog.errors import ConfigError, WatchdogError
from watchdog.metrics import Metrics
from watchdog.model import Deployment
from watchdog.providers.base import ProviderDeployment
from watchdog.providers.registry import live_timeout
from watchdog.settings import LoadedConfig
from watchdog.signals.base import ProbeError
from watchdog.store.base import RaisedSignal, StateStore
from watchdog.store.records import WatchRecord
from watchdog.summary import watch_summary
from watchdog.verify import Sleep
from watchdog.watch import Context, Watch, target_context

log = structlog.get_logger("watchdog.daemon")


class UnknownWatch(WatchdogError):
    """No watch has that id."""


class Watchdog:
    """The running daemon's state. ``start`` before use, ``stop`` to finish."""

    def __init__(
        self,
        config: LoadedConfig,
        store: StateStore,
        clock: Clock,
        metrics: Metrics,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config
        self.store = store
        self.metrics = metrics
        self._clock = clock
        self._sleep = sleep
        self._stack = AsyncExitStack()
        self._contexts: dict[str, Context] = {}
        self._watches: dict[str, Watch] = {}
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._seen: dict[str, ProviderDeployment] = {}
        self._discovery_failing: set[str] = set()
        self.ready = False

    async def start(self) -> None:
        """Migrate the store, settle actions a crash left unconfirmed, resume open watches."""
        await self.store.migrate()
        await self._open_contexts(self.config)
        providers = {t: c.provider for t, c in self._contexts.items()}
        waits = {t: live_timeout(c.settings.targets[t].provider) for t, c in self._contexts.items()}
        runner = ActionRunner(self.store, self._clock, self._sleep)
        for settled in await runner.reconcile(providers, waits):
            log.warning(
                "action.reconciled",
                action=settled.id,
                status=str(settled.status),
                target=settled.target,
                deployment=settled.deployment_id,
            )
        for record in await self.store.open_watches():
            if record.target in self._contexts:
                self._schedule(await Watch.resume(self._contexts[record.target], record))
        every = self.config.settings.watch.discover
        if every is not None:
            for target in self._contexts:
                self._scheduler.add_job(
                    self.discover,
                    "interval",
                    seconds=every.total_seconds(),
                    args=[target],
                    id=f"discover:{target}",
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=max(1, round(every.total_seconds())),
                    next_run_time=datetime.now(UTC),
                )
        self._scheduler.start()
        self.ready = True
        log.info("daemon.started", watches=len(self._watches), targets=len(self._contexts))

    async def _open_contexts(self, config: LoadedConfig) -> None:
        for target in config.settings.targets:
            context = await self._stack.enter_async_context(
                target_context(
                    config.settings, config.rules, self.store, self._clock, target, self._sleep
                )
            )
            context.on_probe_error = self._count_probe_error
            self._contexts[target] = context

    def _count_probe_error(self, error: ProbeError) -> None:
        self.metrics.probe_errors.labels(error.source, str(error.failure)).inc()

    async def stop(self, grace: float = 8.0) -> None:
        """Stop scheduling, let the ticks in flight finish (each persists as it goes)."""
        self.ready = False
        # Pause first: shutting APScheduler's asyncio executor down cancels the jobs still
        # running, and a tick in flight must finish and store what it did.
        self._scheduler.pause()
        if self._in_flight:
            await asyncio.wait(self._in_flight, timeout=grace)
        self._scheduler.shutdown(wait=False)
        await self._stack.aclose()
        log.info("daemon.stopped", open_watches=len(self._watches))

    async def reload(self, config: LoadedConfig) -> None:
        """Use ``config`` for watches started from now on; running watches keep theirs."""
        await self._open_contexts(config)
        self.config = config
        self.metrics.reloads.labels("ok").inc()
        log.info("config.reloaded", targets=len(config.settings.targets))

    async def discover(self, target: str) -> None:
        """Watch a new production deployment of ``target`` when the provider shows one. The
        first look only notes what is live. Not new: a deployment older than the last one seen
        (Vercel's instant rollback goes back to one), or one serving a release this watchdog
        rolled back to (Render and Railway redeploy it as a new deployment)."""
        provider = self._contexts[target].provider
        try:
            live = await provider.live()
        except WatchdogError as exc:
            if target not in self._discovery_failing:
                self._discovery_failing.add(target)
                log.warning("discovery.failing", target=target, error=str(exc))
            return
        if target in self._discovery_failing:
            self._discovery_failing.discard(target)
            log.info("discovery.recovered", target=target)
        seen = self._seen.get(target)
        self._seen[target] = live if seen is None or live.created_at >= seen.created_at else seen
        if seen is None or live.id == seen.id or live.created_at < seen.created_at:
            return
        if live.release is not None and live.release in await self.store.rolled_back_to(target):
            return
        log.info("deploy.discovered", target=target, deployment=live.id)
        await self.announce(
            Deployment(
                target=target,
                id=live.id,
                deployed_at=live.created_at,
                release=live.release,
                previous_id=seen.id,
                previous_release=seen.release,
            )
        )

    def _schedule(self, watch: Watch) -> None:
        self._watches[watch.record.id] = watch
        interval = watch.record.interval.total_seconds()
        self._scheduler.add_job(
            self._tick,
            "interval",
            seconds=interval,
            args=[watch.record.id],
            id=watch.record.id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, round(interval)),
            next_run_time=datetime.now(UTC),
            replace_existing=True,
        )
        self.metrics.active_watches.set(len(self._watches))

    async def _tick(self, watch_id: str) -> None:
        watch = self._watches.get(watch_id)
        if watch is None:
            return
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        interval = watch.record.interval.total_seconds()
        # Ticks are due every interval from the watch's start: how far past its slot this is.
        self.metrics.tick_lag.observe(
            (self._clock.now() - watch.record.started_at).total_seconds() % interval
        )
        try:
            decision = await watch.tick()
        except WatchdogError as exc:  # a store or config failure: logged, retried next tick
            log.error("tick.failed", watch=watch_id, error=str(exc))
            return
        finally:
            self._in_flight.discard(task)
        if decision is not None:
            self.metrics.decisions.labels(str(decision.verdict)).inc()
        if watch.closed:
            await self._finished(watch)

    async def _finished(self, watch: Watch) -> None:
        self._watches.pop(watch.record.id, None)
        if self._scheduler.get_job(watch.record.id):
            self._scheduler.remove_job(watch.record.id)
        self.metrics.active_watches.set(len(self._watches))
        for action in await self.store.actions(watch.record.id):
            if action.kind == "rollback":
                self.metrics.rollbacks.labels(action.provider, str(action.status)).inc()
                if action.seconds is not None:
                    self.metrics.rollback_seconds.observe(action.seconds)

    async def announce(self, deployment: Deployment) -> WatchRecord:
        """Watch ``deployment`` (once, however often it is announced). An open watch of an
        earlier deployment of the target is superseded; the new one goes back to what the old
        one would have, since the old one was never proven good."""
        settings = self.config.settings
        if deployment.target not in self._contexts:
            raise ConfigError(
                f"target {deployment.target!r}: expected one of {', '.join(self._contexts)}"
            )
        for old in [
            w
            for w in self._watches.values()
            if w.record.target == deployment.target and w.record.deployment_id != deployment.id
        ]:
            if deployment.previous_id is None:
                deployment = replace(deployment, previous_id=old.deployment.previous_id)
            await old.supersede(deployment.id)
            await self._finished(old)
        watch = await Watch.start(
            self._contexts[deployment.target],
            deployment,
            window=settings.watch.window,
            interval=settings.watch.interval,
            dry_run=settings.dry_run,
        )
        if not watch.closed and watch.record.id not in self._watches:
            self._schedule(watch)
        return watch.record

    def _open(self, watch_id: str) -> Watch:
        watch = self._watches.get(watch_id)
        if watch is None:
            raise UnknownWatch(watch_id)
        return watch

    async def hold(self, watch_id: str) -> WatchRecord:
        watch = self._open(watch_id)
        await watch.hold()
        return watch.record

    async def ack(self, watch_id: str) -> WatchRecord:
        record = await self.store.watch(watch_id)
        if record is None:
            raise UnknownWatch(watch_id)
        if record.acknowledged_at is None:
            record = replace(record, acknowledged_at=self._clock.now())
            await self.store.update_watch(record)
            if watch_id in self._watches:
                self._watches[watch_id].record = record
        return record

    async def raise_signal(
        self, target: str, kind: str, detail: str, deployment_id: str | None = None
    ) -> RaisedSignal:
        """Store an outside signal (a security alert) against ``deployment_id``, by default
        the deployment of the target's open watch; the watch reads it from the store at its
        next tick (``AlertSignal``), so neither a restart nor another replica loses it.
        Raises ConfigError for an unknown target, UnknownWatch when no deployment is named
        and none of the target's is watched."""
        targets = self.config.settings.targets
        if target not in targets:
            raise ConfigError(f"target {target!r}: expected one of {', '.join(targets)}")
        if deployment_id is None:
            watched = [w for w in await self.store.open_watches() if w.target == target]
            if not watched:
                raise UnknownWatch(f"no open watch of {target}")
            deployment_id = watched[-1].deployment_id
        signal = RaisedSignal(target, deployment_id, kind, detail, self._clock.now())
        await self.store.raise_signal(target, deployment_id, kind, detail, signal.raised_at)
        log.warning("signal.raised", target=target, deployment=deployment_id, kind=kind)
        return signal

    async def summary(self, watch_id: str) -> dict[str, Any]:
        record = await self.store.watch(watch_id)
        if record is None:
            raise UnknownWatch(watch_id)
        return await watch_summary(self.store, self.config.settings, record)

    async def summaries(self, limit: int = 50) -> list[dict[str, Any]]:
        return [
            {"id": record.id, **await watch_summary(self.store, self.config.settings, record)}
            for record in await self.store.recent_watches(limit)
        ]

    @property
    def open_watches(self) -> int:
        return len(self._watches)
