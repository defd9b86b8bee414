"""Waiting for a rollback to serve: one loop for every provider, on the injected clock and sleep,
so tests move a ManualClock instead of waiting."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta

from watchdog.clock import Clock

Sleep = Callable[[float], Awaitable[None]]


async def wait_until(
    done: Callable[[], Awaitable[bool]],
    *,
    clock: Clock,
    sleep: Sleep,
    timeout: timedelta,
    every: timedelta,
) -> timedelta | None:
    """Ask ``done`` now and every ``every`` after; None once it says True, else the time waited
    when ``timeout`` ran out. ``done`` raises to end the wait with a failure."""
    started = clock.now()
    while not await done():
        waited = clock.now() - started
        if waited >= timeout:
            return waited
        await sleep(min(every, timeout - waited).total_seconds())
    return None
