"""Sentry failing in every way it can while the daemon watches: down, slow, rate limited for
minutes, answering garbage. On a good deploy the watch ends blind (inconclusive) and never rolls
back; every tick stores why Sentry gave no reading. On a bad deploy the signals it can still
see are enough to roll back, once."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI

from tests.daemons import MakeDaemon, read_store, wait_for
from tests.providers.helpers import refused_url
from watchdog.clock import SystemClock
from watchdog.sandbox import sentry, stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve
from watchdog.signals.base import Failure

WINDOW = "15s"
STALL = 2.0  # seconds a slow Sentry holds each request: beyond the 1 s interval's probe timeout


@dataclass
class SentryStandIn:
    """A Sentry stand-in over the sandbox's events whose fault switch the test holds (the
    stack's own has none exposed), and room for more servers the test starts."""

    url: str
    faults: Faults
    servers: ExitStack


@pytest.fixture
def sentry_standin(sandbox: stack.Stack) -> Iterator[SentryStandIn]:
    faults = Faults()
    app = sentry.create_app(
        sandbox.log,
        token=stack.ENV["SANDBOX_SENTRY_TOKEN"],
        clock=SystemClock(),
        organization="acme",
        projects=[stack.PROJECT],
        faults=faults,
    )
    with ExitStack() as servers, serve(app) as url:
        try:
            yield SentryStandIn(url, faults, servers)
        finally:
            faults.clear()  # let stalled requests go, so the server stops at once


def down(standin: SentryStandIn) -> str:
    return refused_url()


def slow(standin: SentryStandIn) -> str:
    standin.faults.stall_next(100_000, STALL)
    return standin.url


def rate_limited(standin: SentryStandIn) -> str:
    # Sentry's own 429: a JSON detail and rate-limit headers, no Retry-After.
    standin.faults.rate_limit(datetime.now(UTC) + timedelta(minutes=10))
    return standin.url


def garbled(standin: SentryStandIn) -> str:
    standin.faults.garble_next(100_000)  # 200 with JSON cut off mid-row
    return standin.url


def wrong_shape(standin: SentryStandIn) -> str:
    """200 with valid JSON that is not Discover's table: ``data`` an object, not rows."""
    app = FastAPI()

    @app.get("/api/0/organizations/{org}/events/")
    async def events(org: str) -> dict[str, Any]:
        return {"data": {"count()": 12}, "meta": {}}

    return standin.servers.enter_context(serve(app))


@pytest.mark.parametrize(
    ("fault", "failure"),
    [
        (down, Failure.UNREACHABLE),
        (slow, Failure.TIMEOUT),
        (rate_limited, Failure.RATE_LIMITED),
        (garbled, Failure.MALFORMED),
        (wrong_shape, Failure.MALFORMED),
    ],
    ids=["down", "slow", "rate_limited", "garbled", "wrong_shape"],
)
def test_a_failing_sentry_on_a_good_deploy_ends_blind_with_every_tick_accounted_for(
    fault: Callable[[SentryStandIn], str],
    failure: Failure,
    sandbox: stack.Stack,
    sentry_standin: SentryStandIn,
    make_daemon: MakeDaemon,
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # the deploy is good
    daemon = make_daemon(sentry_url=fault(sentry_standin), window=WINDOW).start()
    watch_id = daemon.announce()

    summary = daemon.closed(watch_id)

    assert summary["verdict"] == "inconclusive", summary
    assert summary["actions"] == []
    assert sandbox.backend.count("rollback") == 0
    stored = read_store(daemon.state_url, watch_id)
    assert stored.rollbacks == []
    assert len(stored.ticks) >= 3
    assert stored.unaccounted("error_rate", "sentry") == []  # no reading lost without a trace
    assert stored.unaccounted("health", "health") == []  # the other signals read every tick
    assert not any(r.metric == "error_rate" for r in stored.readings)  # nothing made up
    why = {e.failure for e in stored.errors_of("sentry") if e.metric in ("error_rate", None)}
    # On a loaded machine a tick may also time out (the probe timeout is 2/3 of the interval).
    assert failure in why
    assert why <= {failure, Failure.TIMEOUT}, why
    failing = daemon.events("signal.failing", source="sentry", deployment="dep-2")
    assert len(failing) == 1  # once, when it started, not every tick
    assert failing[0]["failure"] in (str(failure), "timeout")
    assert daemon.metric("watchdog_probe_errors_total", source="sentry", failure=str(failure))
    blind = wait_for(
        lambda: [t for t in sandbox.channel.texts() if "cannot judge" in t], 20, "word to Slack"
    )
    assert "sentry" in blind[0]


def test_a_bad_deploy_with_sentry_down_is_rolled_back_once_on_the_failing_flow_and_health(
    sandbox: stack.Stack, make_daemon: MakeDaemon
) -> None:
    """Blind on the error rate, the daemon still sees the login flow and the health check
    fail. rules.yaml: a critical flow at 0 for 2 readings is an immediate rollback (first of
    the rollback rules that fire, before health-check-failing), and missing data never stops
    a rule that has its readings."""
    sandbox.app.set_faults(
        toyapp.Faults(error_fraction=0.05, login_broken=True, database_broken=True), BAD_RELEASE
    )
    # Verification waits for an error rate it cannot read: give up on it after 5 s.
    daemon = make_daemon(sentry_url=refused_url(), verify="{within: 5s}").start()
    watch_id = daemon.announce()

    summary = daemon.closed(watch_id)

    assert (summary["verdict"], summary["rule"]) == ("rolled_back", "critical-flow-broken")
    assert [a["status"] for a in summary["actions"]] == ["done"]
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE
    checks = {c["name"]: c["passed"] for c in summary["verification"]["checks"]}
    assert checks == {
        "health api": True,
        "health database": True,
        "flow auth": True,
        "error rate": False,  # it cannot see Sentry, and says so instead of passing it
    }
    stored = read_store(daemon.state_url, watch_id)
    assert [a.status for a in stored.rollbacks] == ["done"]
    assert stored.unaccounted("error_rate", "sentry") == []
    why = {e.failure for e in stored.errors_of("sentry") if e.metric in ("error_rate", None)}
    assert Failure.UNREACHABLE in why
    assert why <= {Failure.UNREACHABLE, Failure.TIMEOUT}, why
    assert len(daemon.events("rollback.executed")) == 1
    assert daemon.events("signal.failing", source="sentry", failure="unreachable")


def test_a_sentry_outage_mid_window_is_logged_when_it_starts_and_ends_and_the_watch_goes_on(
    sandbox: stack.Stack, sentry_standin: SentryStandIn, make_daemon: MakeDaemon
) -> None:
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # the deploy is good
    daemon = make_daemon(sentry_url=sentry_standin.url, window=WINDOW).start()
    watch_id = daemon.announce()
    wait_for(
        lambda: any(
            r.metric == "error_rate" for r in read_store(daemon.state_url, watch_id).readings
        ),
        15,
        "an error-rate reading",
    )

    sentry_standin.faults.fail_next(100_000, 500)
    wait_for(
        lambda: len(read_store(daemon.state_url, watch_id).errors_of("sentry")) >= 6,
        15,
        "Sentry's 500s stored",
    )
    sentry_standin.faults.clear()

    summary = daemon.closed(watch_id)
    assert summary["verdict"] == "healthy", summary
    assert sandbox.backend.count("rollback") == 0
    stored = read_store(daemon.state_url, watch_id)
    assert stored.unaccounted() == []
    assert Failure.STATUS in {e.failure for e in stored.errors_of("sentry")}
    assert daemon.events("signal.failing", source="sentry", failure="status")
    assert daemon.events("signal.recovered", source="sentry")
