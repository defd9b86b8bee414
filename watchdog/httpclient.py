"""Every outside HTTP client of the watchdog, sharing one TLS context: building a context costs
tens of milliseconds and most of a megabyte, and the daemon keeps several clients per target."""

from __future__ import annotations

import ssl
from functools import cache

import httpx


@cache
def _tls() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def new_client(*, timeout: float | httpx.Timeout) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with ``timeout`` (seconds for each step of a request)."""
    return httpx.AsyncClient(timeout=timeout, verify=_tls())
