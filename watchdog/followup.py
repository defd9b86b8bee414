"""What follows a watch's stored state changes: the messages, the escalation chain and the
post-mortem. Everything here runs after the watch has decided, acted and persisted, and works
from the store alone, so it can fail, be retried, or run on another replica without touching
what the watch did.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import structlog

from watchdog.clock import Clock
from watchdog.errors import WatchdogError
from watchdog.incident import write_incident
from watchdog.notify.base import Message, Notifier
from watchdog.notify.escalation import HORIZON, RECENT, Escalator
from watchdog.notify.messages import compose
from watchdog.notify.outbox import Outbox
from watchdog.settings import EscalationStep, LoadedConfig
from watchdog.store.base import StateStore
from watchdog.store.records import Outcome, WatchRecord

log = structlog.get_logger("watchdog.followup")

# Watches that end in one of these get a post-mortem file.
INCIDENT_OUTCOMES = {
    Outcome.ROLLED_BACK,
    Outcome.ROLLBACK_FAILED,
    Outcome.FLAG_DISABLED,
    Outcome.WOULD_ROLL_BACK,
}


class Followup:
    def __init__(
        self,
        config: LoadedConfig,
        store: StateStore,
        clock: Clock,
        notifiers: Sequence[Notifier],
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self.notifiers = notifiers
        self.outbox = Outbox(store, notifiers, clock)
        self._escalator = Escalator(
            store, config.settings.escalation, self.outbox, clock, self._page
        )
        self._lock = asyncio.Lock()  # one round at a time: a message is never sent twice

    async def notify(self, record: WatchRecord, kind: str) -> None:
        """Queue the message for a state change of ``record`` (``Context.notify``)."""
        message = await compose(self._store, self._config.settings, record.id, kind)
        await self.outbox.queue(record.id, message)

    async def _page(self, watch_id: str, step: EscalationStep) -> Message:
        return await compose(
            self._store, self._config.settings, watch_id, "escalation", level=step
        )

    async def run(self) -> None:
        """One round: page what is due, write the post-mortems still missing, send the
        outbox. Each part's failure is logged and left for the next round."""
        async with self._lock:
            try:
                recent = await self._store.recent_watches(RECENT)  # one read for both
            except WatchdogError as exc:
                log.error("followup.failed", part="recent_watches", error=str(exc))
                recent = []
            parts: tuple[tuple[str, Callable[[], Awaitable[object]]], ...] = (
                ("escalation", lambda: self._escalator.run(recent)),
                ("_write_incidents", lambda: self._write_incidents(recent)),
                ("drain", self.outbox.drain),
            )
            for name, part in parts:
                try:
                    await part()
                except WatchdogError as exc:
                    log.error("followup.failed", part=name, error=str(exc))

    async def _write_incidents(self, recent: Sequence[WatchRecord]) -> None:
        now = self._clock.now()
        for record in recent:
            if (
                record.outcome in INCIDENT_OUTCOMES
                and record.incident_report is None
                and record.closed_at is not None
                and now - record.closed_at <= HORIZON
            ):
                await self.incident(record)

    async def incident(self, record: WatchRecord) -> WatchRecord:
        """Write ``record``'s post-mortem (once) and remember where."""
        settings, rules = self._config.settings, self._config.rules
        path = await write_incident(self._store, settings, rules, record.id)
        await self._store.set_incident_report(record.id, str(path))
        record = replace(record, incident_report=str(path))
        log.info("incident.written", watch=record.id, path=str(path))
        return record
