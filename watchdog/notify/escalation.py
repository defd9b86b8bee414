"""The escalation chain: page the next level while an incident stays unacknowledged.

The runbook's on-call engineer answers within 5 minutes, the team lead within 15, the CTO
within 30: each step's ``after`` counts from the incident's start (``0m``, ``5m``, ``20m``),
so a level is paged when every level before it has had its time. Pages are outbox messages
keyed by watch and level: stored, so a restart neither forgets nor repeats one, and an
acknowledgement (``watchdog ack``, ``POST /api/watches/{id}/ack``) stops the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from watchdog.clock import Clock
from watchdog.notify.base import Message
from watchdog.notify.outbox import Outbox
from watchdog.settings import EscalationStep
from watchdog.store.base import StateStore
from watchdog.store.records import Outcome, WatchRecord

log = structlog.get_logger("watchdog.escalation")

ESCALATION = "escalation"
# Outcomes that need people even when nothing was decided: a blind watch, a failed rollback.
_NEEDS_PEOPLE = {Outcome.INCONCLUSIVE, Outcome.ROLLBACK_FAILED}
# How far back unacknowledged incidents are still escalated (a restart after a long outage
# still pages what is due, but not last month's incidents).
HORIZON = timedelta(days=1)
# How many of the newest watches each follow-up round looks at (escalation, post-mortems).
RECENT = 500

Compose = Callable[[str, EscalationStep], Awaitable[Message]]


def incident_start(record: WatchRecord) -> datetime | None:
    """When people became needed: the rollback (or flag) decision, else the close of a watch
    that ended blind or failed; None when the watch needs nobody."""
    if record.decided_at is not None:
        return record.decided_at
    if record.outcome in _NEEDS_PEOPLE:
        return record.closed_at
    return None


def due_steps(
    chain: Sequence[EscalationStep],
    start: datetime,
    acknowledged_at: datetime | None,
    paged: set[str],
    now: datetime,
) -> list[EscalationStep]:
    """The levels to page now: due, not paged yet, and nobody has acknowledged."""
    if acknowledged_at is not None:
        return []
    return [s for s in chain if s.name not in paged and start + s.after <= now]


class Escalator:
    def __init__(
        self,
        store: StateStore,
        chain: Sequence[EscalationStep],
        outbox: Outbox,
        clock: Clock,
        compose: Compose,
    ) -> None:
        self._store = store
        self._chain = chain
        self._outbox = outbox
        self._clock = clock
        self._compose = compose

    async def run(self, recent: Sequence[WatchRecord]) -> int:
        """Queue every page due now for the ``recent`` watches (the newest ``RECENT``); how
        many levels were paged."""
        if not self._chain:
            return 0
        now = self._clock.now()
        paged_now = 0
        for record in recent:
            start = incident_start(record)
            if start is None or record.acknowledged_at is not None or now - start > HORIZON:
                continue
            sent = await self._store.notifications(record.id)
            paged = {
                str(n.payload.get("data", {}).get("level")) for n in sent if n.kind == ESCALATION
            }
            for step in due_steps(self._chain, start, record.acknowledged_at, paged, now):
                message = await self._compose(record.id, step)
                message = replace(message, data={**message.data, "level": step.name})
                await self._outbox.queue(record.id, message, detail=step.name)
                log.warning("escalation.paged", watch=record.id, level=step.name)
                paged_now += 1
        return paged_now
