"""The generic JSON webhook against a small receiver served over loopback, and which
notifiers a config builds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response

from tests.providers.helpers import assert_secret_free
from watchdog.errors import ConfigError
from watchdog.notify.base import DeliveryFailed, Message
from watchdog.notify.registry import build_notifiers
from watchdog.notify.webhook import JsonWebhookNotifier, retry_after
from watchdog.sandbox.server import serve
from watchdog.settings import Settings, WebhookNotify

from .conftest import load

PATH = "/hooks/pagerpath-93d1c5"
MESSAGE = Message(
    kind="rollback_failed",
    text="❌ The rollback of backend dep-2 failed",
    blocks=({"type": "divider"},),
    data={"watch_id": "w1", "target": "backend", "actions": [{"status": "failed"}]},
)


@dataclass
class Receiver:
    """What the receiver got, and the answers it gives next (200 once they run out)."""

    got: list[tuple[dict[str, Any], str | None]] = field(default_factory=list)
    answers: list[Response] = field(default_factory=list)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def receiver_url(receiver: Receiver) -> Iterator[str]:
    app = FastAPI()

    @app.post(PATH)
    async def hook(request: Request) -> Response:
        receiver.got.append((await request.json(), request.headers.get("authorization")))
        return receiver.answers.pop(0) if receiver.answers else Response(status_code=204)

    with serve(app) as url:
        yield url + PATH


def webhook(url: str, client: httpx.AsyncClient, token: str | None = None) -> JsonWebhookNotifier:
    config = WebhookNotify.model_validate({"name": "pager", "url": url, "token": token})
    return JsonWebhookNotifier(config, client)


async def failure(hook: JsonWebhookNotifier) -> DeliveryFailed:
    with pytest.raises(DeliveryFailed) as caught:
        await hook.send(MESSAGE)
    assert_secret_free("pagerpath-93d1c5", caught.value, str(caught.value))
    return caught.value


async def test_the_message_is_posted_as_kind_text_and_data_with_the_bearer_token(
    receiver_url: str, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    await webhook(receiver_url, client, token="pager-bearer-2c8f66").send(MESSAGE)
    assert receiver.got == [
        (
            {"kind": MESSAGE.kind, "text": MESSAGE.text, "data": MESSAGE.data},
            "Bearer pager-bearer-2c8f66",
        )
    ]


async def test_without_a_token_no_authorization_is_sent(
    receiver_url: str, receiver: Receiver, client: httpx.AsyncClient
) -> None:
    await webhook(receiver_url, client).send(MESSAGE)
    assert receiver.got[0][1] is None


@pytest.mark.parametrize(("headers", "wait"), [({"Retry-After": "7"}, 7.0), ({}, 1.0)])
async def test_rate_limited_waits_as_the_receiver_asks(
    receiver_url: str,
    receiver: Receiver,
    client: httpx.AsyncClient,
    headers: dict[str, str],
    wait: float,
) -> None:
    receiver.answers.append(Response("slow down", status_code=429, headers=headers))
    failed = await failure(webhook(receiver_url, client))
    assert (failed.permanent, failed.retry_after) == (False, wait)
    assert "429 slow down" in str(failed)


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"Retry-After": "120"}, 120.0),
        (
            {
                "Retry-After": "Wed, 28 Jan 2026 12:02:00 GMT",
                "Date": "Wed, 28 Jan 2026 12:01:30 GMT",
            },
            30.0,
        ),
        (
            {
                "Retry-After": "Wed, 28 Jan 2026 12:01:00 GMT",
                "Date": "Wed, 28 Jan 2026 12:01:30 GMT",
            },
            0.0,
        ),
        ({"Retry-After": "Wed, 28 Jan 2026 12:02:00 GMT"}, 1.0),
        ({"Retry-After": "soon"}, 1.0),
    ],
    ids=["seconds", "http-date", "date-passed", "date-without-Date", "garbled"],
)
def test_retry_after_reads_seconds_or_an_http_date_against_the_answers_date(
    headers: dict[str, str], wait: float
) -> None:
    assert retry_after(httpx.Response(429, headers=headers)) == wait


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_is_transient(
    receiver_url: str, receiver: Receiver, client: httpx.AsyncClient, status: int
) -> None:
    receiver.answers.append(Response("upstream down", status_code=status))
    failed = await failure(webhook(receiver_url, client))
    assert not failed.permanent
    assert f"HTTP {status} upstream down" in str(failed)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410])
async def test_other_refusals_are_permanent(
    receiver_url: str, receiver: Receiver, client: httpx.AsyncClient, status: int
) -> None:
    receiver.answers.append(Response(status_code=status))
    failed = await failure(webhook(receiver_url, client))
    assert failed.permanent
    assert failed.notifier == "webhook:pager"
    assert f"HTTP {status}" in str(failed)


async def test_the_config_builds_slack_then_each_webhook_with_its_token_from_the_env(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    receiver_url: str,
    receiver: Receiver,
    client: httpx.AsyncClient,
) -> None:
    audit = '  - {name: audit, url: "${AUDIT_URL}"}\n'
    monkeypatch.setenv("AUDIT_URL", receiver_url)
    settings = load(tmp_path, monkeypatch, "notify_webhooks:\n" + _pager(receiver_url) + audit)
    notifiers = build_notifiers(settings, client)
    assert [n.name for n in notifiers] == ["slack", "webhook:pager", "webhook:audit"]
    for hook in notifiers[1:]:
        await hook.send(MESSAGE)
    assert [auth for _, auth in receiver.got] == ["Bearer pager-bearer-2c8f66", None]


def _pager(url: str) -> str:
    return f'  - {{name: pager, url: "{url}", token: "${{PAGER_TOKEN}}"}}\n'


def test_without_slack_or_webhooks_there_are_no_notifiers(
    settings: Settings, client: httpx.AsyncClient
) -> None:
    bare = settings.model_copy(update={"slack": None, "notify_webhooks": []})
    assert build_notifiers(bare, client) == []


def test_two_webhooks_of_one_name_are_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    twice = "notify_webhooks:\n" + _pager("https://a.example") + _pager("https://b.example")
    with pytest.raises(ConfigError, match=r"notify_webhooks.*expected each webhook's name once"):
        load(tmp_path, monkeypatch, twice)
