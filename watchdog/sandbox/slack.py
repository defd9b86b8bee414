"""A Slack incoming-webhook stand-in (``api-contracts.md`` §5): POST JSON to the one webhook
path it knows, get ``ok`` as text/plain, or a plain-text error string; every accepted message is
kept in a ``SlackChannel`` so tests can read what was posted, and how often.

Choices where Slack is vague: ``{}`` is 400 ``no_text``, ``{"text": ""}`` 400
``missing_text_or_fallback_or_attachments``, a message with non-empty ``blocks`` or
``attachments`` needs no ``text``, ``blocks`` that is not a list of objects with a ``type`` is
400 ``invalid_blocks``; the body is read as JSON whatever its content type; a 429 says
``rate_limited``; an armed 500 says ``rollup_error``.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse

from watchdog.clock import Clock
from watchdog.sandbox.faults import Faults, Refused, answer_refusals

_SLACK_WORDS = {
    "not_found": "no_service",
    "internal_server_error": "rollup_error",
    "unauthorized": "invalid_token",
    "forbidden": "action_prohibited",
}


class SlackChannel:
    """The channel behind the webhook: the messages it accepted, oldest first, and whether it
    has been archived (then every post is 410 ``channel_is_archived``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self.archived = False

    def messages(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._messages)

    def texts(self) -> list[str]:
        """The ``text`` of each message, for quick assertions."""
        return [str(m.get("text", "")) for m in self.messages()]

    def accept(self, message: dict[str, Any]) -> None:
        """Keep ``message``: what the webhook does with a valid post."""
        with self._lock:
            self._messages.append(message)


def create_app(
    channel: SlackChannel, *, path: str, clock: Clock, faults: Faults | None = None
) -> FastAPI:
    """The webhook ``path`` (``/services/T…/B…/…``) posting into ``channel``; any other path
    is 404 ``no_service``."""
    faults = faults if faults is not None else Faults()
    app = FastAPI(title="Slack stand-in", openapi_url=None)
    answer_refusals(app, _render)

    @app.post("/services/{team}/{bot}/{secret}")
    async def post(request: Request, team: str, bot: str, secret: str) -> Response:
        if request.url.path != path:
            raise Refused(404, code="no_service")
        await faults.admit("post", clock.now())
        if channel.archived:
            raise Refused(410, code="channel_is_archived")
        try:
            message = json.loads(await request.body())
        except ValueError:
            raise Refused(400, code="invalid_payload") from None
        if not isinstance(message, dict):
            raise Refused(400, code="invalid_payload")
        _check(message)
        channel.accept(message)
        return PlainTextResponse("ok")

    return app


def _check(message: dict[str, Any]) -> None:
    blocks = message.get("blocks")
    if blocks is not None and not (
        isinstance(blocks, list) and all(isinstance(b, dict) and "type" in b for b in blocks)
    ):
        raise Refused(400, code="invalid_blocks")
    if blocks or message.get("attachments"):
        return
    if "text" not in message:
        raise Refused(400, code="no_text")
    if not isinstance(message["text"], str):
        raise Refused(400, code="invalid_payload")
    if not message["text"].strip():
        raise Refused(400, code="missing_text_or_fallback_or_attachments")


def _render(refused: Refused) -> Response:
    word = _SLACK_WORDS.get(refused.code, refused.code)
    headers = {"Retry-After": str(refused.throttle.retry_after)} if refused.throttle else {}
    return PlainTextResponse(word, status_code=refused.status, headers=headers)
