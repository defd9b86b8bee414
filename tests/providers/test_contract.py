"""One contract for every rollback provider, run through the action runner and a real store:
planning sends nothing; a rollback happens once and asking again sends nothing; every outside
failure ends in a recorded failed action with a reason; a crash is reconciled, not resent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.providers.helpers import T0, advancing_sleep
from watchdog.actions import ActionRunner
from watchdog.clock import ManualClock
from watchdog.providers.base import ProviderDeployment, RollbackProvider
from watchdog.providers.railway import RailwayRollback
from watchdog.providers.render import RenderRollback
from watchdog.providers.vercel import VercelRollback
from watchdog.sandbox import railway, render, vercel
from watchdog.sandbox.deployments import GOOD_RELEASE, DeploymentHistory, GoLive
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve
from watchdog.secrets import Secret
from watchdog.settings import RailwayProvider, RenderProvider, VercelProvider
from watchdog.store.records import ActionRecord, ActionStatus
from watchdog.store.sql import SqlStore
from watchdog.store.sqlite import sqlite_store

TOKEN = "contract-token-7d1e"
TIMEOUT = timedelta(minutes=5)


@dataclass
class Rig:
    provider: RollbackProvider
    history: DeploymentHistory
    faults: Faults
    mutation: str  # the stand-in's name for the rollback request
    with_token: Callable[[str], RollbackProvider]  # the same provider with another token


def _vercel(
    url: str, client: httpx.AsyncClient, clock: ManualClock, token: str = TOKEN
) -> RollbackProvider:
    config = VercelProvider(
        kind="vercel", api_url=url, project="prj_1", team_id="team_1", token=Secret(token)
    )
    return VercelRollback(config, client, clock, sleep=advancing_sleep(clock))


def _render(
    url: str, client: httpx.AsyncClient, clock: ManualClock, token: str = TOKEN
) -> RollbackProvider:
    config = RenderProvider(kind="render", api_url=url, service_id="srv-1", token=Secret(token))
    return RenderRollback(config, client, clock, sleep=advancing_sleep(clock))


def _railway(
    url: str, client: httpx.AsyncClient, clock: ManualClock, token: str = TOKEN
) -> RollbackProvider:
    config = RailwayProvider(
        kind="railway",
        api_url=url,
        project_id="prj-1",
        environment_id="env-1",
        service_id="svc-1",
        token=Secret(token),
    )
    return RailwayRollback(config, client, clock, sleep=advancing_sleep(clock))


KINDS: dict[str, tuple[Callable[..., object], Callable[..., RollbackProvider], str]] = {
    "vercel": (
        lambda h, c, f: vercel.create_app(
            h, token=TOKEN, team_id="team_1", project_id="prj_1", clock=c, faults=f
        ),
        _vercel,
        "rollback",
    ),
    "render": (
        lambda h, c, f: render.create_app(h, token=TOKEN, service_id="srv-1", clock=c, faults=f),
        _render,
        "rollback",
    ),
    "railway": (
        lambda h, c, f: railway.create_app(
            h,
            token="account-token",
            project_token=TOKEN,
            project_id="prj-1",
            environment_id="env-1",
            service_id="svc-1",
            clock=c,
            faults=f,
        ),
        _railway,
        "deploymentRollback",
    ),
}


@contextmanager
def _served(app: object, faults: Faults) -> Iterator[str]:
    with serve(app) as url:
        try:
            yield url
        finally:
            faults.clear()


@pytest.fixture(params=sorted(KINDS))
async def rig(
    request: pytest.FixtureRequest, history: DeploymentHistory, clock: ManualClock, faults: Faults
) -> AsyncIterator[Rig]:
    make_app, make_provider, mutation = KINDS[request.param]
    async with AsyncExitStack() as stack:
        url = stack.enter_context(_served(make_app(history, clock, faults), faults))
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=0.5))
        yield Rig(
            make_provider(url, client, clock),
            history,
            faults,
            mutation,
            lambda token: make_provider(url, client, clock, token),
        )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    made = sqlite_store(tmp_path / "state.db")
    await made.migrate()
    yield made
    await made.close()


async def test_planning_sends_nothing(rig: Rig, store: SqlStore, clock: ManualClock) -> None:
    plan = await ActionRunner(store, clock).plan(rig.provider, "app", "dep-2")
    assert plan.to is not None
    assert plan.to.id == "dep-1"
    assert rig.history.received() == []
    assert await store.unfinished_actions() == []


async def test_a_rollback_happens_once_and_asking_again_sends_nothing(
    rig: Rig, store: SqlStore, clock: ManualClock, served: list[str]
) -> None:
    runner = ActionRunner(store, clock)
    plan = await runner.plan(rig.provider, "app", "dep-2")
    done = await runner.rollback(
        rig.provider, plan, watch_id=None, reason="error rate 2 %", timeout=TIMEOUT
    )
    assert done.status is ActionStatus.DONE, done.error
    assert served[-1] == GOOD_RELEASE
    assert done.seconds is not None
    assert done.seconds < TIMEOUT.total_seconds()
    again = await runner.rollback(
        rig.provider, plan, watch_id=None, reason="again", timeout=TIMEOUT
    )
    assert again.id == done.id
    assert rig.history.count(rig.mutation) == 1


async def test_production_already_serving_the_good_deployment_sends_nothing(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    runner = ActionRunner(store, clock)
    plan = await runner.plan(rig.provider, "app", "dep-2")
    rig.history.switch_to("dep-1", rig.history.get("dep-1").cause)  # someone did it by hand
    clock.advance(timedelta(minutes=1))
    done = await runner.rollback(rig.provider, plan, watch_id=None, reason="r", timeout=TIMEOUT)
    assert done.status is ActionStatus.DONE
    assert done.notes == ("already serving dep-1: nothing sent",)
    assert rig.history.count(rig.mutation) == 0


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (lambda f, op: f.fail_next(1, 500, operation=op), "HTTP 500"),
        (lambda f, op: f.fail_next(1, 409, operation=op), "HTTP 409"),
        (lambda f, op: setattr(f, "go_live", GoLive.NEVER), "after 5m"),
        (lambda f, op: setattr(f, "go_live", GoLive.FAIL), ""),
    ],
)
async def test_each_outside_failure_is_a_recorded_failed_action(
    rig: Rig, store: SqlStore, clock: ManualClock, fault: Callable[[Faults, str], None], reason: str
) -> None:
    runner = ActionRunner(store, clock)
    plan = await runner.plan(rig.provider, "app", "dep-2")
    fault(rig.faults, rig.mutation)
    failed = await runner.rollback(rig.provider, plan, watch_id=None, reason="r", timeout=TIMEOUT)
    assert failed.status is ActionStatus.FAILED
    assert failed.error
    assert reason in failed.error
    assert TOKEN not in failed.error
    assert rig.history.count(rig.mutation) == 1  # never resent
    assert await store.unfinished_actions() == []


async def test_a_deployment_that_is_no_longer_live_is_not_rolled_back(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    plan = await ActionRunner(store, clock).plan(rig.provider, "app", "dep-0")
    assert plan.to is None
    assert plan.problem
    assert "not dep-0" in plan.problem


async def test_a_crash_after_sending_is_reconciled_by_asking(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    runner = ActionRunner(store, clock)
    plan = await runner.plan(rig.provider, "app", "dep-2")
    assert plan.to is not None
    # What a crash leaves: the action intended, the request sent, no result recorded.
    from watchdog.store.records import ActionRecord

    await store.begin_action(
        ActionRecord(
            id="crashed",
            key="rollback:app:dep-2",
            watch_id=None,
            target="app",
            deployment_id="dep-2",
            kind="rollback",
            provider=rig.provider.name,
            to=plan.to.id,
            to_release=plan.to.release,
            status=ActionStatus.INTENDED,
            started_at=clock.now(),
        )
    )
    await rig.provider.rollback(plan.to, "r")
    clock.advance(timedelta(minutes=2))
    (settled,) = await runner.reconcile({"app": rig.provider})
    assert settled.status is ActionStatus.DONE
    assert "reconciled" in settled.notes[0]
    assert rig.history.count(rig.mutation) == 1


async def test_a_crash_before_sending_is_failed_and_not_resent(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    runner = ActionRunner(store, clock)
    plan = await runner.plan(rig.provider, "app", "dep-2")
    assert plan.to is not None
    await store.begin_action(crashed(rig, plan.to, clock))
    (settled,) = await runner.reconcile({"app": rig.provider})
    assert settled.status is ActionStatus.FAILED
    assert settled.error
    assert "not resent: roll back by hand" in settled.error
    assert rig.history.count(rig.mutation) == 0


def crashed(rig: Rig, to: ProviderDeployment, clock: ManualClock) -> ActionRecord:
    return ActionRecord(
        id="crashed",
        key="rollback:app:dep-2",
        watch_id=None,
        target="app",
        deployment_id="dep-2",
        kind="rollback",
        provider=rig.provider.name,
        to=to.id,
        to_release=to.release,
        status=ActionStatus.INTENDED,
        started_at=clock.now(),
    )


async def test_after_a_rollback_the_bad_deployment_is_never_a_target_again(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    runner = ActionRunner(store, clock)
    plan = await runner.plan(rig.provider, "app", "dep-2")
    await runner.rollback(rig.provider, plan, watch_id=None, reason="r", timeout=TIMEOUT)
    live = await rig.provider.live()
    again = await runner.plan(rig.provider, "app", live.id)
    # Render and Railway redeploy the good commit as a new deployment; the one before it is
    # the bad one, and the one before that serves the same release: nothing to go back to.
    assert again.to is None
    assert again.problem == f"{rig.provider.name} has no earlier good deployment to go back to"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (lambda f, op: f.rate_limit(T0 + timedelta(hours=1), operation=op), "429"),
        (lambda f, op: f.stall_next(1, 5, operation=op), "may or may not have arrived"),
    ],
    ids=["429", "timeout"],
)
async def test_a_refused_or_unanswered_rollback_request_is_recorded_and_not_resent(
    rig: Rig,
    store: SqlStore,
    clock: ManualClock,
    fault: Callable[[Faults, str], None],
    reason: str,
) -> None:
    runner = ActionRunner(store, clock)
    plan = await runner.plan(rig.provider, "app", "dep-2")
    fault(rig.faults, rig.mutation)
    failed = await runner.rollback(rig.provider, plan, watch_id=None, reason="r", timeout=TIMEOUT)
    assert failed.status is ActionStatus.FAILED
    assert failed.error
    assert reason in failed.error
    assert rig.history.count(rig.mutation) == 1


async def test_a_provider_refusing_the_credentials_is_a_recorded_failed_action(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    provider = rig.with_token("revoked-token")
    runner = ActionRunner(store, clock)
    plan = await runner.plan(provider, "app", "dep-2")
    assert plan.to is None
    failed = await runner.rollback(provider, plan, watch_id=None, reason="r", timeout=TIMEOUT)
    assert failed.status is ActionStatus.FAILED
    assert failed.error
    assert "token" in failed.error.lower() or "authorized" in failed.error.lower()
    assert "revoked-token" not in failed.error
    assert rig.history.count(rig.mutation) == 0
