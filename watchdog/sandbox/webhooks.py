"""Deploy webhooks signed exactly as Vercel, Render and GitHub sign theirs (``api-contracts.md``
§1.6, §2.4, §7.1), for the tests, the fault suite and the demo to POST at the daemon's
``/webhooks/*``.

The stand-ins build their own deliveries from a deployment history
(``vercel.vercel_webhook``, ``render.render_webhook``); these sign any payload, so a caller can
also send what no history holds: a preview, another event, an unknown project, a bad key.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from watchdog.sandbox.deployments import Delivery
from watchdog.sandbox.render import signed_delivery
from watchdog.sandbox.vercel import vercel_signature

HOOK_ID = 492817335
"""The GitHub hook that sends: any number, the same on every delivery of one hook."""


def _json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def vercel(envelope: Mapping[str, Any], *, secret: str) -> Delivery:
    """``envelope`` (``{"id", "type", "createdAt", "payload"}``) as Vercel POSTs it: the hex
    HMAC-SHA1 of the raw body in ``x-vercel-signature``."""
    body = _json(envelope)
    headers = {
        "content-type": "application/json",
        "x-vercel-signature": vercel_signature(secret, body),
    }
    return Delivery(body, headers)


def render(payload: Mapping[str, Any], *, secret: str, msg_id: str, at: datetime) -> Delivery:
    """``payload`` as Render POSTs it at ``at`` (Standard Webhooks): ``webhook-id``,
    ``webhook-timestamp`` in unix seconds and ``webhook-signature``, keyed with the
    base64-decoded ``whsec_`` secret."""
    return signed_delivery(payload, secret=secret, msg_id=msg_id, at=at)


def github_signature(secret: str, body: bytes) -> str:
    """``X-Hub-Signature-256``: ``sha256=`` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(event: str, payload: Mapping[str, Any], *, secret: str, delivery_id: str) -> Delivery:
    """``payload`` as a repository hook POSTs the ``event``, with GitHub's headers, the legacy
    SHA-1 signature beside the SHA-256 one."""
    body = _json(payload)
    headers = {
        "content-type": "application/json",
        "user-agent": "GitHub-Hookshot/5f3a1c2",
        "x-github-event": event,
        "x-github-delivery": delivery_id,
        "x-github-hook-id": str(HOOK_ID),
        "x-github-hook-installation-target-type": "repository",
        "x-github-hook-installation-target-id": "186853002",
        "x-hub-signature": "sha1=" + hmac.new(secret.encode(), body, hashlib.sha1).hexdigest(),
        "x-hub-signature-256": github_signature(secret, body),
    }
    return Delivery(body, headers)


def deployment_status(
    repository: str,
    sha: str,
    *,
    state: str = "success",
    environment: str = "production",
    at: datetime,
) -> dict[str, Any]:
    """A ``deployment_status`` payload (``action`` is always ``created``) for ``sha`` of
    ``repository`` (``owner/name``)."""
    created = _iso(at)
    owner = repository.split("/")[0]
    return {
        "action": "created",
        "deployment_status": {
            "id": 209916254,
            "state": state,
            "environment": environment,
            "target_url": "",
            "description": "",
            "created_at": created,
            "updated_at": created,
            "creator": {"login": owner},
        },
        "deployment": {
            "id": 145988746,
            "sha": sha,
            "ref": "main",
            "task": "deploy",
            "environment": environment,
            "original_environment": environment,
            "payload": {},
            "created_at": created,
            "creator": {"login": owner},
        },
        "repository": {"id": 186853002, "full_name": repository, "default_branch": "main"},
        "sender": {"login": owner},
    }


async def send(client: httpx.AsyncClient, url: str, delivery: Delivery) -> httpx.Response:
    """POST ``delivery`` to ``url``: the very bytes that were signed."""
    return await client.post(url, content=delivery.body, headers=dict(delivery.headers))


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
