"""Detection latency: from an error spike becoming visible in the Sentry stand-in to the
rollback request arriving at the Render stand-in, through the real daemon (``Watchdog``) on
the wall clock, real HTTP over loopback, a real store, the default rules and a 1 s interval.

Run: .venv/bin/python bench/detection.py [--runs 20] [--store sqlite|postgres]
(prints one table; postgres uses WATCHDOG_TEST_DATABASE_URL, a fresh database per run)

Each run starts the sandbox stack afresh in a child process (toy app, Sentry, Render, Slack
stand-ins) with 200 requests/s of synthetic traffic written to the Sentry stand-in, announces
the bad deploy to a fresh daemon, lets it watch healthy traffic for 2-3 s (a random phase
against the ticks), then turns on a 5 % error spike that only Sentry sees (health checks and
flows stay green, so the error-rate rules are what decide). "Visible" is the moment the first
error event of the spike is in the stand-in's event log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import (
    Remote,
    SchedulerLog,
    TimedStore,
    print_table,
    quantile,
    quiet_logs,
    seconds,
    state_url,
    until,
)

from watchdog.clock import SystemClock
from watchdog.daemon import Watchdog
from watchdog.metrics import Metrics
from watchdog.model import Deployment
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.sandbox.events import EventLog, write_timeline
from watchdog.settings import load_config
from watchdog.store import opened
from watchdog.store.records import WatchRecord

PER_SECOND = 200  # synthetic requests a second to the backend
SPIKE = 0.05  # the share of them that fail once the spike is on: five times the 1 % threshold
HEALTHY = 2.0  # seconds of healthy traffic watched before the spike, plus a random 0-1 s
INTERVAL = "1s"
END_TO_END = "**spike visible → rollback request arrives**"
OVERHEAD = "**overhead: readings in → rollback request arrives**"


class Traffic(threading.Thread):
    """``PER_SECOND`` requests' worth of Sentry events for the live release, written every
    20 ms (``toyapp.Traffic`` writes whole seconds: too coarse to time the spike by); once
    ``spike`` is set, that share of the bad release's requests fail."""

    def __init__(self, log: EventLog, app: toyapp.ToyState) -> None:
        super().__init__(daemon=True)
        self._log, self._app = log, app
        self._since = self._last = datetime.now(UTC)
        self._written = 0
        self._per_release: Counter[str] = Counter()
        self._done = threading.Event()
        self.spike = 0.0
        self.visible: float | None = None

    def run(self) -> None:
        while not self._done.wait(0.02):
            self._pump()

    def _pump(self) -> None:
        now = datetime.now(UTC)
        due = int((now - self._since).total_seconds() * PER_SECOND) - self._written
        if due <= 0:
            return
        release = self._app.live
        written = write_timeline(
            self._log,
            project=stack.PROJECT,
            environment="production",
            release=release,
            start=self._last,
            end=now,
            per_minute=due * 60 / (now - self._last).total_seconds(),
            error_fraction=self.spike if release == BAD_RELEASE else 0.0,
            first=self._per_release[release],
        )
        if written.errors and self.visible is None:
            self.visible = time.time()
        self._written += written.transactions
        self._per_release[release] += written.transactions
        self._last = now

    def stop(self) -> None:
        self._done.set()
        self.join()


class SpikeSandbox:
    """In the child process: one sandbox stack per run, its traffic, and the spike switch."""

    def __init__(self) -> None:
        self._exit = ExitStack()

    def start(self, state_dir: str) -> str:
        """Start the stand-ins; return the watchdog config for them."""
        self._stack = self._exit.enter_context(stack.running(SystemClock(), delay=timedelta(0)))
        self._stack.app.set_faults(toyapp.Faults(), BAD_RELEASE)  # the app itself stays healthy
        self._traffic = Traffic(self._stack.log, self._stack.app)
        self._traffic.start()
        self._exit.callback(self._traffic.stop)
        return self._stack.config(Path(state_dir), interval=INTERVAL, window="1m")

    def spike(self) -> None:
        self._traffic.spike = SPIKE

    def visible(self) -> float | None:
        return self._traffic.visible

    def rollbacks(self) -> list[float]:
        """When each rollback request arrived at the Render stand-in."""
        received = self._stack.backend.received()
        return [r.at.timestamp() for r in received if r.operation == "rollback"]

    def stop(self) -> None:
        self._exit.close()
        self._exit = ExitStack()

    def close(self) -> None:
        self._exit.close()


@dataclass
class Run:
    """One run: how long each phase took (seconds), and what decided it."""

    phases: dict[str, float]
    ticks_seeing: int  # ticks from the first that could see it to the deciding one, inclusive
    rule: str
    tick_overheads: list[float]  # every tick of the run: readings in → decision stored


async def one_run(sandbox: Remote, store_kind: str, rnd: random.Random) -> Run:
    with tempfile.TemporaryDirectory(prefix="watchdog-bench-") as tmp:
        text = await asyncio.to_thread(sandbox.call, "start", tmp)
        try:
            async with (
                state_url(store_kind, Path(tmp)) as url,
                opened(url) as real,
            ):
                config = Path(tmp) / "watchdog.yaml"
                config.write_text(re.sub(r"(?m)^state: .*$", f'state: {{url: "{url}"}}', text))
                store = TimedStore(real)
                daemon = Watchdog(load_config(config), store.as_store(), SystemClock(), Metrics())
                await daemon.start()
                try:
                    record = await daemon.announce(
                        Deployment(
                            "backend",
                            "dep-2",
                            datetime.now(UTC),
                            previous_id="dep-1",
                            release=BAD_RELEASE,
                            previous_release=GOOD_RELEASE,
                        )
                    )
                    await asyncio.sleep(HEALTHY + rnd.random())
                    await asyncio.to_thread(sandbox.call, "spike")

                    async def reported() -> WatchRecord | None:
                        found = await real.watch(record.id)
                        return found if found and found.incident_report else None

                    # Closed, and its post-mortem written: nothing is left in flight to stop.
                    rule = (await until(reported, 60, "the watch's post-mortem")).rule
                finally:
                    await daemon.stop()
            visible = await asyncio.to_thread(sandbox.call, "visible")
            arrived = await asyncio.to_thread(sandbox.call, "rollbacks")
        finally:
            await asyncio.to_thread(sandbox.call, "stop")
    if visible is None or len(arrived) != 1:
        raise RuntimeError(f"expected one rollback after the spike, found {len(arrived)}")
    ticks = store.ticks[record.id]
    first = next(i for i, t in enumerate(ticks) if t.at >= visible)
    decided = next(i for i, t in enumerate(ticks) if t.verdict == "rollback")
    tick = ticks[decided]
    queued = store.mark("queue_notification", tick.decided)
    intended = store.mark("begin_action", tick.decided)
    return Run(
        phases={
            "spike visible → first tick that could see it starts": ticks[first].at - visible,
            "spike visible → the tick that decides starts": tick.at - visible,
            END_TO_END: arrived[0] - visible,
            "deciding tick: reading the signals (HTTP)": tick.read - tick.at,
            OVERHEAD: arrived[0] - tick.read,
            "… store: readings and decision stored": tick.decided - tick.read,
            "… watch saved as acting, Slack message queued": queued - tick.decided,
            "… plan: provider read, action stored as intended": intended - queued,
            "… send: provider state checked, request arrives": arrived[0] - intended,
        },
        ticks_seeing=decided - first + 1,
        rule=rule or "?",
        tick_overheads=[t.decided - t.read for t in ticks],
    )


async def bench(runs: int, store_kind: str) -> list[Run]:
    os.environ.update(stack.ENV)
    rnd = random.Random()
    done = []
    with Remote(SpikeSandbox) as sandbox:
        for _ in range(runs):
            done.append(await one_run(sandbox, store_kind, rnd))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs to measure (default 20)")
    parser.add_argument("--store", choices=["sqlite", "postgres"], default="sqlite")
    args = parser.parse_args()
    quiet_logs()
    scheduler = SchedulerLog()
    runs = asyncio.run(bench(args.runs, args.store))

    def row(name: str, values: list[float], shown: Callable[[float], str] = seconds) -> list[str]:
        return [name, *(shown(quantile(values, q)) for q in (0.5, 0.99, 1.0))]

    every_tick = [o for r in runs for o in r.tick_overheads]
    rules = ", ".join(f"{rule} ×{n}" for rule, n in Counter(r.rule for r in runs).items())
    held = Counter(r.ticks_seeing for r in runs)
    rows = [row(name, [r.phases[name] for r in runs]) for name in runs[0].phases]
    share = [r.phases[OVERHEAD] / r.phases[END_TO_END] for r in runs]
    rows.insert(5, row("… as a share of spike → rollback request", share, "{:.1%}".format))
    rows.append(row(f"every tick: storing its readings ({len(every_tick)} ticks)", every_tick))
    print_table(
        f"Detection latency, {len(runs)} runs, {args.store} store, interval {INTERVAL}; "
        f"ticks that saw the spike before acting: "
        f"{', '.join(f'{k} in {v} runs' for k, v in sorted(held.items()))}; rule: {rules}",
        ["measure", "p50", "p99", "max"],
        rows,
    )
    if scheduler.messages:
        count, first = len(scheduler.messages), scheduler.messages[0]
        print(f"\nAPScheduler reported {count} problem(s), the first: {first}")


if __name__ == "__main__":
    main()
