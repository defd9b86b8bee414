"""A generic JSON webhook: POST ``{"kind", "text", "data"}`` for receivers that are not Slack
(a pager bridge, a chat bot, an audit log).

``post_json`` is the one place a notifier talks HTTP, so Slack and this webhook answer
failures alike: 2xx delivered; 429 transient after the receiver's ``Retry-After``; 5xx, a
timeout or no connection transient; anything else permanent. The URL is a secret (webhook
URLs carry their token in the path): no error and no log line ever shows it.
"""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from watchdog.errors import ConfigError
from watchdog.notify.base import DeliveryFailed, Message
from watchdog.secrets import Secret
from watchdog.settings import WebhookNotify

DEFAULT_RETRY_AFTER = 1.0
"""The wait after a 429 that names none (what Slack's own SDK assumes)."""
_SAID = 200  # characters of a refusal's body quoted in the error


def retry_after(response: httpx.Response) -> float:
    """The wait a 429 asks for: ``Retry-After`` in seconds or as an HTTP date (measured from
    the response's own ``Date``, so neither clock's skew matters); 1 s when absent."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        wait = parsedate_to_datetime(value) - parsedate_to_datetime(response.headers["Date"])
    except (KeyError, TypeError, ValueError, IndexError):  # no date, or a garbled one
        return DEFAULT_RETRY_AFTER
    return max(wait.total_seconds(), 0.0)


async def post_json(
    notifier: str,
    client: httpx.AsyncClient,
    url: Secret,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    """POST ``body`` once.

    :raises DeliveryFailed: not delivered; ``permanent`` when resending the same body cannot
        help, ``retry_after`` when the receiver said how long to wait. Its message quotes the
        receiver's answer, never the URL.
    """
    try:
        response = await client.post(url.reveal(), json=body, headers=headers)
    except ConfigError as exc:  # the URL's environment variable is unset
        raise DeliveryFailed(notifier, str(exc), permanent=True) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise DeliveryFailed(
            notifier, "the webhook URL is not an http(s) URL", permanent=True
        ) from None
    except httpx.TimeoutException as exc:
        raise DeliveryFailed(notifier, f"timed out ({type(exc).__name__})") from None
    except httpx.HTTPError as exc:
        raise DeliveryFailed(notifier, f"could not connect ({type(exc).__name__})") from None
    status = response.status_code
    if 200 <= status < 300:
        return
    said = response.text.strip()[:_SAID] or response.reason_phrase
    if status == 429:
        wait = retry_after(response)
        raise DeliveryFailed(notifier, f"HTTP 429 {said}", retry_after=wait)
    raise DeliveryFailed(notifier, f"HTTP {status} {said}", permanent=status < 500)


class JsonWebhookNotifier:
    """Delivers every message to one configured URL, with the bearer token when there is one."""

    def __init__(self, config: WebhookNotify, client: httpx.AsyncClient) -> None:
        self.name = f"webhook:{config.name}"
        self._config = config
        self._client = client

    async def send(self, message: Message) -> None:
        headers = {}
        if self._config.token is not None:
            try:
                headers["Authorization"] = f"Bearer {self._config.token.reveal()}"
            except ConfigError as exc:
                raise DeliveryFailed(self.name, str(exc), permanent=True) from None
        body = {"kind": message.kind, "text": message.text, "data": message.data}
        await post_json(self.name, self._client, self._config.url, body, headers)
