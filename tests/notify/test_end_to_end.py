"""A real watch over the whole sandbox (toy app, Sentry, Render and Slack stand-ins), then its
message composed from the store and posted to the Slack stand-in, as the daemon will."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.providers.helpers import advancing_sleep, refused_url
from watchdog.clock import ManualClock
from watchdog.model import Deployment
from watchdog.notify.messages import compose
from watchdog.notify.registry import build_notifiers
from watchdog.sandbox import stack, toyapp
from watchdog.sandbox.deployments import BAD_RELEASE, GOOD_RELEASE
from watchdog.settings import load_config
from watchdog.store.records import Outcome
from watchdog.store.sql import SqlStore
from watchdog.watch import Watch, target_context

from .story import T0

DEPLOY = Deployment(
    "backend", "dep-2", T0, previous_id="dep-1", release=BAD_RELEASE, previous_release=GOOD_RELEASE
)
TICK = timedelta(seconds=15)


@pytest.fixture
def sandbox(clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[stack.Stack]:
    for name, value in stack.ENV.items():
        monkeypatch.setenv(name, value)
    with stack.running(clock, delay=timedelta(0)) as running:
        yield running


async def watched(
    tmp_path: Path,
    sandbox: stack.Stack,
    store: SqlStore,
    clock: ManualClock,
    kind: str,
    *,
    sentry_url: str | None = None,
) -> list[str]:
    """Watch DEPLOY until it closes (with Sentry at ``sentry_url`` when given), then post
    ``kind`` about it; the lines the channel shows."""
    path = tmp_path / "watchdog.yaml"
    text = sandbox.config(tmp_path, interval="15s", window="2m")
    if sentry_url:
        text = text.replace(sandbox.urls["sentry"], sentry_url)
    path.write_text(text)
    config = load_config(path)
    traffic = toyapp.Traffic(
        sandbox.app,
        sandbox.log,
        clock,
        project=stack.PROJECT,
        environment="production",
        per_second=40,
    )
    async with target_context(
        config.settings, config.rules, store, clock, "backend", sleep=advancing_sleep(clock)
    ) as ctx:
        watch = await Watch.start(
            ctx, DEPLOY, window=timedelta(minutes=2), interval=TICK, dry_run=False
        )
        while not watch.closed:
            clock.advance(TICK)
            traffic.pump()
            await watch.tick()
    message = await compose(store, config.settings, watch.record.id, kind)
    async with httpx.AsyncClient(timeout=5) as client:
        (slack,) = build_notifiers(config.settings, client)
        await slack.send(message)
    (posted,) = sandbox.channel.messages()
    assert posted["text"] == message.text
    return [
        line
        for block in posted["blocks"]
        for line in block.get("text", {}).get("text", "").splitlines()
    ]


async def test_a_real_rollback_is_reported_to_slack_with_its_verification(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    lines = await watched(tmp_path, sandbox, store, clock, "rollback_executed")
    (record,) = await store.recent_watches(1)
    assert record.outcome is Outcome.ROLLED_BACK
    assert lines[0] == "🔄 ROLLBACK EXECUTED"
    assert lines[1].startswith("*Deployment:* `dep-2` on *backend*")
    assert lines[1].endswith("rolled back to `dep-1` via render")
    assert lines[3].startswith("*Rollback time:* ")
    assert "of the 5 min allowed ✅" in lines[3]
    assert "• *Backend:* ✅ Healthy" in lines
    assert any(line.startswith("• *Error rate:* ✅ ") for line in lines)


async def test_a_blind_watch_reports_sentry_as_the_failing_source(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> None:
    sandbox.app.set_faults(toyapp.Faults(error_fraction=0.05), BAD_RELEASE)
    lines = await watched(
        tmp_path, sandbox, store, clock, "watchdog_blind", sentry_url=refused_url()
    )
    assert lines[0] == "🙈 WATCHDOG BLIND (inconclusive)"
    sentry = next(line for line in lines if line.startswith("• `sentry`"))
    assert sentry.startswith(
        "• `sentry` (error_rate, users_affected, latency_change{check=sentry}):"
    )
    assert (
        "unreachable, 8 ticks from 12:00:15 UTC to 12:02:00 UTC; last: cannot reach Sentry"
        in sentry
    )
