"""One contract for every rollback provider, run through the action runner and a real store:
planning sends nothing; a rollback happens once and asking again sends nothing; every outside
failure ends in a recorded failed action with a reason; a crash is reconciled, not resent."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.providers.helpers import T0, advancing_sleep, served
from watchdog.actions import ActionRunner
from watchdog.clock import ManualClock
from watchdog.providers.base import ProviderDeployment, RollbackProvider
from watchdog.providers.git import GitRevert
from watchdog.providers.migrations import SqlMigrationRollback
from watchdog.providers.railway import RailwayRollback
from watchdog.providers.render import RenderRollback
from watchdog.providers.vercel import VercelRollback
from watchdog.sandbox import railway, render, vercel
from watchdog.sandbox.deployments import Cause, DeploymentHistory, GoLive
from watchdog.sandbox.faults import Faults
from watchdog.secrets import Secret
from watchdog.settings import (
    GitProvider,
    RailwayProvider,
    RenderProvider,
    SqlMigrationsProvider,
    VercelProvider,
)
from watchdog.store.records import ActionRecord, ActionStatus
from watchdog.store.sql import SqlStore
from watchdog.store.sqlite import sqlite_store

TOKEN = "contract-token-7d1e"
SQL = Path(__file__).parent / "sql"
TIMEOUT = timedelta(minutes=5)


@dataclass
class Rig:
    """One provider with what the contract needs to observe it."""

    provider: RollbackProvider
    bad: str  # the deployment live now
    good: str  # the one it goes back to
    sent: Callable[[], int]  # rollbacks that reached the provider
    by_hand: Callable[[], None]  # someone rolls back outside the watchdog


@dataclass
class HttpRig(Rig):
    """An HTTP provider against its stand-in, where faults can be injected."""

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


@asynccontextmanager
async def serving(
    kind: str, history: DeploymentHistory, clock: ManualClock, faults: Faults
) -> AsyncIterator[HttpRig]:
    make_app, make_provider, mutation = KINDS[kind]
    async with AsyncExitStack() as stack:
        url = stack.enter_context(served(make_app(history, clock, faults), faults))
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=0.5))
        yield HttpRig(
            make_provider(url, client, clock),
            "dep-2",
            "dep-1",
            lambda: history.count(mutation),
            lambda: history.switch_to("dep-1", Cause.ROLLBACK),
            history,
            faults,
            mutation,
            lambda token: make_provider(url, client, clock, token),
        )


@pytest.fixture(params=sorted(KINDS))
async def http_rig(
    request: pytest.FixtureRequest, history: DeploymentHistory, clock: ManualClock, faults: Faults
) -> AsyncIterator[HttpRig]:
    async with serving(request.param, history, clock, faults) as made:
        yield made


@pytest.fixture(params=[*sorted(KINDS), "git", "sql-migrations"])
async def rig(request: pytest.FixtureRequest, clock: ManualClock) -> AsyncIterator[Rig]:
    """Every provider: the HTTP ones against their stand-ins, git against a real bare
    repository, SQL migrations against the real Postgres."""
    if request.param == "git":
        yield git_rig(
            request.getfixturevalue("tmp_path"), clock, request.getfixturevalue("monkeypatch")
        )
    elif request.param == "sql-migrations":
        yield sql_rig(request.getfixturevalue("pg_dsn"), request.getfixturevalue("tmp_path"), clock)
    else:
        history, faults = request.getfixturevalue("history"), request.getfixturevalue("faults")
        async with serving(request.param, history, clock, faults) as made:
            yield made


def git_rig(tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Rig:
    for name in [n for n in os.environ if n.startswith("GIT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    remote, dev = tmp_path / "remote.git", tmp_path / "dev"

    def git(*args: str, cwd: Path = dev) -> str:
        who = ("-c", "user.name=Dev", "-c", "user.email=dev@example.com")
        return subprocess.run(
            ["git", *who, *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    git("init", "--quiet", "--bare", "--initial-branch=main", str(remote), cwd=tmp_path)
    git("clone", "--quiet", str(remote), str(dev), cwd=tmp_path)
    git("symbolic-ref", "HEAD", "refs/heads/main")
    shas = []
    for message, text in (("good", "v1\n"), ("bad", "v2 broken\n")):
        (dev / "app.txt").write_text(text)
        git("add", "-A")
        git("commit", "--quiet", "-m", message)
        shas.append(git("rev-parse", "HEAD"))
    git("push", "--quiet", "origin", "HEAD:main")
    config = GitProvider(kind="git", repository=str(remote), workdir=tmp_path / "work")

    def by_hand() -> None:
        git("revert", "--no-edit", "HEAD")
        git("push", "--quiet", "origin", "HEAD:main")

    def pushed() -> int:
        return int(git("rev-list", "--count", "--author=rollback-watchdog", "main", cwd=remote))

    return Rig(GitRevert(config, clock), shas[1], shas[0], pushed, by_hand)


def sql_rig(dsn: str, tmp_path: Path, clock: ManualClock) -> Rig:
    down = tmp_path / "rollback"
    down.mkdir()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE schema_migrations (version text PRIMARY KEY, name text);"
            "CREATE TABLE rolled_back (at timestamptz DEFAULT now());"
            "INSERT INTO schema_migrations VALUES ('20260120', 'index'), "
            "('20260128', 'create_feature_flags')"
        )
        conn.execute((SQL / "app_tables.sql").read_text())
        conn.execute((SQL / "20260128_create_feature_flags.sql").read_text())
    (down / "20260128.sql").write_text(
        (SQL / "rollback_migration.sql").read_text() + "\nINSERT INTO rolled_back DEFAULT VALUES;"
    )

    def count() -> int:
        with psycopg.connect(dsn) as conn:
            row = conn.execute("SELECT count(*) FROM rolled_back").fetchone()
        assert row is not None
        return int(row[0])

    def by_hand() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute((SQL / "rollback_migration.sql").read_text())
            conn.execute("DELETE FROM schema_migrations WHERE version = '20260128'")

    config = SqlMigrationsProvider(kind="sql-migrations", dsn=Secret(dsn), rollback_dir=down)
    return Rig(SqlMigrationRollback(config, clock), "20260128", "20260120", count, by_hand)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    made = sqlite_store(tmp_path / "state.db")
    await made.migrate()
    yield made
    await made.close()


async def test_planning_sends_nothing(rig: Rig, store: SqlStore, clock: ManualClock) -> None:
    plan = await ActionRunner(store, clock).plan(rig.provider, "app", rig.bad)
    assert plan.to is not None
    assert plan.to.id == rig.good
    assert rig.sent() == 0
    assert await store.unfinished_actions() == []


async def test_a_rollback_happens_once_and_asking_again_sends_nothing(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    runner = ActionRunner(store, clock, advancing_sleep(clock))
    plan = await runner.plan(rig.provider, "app", rig.bad)
    done = await runner.rollback(
        rig.provider, plan, watch_id=None, reason="error rate 2 %", timeout=TIMEOUT
    )
    assert done.status is ActionStatus.DONE, done.error
    assert plan.to is not None
    assert await rig.provider.is_serving(plan.to)
    assert done.seconds is not None
    assert done.seconds < TIMEOUT.total_seconds()
    again = await runner.rollback(
        rig.provider, plan, watch_id=None, reason="again", timeout=TIMEOUT
    )
    assert again.id == done.id
    assert rig.sent() == 1


async def test_production_already_serving_the_good_deployment_sends_nothing(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    runner = ActionRunner(store, clock, advancing_sleep(clock))
    plan = await runner.plan(rig.provider, "app", rig.bad)
    rig.by_hand()
    clock.advance(timedelta(minutes=1))
    done = await runner.rollback(rig.provider, plan, watch_id=None, reason="r", timeout=TIMEOUT)
    assert done.status is ActionStatus.DONE
    assert done.notes == (f"already serving {rig.good}: nothing sent",)
    assert rig.sent() == 0


async def test_a_deployment_that_is_no_longer_live_is_not_rolled_back(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    plan = await ActionRunner(store, clock).plan(rig.provider, "app", "gone-0")
    assert plan.to is None
    assert plan.problem
    assert "not gone-0" in plan.problem


async def test_a_crash_after_sending_is_reconciled_by_asking(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    runner = ActionRunner(store, clock, advancing_sleep(clock))
    plan = await runner.plan(rig.provider, "app", rig.bad)
    assert plan.to is not None
    # What a crash leaves: the action intended, the request sent, no result recorded.
    await store.begin_action(crashed(rig, plan.to, clock))
    await rig.provider.rollback(plan.to, "r")
    clock.advance(timedelta(minutes=2))
    (settled,) = await runner.reconcile({"app": rig.provider})
    assert settled.status is ActionStatus.DONE
    assert "reconciled" in settled.notes[0]
    assert rig.sent() == 1


async def test_a_crash_before_sending_is_failed_and_not_resent(
    rig: Rig, store: SqlStore, clock: ManualClock
) -> None:
    runner = ActionRunner(store, clock, advancing_sleep(clock))
    plan = await runner.plan(rig.provider, "app", rig.bad)
    assert plan.to is not None
    await store.begin_action(crashed(rig, plan.to, clock))
    (settled,) = await runner.reconcile({"app": rig.provider})
    assert settled.status is ActionStatus.FAILED
    assert settled.error
    assert "not resent: roll back by hand" in settled.error
    assert rig.sent() == 0


def crashed(rig: Rig, to: ProviderDeployment, clock: ManualClock) -> ActionRecord:
    return ActionRecord(
        id="crashed",
        key=f"rollback:app:{rig.bad}",
        watch_id=None,
        target="app",
        deployment_id=rig.bad,
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
    runner = ActionRunner(store, clock, advancing_sleep(clock))
    plan = await runner.plan(rig.provider, "app", rig.bad)
    await runner.rollback(rig.provider, plan, watch_id=None, reason="r", timeout=TIMEOUT)
    again = await runner.plan(rig.provider, "app", None)
    # Render and Railway redeploy the good commit as a new deployment, so the one before the
    # live one is the bad one; git's revert commit has the bad commit as its parent.
    assert again.to is None or again.to.id != rig.bad
    if again.to is not None:  # git: the good commit's tree is served already
        done = await runner.rollback(
            rig.provider, again, watch_id=None, reason="r", timeout=TIMEOUT
        )
        assert done.notes == (f"already serving {again.to.id}: nothing sent",)
    assert rig.sent() == 1


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        (lambda f, op: f.fail_next(1, 500, operation=op), "HTTP 500"),
        (lambda f, op: f.fail_next(1, 409, operation=op), "HTTP 409"),
        (lambda f, op: f.rate_limit(T0 + timedelta(hours=1), operation=op), "429"),
        (lambda f, op: f.stall_next(1, 5, operation=op), "may or may not have arrived"),
        (lambda f, op: setattr(f, "go_live", GoLive.NEVER), "after 5m"),
        (lambda f, op: setattr(f, "go_live", GoLive.FAIL), ""),
    ],
    ids=["500", "409", "429", "timeout", "never-live", "failed-live"],
)
async def test_each_outside_failure_is_a_recorded_failed_action_never_resent(
    http_rig: HttpRig,
    store: SqlStore,
    clock: ManualClock,
    fault: Callable[[Faults, str], None],
    reason: str,
) -> None:
    runner = ActionRunner(store, clock, advancing_sleep(clock))
    plan = await runner.plan(http_rig.provider, "app", http_rig.bad)
    fault(http_rig.faults, http_rig.mutation)
    failed = await runner.rollback(
        http_rig.provider, plan, watch_id=None, reason="r", timeout=TIMEOUT
    )
    assert failed.status is ActionStatus.FAILED
    assert failed.error
    assert reason in failed.error
    assert TOKEN not in failed.error
    assert http_rig.sent() == 1  # never resent
    assert await store.unfinished_actions() == []


async def test_a_provider_refusing_the_credentials_is_a_recorded_failed_action(
    http_rig: HttpRig, store: SqlStore, clock: ManualClock
) -> None:
    provider = http_rig.with_token("revoked-token")
    runner = ActionRunner(store, clock, advancing_sleep(clock))
    plan = await runner.plan(provider, "app", http_rig.bad)
    assert plan.to is None
    failed = await runner.rollback(provider, plan, watch_id=None, reason="r", timeout=TIMEOUT)
    assert failed.status is ActionStatus.FAILED
    assert failed.error
    assert "token" in failed.error.lower() or "authorized" in failed.error.lower()
    assert "revoked-token" not in failed.error
    assert http_rig.sent() == 0
