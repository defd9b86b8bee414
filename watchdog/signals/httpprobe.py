"""One HTTP request of a probe, with its failure classified: shared by the health, flow and
latency sources so that they name a timeout or a refused connection the same way.

``send`` never raises for what the network or the server does; it returns the response or a
``Failed`` value. Messages are built from the exception's type, never from its text or the
request, so a URL, header or body holding a secret cannot end up in a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from watchdog.signals.base import Failure


@dataclass(frozen=True)
class Failed:
    """Why a request (or a step judged on its answer) failed; ``why`` holds no secret."""

    failure: Failure
    why: str


# First match wins: the specific kinds before the TransportError they derive from.
_KINDS: tuple[tuple[type[Exception], Failure, str], ...] = (
    (httpx.TimeoutException, Failure.TIMEOUT, "timed out"),
    (httpx.ConnectError, Failure.UNREACHABLE, "could not connect"),
    (httpx.UnsupportedProtocol, Failure.CONFIG, "unusable URL"),
    (httpx.InvalidURL, Failure.CONFIG, "unusable URL"),
    (httpx.DecodingError, Failure.MALFORMED, "undecodable answer"),
    (httpx.TooManyRedirects, Failure.STATUS, "too many redirects"),
)


def classify(exc: httpx.HTTPError | httpx.InvalidURL) -> Failed:
    """The Failure kind of an httpx error; anything unlisted lost the connection."""
    for kind, failure, what in _KINDS:
        if isinstance(exc, kind):
            return Failed(failure, f"{what} ({type(exc).__name__})")
    return Failed(Failure.UNREACHABLE, f"connection lost ({type(exc).__name__})")


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    json: Any = None,
) -> httpx.Response | Failed:
    """Send one request with the client's own timeouts; a transport error becomes ``Failed``.
    Any HTTP status is an answer: judging it is the caller's business."""
    try:
        return await client.request(method, url, headers=headers, json=json)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return classify(exc)
