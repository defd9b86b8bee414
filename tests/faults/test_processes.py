"""The daemon's process and its database taken away under it: kill -9 in the middle of verifying
a rollback, then a restart; and Postgres "restarting" during a watch (its connections killed,
new ones refused for a few seconds), seen through a TCP hop the test controls, since the real
server is shared with every other test and with CI.

Real ``watchdog run`` processes, the Postgres of the ``pg_dsn`` fixture, the sandbox on the wall
clock, 1 s interval.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.daemons import Daemon, MakeDaemon, free_port, read_store, wait_for
from tests.faults.conftest import postgres_url
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.store import opened
from watchdog.store.records import WatchState

INTERVAL = timedelta(seconds=1)


async def _reach(state_url: str, watch_id: str, state: WatchState, seconds: float) -> None:
    """Return as soon as the store shows ``watch_id`` in ``state`` (polled every 50 ms)."""
    async with opened(state_url) as store, asyncio.timeout(seconds):
        # Another process writes the store: nothing here to wait on but the store itself.
        while (watch := await store.watch(watch_id)) is None or watch.state is not state:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def test_kill_9_mid_verification_then_restart_verifies_once_more_and_rolls_back_once(
    pg_dsn: str, make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    url = postgres_url(pg_dsn)
    # The release rolled back to answers each request 0.4 s late (inside the 0.9 s probe
    # timeout): its health checks and two-step login flow keep the watch verifying ~1 s.
    sandbox.app.set_faults(toyapp.Faults(added_latency_ms=400), GOOD_RELEASE)
    daemon = make_daemon(state_url=url, watch="{interval: 1s, window: 20s, timeout: 900ms}")
    daemon.start()
    watch_id = daemon.announce()
    asyncio.run(_reach(url, watch_id, WatchState.VERIFYING, 30))
    daemon.kill()

    killed = read_store(url, watch_id)
    assert killed.watch.state is WatchState.VERIFYING, "the kill came after the verification"
    assert [str(a.status) for a in killed.rollbacks] == ["done"]
    assert daemon.events("rollback.verified") == []
    daemon.start()
    summary = daemon.closed(watch_id)

    assert (summary["verdict"], summary["verification"]["passed"]) == ("rolled_back", True)
    assert sandbox.backend.count("rollback") == 1
    assert sandbox.app.live == GOOD_RELEASE
    after = read_store(url, watch_id)
    assert [a.id for a in after.rollbacks] == [a.id for a in killed.rollbacks]
    assert after.readings == killed.readings  # nothing lost, and no tick while verifying
    assert after.unaccounted() == []
    resumed = daemon.events("watch.resumed", watch=watch_id)
    assert {e["state"] for e in resumed} == {"verifying"}, daemon.stderr.read_text()
    assert [e["passed"] for e in daemon.events("rollback.verified", watch=watch_id)] == [True]
    assert len(daemon.events("rollback.sending")) == 1
    # People hear of it once: one "rolling back", one "rolled back" (verified), sent once.
    wait_for(lambda: said(sandbox, "🔄 Rolled back"), 10, "the rolled-back message")
    assert [len(said(sandbox, s)) for s in ("🔄 Rolling back", "🔄 Rolled back", "⚠️")] == [1, 1, 0]
    assert daemon.terminate() == 0


def said(sandbox: stack.Stack, start: str) -> list[str]:
    """The Slack messages that begin with ``start``."""
    return [t for t in sandbox.channel.texts() if t.startswith(start)]


class Forwarder:
    """A TCP hop to Postgres that a test takes away and brings back on the same port: what a
    database restart looks like to its clients. ``refuse`` stops accepting (new connections are
    refused), ``drop`` cuts the live ones, ``accept`` listens again; ``stall`` holds every byte
    on the live connections (a network that hangs) until ``flow``. Runs its own event loop in a
    thread, so the test stays synchronous."""

    def __init__(self, dsn: str) -> None:
        """A hop to the server of ``dsn`` (a libpq conninfo, as ``pg_dsn`` gives)."""
        self._dsn = dsn
        server = conninfo_to_dict(dsn)
        self.upstream = (
            str(server.get("host") or "127.0.0.1"),
            int(str(server.get("port") or 5432)),
        )
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def url(self) -> str:
        """The ``state.url`` of the same database, through this hop."""
        return postgres_url(make_conninfo(self._dsn, host="127.0.0.1", port=self.port))

    def __enter__(self) -> Forwarder:
        self._thread.start()
        self.accept()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.flow()
        self.refuse()
        self.drop()
        self._run(_cancel_the_rest)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _run(self, step: Callable[[], Awaitable[None]]) -> None:
        asyncio.run_coroutine_threadsafe(_awaited(step), self._loop).result(timeout=5)

    def accept(self) -> None:
        async def listen() -> None:
            self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port)

        self._run(listen)

    def refuse(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                self._server = None

        self._run(close)

    def drop(self) -> None:
        async def cut() -> None:
            for writer in self._live:
                writer.transport.abort()
            self._live.clear()

        self._run(cut)

    def stall(self) -> None:
        async def hold() -> None:
            self._flowing.clear()

        self._run(hold)

    def flow(self) -> None:
        async def release() -> None:
            self._flowing.set()

        self._run(release)

    async def _pipe(
        self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter
    ) -> None:
        try:
            server_in, server_out = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_out.transport.abort()
            return
        self._live |= {client_out, server_out}
        await asyncio.gather(self._copy(client_in, server_out), self._copy(server_in, client_out))
        self._live -= {client_out, server_out}

    async def _copy(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        except OSError:
            pass
        finally:
            sink.transport.abort()


async def _awaited(step: Callable[[], Awaitable[None]]) -> None:
    await step()


async def _cancel_the_rest() -> None:
    """End every pipe still open (each waits on a socket or a stall), so the loop stops clean."""
    tasks = asyncio.all_tasks() - {asyncio.current_task()}
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def terminate_backends(dsn: str) -> None:
    """Kill every connection to the test database but this one, as a restart does, and return
    once they are gone (the daemon's pool had at least one open)."""
    others = (
        "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid() "
        "AND backend_type = 'client backend'"
    )
    database = conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(dsn, autocommit=True) as admin:
        killed = admin.execute(f"SELECT pg_terminate_backend(pid) {others}", (database,))
        assert killed.fetchall(), "the daemon had no connection open"
        wait_for(
            lambda: not admin.execute(f"SELECT pid {others}", (database,)).fetchall(),
            10,
            "the connections to end",
        )


@pytest.fixture
def forwarder(pg_dsn: str) -> Iterator[Forwarder]:
    with Forwarder(pg_dsn) as running:
        yield running


def test_postgres_restarting_mid_watch_loses_no_tick_the_daemon_ran_and_the_verdict_holds(
    pg_dsn: str, forwarder: Forwarder, make_daemon: MakeDaemon, sandbox: stack.Stack
) -> None:
    """What "no reading lost" can mean when the store itself is away: a tick renews its lease
    in the store before it reads anything, so no tick reads signals while the database is
    away (the slots due then are not run), and every tick that ran and decided
    (``decision.made``) is in the store, once, with its readings; one caught mid-way by the
    outage waits for the database and is stored late, or is logged as failed (``tick.failed``)."""
    url = forwarder.url
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # healthy until the database is back
    daemon = make_daemon(state_url=url, window="30s").start()
    watch_id = daemon.announce()
    wait_for(lambda: len(read_store(url, watch_id).ticks) >= 3, 20, "three ticks stored")

    forwarder.refuse()
    terminate_backends(pg_dsn)
    forwarder.drop()
    down = datetime.now(UTC)
    wait_for(
        lambda: datetime.now(UTC) - down >= 2 * INTERVAL and store_failures(daemon),
        20,
        "two intervals without the database, noticed by the daemon",
    )
    forwarder.accept()
    up = datetime.now(UTC)
    wait_for(lambda: read_store(url, watch_id).ticks[-1] > up, 30, "a tick stored again")
    sandbox.app.set_faults(stack.BROKEN, BAD_RELEASE)  # now the deploy goes bad
    summary = daemon.closed(watch_id)

    assert (summary["verdict"], summary["verification"]["passed"]) == ("rolled_back", True)
    assert sandbox.backend.count("rollback") == 1
    stored = read_store(url, watch_id)
    decided = daemon.events("decision.made", watch=watch_id)
    failed = daemon.events("tick.failed", watch=watch_id)
    # Every tick that decided is stored, once, with its readings. One more may be stored for
    # a tick that failed: its commit went through, the answer was lost with the connection.
    assert len(set(stored.ticks)) == len(stored.ticks)
    assert len(decided) <= len(stored.ticks) <= len(decided) + len(failed)
    assert stored.unaccounted() == []
    # The outage is logged as such, by the job that met it, with the database's reason.
    assert all(e["error"].startswith("postgres: ") for e in store_failures(daemon))
    assert store_failures(daemon)
    assert daemon.events("tick.crashed") == []
    assert daemon.terminate() == 0


def at(event: dict[str, Any]) -> datetime:
    """When an event was logged."""
    return datetime.fromisoformat(event["timestamp"])


def store_failures(daemon: Daemon) -> list[dict[str, Any]]:
    """The events of the daemon's jobs failing on the store: a tick, a renewal, a claim."""
    return [
        e
        for name in ("tick.failed", "lease.renew_failed", "claim.failed")
        for e in daemon.events(name)
    ]
