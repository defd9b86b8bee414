"""Many concurrent watches in one daemon process: tick lag, tick duration, CPU and memory.

Run: .venv/bin/python bench/scale.py [--watches 1000] [--interval 15s] [--store sqlite|postgres]
(prints one table; progress on stderr. About 4.5 minutes at the defaults, 1.5 of them the
daemon's start with 1,000 targets; 2.5 minutes with --watches 100)

One target per watch (a target has one open watch: a new deploy supersedes the last), each
configured like the sandbox's backend: the Sentry signal, two health checks and a two-step
critical flow, a Render provider, discovery every 30 s (the default), the default rules and
window (10m). All targets point at the same stand-ins, which run in a child process so that
this process's CPU time and memory are the daemon's own. The deploys are announced evenly
over one interval, as deploys arriving at random times would be, then ``MEASURED`` intervals
are measured. The Sentry stand-in holds steady healthy traffic for the watched release (and a
latency baseline for the previous one), so every watch reads, decides "none" and keeps going.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import (
    Remote,
    SchedulerLog,
    TimedStore,
    cpu_seconds,
    print_table,
    quantile,
    quiet_logs,
    seconds,
    state_url,
)

from watchdog.clock import SystemClock
from watchdog.daemon import Watchdog
from watchdog.durations import parse_duration
from watchdog.metrics import Metrics
from watchdog.model import Deployment
from watchdog.sandbox import render, sentry, stack, toyapp
from watchdog.sandbox.deployments import GOOD_RELEASE, good_then_bad
from watchdog.sandbox.events import EventLog, write_timeline
from watchdog.sandbox.server import serve
from watchdog.settings import load_config
from watchdog.store import opened

MEASURED = 8  # intervals measured after the last deploy is announced
RELEASE = "5ca1ab1e0ddba11c0ffee5eedf00dfacade0b0e5"  # the release every watch watches
PER_SECOND = 10  # its requests a second, as Sentry sees them: all healthy


class ScaleSandbox:
    """In the child process: the toy app, Sentry (its rate limit out of the way: at 1,000
    watches the daemon asks ~270 times a second) and Render stand-ins, shared by every
    target."""

    def __init__(self) -> None:
        self._exit = ExitStack()

    def start(self) -> dict[str, str]:
        clock = SystemClock()
        now = clock.now()
        log = EventLog()
        project, environment = stack.PROJECT, "production"
        # The previous release's last hour: the latency baseline, read once per watch.
        write_timeline(
            log, project=project, environment=environment, release=GOOD_RELEASE,
            start=now - timedelta(hours=1), end=now, per_minute=2,
        )  # fmt: skip
        state = toyapp.ToyState(RELEASE, password=stack.ENV["SANDBOX_SMOKE_PASSWORD"])
        traffic = toyapp.Traffic(
            state, log, clock, project=project, environment=environment, per_second=PER_SECOND
        )
        done = threading.Event()

        def pumping() -> None:
            while not done.wait(1):
                traffic.pump()

        pump = threading.Thread(target=pumping, daemon=True)
        apps = {
            # The app's own requests go to a log nobody reads: Sentry's stays small.
            "app": toyapp.create_app(
                EventLog(), clock=clock, project=project, environment=environment, state=state
            ),
            "sentry": sentry.create_app(
                log,
                token=stack.ENV["SANDBOX_SENTRY_TOKEN"],
                clock=clock,
                organization="acme",
                projects=[stack.PROJECT],
                rate_limit=sentry.RateLimit(limit=1_000_000),
            ),
            "render": render.create_app(
                good_then_bad(stack.SERVICE, clock),
                token=stack.ENV["SANDBOX_RENDER_KEY"],
                service_id=stack.SERVICE,
                clock=clock,
            ),
        }
        urls = {name: self._exit.enter_context(serve(app)) for name, app in apps.items()}
        pump.start()
        self._exit.callback(pump.join)
        self._exit.callback(done.set)
        return urls

    def cpu(self) -> float:
        return cpu_seconds()

    def close(self) -> None:
        self._exit.close()


def config(urls: dict[str, str], watches: int, interval: str, state: str) -> str:
    target = stack.target_yaml(urls)
    return (
        f'state: {{url: "{state}"}}\n'
        f"watch: {{interval: {interval}, window: 10m}}\n"
        f"rules: {Path(__file__).parents[1] / 'config' / 'rules.yaml'}\n"
        f'sentry: {{api_url: "{urls["sentry"]}", organization: acme, '
        'token: "${SANDBOX_SENTRY_TOKEN}"}\n'
        "targets:\n" + "".join(f"  t{i:04}:\n{target}" for i in range(watches))
    )


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


@dataclass
class Measured:
    """What one run measured; seconds are wall-clock."""

    startup: float  # Watchdog.start with every target's clients
    announced: int  # deploys announced before the deadline
    announcing: float  # how long announcing them took
    last_announce: float  # how long the last announcement took
    window: float  # the measured window: from here …
    wall: float  # … this long
    cpu: float  # the daemon's CPU seconds in the window
    child_cpu: float  # the stand-ins' CPU seconds in the window
    fds: int  # peak open file descriptors
    still_open: int  # watches open at the end
    started: dict[str, float]  # watch id → when it started


async def run(
    sandbox: Remote, watches: int, every: float, store: TimedStore, metrics: Metrics, path: Path
) -> Measured:
    """Start the daemon, announce the deploys evenly over one interval (stopping if that falls
    an interval behind), then measure ``MEASURED`` intervals."""
    began = time.monotonic()
    daemon = Watchdog(load_config(path), store.as_store(), SystemClock(), metrics)
    await daemon.start()
    startup = time.monotonic() - began
    progress(f"daemon started in {startup:.1f} s; announcing {watches:,} deploys")
    fds = open_fds()
    try:
        started: dict[str, float] = {}
        began, last = time.time(), 0.0
        for i in range(watches):
            due = began + i * every / watches
            if time.time() > due + every:
                progress(f"announcing fell an interval behind: stopped at {i:,}")
                break
            await asyncio.sleep(max(0.0, due - time.time()))
            last = time.time()
            record = await daemon.announce(
                Deployment(
                    f"t{i:04}",
                    "dep-2",
                    datetime.now(UTC),
                    previous_id="dep-1",
                    release=RELEASE,
                    previous_release=GOOD_RELEASE,
                )
            )
            last = time.time() - last
            started[record.id] = record.started_at.timestamp()
        announcing = time.time() - began
        # Measure from the next whole interval: every watch has ticked by then.
        await asyncio.sleep(every - announcing % every)
        progress(f"{len(started):,} watches open; measuring {MEASURED} intervals")
        window = time.time()
        cpu, child_cpu = cpu_seconds(), await asyncio.to_thread(sandbox.call, "cpu")
        for _ in range(round(MEASURED * every)):
            await asyncio.sleep(1)
            fds = max(fds, open_fds())
        return Measured(
            startup=startup,
            announced=len(started),
            announcing=announcing,
            last_announce=last,
            window=window,
            wall=time.time() - window,
            cpu=cpu_seconds() - cpu,
            child_cpu=await asyncio.to_thread(sandbox.call, "cpu") - child_cpu,
            fds=fds,
            still_open=daemon.open_watches,
            started=started,
        )
    finally:
        await daemon.stop()


async def bench(
    watches: int, interval: str, store_kind: str, logged: Counter[str]
) -> list[list[str]]:
    every = parse_duration(interval).total_seconds()
    scheduler = SchedulerLog()
    progress(f"starting the stand-ins; {watches:,} targets")
    with Remote(ScaleSandbox) as sandbox, tempfile.TemporaryDirectory() as tmp:
        urls = await asyncio.to_thread(sandbox.call, "start")
        path = Path(tmp) / "watchdog.yaml"
        async with state_url(store_kind, Path(tmp)) as url, opened(url) as real:
            path.write_text(config(urls, watches, interval, url))
            store, metrics = TimedStore(real), Metrics()
            m = await run(sandbox, watches, every, store, metrics, path)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux

    def measured(at: float) -> bool:
        return m.window <= at < m.window + m.wall

    ticks = [t for ts in store.ticks.values() for t in ts if measured(t.at)]
    lags = [
        (t.at - m.started[wid]) % every
        for wid, ts in store.ticks.items()
        for t in ts
        if measured(t.at)
    ]
    calls = [lat for at, lat in zip(store.returned, store.latency, strict=True) if measured(at)]
    due = m.announced * m.wall / every
    durations = [t.decided - t.at for t in ticks]
    reads = [t.read - t.at for t in ticks]
    storing = [t.decided - t.read for t in ticks]
    announcing = f"{m.announcing:.1f} s; {seconds(m.last_announce)}"
    problems = ", ".join(f"{event} ×{n:,}" for event, n in logged.most_common(4))

    def spread(values: Sequence[float]) -> str:
        if not values:
            return "none measured"
        return " · ".join(
            f"{name} {seconds(quantile(values, q))}"
            for name, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0))
        )

    def share(part: float) -> str:
        return f"{part:.1f} s = {part / m.wall:.0%} of a core"

    return [
        ["watches announced (evenly over one interval)", f"{m.announced:,} of {watches:,}", "all"],
        ["tick lag: the scheduler's (daemon's histogram, whole run)", scheduler_lag(metrics), "—"],
        ["**tick lag**: until the watch starts reading", spread(lags), "p99 < 1 s"],
        ["tick duration: start → decision stored", spread(durations), "—"],
        ["… reading the signals (HTTP, concurrently), deciding", spread(reads), "—"],
        ["… storing the readings and the decision", spread(storing), "—"],
        ["store calls: how long each took", f"{len(calls) / m.wall:,.0f}/s; " + spread(calls), "—"],
        ["ticks run / due in the measured window", f"{len(ticks):,} / {due:,.0f}", "all"],
        ["signals not read (probe errors) in the window", f"{sum(t.errors for t in ticks):,}", "0"],
        ["watches still open at the end", f"{m.still_open:,}", "all announced"],
        ["**daemon CPU** in the measured window", share(m.cpu), "—"],
        ["**peak RSS** of the daemon's process", f"{rss:,.0f} MB", "< 300 MB"],
        ["open file descriptors (peak)", f"{m.fds:,}", "—"],
        ["daemon start (every target's HTTP clients)", seconds(m.startup), "—"],
        ["announcing: all of them; the last one", announcing, f"{interval}; —"],
        ["stand-ins' CPU in the window (child process)", share(m.child_cpu), "—"],
        ["APScheduler warnings (skipped / missed runs)", f"{len(scheduler.messages):,}", "0"],
        ["daemon's warnings and errors (whole run)", problems or "none", "none"],
    ]  # fmt: skip


def scheduler_lag(metrics: Metrics) -> str:
    """p50 and p99 of ``watchdog_tick_lag_seconds`` as the bucket bounds they fall under."""
    samples = next(iter(metrics.tick_lag.collect())).samples
    count = next(s.value for s in samples if s.name.endswith("_count"))
    buckets = [(float(s.labels["le"]), s.value) for s in samples if s.name.endswith("_bucket")]

    def bound(q: float) -> str:
        le = next(le for le, n in buckets if n >= q * count)
        return f"≤ {seconds(le)}" if le != math.inf else "> 30 s"

    return f"p50 {bound(0.5)} · p99 {bound(0.99)} of {count:,.0f} ticks" if count else "no ticks"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watches", type=int, default=1000, help="default 1000")
    parser.add_argument("--interval", default="15s", help="tick interval (default 15s)")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    logged = quiet_logs()
    os.environ.update(stack.ENV)
    rows = asyncio.run(bench(args.watches, args.interval, args.store, logged))
    print_table(
        f"{args.watches:,} concurrent watches, interval {args.interval}, {args.store} store, "
        f"{MEASURED} intervals measured",
        ["measure", "value", "target"],
        rows,
    )


if __name__ == "__main__":
    main()
