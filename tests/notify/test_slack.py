"""The Slack notifier against the Slack stand-in over loopback: what Slack answers becomes
delivered, retry-later (with Slack's own wait) or give-up, and the webhook URL, which is the
credential, shows up in no error."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from tests.providers.helpers import assert_secret_free, refused_url
from watchdog.clock import ManualClock
from watchdog.configfile import EnvRef
from watchdog.notify.base import DeliveryFailed, Message
from watchdog.notify.slack import SlackNotifier
from watchdog.sandbox import slack
from watchdog.sandbox.faults import Faults
from watchdog.secrets import Secret

from .conftest import HOOK
from .story import T0

SECRET_PART = HOOK.rsplit("/", 1)[1]
MESSAGE = Message(
    kind="rollback_executed",
    text="🔄 Rolled back backend dep-2 to dep-1",
    blocks=(
        {"type": "header", "text": {"type": "plain_text", "text": "🔄 ROLLBACK EXECUTED"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Deployment:* `dep-2`"}},
        {"type": "divider"},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "target backend"}]},
    ),
    data={"watch_id": "w1"},
)


def notifier(url: str, client: httpx.AsyncClient) -> SlackNotifier:
    return SlackNotifier(Secret(url), client)


async def failure(hook: SlackNotifier, message: Message = MESSAGE) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        await hook.send(message)
    assert_secret_free(SECRET_PART, caught.value, str(caught.value))
    return caught.value


async def test_a_message_is_posted_with_its_blocks_and_no_unfurling(
    slack_url: str, client: httpx.AsyncClient, channel: slack.SlackChannel
) -> None:
    await notifier(slack_url + HOOK, client).send(MESSAGE)
    assert channel.messages() == [
        {
            "text": MESSAGE.text,
            "blocks": list(MESSAGE.blocks),
            "unfurl_links": False,
            "unfurl_media": False,
        }
    ]


async def test_an_unknown_webhook_is_permanent_no_service(
    slack_url: str, client: httpx.AsyncClient, channel: slack.SlackChannel
) -> None:
    failed = await failure(notifier(slack_url + "/services/T0ACME/B0WATCH/revoked", client))
    assert failed.permanent
    assert failed.notifier == "slack"
    assert "404 no_service" in str(failed)
    assert channel.messages() == []


async def test_a_refused_payload_is_permanent_invalid_payload(
    slack_url: str, client: httpx.AsyncClient, faults: Faults
) -> None:
    faults.fail_next(1, 400)
    failed = await failure(notifier(slack_url + HOOK, client))
    assert (failed.permanent, failed.retry_after) == (True, None)
    assert "400 invalid_payload" in str(failed)


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


@pytest.mark.parametrize(
    "blocks",
    [
        [{"type": "header", "text": _mrkdwn("*headers are plain text*")}],
        [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}],
        [{"type": "section", "text": _mrkdwn("x" * 3001)}],
        [{"type": "section"}],
        [{"type": "context", "elements": []}],
        [{"type": "context", "elements": [_mrkdwn("x")] * 11}],
        [{"type": "divider"}] * 51,
        [{"type": "table"}],
    ],
    ids=[
        "header-mrkdwn",
        "header-151",
        "section-3001",
        "section-empty",
        "context-empty",
        "context-11",
        "blocks-51",
        "unknown-type",
    ],
)
async def test_blocks_slack_would_refuse_are_permanent_invalid_blocks(
    slack_url: str, client: httpx.AsyncClient, blocks: list[dict[str, object]]
) -> None:
    refused = Message(kind="x", text="x", blocks=tuple(blocks))
    failed = await failure(notifier(slack_url + HOOK, client), refused)
    assert failed.permanent
    assert "400 invalid_blocks" in str(failed)


async def test_an_archived_channel_is_permanent(
    slack_url: str, client: httpx.AsyncClient, channel: slack.SlackChannel
) -> None:
    channel.archived = True
    failed = await failure(notifier(slack_url + HOOK, client))
    assert failed.permanent
    assert "410 channel_is_archived" in str(failed)


async def test_rate_limited_is_transient_after_slacks_retry_after(
    slack_url: str,
    client: httpx.AsyncClient,
    faults: Faults,
    clock: ManualClock,
    channel: slack.SlackChannel,
) -> None:
    faults.rate_limit(T0 + timedelta(seconds=7))
    hook = notifier(slack_url + HOOK, client)
    failed = await failure(hook)
    assert (failed.permanent, failed.retry_after) == (False, 7.0)
    assert "429 rate_limited" in str(failed)
    clock.advance(timedelta(seconds=7))
    await hook.send(MESSAGE)
    assert channel.texts() == [MESSAGE.text]


async def test_a_slack_outage_is_transient(
    slack_url: str, client: httpx.AsyncClient, faults: Faults, channel: slack.SlackChannel
) -> None:
    faults.fail_next(1, 500)
    hook = notifier(slack_url + HOOK, client)
    failed = await failure(hook)
    assert (failed.permanent, failed.retry_after) == (False, None)
    assert "500 rollup_error" in str(failed)
    await hook.send(MESSAGE)  # the next try goes through
    assert len(channel.messages()) == 1


async def test_no_connection_is_transient(client: httpx.AsyncClient) -> None:
    failed = await failure(notifier(refused_url() + HOOK, client))
    assert not failed.permanent
    assert "could not connect" in str(failed)


async def test_a_timeout_is_transient(slack_url: str, faults: Faults) -> None:
    faults.stall_next(1, seconds=10)
    async with httpx.AsyncClient(timeout=0.2) as impatient:
        failed = await failure(notifier(slack_url + HOOK, impatient))
    assert not failed.permanent
    assert "timed out" in str(failed)


async def test_an_unset_webhook_variable_is_permanent_and_named(
    client: httpx.AsyncClient,
) -> None:
    unset = Secret(EnvRef("${SLACK_WEBHOOK_URL}", ("SLACK_WEBHOOK_URL",), "watchdog.yaml: slack"))
    failed = await failure(SlackNotifier(unset, client))
    assert failed.permanent
    assert "SLACK_WEBHOOK_URL is not set" in str(failed)


async def test_a_webhook_url_that_is_not_http_is_permanent(client: httpx.AsyncClient) -> None:
    failed = await failure(notifier(f"hooks.slack.example{HOOK}", client))
    assert failed.permanent
    assert "not an http(s) URL" in str(failed)
