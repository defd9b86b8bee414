"""Which notifiers the config asks for: Slack when ``slack`` is set, then every generic JSON
webhook of ``notify_webhooks``, in order."""

from __future__ import annotations

import httpx

from watchdog.notify.base import Notifier
from watchdog.notify.slack import SlackNotifier
from watchdog.notify.webhook import JsonWebhookNotifier
from watchdog.settings import Settings


def build_notifiers(settings: Settings, client: httpx.AsyncClient) -> list[Notifier]:
    """The configured notifiers, sharing ``client`` (its timeout bounds every delivery)."""
    notifiers: list[Notifier] = []
    if settings.slack is not None:
        notifiers.append(SlackNotifier(settings.slack.webhook_url, client))
    notifiers += [JsonWebhookNotifier(hook, client) for hook in settings.notify_webhooks]
    return notifiers
