"""The provider-neutral history behind the Vercel, Render and Railway stand-ins, and the fault
switch behind every stand-in: state changes happen when the manual clock says so, never on the
wall clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from watchdog.clock import ManualClock
from watchdog.sandbox.deployments import (
    BAD_RELEASE,
    GOOD_RELEASE,
    Cause,
    DeploymentHistory,
    GoLive,
    State,
    SwitchStatus,
)
from watchdog.sandbox.faults import Faults, Garbled, Refused, bearer, rate_limit_headers

from .conftest import T0

DELAY = timedelta(seconds=30)


@pytest.fixture
def delay() -> timedelta:
    return DELAY


def states(history: DeploymentHistory) -> dict[str, State]:
    return {d.id: d.state for d in history.deployments()}


def test_good_then_bad_seeds_the_moment_a_watch_starts(
    history: DeploymentHistory, served: list[str]
) -> None:
    assert [d.id for d in history.deployments()] == ["dep-2", "dep-1"]
    assert states(history) == {"dep-2": State.LIVE, "dep-1": State.INACTIVE}
    live = history.live()
    assert live is not None
    assert live.release == BAD_RELEASE
    assert live.created_at == T0 - timedelta(minutes=5)
    assert served == [GOOD_RELEASE, BAD_RELEASE]


def test_switch_is_accepted_at_once_and_live_after_the_delay(
    history: DeploymentHistory, clock: ManualClock, served: list[str]
) -> None:
    switch = history.switch_to("dep-1", Cause.ROLLBACK)
    assert (switch.from_id, switch.to_id, switch.due_at) == ("dep-2", "dep-1", T0 + DELAY)
    clock.advance(DELAY - timedelta(seconds=1))
    assert states(history) == {"dep-2": State.LIVE, "dep-1": State.INACTIVE}
    assert history.switches()[-1].status is SwitchStatus.PENDING
    clock.advance(timedelta(seconds=1))
    assert states(history) == {"dep-2": State.INACTIVE, "dep-1": State.LIVE}
    assert history.switches()[-1].status is SwitchStatus.SUCCEEDED
    assert served[-1] == GOOD_RELEASE
    live = history.live()
    assert live is not None
    assert live.live_at == T0 + DELAY  # when it was due, not when someone looked


def test_on_live_fires_once_however_often_the_history_is_read(
    history: DeploymentHistory, clock: ManualClock, served: list[str]
) -> None:
    history.switch_to("dep-1", Cause.ROLLBACK)
    clock.advance(DELAY * 3)
    for _ in range(3):
        history.settle()
        history.deployments()
    assert served == [GOOD_RELEASE, BAD_RELEASE, GOOD_RELEASE]


def test_deploy_builds_a_new_deployment_that_replaces_the_live_one(
    history: DeploymentHistory, clock: ManualClock
) -> None:
    new = history.deploy(GOOD_RELEASE, cause=Cause.ROLLBACK)
    assert (new.id, new.state, new.cause, new.finished_at) == (
        "dep-3",
        State.BUILDING,
        Cause.ROLLBACK,
        None,
    )
    clock.advance(DELAY)
    assert states(history) == {
        "dep-3": State.LIVE,
        "dep-2": State.INACTIVE,
        "dep-1": State.INACTIVE,
    }
    [finished] = history.finished()
    assert (finished.id, finished.deployment_id, finished.succeeded) == ("evt-1", "dep-3", True)


def test_deployments_made_in_the_same_instant_keep_distinct_creation_times(
    history: DeploymentHistory,
) -> None:
    first = history.deploy(GOOD_RELEASE)
    second = history.deploy(GOOD_RELEASE)
    assert second.created_at > first.created_at


def test_a_change_that_fails_leaves_the_old_deployment_live(
    history: DeploymentHistory, clock: ManualClock, served: list[str]
) -> None:
    history.deploy(GOOD_RELEASE, outcome=GoLive.FAIL)
    history.switch_to("dep-1", Cause.PROMOTE, outcome=GoLive.FAIL)
    clock.advance(DELAY)
    assert states(history) == {"dep-3": State.FAILED, "dep-2": State.LIVE, "dep-1": State.INACTIVE}
    assert [s.status for s in history.switches()] == [SwitchStatus.FAILED] * 2
    assert [f.succeeded for f in history.finished()] == [False]
    assert served == [GOOD_RELEASE, BAD_RELEASE]


def test_a_change_that_never_goes_live_stays_in_progress(
    history: DeploymentHistory, clock: ManualClock
) -> None:
    history.deploy(GOOD_RELEASE, outcome=GoLive.NEVER)
    clock.advance(timedelta(days=1))
    assert states(history)["dep-3"] is State.BUILDING
    assert history.switches()[-1].status is SwitchStatus.PENDING


def test_only_built_production_deployments_take_traffic(clock: ManualClock) -> None:
    history = DeploymentHistory("acme-web", clock)
    history.add("dep-1", GOOD_RELEASE, created_at=T0 - timedelta(hours=2), live=True)
    history.add_preview("dep-2", BAD_RELEASE, created_at=T0 - timedelta(hours=1))
    building = history.deploy(BAD_RELEASE)
    with pytest.raises(ValueError, match="not a production build"):
        history.switch_to("dep-2", Cause.PROMOTE)
    with pytest.raises(ValueError, match="not a production build"):
        history.switch_to(building.id, Cause.PROMOTE)
    with pytest.raises(KeyError):
        history.switch_to("dep-9", Cause.PROMOTE)


def test_seeding_is_oldest_first(clock: ManualClock) -> None:
    history = DeploymentHistory("acme-api", clock)
    history.add("dep-1", GOOD_RELEASE, created_at=T0)
    with pytest.raises(ValueError, match="oldest first"):
        history.add("dep-0", GOOD_RELEASE, created_at=T0)
    with pytest.raises(ValueError, match="already"):
        history.add("dep-1", GOOD_RELEASE, created_at=T0 + DELAY)


def test_received_requests_are_counted_per_operation(history: DeploymentHistory) -> None:
    history.record("rollback", "dep-1")
    history.record("rollback", "dep-1")
    history.record("update_service")
    assert history.count("rollback") == 2
    first = history.received()[0]
    assert (first.operation, first.subject, first.at) == ("rollback", "dep-1", T0)


async def test_faults_answer_the_first_matching_armed_fault() -> None:
    faults = Faults()
    faults.fail_next(1, 500, operation="rollback")
    faults.fail_next(1, 409)
    with pytest.raises(Refused) as listed:
        await faults.admit("list", T0)  # the rollback fault does not match it; the 409 does
    with pytest.raises(Refused) as rolled_back:
        await faults.admit("rollback", T0)
    assert (listed.value.status, listed.value.code) == (409, "conflict")
    assert (rolled_back.value.status, rolled_back.value.code) == (500, "internal_server_error")
    await faults.admit("rollback", T0)


async def test_any_operation_fault_is_consumed_by_the_first_request() -> None:
    faults = Faults()
    faults.fail_next(2, 401)
    for _ in range(2):
        with pytest.raises(Refused) as refused:
            await faults.admit("list", T0)
        assert refused.value.code == "unauthorized"
    await faults.admit("list", T0)


async def test_rate_limit_lasts_until_the_clock_passes_it() -> None:
    faults = Faults()
    faults.rate_limit(T0 + timedelta(seconds=90), operation="rollback")
    await faults.admit("list", T0)
    with pytest.raises(Refused) as refused:
        await faults.admit("rollback", T0 + timedelta(seconds=29.5))
    throttle = refused.value.throttle
    assert refused.value.status == 429
    assert throttle is not None
    assert throttle.retry_after == 61
    assert rate_limit_headers("X-RateLimit", throttle) == {
        "X-RateLimit-Limit": str(throttle.limit),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(int((T0 + timedelta(seconds=90)).timestamp())),
        "Retry-After": "61",
    }
    await faults.admit("rollback", T0 + timedelta(seconds=90))


async def test_clear_disarms_and_resets_go_live() -> None:
    faults = Faults()
    faults.fail_next(5)
    faults.go_live = GoLive.NEVER
    faults.clear()
    await faults.admit("rollback", T0)
    assert faults.go_live is GoLive.OK


async def test_a_stall_holds_the_request_then_lets_it_through() -> None:
    faults = Faults()
    faults.stall_next(1, seconds=0)
    await faults.admit("rollback", T0)  # zero seconds: held, then let through


async def test_a_garbled_answer_is_left_to_the_stand_in_once_per_armed_request() -> None:
    faults = Faults()
    faults.garble_next(1, operation="issues")
    await faults.admit("events", T0)
    with pytest.raises(Garbled):
        await faults.admit("issues", T0)
    await faults.admit("issues", T0)


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("Bearer ", None),
        ("Basic abc", None),
        (None, None),
    ],
)
def test_bearer(header: str | None, token: str | None) -> None:
    assert bearer(header) == token
