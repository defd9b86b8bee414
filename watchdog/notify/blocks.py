"""Slack Block Kit and mrkdwn: the few block shapes messages use, kept within Slack's limits,
and the escaping that keeps text from records from being read as Slack markup."""

from __future__ import annotations

from typing import Any

# Slack's limits on a section's and a header's text. (A message may hold 50 blocks: messages
# put every list into one section, clipped, so none has more than six.)
SECTION_LIMIT = 3000
HEADER_LIMIT = 150


def escape(text: str) -> str:
    """Text from records made safe for Slack mrkdwn: ``&``, ``<`` and ``>`` are control."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending in "…" when cut: at a line end when one is near,
    never inside an entity (``&gt;``) or a link (``<url|label>``)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if (line := cut.rfind("\n")) >= limit // 2:
        cut = cut[:line]
    if cut.rfind("&") > cut.rfind(";"):
        cut = cut[: cut.rfind("&")]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    return cut + "…"


def header(title: str) -> dict[str, Any]:
    text = clip(title, HEADER_LIMIT)
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(mrkdwn, SECTION_LIMIT)}}


def context(mrkdwn: str) -> dict[str, Any]:
    text = clip(mrkdwn, SECTION_LIMIT)
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def code(value: str | None) -> str:
    return f"`{escape(value)}`" if value else "_unknown_"
