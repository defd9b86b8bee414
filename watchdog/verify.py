"""The runbook's rollback verification checklist, run after every rollback and by
``watchdog verify``: health endpoints, database connectivity, critical flows, integrity row
counts against the pre-deploy baseline, and the error rate falling below 0.1 % within 5
minutes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from watchdog.clock import Clock
from watchdog.errors import ConfigError, SignalError
from watchdog.httpclient import new_client
from watchdog.model import Deployment
from watchdog.rules.explain import fmt_number
from watchdog.settings import Settings, Target
from watchdog.signals import database
from watchdog.signals.flows import FlowSignal
from watchdog.signals.health import HealthSignal
from watchdog.signals.sentry import SentrySignal

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class Verification:
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


async def verify(
    settings: Settings,
    deployment: Deployment,
    clock: Clock,
    baseline: Mapping[str, int] | None = None,
    sleep: Sleep = asyncio.sleep,
) -> Verification:
    """Check ``deployment`` (the one now serving, e.g. the rolled-back-to release) on its
    target; ``baseline`` holds the integrity row counts taken before the bad deploy (without
    one, as after a rollback by hand, row counts are not compared)."""
    target = settings.targets[deployment.target]
    timeout = settings.watch.probe_timeout
    checks: list[Check] = []
    now = clock.now()
    async with new_client(timeout=timeout.total_seconds()) as client:
        if target.health:
            probe = await HealthSignal(target.health, client).read(deployment, now)
            reasons = {e.metric: e.message for e in probe.errors}
            checks += [
                Check(
                    f"health {r.labels['check']}",
                    r.value == 1,
                    reasons.get(r.describe(), "" if r.value == 1 else "unhealthy"),
                )
                for r in probe.readings
            ]
        critical = [flow for flow in target.flows if flow.critical]
        if critical:
            probe = await FlowSignal(critical, client).read(deployment, now)
            failures = [e.message for e in probe.errors]
            checks += [
                Check(
                    f"flow {r.labels['flow']}",
                    r.value == 1,
                    "" if r.value == 1 else "; ".join(failures),
                )
                for r in probe.readings
            ]
            checks += [Check("flows", False, e.message) for e in probe.errors if not probe.readings]
    if target.database is not None:
        checks += await _database(target, baseline, timeout)
    if target.sentry is not None and settings.sentry is not None:
        checks.append(await _error_rate(settings, deployment, clock, sleep))
    return Verification(tuple(checks))


async def _database(
    target: Target, baseline: Mapping[str, int] | None, timeout: timedelta
) -> list[Check]:
    assert target.database is not None
    try:
        dsn = target.database.dsn.reveal()
    except ConfigError as exc:
        return [Check("database connectivity", False, str(exc))]
    link = await database.connected(dsn, timeout)
    checks = [Check("database connectivity", link.ok, link.error or "")]
    if not link.ok or target.integrity is None or baseline is None:
        return checks  # integrity compares with the counts taken before the deploy, if any
    try:
        counts = await database.row_counts(dsn, target.integrity.tables, timeout)
    except SignalError as exc:
        return [*checks, Check("integrity", False, str(exc))]
    problems = database.integrity_problems(baseline, counts, target.integrity.tolerance)
    return [*checks, Check("integrity", not problems, "; ".join(problems))]


async def _error_rate(
    settings: Settings, deployment: Deployment, clock: Clock, sleep: Sleep
) -> Check:
    """Poll until the error rate is below the threshold, or the time is up."""
    assert settings.sentry is not None
    target = settings.targets[deployment.target]
    assert target.sentry is not None
    limit, within = settings.verify.error_rate_below, settings.verify.within
    started = clock.now()
    seen = "no error-rate reading"
    async with new_client(timeout=settings.watch.probe_timeout.total_seconds()) as client:
        sentry = SentrySignal(settings.sentry, target.sentry, client, clock)
        while True:
            at: datetime = clock.now()
            probe = await sentry.read(deployment, at)
            rates = [r for r in probe.readings if r.metric == "error_rate"]
            if rates:
                rate = rates[0]
                seen = f"error rate {fmt_number('error_rate', rate.value)} over {rate.samples:,}"
                if rate.value < limit:
                    return Check("error rate", True, f"{seen} < {fmt_number('error_rate', limit)}")
            elif probe.errors:
                seen = probe.errors[0].message
            if at - started >= within:
                return Check(
                    "error rate",
                    False,
                    f"{seen}, not below {fmt_number('error_rate', limit)} within "
                    f"{within.total_seconds() / 60:g} minutes",
                )
            await sleep(settings.watch.interval.total_seconds())
