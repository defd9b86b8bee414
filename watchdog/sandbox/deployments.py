"""The deployments of one project or service, in a form every provider stand-in can serve.

Vercel, Render and Railway disagree on names and states but agree on the story: deployments of
commits, one of them live, and rollbacks or redeploys that are accepted at once and finish a few
seconds later. ``DeploymentHistory`` tells that story once. Time comes from the injected clock:
an accepted change becomes live ``delay`` after it was asked for, and every read settles what is
due, so tests move a ``ManualClock`` instead of sleeping. ``on_live`` hears each release that
goes live, which is how the demo's toy app starts serving the rolled-back code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from watchdog.clock import Clock

DEFAULT_DELAY = timedelta(seconds=3)
_TICK = timedelta(milliseconds=1)  # keeps creation times distinct, so `until` paging is exact
GOOD_RELEASE = "1f0e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
BAD_RELEASE = "badc0ffee0ddf00d5eed1e55deadbeef0badcafe"


class State(StrEnum):
    """Where a deployment is, in words every provider can translate."""

    BUILDING = "building"  # accepted, not live yet: its switch is pending
    LIVE = "live"  # serving production; at most one at a time
    INACTIVE = "inactive"  # built and not serving: replaced, or a preview
    FAILED = "failed"  # never made it live


class Cause(StrEnum):
    """Why a deployment was created, or why traffic was switched to it."""

    NEW_COMMIT = "new_commit"
    REDEPLOY = "redeploy"
    ROLLBACK = "rollback"
    PROMOTE = "promote"


class GoLive(StrEnum):
    """How an accepted change ends: the fault switch for deploys that never finish."""

    OK = "ok"
    FAIL = "fail"  # the build or switch fails when due; the old deployment stays live
    NEVER = "never"  # stays in progress for ever


class SwitchStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployment of ``release`` (the commit sha). Times are when things happened, which for
    settled changes is when they were due, not when someone looked."""

    id: str
    release: str
    created_at: datetime
    updated_at: datetime
    state: State
    cause: Cause = Cause.NEW_COMMIT
    production: bool = True
    finished_at: datetime | None = None  # its build ended (None while building)
    live_at: datetime | None = None  # it last went live (None if it never served)

    @property
    def built(self) -> bool:
        """Whether traffic can be switched to it (the rollback and promote candidates)."""
        return self.state in (State.LIVE, State.INACTIVE)


@dataclass(frozen=True, slots=True)
class Switch:
    """A request to make ``to_id`` live, accepted at ``requested_at``, due at ``due_at``."""

    cause: Cause
    from_id: str | None
    to_id: str
    requested_at: datetime
    due_at: datetime
    outcome: GoLive
    status: SwitchStatus = SwitchStatus.PENDING


@dataclass(frozen=True, slots=True)
class Finished:
    """A new deployment's build and switch ended: what Render calls a ``deploy_ended`` event."""

    id: str
    deployment_id: str
    succeeded: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class Received:
    """One mutating request a stand-in received, whatever it answered."""

    at: datetime
    operation: str
    subject: str | None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A signed webhook, ready to POST: the exact bytes that were signed, and the headers."""

    body: bytes
    headers: Mapping[str, str]


class DeploymentHistory:
    """The deployments of the service ``name``, newest last inside, thread-safe: the stand-in's
    server thread and the test's thread both read and settle it."""

    def __init__(
        self,
        name: str,
        clock: Clock,
        *,
        delay: timedelta = DEFAULT_DELAY,
        on_live: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.clock = clock
        self.delay = delay
        self._on_live = on_live
        self._lock = threading.RLock()
        self._deployments: dict[str, Deployment] = {}
        self._switches: list[Switch] = []
        self._finished: list[Finished] = []
        self._received: list[Received] = []

    def add(
        self, deployment_id: str, release: str, *, created_at: datetime, live: bool = False
    ) -> Deployment:
        """Seed an already built production deployment; ``live`` makes it the live one."""
        return self._add(deployment_id, release, created_at, live=live, production=True)

    def add_preview(self, deployment_id: str, release: str, *, created_at: datetime) -> Deployment:
        """Seed a built deployment that never serves production (a Vercel preview)."""
        return self._add(deployment_id, release, created_at, live=False, production=False)

    def deploy(
        self, release: str, *, cause: Cause = Cause.NEW_COMMIT, outcome: GoLive = GoLive.OK
    ) -> Deployment:
        """Start a new production deployment of ``release``; it goes live ``delay`` from now."""
        with self._lock:
            now = self.clock.now()
            newest = next(reversed(self._deployments.values()), None)
            created = now if newest is None else max(now, newest.created_at + _TICK)
            number = len(self._deployments) + 1
            while f"dep-{number}" in self._deployments:
                number += 1
            new = Deployment(f"dep-{number}", release, created, created, State.BUILDING, cause)
            self._deployments[new.id] = new
            self._request(new.id, cause, outcome, now)
            return new

    def switch_to(self, deployment_id: str, cause: Cause, *, outcome: GoLive = GoLive.OK) -> Switch:
        """Send production traffic to an existing built deployment, ``delay`` from now.

        :raises KeyError: no such deployment.
        :raises ValueError: it is not a built production deployment.
        """
        with self._lock:
            target = self._deployments[deployment_id]
            if not (target.built and target.production):
                raise ValueError(f"{deployment_id} is {target.state}, not a production build")
            return self._request(deployment_id, cause, outcome, self.clock.now())

    def record(self, operation: str, subject: str | None = None) -> None:
        """Note a mutating request as received, before anything decides how to answer it."""
        with self._lock:
            self._received.append(Received(self.clock.now(), operation, subject))

    def settle(self) -> None:
        """Carry out every switch that is due by the clock, in the order they fell due.

        ``on_live`` is called under the (reentrant) lock, so releases are heard in the order they
        went live even when two threads settle at once; it may read the history, not block."""
        with self._lock:
            now = self.clock.now()
            due = [
                s
                for s in self._switches
                if s.status is SwitchStatus.PENDING
                and s.outcome is not GoLive.NEVER
                and s.due_at <= now
            ]
            for switch in sorted(due, key=lambda s: s.due_at):
                release = self._complete(switch)
                if release is not None and self._on_live is not None:
                    self._on_live(release)

    def deployments(self) -> list[Deployment]:
        """Every deployment, newest first."""
        self.settle()
        with self._lock:
            return list(reversed(self._deployments.values()))

    def get(self, deployment_id: str) -> Deployment | None:
        self.settle()
        with self._lock:
            return self._deployments.get(deployment_id)

    def live(self) -> Deployment | None:
        return next((d for d in self.deployments() if d.state is State.LIVE), None)

    def switches(self) -> list[Switch]:
        """Every switch asked for, oldest first."""
        self.settle()
        with self._lock:
            return list(self._switches)

    def finished(self) -> list[Finished]:
        """Every new deployment that ended, oldest first."""
        self.settle()
        with self._lock:
            return list(self._finished)

    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def count(self, operation: str) -> int:
        """How many ``operation`` requests were received (answered or refused)."""
        return sum(r.operation == operation for r in self.received())

    def _add(
        self, deployment_id: str, release: str, created: datetime, *, live: bool, production: bool
    ) -> Deployment:
        with self._lock:
            newest = next(reversed(self._deployments.values()), None)
            if deployment_id in self._deployments:
                raise ValueError(f"{deployment_id} is already in the history")
            if newest is not None and created <= newest.created_at:
                raise ValueError("seed deployments oldest first, each created after the last")
            new = Deployment(
                deployment_id,
                release,
                created,
                created,
                State.INACTIVE,
                production=production,
                finished_at=created,
            )
            self._deployments[deployment_id] = new
            if live:
                self._go_live(new, created)
                if self._on_live is not None:
                    self._on_live(release)
            return self._deployments[deployment_id]

    def _request(self, to_id: str, cause: Cause, outcome: GoLive, now: datetime) -> Switch:
        current = next((d for d in self._deployments.values() if d.state is State.LIVE), None)
        switch = Switch(
            cause, current.id if current else None, to_id, now, now + self.delay, outcome
        )
        self._switches.append(switch)
        return switch

    def _complete(self, switch: Switch) -> str | None:
        """Finish ``switch`` as of its due time; return the release that went live, if any."""
        at = switch.due_at
        target = self._deployments[switch.to_id]
        succeeded = switch.outcome is GoLive.OK
        status = SwitchStatus.SUCCEEDED if succeeded else SwitchStatus.FAILED
        self._switches[self._switches.index(switch)] = replace(switch, status=status)
        if target.state is State.BUILDING:
            self._finished.append(
                Finished(f"evt-{len(self._finished) + 1}", target.id, succeeded, at)
            )
            target = replace(target, finished_at=at, updated_at=at)
            if not succeeded:
                self._deployments[target.id] = replace(target, state=State.FAILED)
        if not succeeded:
            return None
        self._go_live(target, at)
        return target.release

    def _go_live(self, target: Deployment, at: datetime) -> None:
        for other in list(self._deployments.values()):
            if other.state is State.LIVE and other.id != target.id:
                self._deployments[other.id] = replace(other, state=State.INACTIVE, updated_at=at)
        self._deployments[target.id] = replace(target, state=State.LIVE, live_at=at, updated_at=at)


def good_then_bad(
    name: str,
    clock: Clock,
    *,
    delay: timedelta = DEFAULT_DELAY,
    on_live: Callable[[str], None] | None = None,
) -> DeploymentHistory:
    """The moment a watch starts: ``dep-1`` (``GOOD_RELEASE``) served for a day until ``dep-2``
    (``BAD_RELEASE``) replaced it five minutes ago and is live now. ``on_live`` hears both
    releases in that order, so a toy app ends up serving the bad one."""
    history = DeploymentHistory(name, clock, delay=delay, on_live=on_live)
    now = clock.now()
    history.add("dep-1", GOOD_RELEASE, created_at=now - timedelta(days=1), live=True)
    history.add("dep-2", BAD_RELEASE, created_at=now - timedelta(minutes=5), live=True)
    return history
