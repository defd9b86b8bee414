"""The latency source: probe history before the deploy against this tick's samples, over real
loopback HTTP for the effect of a slow release and through a mock transport with a scripted
timer for the exact arithmetic."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from watchdog.clock import ManualClock
from watchdog.probe import target_sources
from watchdog.sandbox.toyapp import Faults
from watchdog.settings import LatencyProbe, load_config
from watchdog.signals.base import Failure, Probe
from watchdog.signals.latency import LatencyHistory, LatencySignal, percentile
from watchdog.store.sql import SqlStore
from watchdog.store.sqlite import sqlite_store

from .toy import DEPLOY, T0, Toy, closed_port_url, running

REPO = Path(__file__).parents[2]

MINUTE = timedelta(minutes=1)


@pytest.fixture
def toy() -> Iterator[Toy]:
    with running() as app:
        yield app


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as c:
        yield c


def changes(probe: Probe) -> dict[str, float]:
    return {r.labels["percentile"]: r.value for r in probe.readings}


async def test_a_slower_release_shows_as_a_latency_change(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    history = LatencyHistory()
    signal = LatencySignal([LatencyProbe(name="api", url=f"{toy.url}/health")], client, history)
    # 25 samples before the deploy: their nearest-rank p95 is the 24th, so one stray slow
    # request on a busy machine cannot make the baseline look slow.
    for minutes in range(5, 0, -1):
        await signal.read(DEPLOY, T0 - minutes * MINUTE)
    toy.state.set_faults(Faults(added_latency_ms=200))

    probe = await signal.read(DEPLOY, T0 + MINUTE)

    assert probe.errors == ()
    assert set(changes(probe)) == {"p50", "p75", "p95"}
    assert changes(probe)["p95"] > 1.0  # +200 ms on a loopback request is far beyond +100 %
    assert {(r.metric, r.at, r.samples) for r in probe.readings} == {
        ("latency_change", T0 + MINUTE, 5)
    }
    assert {r.labels["check"] for r in probe.readings} == {"api"}


async def test_no_history_before_the_deploy_is_no_data_but_the_samples_are_kept(
    toy: Toy, client: httpx.AsyncClient
) -> None:
    history = LatencyHistory()
    probe_config = LatencyProbe(name="api", url=f"{toy.url}/health", samples=3)

    probe = await LatencySignal([probe_config], client, history).read(DEPLOY, T0 + MINUTE)

    assert probe.readings == ()
    (error,) = probe.errors
    assert (error.source, error.failure, error.metric) == (
        "latency",
        Failure.NO_DATA,
        "latency_change",
    )
    assert error.message == "latency probe 'api': no probe history from before the deploy"
    assert len(history.before("api", T0 + 2 * MINUTE)) == 3
    assert history.before("api", T0) == []


async def test_an_unreachable_probe_reads_nothing_and_says_why(
    client: httpx.AsyncClient,
) -> None:
    history = LatencyHistory()
    await history.record("api", T0 - MINUTE, [0.01])
    probe_config = LatencyProbe(name="api", url=f"{closed_port_url()}/health", samples=2)

    probe = await LatencySignal([probe_config], client, history).read(DEPLOY, T0 + MINUTE)

    assert probe.readings == ()
    assert [(e.failure, e.message) for e in probe.errors] == [
        (
            Failure.UNREACHABLE,
            "latency probe 'api': 2 of 2 samples failed, first: could not connect (ConnectError)",
        )
    ]


def scripted(*answers: int | Exception) -> httpx.MockTransport:
    """Answers each request in turn: a status code, or an exception raised as httpx would."""
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    return httpx.MockTransport(handler)


async def test_failed_samples_are_reported_and_the_rest_still_measured() -> None:
    history = LatencyHistory()
    await history.record("api", T0 - MINUTE, [0.1, 0.1, 0.1, 0.2])
    transport = scripted(200, httpx.ReadTimeout("slow"), 503, 200)
    # By the timer the requests take 1 s, 2 s, 3 s and 4 s; only the 1st and the 4th count.
    timer = iter([0.0, 1.0, 10.0, 12.0, 20.0, 23.0, 30.0, 34.0]).__next__
    async with httpx.AsyncClient(transport=transport) as client:
        signal = LatencySignal(
            [LatencyProbe(name="api", url="http://app.test/health", samples=4)],
            client,
            history,
            timer=timer,
        )
        probe = await signal.read(DEPLOY, T0 + MINUTE)

    # nearest rank: this tick p50 1 s, p75 and p95 4 s; before the deploy 0.1, 0.1 and 0.2 s
    assert changes(probe) == pytest.approx({"p50": 9.0, "p75": 39.0, "p95": 19.0})
    assert {r.samples for r in probe.readings} == {2}
    assert [(e.failure, e.message) for e in probe.errors] == [
        (
            Failure.TIMEOUT,
            "latency probe 'api': 2 of 4 samples failed, first: timed out (ReadTimeout)",
        )
    ]
    assert sorted(history.before("api", T0 + 2 * MINUTE)) == [0.1, 0.1, 0.1, 0.2, 1.0, 4.0]


async def test_an_error_status_is_not_a_duration() -> None:
    history = LatencyHistory()
    await history.record("api", T0 - MINUTE, [0.1])
    async with httpx.AsyncClient(transport=scripted(500)) as client:
        signal = LatencySignal(
            [LatencyProbe(name="api", url="http://app.test/health", samples=1)], client, history
        )
        probe = await signal.read(DEPLOY, T0 + MINUTE)

    assert probe.readings == ()
    assert [(e.failure, e.message) for e in probe.errors] == [
        (Failure.STATUS, "latency probe 'api': 1 of 1 samples failed, first: answered 500")
    ]


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 50, 5),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 75, 8),
        ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95, 10),
        ([40, 10, 30, 20], 50, 20),
        ([40, 10, 30, 20], 75, 30),
        ([40, 10, 30, 20], 95, 40),
        ([0.25], 50, 0.25),
        ([0.25], 95, 0.25),
    ],
)
def test_percentiles_are_nearest_rank(values: list[float], p: float, expected: float) -> None:
    assert percentile(values, p) == expected


async def test_history_is_kept_per_check_and_only_before_a_time() -> None:
    history = LatencyHistory()
    await history.record("api", T0 - MINUTE, [0.1, 0.2])
    await history.record("web", T0 - MINUTE, [0.9])
    await history.record("api", T0, [0.3])

    assert history.before("api", T0) == [0.1, 0.2]
    assert history.before("api", T0 + MINUTE) == [0.1, 0.2, 0.3]
    assert history.before("web", T0) == [0.9]
    assert history.before("db", T0) == []


async def test_history_forgets_samples_older_than_it_keeps_or_beyond_its_size() -> None:
    by_age = LatencyHistory(keep=timedelta(hours=1))
    await by_age.record("api", T0 - 90 * MINUTE, [0.1])
    await by_age.record("api", T0 - 30 * MINUTE, [0.2])
    await by_age.record("api", T0, [0.3])
    by_size = LatencyHistory(max_samples=3)
    await by_size.record("api", T0 - MINUTE, [0.1, 0.2])
    await by_size.record("api", T0, [0.3, 0.4])

    assert by_age.before("api", T0 + MINUTE) == [0.2, 0.3]
    assert by_size.before("api", T0 + MINUTE) == [0.2, 0.3, 0.4]


def timed(*seconds: float) -> Callable[[], float]:
    """A timer by which the requests take ``seconds``, one after another."""
    return iter([t for s in seconds for t in (0.0, s)]).__next__


async def opened(path: Path) -> SqlStore:
    store = sqlite_store(path)
    await store.migrate()
    return store


async def read_with(
    store: SqlStore, at_: timedelta, *seconds: float, keep: timedelta = timedelta(hours=1)
) -> Probe:
    """One tick of a latency probe of ``len(seconds)`` samples, keeping history in ``store``."""
    history = LatencyHistory(keep=keep, store=store, target="backend")
    probe_config = LatencyProbe(name="api", url="http://app.test/health", samples=len(seconds))
    transport = scripted(*[200] * len(seconds))
    async with httpx.AsyncClient(transport=transport) as client:
        signal = LatencySignal([probe_config], client, history, timer=timed(*seconds))
        return await signal.read(DEPLOY, T0 + at_)


async def test_a_restarted_daemon_compares_with_the_probes_from_before_it(
    tmp_path: Path,
) -> None:
    before_restart = await opened(tmp_path / "state.db")
    await read_with(before_restart, -2 * MINUTE, 0.1, 0.2)
    await read_with(before_restart, -MINUTE, 0.3, 0.4)
    await before_restart.close()

    after_restart = await opened(tmp_path / "state.db")
    probe = await read_with(after_restart, MINUTE, 0.8, 0.8)
    await after_restart.close()

    # nearest rank before the deploy: p50 0.2 s, p75 0.3 s, p95 0.4 s; this tick 0.8 s
    assert probe.errors == ()
    assert changes(probe) == pytest.approx({"p50": 3.0, "p75": 5 / 3, "p95": 1.0})


async def test_a_reopened_history_loads_its_window_once(tmp_path: Path) -> None:
    store = await opened(tmp_path / "state.db")
    written = LatencyHistory(store=store, target="backend")
    await written.record("api", T0 - 90 * MINUTE, [0.1])
    await written.record("api", T0 - 30 * MINUTE, [0.2, 0.3])
    await written.record("web", T0 - MINUTE, [0.9])
    await store.close()

    store = await opened(tmp_path / "state.db")
    fresh = LatencyHistory(store=store, target="backend")
    await fresh.load(T0)
    await fresh.load(T0)
    other_target = LatencyHistory(store=store, target="frontend")
    await other_target.load(T0)

    assert fresh.before("api", T0) == [0.2, 0.3]
    assert fresh.before("web", T0) == [0.9]
    assert other_target.before("api", T0) == []
    # what fell out of the window is gone from the store too
    assert await store.latency_samples("backend", T0 - timedelta(days=1)) == {
        "api": [(T0 - 30 * MINUTE, 0.2), (T0 - 30 * MINUTE, 0.3)],
        "web": [(T0 - MINUTE, 0.9)],
    }
    await store.close()


async def test_a_history_store_that_fails_is_a_probe_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()  # a directory where the file should be
    broken = sqlite_store(tmp_path / "state.db")

    probe = await read_with(broken, MINUTE, 0.1)

    assert probe.readings == ()
    assert [(e.failure, e.metric) for e in probe.errors] == [(Failure.DATABASE, "latency_change")]
    assert probe.errors[0].message.startswith("latency history: sqlite ")
    await broken.close()


def test_a_history_in_a_store_needs_its_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="a store needs the target"):
        LatencyHistory(store=sqlite_store(tmp_path / "state.db"))


async def test_target_sources_keep_the_latency_history_in_the_store(
    toy: Toy, tmp_path: Path
) -> None:
    config = tmp_path / "watchdog.yaml"
    config.write_text(f"""
rules: {REPO / "config" / "rules.yaml"}
targets:
  backend:
    provider: {{kind: render, service_id: srv-1, token: unused}}
    latency: [{{name: api, url: "{toy.url}/health", samples: 3}}]
""")
    settings = load_config(config).settings
    clock = ManualClock(T0)

    async def tick(minutes: int) -> Probe:
        store = await opened(tmp_path / "state.db")  # a new daemon each time
        async with target_sources(settings, "backend", clock, store=store) as sources:
            (latency,) = [s for s in sources if isinstance(s, LatencySignal)]
            probe = await latency.read(DEPLOY, T0 + minutes * MINUTE)
        await store.close()
        return probe

    await tick(-1)
    probe = await tick(1)

    assert probe.errors == ()
    assert set(changes(probe)) == {"p50", "p75", "p95"}
