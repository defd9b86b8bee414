"""The Slack incoming-webhook stand-in answers as api-contracts.md §5 says, over loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from watchdog.clock import ManualClock
from watchdog.sandbox import slack
from watchdog.sandbox.faults import Faults

from .conftest import T0, serving

HOOK = "/services/T0ACME/B0WATCH/s3cr3t"


@pytest.fixture
def channel() -> slack.SlackChannel:
    return slack.SlackChannel()


@pytest.fixture
def base_url(channel: slack.SlackChannel, clock: ManualClock, faults: Faults) -> Iterator[str]:
    with serving(slack.create_app(channel, path=HOOK, clock=clock, faults=faults), faults) as url:
        yield url


@pytest.fixture
def hook(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url) as client:
        yield client


def test_a_message_is_ok_in_plain_text_and_kept(
    hook: httpx.Client, channel: slack.SlackChannel
) -> None:
    message = {
        "text": "Rolled back acme-api to dep-1",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*Rolled back*"}}],
    }
    response = hook.post(HOOK, json=message)
    assert (response.status_code, response.text) == (200, "ok")
    assert response.headers["content-type"].startswith("text/plain")
    assert channel.messages() == [message]
    assert channel.texts() == ["Rolled back acme-api to dep-1"]


def test_every_accepted_post_is_kept_once(hook: httpx.Client, channel: slack.SlackChannel) -> None:
    for n in range(3):
        hook.post(HOOK, json={"text": f"tick {n}"})
    assert channel.texts() == ["tick 0", "tick 1", "tick 2"]


def test_blocks_or_attachments_need_no_text(hook: httpx.Client) -> None:
    assert hook.post(HOOK, json={"blocks": [{"type": "divider"}]}).text == "ok"
    assert hook.post(HOOK, json={"attachments": [{"fallback": "x"}]}).text == "ok"


@pytest.mark.parametrize(
    ("content", "status", "body"),
    [
        (b"{not json", 400, "invalid_payload"),
        (b"[1, 2]", 400, "invalid_payload"),
        (b'{"text": 5}', 400, "invalid_payload"),
        (b"{}", 400, "no_text"),
        (b'{"text": ""}', 400, "missing_text_or_fallback_or_attachments"),
        (b'{"text": "x", "blocks": [{"text": "no type"}]}', 400, "invalid_blocks"),
    ],
)
def test_bad_payloads_are_plain_text_errors(
    hook: httpx.Client, channel: slack.SlackChannel, content: bytes, status: int, body: str
) -> None:
    response = hook.post(HOOK, content=content, headers={"content-type": "application/json"})
    assert (response.status_code, response.text) == (status, body)
    assert response.headers["content-type"].startswith("text/plain")
    assert channel.messages() == []


@pytest.mark.parametrize("path", ["/services/T0ACME/B0WATCH/wrong", "/services/x", "/api/chat"])
def test_unknown_webhooks_are_no_service(hook: httpx.Client, path: str) -> None:
    response = hook.post(path, json={"text": "hi"})
    assert (response.status_code, response.text) == (404, "no_service")


def test_an_archived_channel_is_410(hook: httpx.Client, channel: slack.SlackChannel) -> None:
    channel.archived = True
    response = hook.post(HOOK, json={"text": "hi"})
    assert (response.status_code, response.text) == (410, "channel_is_archived")
    channel.archived = False
    assert hook.post(HOOK, json={"text": "hi"}).text == "ok"
    assert channel.texts() == ["hi"]


def test_rate_limited_with_retry_after_until_the_clock_passes(
    hook: httpx.Client, faults: Faults, clock: ManualClock, channel: slack.SlackChannel
) -> None:
    faults.rate_limit(T0 + timedelta(seconds=3))
    response = hook.post(HOOK, json={"text": "hi"})
    assert (response.status_code, response.text) == (429, "rate_limited")
    assert response.headers["Retry-After"] == "3"
    clock.advance(timedelta(seconds=3))
    assert hook.post(HOOK, json={"text": "hi"}).status_code == 200
    assert channel.texts() == ["hi"]


def test_an_armed_500_is_a_rollup_error(hook: httpx.Client, faults: Faults) -> None:
    faults.fail_next(1, 500)
    response = hook.post(HOOK, json={"text": "hi"})
    assert (response.status_code, response.text) == (500, "rollup_error")
