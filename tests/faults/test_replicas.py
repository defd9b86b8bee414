"""Several replicas on one Postgres (ARCHITECTURE §7, the HA design in watchdog/daemon.py): a
deploy announced through both is watched and rolled back once; a replica killed with kill -9
loses its watches to the other within three intervals, and nothing is ticked twice or lost;
one whose database link hangs past its lease records nothing once the other took over; SQLite
says at start that it is for one replica only.

Real ``watchdog run`` processes, the Postgres of the ``pg_dsn`` fixture, the sandbox on the wall
clock, 1 s interval: a watch's lease lasts 2 s and is renewed, and claimed, every 0.5 s.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.daemons import AUTH, DEPLOY, Daemon, MakeDaemon, Stored, read_store, wait_for
from tests.faults.conftest import postgres_url
from tests.faults.test_processes import Forwarder
from watchdog.clock import SystemClock
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.sandbox.events import Event
from watchdog.store import opened
from watchdog.store.records import Lease

INTERVAL = timedelta(seconds=1)
# Measured from the kill by polling the store, a takeover is due within 2.5 intervals: the
# dead owner renewed at most one TTL (2 intervals) before its lease ran out, and the heir's
# claim runs every half interval. 3 intervals leave half an interval for the claim's own
# queries and this poll; the margin is for a loaded 2-core CI machine scheduling three
# processes (two daemons and this test) at once.
TAKEOVER_BOUND = 3 * INTERVAL + timedelta(seconds=0.5)


def read_leases(state_url: str, prefix: str = "watch:") -> list[Lease]:
    async def read() -> list[Lease]:
        async with opened(state_url) as store:
            return await store.leases(prefix)

    return asyncio.run(read())


def pid_of(lease: Lease) -> int:
    """The process holding ``lease`` (an owner is ``host:pid:nonce``)."""
    return int(lease.owner.rsplit(":", 2)[1])


def pid(daemon: Daemon) -> int:
    assert daemon.process is not None
    return daemon.process.pid


def announce_together(daemons: list[Daemon], **changes: Any) -> list[str]:
    """POST the same deploy to every daemon at the same moment; the watch ids they answer."""

    async def post() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=10) as client:
            return await asyncio.gather(
                *(
                    client.post(f"{d.url}/api/deploys", json={**DEPLOY, **changes}, headers=AUTH)
                    for d in daemons
                )
            )

    answers = asyncio.run(post())
    assert [a.status_code for a in answers] == [202] * len(daemons), [a.text for a in answers]
    return [str(a.json()["watch_id"]) for a in answers]


def decided(daemon: Daemon, watch_id: str) -> list[dict[str, Any]]:
    """The ``decision.made`` events ``daemon`` logged for ``watch_id``: one per tick it ran."""
    return daemon.events("decision.made", watch=watch_id)


def assert_nothing_lost(stored: Stored, metric: str = "error_rate", source: str = "sentry") -> None:
    """Every tick stored once, with its ``metric`` or the probe error saying why not."""
    assert stored.unaccounted(metric, source) == [], stored.unaccounted(metric, source)
    assert len(set(stored.ticks)) == len(stored.ticks), "a tick was stored twice"
    keys = [(r.at, r.metric, sorted(r.labels.items())) for r in stored.readings]
    assert len(set(map(repr, keys))) == len(keys), "a reading was stored twice"


def test_a_deploy_announced_through_two_replicas_at_once_is_watched_and_rolled_back_once(
    pg_dsn: str, make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    url = postgres_url(pg_dsn)
    replicas = [make_daemon(name, state_url=url).start(ready=False) for name in ("a", "b")]
    for replica in replicas:
        wait_for(replica.ready, 30, f"{replica.name} to be ready")

    ids = announce_together(replicas)

    assert ids[0] == ids[1]
    [watch_id] = set(ids)
    summary = replicas[0].closed(watch_id)
    assert (summary["verdict"], summary["verification"]["passed"]) == ("rolled_back", True)
    assert replicas[1].summary(watch_id)["verdict"] == "rolled_back"
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE
    for replica in replicas:
        assert [w["id"] for w in replica.watches()] == [watch_id]
    stored = read_store(url, watch_id)
    assert [(a.deployment_id, str(a.status)) for a in stored.actions] == [("dep-2", "done")]
    assert_nothing_lost(stored)

    [lease] = read_leases(url)
    assert (lease.name, lease.token) == (f"watch:{watch_id}", 1)  # it never changed hands
    [owner] = [r for r in replicas if pid(r) == pid_of(lease)]
    [other] = [r for r in replicas if r is not owner]
    assert len(decided(owner, watch_id)) == len(stored.ticks)
    assert decided(other, watch_id) == []
    assert len(owner.events("rollback.sending")) == 1
    assert other.events("rollback.sending") == []
    assert owner.events("watch.closed", watch=watch_id)[0]["outcome"] == "rolled_back"
    assert [r.events("store.single_replica") for r in replicas] == [[], []]
    assert [r.terminate() for r in replicas] == [0, 0]


def add_target(config: Path, name: str, other: stack.Stack) -> None:
    """Give ``config`` a second target: ``other`` sandbox's app and Render service, watched by
    its health checks and flows (no Sentry: the stand-in serves one project's events)."""
    block = other.config(config.parent).split("targets:\n", 1)[1]
    block = block.replace("  backend:", f"  {name}:", 1)
    block = "".join(line for line in block.splitlines(True) if "sentry:" not in line)
    text = config.read_text()
    assert text.count("targets:\n") == 1
    config.write_text(text.replace("targets:\n", "targets:\n" + block))


async def _takeovers(
    state_url: str, names: set[str], dead: str, seconds: float
) -> dict[str, tuple[Lease, float]]:
    """Poll the leases ``names`` until another owner than ``dead`` holds each: the first lease
    seen of each new owner, and when it was seen (time.monotonic)."""
    seen: dict[str, tuple[Lease, float]] = {}
    deadline = time.monotonic() + seconds
    async with opened(state_url) as store:
        while set(seen) != names and time.monotonic() < deadline:
            for lease in await store.leases("watch:"):
                if lease.name in names and lease.owner != dead and lease.name not in seen:
                    seen[lease.name] = (lease, time.monotonic())
            await asyncio.sleep(0.05)
    assert set(seen) == names, f"not taken over within {seconds}s: {names - set(seen)}"
    return seen


def test_a_replica_killed_while_owning_watches_loses_them_to_the_other_within_3_intervals(
    pg_dsn: str, make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    url = postgres_url(pg_dsn)
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # healthy until the takeover
    with stack.running(SystemClock(), delay=timedelta(seconds=3)) as web:
        web.app.set_faults(toyapp.Faults(), BAD_RELEASE)
        owner = make_daemon("owner", state_url=url, window="20s")
        heir = make_daemon("heir", state_url=url, window="20s")
        for daemon in (owner, heir):
            add_target(daemon.config, "web", web)
        owner.start()
        heir.start(ready=False)  # it claims nothing before it is up, seconds from now
        ids = {"backend": owner.announce(), "web": owner.announce(target="web")}
        wait_for(heir.ready, 30, "the heir to be ready")
        names = {f"watch:{i}" for i in ids.values()}
        wait_for(
            lambda: all(len(read_store(url, i).ticks) >= 3 for i in ids.values()),
            20,
            "three ticks of each watch",
        )

        owner.kill()
        killed = time.monotonic()
        held = {lease.name: lease for lease in read_leases(url)}
        assert {n: pid_of(held[n]) for n in names} == {n: pid(owner) for n in names}
        before = {t: read_store(url, i) for t, i in ids.items()}
        taken = asyncio.run(_takeovers(url, names, held[min(names)].owner, 10))

        for name, (lease, seen_at) in taken.items():
            assert pid_of(lease) == pid(heir)
            assert lease.token == held[name].token + 1
            took = timedelta(seconds=seen_at - killed)
            assert took < TAKEOVER_BOUND, f"{name} taken over {took} after the kill"
        wait_for(
            lambda: len(decided(heir, ids["backend"])) >= 3, 20, "three ticks by the new owner"
        )
        sandbox.app.set_faults(stack.BROKEN, BAD_RELEASE)  # now the deploy goes bad
        backend = heir.closed(ids["backend"])
        web_summary = heir.closed(ids["web"])

    assert (backend["verdict"], backend["verification"]["passed"]) == ("rolled_back", True)
    assert sandbox.backend.count("rollback") == 1
    # Blind to the error rate (no Sentry), it never closes healthy, and never acts.
    assert web_summary["verdict"] == "inconclusive", web_summary
    assert web.backend.count("rollback") == 0
    for target, watch_id in ids.items():
        after = read_store(url, watch_id)
        assert_nothing_lost(after, *(("health", "health") if target == "web" else ()))
        assert after.ticks[: len(before[target].ticks)] == before[target].ticks
        resumed = [t for t in after.ticks if t > before[target].ticks[-1]]
        # Every tick after the kill is the heir's, and came once the owner's lease ran out.
        assert len(resumed) == len(decided(heir, watch_id)), target
        expired = held[f"watch:{watch_id}"].expires_at
        assert resumed, target
        assert resumed[0] >= expired, (target, resumed[0], expired)
        gaps = [b - a for a, b in zip(after.ticks, after.ticks[1:], strict=False)]
        # Contiguous: no slot skipped (a gap of two intervals) but at the takeover.
        takeover = len(before[target].ticks) - 1
        assert gaps[takeover] == resumed[0] - before[target].ticks[-1]
        assert [g for g in gaps[:takeover] + gaps[takeover + 1 :] if g >= 2 * INTERVAL] == []
        assert heir.events("watch.resumed", watch=watch_id)
    assert owner.events("rollback.sending") == []
    assert len(heir.events("rollback.executed")) == 1


def logged_at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"])


def logins(sandbox: stack.Stack) -> int:
    """How many logins the toy app served: one per tick, by its flow's first step."""
    return sum(is_login(e) for e in sandbox.log.snapshot())


def next_login(sandbox: stack.Stack, seconds: float = 10) -> int:
    """Return the moment the toy app served one more login, with the count (polled every
    10 ms: the flow's next step is 0.3 s away)."""
    seen = logins(sandbox)
    deadline = time.monotonic() + seconds
    while (now := logins(sandbox)) == seen:
        assert time.monotonic() < deadline, f"no new login within {seconds}s"
        time.sleep(0.01)
    return now


def is_login(event: Event) -> bool:
    return event.type == "transaction" and event.tags.get("transaction") == "POST /api/auth/login"


def test_a_replica_whose_database_hangs_past_its_lease_records_nothing_after_the_takeover(
    pg_dsn: str, make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    """The design's promise (watchdog/daemon.py): a replica that stalls loses its watches, and
    the stale one can record nothing. Here its link to Postgres hangs in the middle of a tick
    (the signals read, not yet stored) for longer than its lease, the other replica takes the
    watch over and ticks it, then the link comes back: the caught tick must store nothing (its
    readings and decision are fenced by the lease, like every write of the watch)."""
    url = postgres_url(pg_dsn)
    # Each request 0.3 s late: a tick's two-step login flow reads for 0.6 s.
    sandbox.app.set_faults(toyapp.Faults(added_latency_ms=300), BAD_RELEASE)
    with Forwarder(pg_dsn) as hop:
        watch = "{interval: 1s, window: 30s, timeout: 900ms}"
        stale = make_daemon("stale", state_url=hop.url, watch=watch).start()
        heir = make_daemon("heir", state_url=url, watch=watch).start(ready=False)
        watch_id = stale.announce()
        wait_for(heir.ready, 30, "the heir to be ready")
        wait_for(lambda: len(read_store(url, watch_id).ticks) >= 2, 20, "two ticks stored")
        assert [pid_of(lease) for lease in read_leases(url)] == [pid(stale)]

        served = next_login(sandbox)
        hop.stall()
        # A tick is caught between reading the signals (its login served) and storing them.
        stored_before = len(read_store(url, watch_id).ticks)
        assert stored_before == served - 1
        wait_for(lambda: decided(heir, watch_id), 20, "the heir to tick the watch")
        taken_over = datetime.now(UTC)
        hop.flow()
        stale.wait_event("watch.lost", watch=watch_id)
        wait_for(lambda: len(decided(heir, watch_id)) >= 2, 10, "another tick by the heir")

    late = [logged_at(e) for e in decided(stale, watch_id) if logged_at(e) > taken_over]
    assert late == [], "the stale replica stored a tick after the watch was taken over"
    stored = read_store(url, watch_id)
    assert len(decided(stale, watch_id)) == stored_before  # the caught tick was never stored
    assert len(stored.ticks) == stored_before + len(decided(heir, watch_id))
    assert_nothing_lost(stored)
    assert sandbox.backend.received() == []


def test_sqlite_says_at_start_it_is_for_one_replica(make_daemon: MakeDaemon) -> None:
    daemon = make_daemon().start()
    [event] = daemon.events("store.single_replica")
    assert event["level"] == "warning"
    assert "one replica" in event["reason"]
    assert daemon.terminate() == 0
