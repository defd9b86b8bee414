"""A Slack incoming-webhook stand-in (``api-contracts.md`` §5): POST JSON to the one webhook
path it knows, get ``ok`` as text/plain, or a plain-text error string; every accepted message is
kept in a ``SlackChannel`` so tests can read what was posted, and how often.

Choices where Slack is vague: ``{}`` is 400 ``no_text``, ``{"text": ""}`` 400
``missing_text_or_fallback_or_attachments``, a message with non-empty ``blocks`` or
``attachments`` needs no ``text``; ``blocks`` that Block Kit would refuse is 400
``invalid_blocks``: more than 50, a type it does not know, or a header, section or context
of the wrong shape (a header's text is plain_text up to 150 characters, a section's text up
to 3000, a context holds 1 to 10 elements); the body is read as JSON whatever its content
type; a 429 says ``rate_limited``; an armed 400 says ``invalid_payload``, an armed 500
``rollup_error``.
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
    "bad_request": "invalid_payload",
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


_BLOCK_TYPES = {
    "actions", "context", "divider", "file", "header", "image", "input", "markdown",
    "rich_text", "section", "video",
}  # fmt: skip


def _check(message: dict[str, Any]) -> None:
    blocks = message.get("blocks")
    if blocks is not None and not (
        isinstance(blocks, list) and len(blocks) <= 50 and all(_valid_block(b) for b in blocks)
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


def _text(obj: Any, limit: int, types: tuple[str, ...] = ("plain_text", "mrkdwn")) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("type") in types
        and isinstance(obj.get("text"), str)
        and 0 < len(obj["text"]) <= limit
    )


def _image(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "image"


def _valid_block(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
        return False
    match block["type"]:
        case "header":
            return _text(block.get("text"), 150, ("plain_text",))
        case "section":
            fields = block.get("fields")
            if fields is not None and not (
                isinstance(fields, list)
                and 0 < len(fields) <= 10
                and all(_text(f, 2000) for f in fields)
            ):
                return False
            text = block.get("text")
            return _text(text, 3000) if text is not None else fields is not None
        case "context":
            elements = block.get("elements")
            return (
                isinstance(elements, list)
                and 0 < len(elements) <= 10
                and all(_text(e, 3000) or _image(e) for e in elements)
            )
        case _:
            return True


def _render(refused: Refused) -> Response:
    word = _SLACK_WORDS.get(refused.code, refused.code)
    headers = {"Retry-After": str(refused.throttle.retry_after)} if refused.throttle else {}
    return PlainTextResponse(word, status_code=refused.status, headers=headers)
