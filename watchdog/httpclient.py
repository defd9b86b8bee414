"""Every outside HTTP client of the watchdog: httpx's API over aiohttp's connections.

httpx's own connection pool (httpcore over anyio) spends ~1.5 ms of CPU on each request, and more
the more connections it keeps (it checks every pooled connection before each request); aiohttp
spends ~0.2 ms. At a thousand watches making eight requests a tick, that is the difference between
one core and a third of one (``bench/scale.py``). Everything above the transport stays httpx:
timeouts, cookies, redirects, headers, the errors the signals classify.

Every client shares one TLS context: building one costs tens of milliseconds and most of a
megabyte, and the daemon keeps a client per target.
"""

from __future__ import annotations

import ssl
from functools import cache

import aiohttp
import httpx
from yarl import URL

# First match wins: aiohttp's specific errors before the ones they derive from. Anything else
# aiohttp raises is a ClientError: the connection was lost.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (TimeoutError, httpx.ReadTimeout),  # aiohttp's read timeouts derive from it
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, DNS, TLS handshake
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # not an HTTP answer
    (aiohttp.ClientError, httpx.ReadError),
)


@cache
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx's requests with an aiohttp session, opened at the first request (a session
    belongs to the running event loop) and closed with the client. The body is read whole:
    every answer the watchdog reads is a small JSON document or page."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=_tls()),
                cookie_jar=aiohttp.DummyCookieJar(),  # httpx keeps the client's cookies
                auto_decompress=False,  # httpx decodes what the headers say
            )
        timeout = request.extensions.get("timeout", {})
        body = await request.aread()
        try:
            async with self._session.request(
                request.method,
                URL(str(request.url), encoded=True),  # exactly as httpx encoded it
                headers=request.headers.multi_items(),
                data=body or None,
                allow_redirects=False,  # httpx follows them when asked
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            ) as answer:
                content = await answer.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise next(to for kind, to in _ERRORS if isinstance(exc, kind))(str(exc)) from exc
        return httpx.Response(
            answer.status,
            headers=answer.raw_headers,
            stream=httpx.ByteStream(content),
            request=request,
            extensions={
                "http_version": b"HTTP/1.1",
                "reason_phrase": (answer.reason or "").encode(),
            },
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def new_client(*, timeout: float | httpx.Timeout) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with ``timeout`` (seconds for each step of a request)."""
    return httpx.AsyncClient(timeout=timeout, transport=AiohttpTransport())
