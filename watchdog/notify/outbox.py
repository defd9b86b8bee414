"""The outbox: every message is stored before it is sent and sent from the store.

So a Slack outage never blocks or undoes an action (decide, act, persist, then notify), a
restart loses nothing, and a message is queued once per watch and state change however often
the change is seen: its key is ``watch:kind[:detail]:notifier``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import timedelta

import structlog

from watchdog.clock import Clock
from watchdog.notify.base import DeliveryFailed, Message, Notifier
from watchdog.store.base import StateStore
from watchdog.store.records import NotificationRecord

log = structlog.get_logger("watchdog.notify")

# Transient failures are retried with a doubling wait, capped; after this many tries the
# message is given up (about four hours at the cap), and the log says so.
MAX_ATTEMPTS = 50
_LONGEST_WAIT = timedelta(minutes=5)


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed try, when the receiver named none."""
    return min(timedelta(seconds=2 ** min(attempts, 16)), _LONGEST_WAIT)


class Outbox:
    def __init__(self, store: StateStore, notifiers: Sequence[Notifier], clock: Clock) -> None:
        self._store = store
        self._notifiers = {n.name: n for n in notifiers}
        self._clock = clock

    async def queue(self, watch_id: str | None, message: Message, detail: str = "") -> int:
        """Queue ``message`` for every notifier; how many were new (0 when it was queued
        before: the same watch, kind and detail)."""
        now = self._clock.now()
        name = ":".join(p for p in (watch_id or "-", message.kind, detail) if p)
        queued = 0
        for notifier in self._notifiers:
            queued += await self._store.queue_notification(
                NotificationRecord(
                    # Sorts in the order queued: messages queued together go out in order.
                    id=f"{time.time_ns():020d}{uuid.uuid4().hex[:12]}",
                    key=f"{name}:{notifier}",
                    watch_id=watch_id,
                    kind=message.kind,
                    notifier=notifier,
                    payload=asdict(message),
                    created_at=now,
                    due_at=now,
                )
            )
        return queued

    async def drain(self) -> int:
        """Send what is due, oldest first; how many were delivered."""
        delivered = 0
        for record in await self._store.due_notifications(self._clock.now()):
            delivered += await self._send(record)
        return delivered

    async def _send(self, record: NotificationRecord) -> bool:
        bound = log.bind(notification=record.id, kind=record.kind, notifier=record.notifier)
        notifier = self._notifiers.get(record.notifier)
        if notifier is None:
            await self._store.notification_failed(
                record.id, f"no notifier {record.notifier!r} is configured any more", None
            )
            bound.error("notification.dropped", reason="notifier not configured")
            return False
        payload = dict(record.payload)
        message = Message(
            kind=payload["kind"],
            text=payload["text"],
            blocks=tuple(payload.get("blocks", ())),
            data=dict(payload.get("data", {})),
        )
        try:
            await notifier.send(message)
        except DeliveryFailed as exc:
            attempts = record.attempts + 1
            retry_at = None
            if not exc.permanent and attempts < MAX_ATTEMPTS:
                wait = (
                    timedelta(seconds=exc.retry_after)
                    if exc.retry_after is not None
                    else backoff(attempts)
                )
                retry_at = self._clock.now() + wait
            await self._store.notification_failed(record.id, str(exc), retry_at)
            if retry_at is None:
                bound.error("notification.failed", error=str(exc), attempts=attempts)
            else:
                bound.warning(
                    "notification.retrying",
                    error=str(exc),
                    attempts=attempts,
                    retry_at=retry_at.isoformat(),
                )
            return False
        await self._store.notification_sent(record.id, self._clock.now())
        bound.info("notification.sent")
        return True
