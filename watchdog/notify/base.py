"""The Notifier seam: Slack and a generic JSON webhook sit behind it.

A notifier delivers one message or raises ``NotifyError`` saying whether trying again can help
and after how long; it never retries by itself. The outbox retries from the store, so a
failure never blocks a rollback and a restart loses nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from watchdog.errors import NotifyError


@dataclass(frozen=True)
class Message:
    """One message: ``text`` is the plain fallback (and all a generic webhook may show),
    ``blocks`` the Slack Block Kit layout, ``kind`` what happened (``rollback_executed``,
    ``escalation``…), ``data`` the same facts as JSON for machine receivers."""

    kind: str
    text: str
    blocks: tuple[dict[str, Any], ...] = ()
    data: dict[str, Any] = field(default_factory=dict)


class DeliveryFailed(NotifyError):
    """The receiver refused or could not be reached. ``retry_after`` is the wait the receiver
    asked for (a 429's Retry-After), ``permanent`` that resending the same message cannot
    succeed (a 400 ``invalid_payload``, a 404 ``no_service``)."""

    def __init__(
        self,
        notifier: str,
        message: str,
        *,
        permanent: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.notifier = notifier
        self.permanent = permanent
        self.retry_after = retry_after
        super().__init__(f"{notifier}: {message}")


class Notifier(Protocol):
    name: str

    async def send(self, message: Message) -> None:
        """Deliver ``message`` once; raise DeliveryFailed when it was not delivered."""
