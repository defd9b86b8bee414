"""Slack incoming webhooks (``api-contracts.md`` §5): the message's Block Kit layout with its
text as the notification fallback. Slack answers ``ok``, or an error word in plain text
(``invalid_payload``, ``no_service``, ``channel_is_archived``) that the failure quotes."""

from __future__ import annotations

import httpx

from watchdog.notify.base import Message
from watchdog.notify.webhook import post_json
from watchdog.secrets import Secret


class SlackNotifier:
    name = "slack"

    def __init__(self, webhook_url: Secret, client: httpx.AsyncClient) -> None:
        self._url = webhook_url
        self._client = client

    async def send(self, message: Message) -> None:
        """Post once. :raises DeliveryFailed: as ``post_json`` says (never showing the URL)."""
        body = {
            "text": message.text,
            "blocks": list(message.blocks),
            "unfurl_links": False,
            "unfurl_media": False,
        }
        await post_json(self.name, self._client, self._url, body)
