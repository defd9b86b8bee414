"""The daemon: every open watch ticking on the scheduler, deploys announced or discovered,
what follows a watch (messages, escalation, post-mortems), graceful stop and config reload.
The only module that imports APScheduler.

A tick is ``Watch.tick`` (a plain coroutine); this module only decides *when* it runs: one
interval job per watch with ``max_instances=1, coalesce=True`` and a misfire grace of one
interval, so a slow tick is never run twice at once and missed ticks are not replayed.

Several replicas may share one Postgres store. A replica works on a watch only while it holds
the watch's lease (renewed every half interval, lasting two), and every write of the watch and
every action is fenced by that lease, so a replica that stalls loses its watches within three
intervals, another takes them over from the store, and the stale one can record nothing. Jobs
that must run once (discovery, the follow-up round, drills) take a lease per run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from watchdog import selfmonitor
from watchdog.actions import ActionRunner
from watchdog.clock import Clock
from watchdog.drill import run_drill
from watchdog.errors import ConfigError, WatchdogError
from watchdog.followup import Followup
from watchdog.httpclient import new_client
from watchdog.metrics import Metrics
from watchdog.model import Deployment
from watchdog.notify.registry import build_notifiers
from watchdog.providers.base import ProviderDeployment
from watchdog.providers.registry import live_timeout
from watchdog.schedule import cron_fields
from watchdog.settings import LoadedConfig
from watchdog.signals.base import ProbeError
from watchdog.store.base import LeaseLost, RaisedSignal, StateStore
from watchdog.store.records import Lease, WatchRecord, WatchState
from watchdog.summary import watch_summary
from watchdog.verify import Sleep
from watchdog.watch import Context, Watch, target_context

log = structlog.get_logger("watchdog.daemon")

FOLLOWUP_EVERY = timedelta(seconds=2)
# A watch rolling back or verifying is never superseded: the deploy that ends it may be its
# own rollback (a git revert, a Vercel promote), and its rollback must finish and verify.
_BUSY = {WatchState.ACTING, WatchState.VERIFYING}


def _lease_name(watch_id: str) -> str:
    return f"watch:{watch_id}"


def _lease_ttl(interval: timedelta) -> timedelta:
    """How long a watch's lease lasts: two intervals, renewed every half interval."""
    return interval * 2


class UnknownWatch(WatchdogError):
    """No watch has that id."""


def drill_trigger(config: LoadedConfig) -> CronTrigger:
    """The cron trigger of ``drills.schedule`` (in UTC). ConfigError when the scheduler cannot
    read its day, e.g. ``last fry``: ``config check`` and a reload call this too."""
    drills = config.settings.drills
    assert drills is not None
    try:
        return CronTrigger(**cron_fields(drills.schedule), timezone=UTC)
    except ValueError as exc:
        raise ConfigError(f"{config.path}: drills.schedule: {exc}") from exc


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
        self._stack = AsyncExitStack()  # the daemon's own clients (notifiers)
        self._contexts: dict[str, Context] = {}  # the running config's, by target
        # Each loaded config's target contexts and what closes them: the running config's,
        # and earlier ones that a watch started before a reload still uses.
        self._configs: list[tuple[AsyncExitStack, dict[str, Context]]] = []
        self._ticking: set[Watch] = set()
        self._watches: dict[str, Watch] = {}
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._scheduler = AsyncIOScheduler(timezone=UTC)
        self._seen: dict[str, ProviderDeployment] = {}
        self._discovery_failing: set[str] = set()
        self._jobs_held: dict[str, datetime] = {}  # job lease → when it expires
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.followup: Followup | None = None
        self.ready = False

    async def start(self) -> None:
        """Migrate the store, settle actions a crash left unconfirmed, resume open watches."""
        await self.store.migrate()
        if self.config.settings.state.url.reveal().startswith("sqlite"):
            log.warning("store.single_replica", reason="SQLite is one file for one replica")
        client = await self._stack.enter_async_context(new_client(timeout=10))
        self.followup = Followup(
            self.config, self.store, self._clock, build_notifiers(self.config.settings, client)
        )
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
        await self.claim()
        interval = self.config.settings.watch.interval
        self._every(interval / 2, self.claim, "claim")
        self._every(interval / 2, self.renew, "renew")
        self._every(FOLLOWUP_EVERY, self.follow_up, "followup")
        self._schedule_discovery()
        if self.config.settings.drills is not None:
            self._schedule_drill(drill_trigger(self.config))
        self._scheduler.start()
        self.ready = True
        log.info("daemon.started", watches=len(self._watches), targets=len(self._contexts))

    def _schedule_discovery(self) -> None:
        """A discovery job for each target of the running config (``watch.discover``), spread
        over the period so that they never fire together."""
        for job in self._scheduler.get_jobs():
            if job.id.startswith("discover:"):
                job.remove()
        every = self.config.settings.watch.discover
        if every is None:
            return
        for i, target in enumerate(self._contexts):
            first = every * i / len(self._contexts)
            self._every(every, self.discover, f"discover:{target}", target, first=first)

    def _every(
        self,
        period: timedelta,
        job: Callable[..., Awaitable[Any]],
        job_id: str,
        *args: Any,
        first: timedelta = timedelta(0),
    ) -> None:
        seconds = period.total_seconds()
        self._scheduler.add_job(
            self._tracked,
            "interval",
            seconds=seconds,
            args=[job, *args],
            id=job_id,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, round(seconds)),
            next_run_time=datetime.now(UTC) + first,
        )

    async def _tracked(self, job: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Run ``job`` as one of the tasks ``stop`` lets finish."""
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await job(*args)
        finally:
            self._in_flight.discard(task)

    async def _singleton(self, name: str, ttl: timedelta) -> bool:
        """Whether this replica runs job ``name`` this time: one replica at a time does, the
        one holding its lease (``ttl``: longer than a run, so a second replica never starts
        one while the first runs). A lease with two thirds of its time left is not asked for
        again: nobody else can take it before it expires."""
        now = self._clock.now()
        until = self._jobs_held.get(name)
        if until is not None and until - now > ttl * 2 / 3:
            return True
        lease = await self.store.acquire_lease(f"job:{name}", self.owner, ttl, now)
        if lease is None:
            self._jobs_held.pop(name, None)
            return False
        self._jobs_held[name] = lease.expires_at
        return True

    async def _lease(self, record: WatchRecord) -> Lease | None:
        """Take or renew the watch's lease; None when another replica holds it."""
        return await self.store.acquire_lease(
            _lease_name(record.id), self.owner, _lease_ttl(record.interval), self._clock.now()
        )

    async def claim(self) -> None:
        """Take over every open watch of a configured target that no live replica holds: at
        start, the watches this replica had; later, those of a replica that died."""
        try:
            records = await self.store.open_watches()
        except WatchdogError as exc:
            log.error("claim.failed", error=str(exc))
            return
        newest: dict[str, WatchRecord] = {}
        for record in records:
            if record.target not in newest or record.started_at > newest[record.target].started_at:
                newest[record.target] = record
        for watch in list(self._watches.values()):
            latest = newest.get(watch.record.target)
            if (
                latest is not None
                and latest.started_at > watch.record.started_at
                and watch.record.state not in _BUSY
            ):
                await watch.supersede(latest.deployment_id)  # announced through another replica
                await self._finished(watch)
        for record in records:
            if record.id in self._watches or record.target not in self._contexts:
                continue
            lease = await self._lease(record)
            if lease is None:  # another replica holds it
                continue
            if lease.token > 1:
                log.warning("watch.claimed", watch=record.id, token=lease.token)
            watch = await Watch.resume(self._contexts[record.target], record)
            watch.lease = lease
            latest = newest[record.target]
            if latest is record or record.state in _BUSY:
                self._schedule(watch)
            else:  # its replica died before it could close it
                await watch.supersede(latest.deployment_id)
                await self._finished(watch)

    async def renew(self) -> None:
        """Renew the lease of every watch held here at once, a tick in flight or not (a
        rollback and its verification take minutes); a watch whose lease another replica
        took is dropped."""
        watches = list(self._watches.values())
        if not watches:
            return
        ttl = _lease_ttl(max(watch.record.interval for watch in watches))
        names = [_lease_name(watch.record.id) for watch in watches]
        try:
            renewed = await self.store.renew_leases(names, self.owner, ttl, self._clock.now())
        except WatchdogError as exc:
            log.error("lease.renew_failed", watches=len(names), error=str(exc))
            return
        held = {lease.name: lease for lease in renewed}
        for watch, name in zip(watches, names, strict=True):
            lease = held.get(name)
            if lease is None or (watch.lease and lease.token != watch.lease.token):
                self._lost(watch)
            else:
                watch.lease = lease

    def _lost(self, watch: Watch) -> None:
        if watch.record.id in self._watches:
            log.warning("watch.lost", watch=watch.record.id, reason="another replica holds it")
            self._unschedule(watch)

    def _schedule_drill(self, trigger: CronTrigger) -> None:
        self._scheduler.add_job(
            self.drill, trigger, id="drill", max_instances=1, coalesce=True, misfire_grace_time=3600
        )

    async def drill(self) -> None:
        """The scheduled rollback drill (``drills.schedule``), on one replica."""
        if not await self._singleton("drill", timedelta(hours=1)):
            return
        assert self.followup is not None
        try:
            report = await run_drill(
                self.config, self.store, self._clock, notifiers=self.followup.notifiers
            )
        except WatchdogError as exc:
            log.error("drill.failed", error=str(exc))
            return
        log.info("drill.finished", passed=report.passed, report=str(report.path))

    async def follow_up(self) -> None:
        """Messages, escalation and post-mortems: one replica at a time."""
        if self.followup is not None and await self._singleton("followup", FOLLOWUP_EVERY * 3):
            await self.followup.run()

    async def _open_contexts(self, config: LoadedConfig) -> None:
        """Open ``config``'s target contexts for the watches started from now on; those of
        the config before are closed once no watch uses them (``_close_unused``)."""
        async with AsyncExitStack() as stack:
            # One client for the outside APIs (Sentry, providers, flags) of every target:
            # its connections stay open from one target's tick to the next.
            timeout = config.settings.watch.probe_timeout.total_seconds()
            api = await stack.enter_async_context(new_client(timeout=timeout))
            contexts: dict[str, Context] = {}
            for target in config.settings.targets:
                context = await stack.enter_async_context(
                    target_context(
                        config.settings,
                        config.rules,
                        self.store,
                        self._clock,
                        target,
                        self._sleep,
                        api,
                    )
                )
                context.on_probe_error = self._count_probe_error
                context.notify = self._notify
                contexts[target] = context
            self._configs.append((stack.pop_all(), contexts))
        self._contexts = contexts
        await self._close_unused()

    async def _close_unused(self) -> None:
        """Close the clients of every earlier config that no watch uses any more."""
        used = {id(w.ctx) for w in (*self._watches.values(), *self._ticking)}
        for opened in self._configs[:-1]:
            stack, contexts = opened
            if used.isdisjoint(id(context) for context in contexts.values()):
                self._configs.remove(opened)
                await stack.aclose()

    async def _notify(self, record: WatchRecord, kind: str) -> None:
        assert self.followup is not None
        await self.followup.notify(record, kind)
        job = self._scheduler.get_job("followup")
        if job is not None:  # send it now, not at the next round
            job.modify(next_run_time=datetime.now(UTC))

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
        for watch in self._watches.values():  # another replica may take them over at once
            try:
                await self.store.release_lease(_lease_name(watch.record.id), self.owner)
            except WatchdogError as exc:
                log.error("lease.release_failed", watch=watch.record.id, error=str(exc))
        for stack, _ in reversed(self._configs):
            await stack.aclose()
        await self._stack.aclose()
        log.info("daemon.stopped", open_watches=len(self._watches))

    async def reload(self, config: LoadedConfig) -> None:
        """Use ``config`` for watches started from now on and for discovery; running watches
        keep theirs, and its clients are closed when the last of them ends. A config the
        scheduler cannot use is refused whole, and the running one kept."""
        try:
            trigger = drill_trigger(config) if config.settings.drills is not None else None
        except ConfigError as exc:
            self.metrics.reloads.labels("failed").inc()
            log.error("config.reload_failed", error=str(exc), kept="the running config")
            return
        await self._open_contexts(config)
        self.config = config
        self._schedule_discovery()
        if self._scheduler.get_job("drill") is not None:
            self._scheduler.remove_job("drill")
        if trigger is not None:
            self._schedule_drill(trigger)
        self.metrics.reloads.labels("ok").inc()
        log.info("config.reloaded", targets=len(config.settings.targets))

    async def discover(self, target: str) -> None:
        """Watch a new production deployment of ``target`` when the provider shows one. The
        first look only notes what is live. Not new: a deployment older than the last one seen
        (Vercel's instant rollback goes back to one), or one serving a release this watchdog
        rolled back to (Render and Railway redeploy it as a new deployment)."""
        every = self.config.settings.watch.discover or self.config.settings.watch.interval
        if not await self._singleton("discover", every * 3):  # one replica discovers them all
            return
        async with selfmonitor.checkin(f"watchdog-discover-{target}", every):
            await self._discover(target)

    async def _discover(self, target: str) -> None:
        if target not in self._contexts:  # a reload took it out of the config
            return
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
        self._ticking.add(watch)  # its config's clients stay open while it reads
        interval = watch.record.interval.total_seconds()
        try:
            # Ticks are due every interval from the watch's start: how far past its slot this
            # one begins. Its lease is the one ``renew`` keeps; its writes are fenced by it.
            self.metrics.tick_lag.observe(
                (self._clock.now() - watch.record.started_at).total_seconds() % interval
            )
            decision = await watch.tick()
        except LeaseLost:
            self._lost(watch)
            return
        except WatchdogError as exc:  # a store or config failure: logged, retried next tick
            log.error("tick.failed", watch=watch_id, error=str(exc))
            return
        except Exception as exc:  # a bug: reported, logged redacted, the next tick retries
            selfmonitor.capture(exc)
            log.exception("tick.crashed", watch=watch_id)
            return
        finally:
            self._in_flight.discard(task)
            self._ticking.discard(watch)
        if decision is not None:
            self.metrics.decisions.labels(str(decision.verdict)).inc()
        if watch.closed:
            await self._finished(watch)

    def _unschedule(self, watch: Watch) -> None:
        self._watches.pop(watch.record.id, None)
        if self._scheduler.get_job(watch.record.id):
            self._scheduler.remove_job(watch.record.id)
        self.metrics.active_watches.set(len(self._watches))

    async def _finished(self, watch: Watch) -> None:
        self._unschedule(watch)
        await self._close_unused()
        await self.store.release_lease(_lease_name(watch.record.id), self.owner)
        for action in await self.store.actions(watch.record.id):
            if action.kind == "rollback":
                self.metrics.rollbacks.labels(action.provider, str(action.status)).inc()
                if action.seconds is not None:
                    self.metrics.rollback_seconds.observe(action.seconds)

    async def announce(self, deployment: Deployment) -> WatchRecord:
        """Watch ``deployment`` (once, however often it is announced). An open watch of an
        earlier deployment of the target is superseded (unless it is rolling back); the new
        one goes back to what the old one would have, since the old one was never proven
        good."""
        settings = self.config.settings
        if deployment.target not in self._contexts:
            raise ConfigError(
                f"target {deployment.target!r}: expected one of {', '.join(self._contexts)}"
            )
        older = [
            record
            for record in await self.store.open_watches(deployment.target)
            if record.deployment_id != deployment.id
            and record.state not in _BUSY
        ]
        for record in older:
            old = await self.store.deployment(record.target, record.deployment_id)
            if deployment.previous_id is None and old is not None:
                deployment = replace(deployment, previous_id=old.previous_id)
        watch = await Watch.start(
            self._contexts[deployment.target],
            deployment,
            window=settings.watch.window,
            interval=settings.watch.interval,
            dry_run=settings.dry_run,
        )
        # Only now that the new watch is stored: another replica's closes at its next claim.
        for record in older:
            if record.id in self._watches:
                await self._watches[record.id].supersede(deployment.id)
                await self._finished(self._watches[record.id])
        if not watch.closed and watch.record.id not in self._watches:
            # Announced through several replicas, it is watched by the one holding the lease.
            watch.lease = await self._lease(watch.record)
            if watch.lease is not None:
                self._schedule(watch)
        return watch.record

    async def hold(self, watch_id: str) -> WatchRecord:
        """No automatic action on the open watch (whichever replica ticks it) from now on."""
        record = await self.store.hold_watch(watch_id)
        if record is None:
            raise UnknownWatch(watch_id)
        if watch_id in self._watches:
            self._watches[watch_id].record = replace(self._watches[watch_id].record, held=True)
        return record

    async def ack(self, watch_id: str) -> WatchRecord:
        """People took the watch over: its escalation stops (the first ack's time is kept)."""
        record = await self.store.acknowledge_watch(watch_id, self._clock.now())
        if record is None:
            raise UnknownWatch(watch_id)
        if watch_id in self._watches:
            self._watches[watch_id].record = replace(
                self._watches[watch_id].record, acknowledged_at=record.acknowledged_at
            )
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
            watched = await self.store.open_watches(target)
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
