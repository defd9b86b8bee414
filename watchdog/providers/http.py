"""Talking to a provider's HTTP API: reads retried with backoff (honouring Retry-After),
sends never retried once they may have reached the provider, httpx errors translated."""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pydantic
import stamina

from watchdog.errors import ConfigError, RollbackError

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})

_T = TypeVar("_T")


class ProviderRefused(Exception):
    """An HTTP answer the provider gave that we cannot use; carries the response so that
    retries and ``refused`` can branch on its status."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        super().__init__(f"HTTP {response.status_code}")


def retry_after(response: httpx.Response, now: datetime | None = None) -> timedelta | None:
    """The wait a 429/503 asks for: ``Retry-After`` (seconds or an HTTP date)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return timedelta(seconds=int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(timedelta(0), when - (now or datetime.now(UTC)))


def _backoff(exc: Exception) -> bool | timedelta:
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, ProviderRefused) and exc.response.status_code in RETRIED_STATUSES:
        return retry_after(exc.response) or True
    return False


class ProviderHTTP:
    """One provider's API: ``base_url`` and auth ``headers`` on every request."""

    def __init__(
        self,
        provider: str,
        client: httpx.AsyncClient,
        base_url: str,
        headers: Mapping[str, str],
        *,
        read_attempts: int = 4,
        read_timeout: timedelta = timedelta(seconds=60),
    ) -> None:
        self.provider = provider
        self._client = client
        self._base = base_url.rstrip("/")
        self._headers = dict(headers)
        self._attempts = read_attempts
        self._timeout = read_timeout

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await self._client.request(
            method, self._base + path, headers=self._headers, **kwargs
        )
        if response.status_code >= 400:
            raise ProviderRefused(response)
        return response

    async def read(
        self,
        path: str,
        deployment_id: str | None = None,
        *,
        missing: str | None = None,
        **kwargs: Any,
    ) -> Any:
        """GET (or a read-only POST such as a GraphQL query, ``method="POST"``) and return the
        JSON body, retrying transport errors, 429 and 5xx with backoff. With ``missing``, a 404
        is a ConfigError saying so (an id in the config that names nothing)."""
        method = kwargs.pop("method", "GET")
        try:
            async for attempt in stamina.retry_context(
                on=_backoff, attempts=self._attempts, timeout=self._timeout
            ):
                with attempt:
                    response = await self._request(method, path, **kwargs)
            return response.json()
        except ProviderRefused as exc:
            if missing is not None and exc.response.status_code == 404:
                raise ConfigError(f"{self.provider}: {missing}") from None
            raise self.refused(exc.response, deployment_id) from None
        except httpx.TransportError as exc:
            raise RollbackError(
                self.provider, deployment_id, f"no answer from {self._base}: {type(exc).__name__}"
            ) from exc
        except ValueError as exc:  # JSON that does not parse
            raise RollbackError(self.provider, deployment_id, "answer is not JSON") from exc

    async def send(
        self, method: str, path: str, deployment_id: str | None, **kwargs: Any
    ) -> httpx.Response:
        """A request that changes something: sent once. Only a refused connection (nothing
        was sent) is reported as ``reached=False``."""
        try:
            return await self._request(method, path, **kwargs)
        except ProviderRefused as exc:
            raise self.refused(exc.response, deployment_id) from None
        except httpx.ConnectError as exc:
            raise RollbackError(
                self.provider, deployment_id, f"cannot connect to {self._base}", reached=False
            ) from exc
        except httpx.TransportError as exc:
            raise RollbackError(
                self.provider,
                deployment_id,
                f"request may or may not have arrived: {type(exc).__name__}",
                answered=False,
            ) from exc

    def refused(self, response: httpx.Response, deployment_id: str | None) -> Exception:
        """A ConfigError for credentials people must fix, a RollbackError otherwise."""
        detail = _detail(response)
        if response.status_code in (401, 403):
            return ConfigError(
                f"{self.provider}: HTTP {response.status_code} from {self._base}: {detail} "
                "(check the token and its scope, and the team/project/service ids)"
            )
        return RollbackError(self.provider, deployment_id, f"HTTP {response.status_code}: {detail}")

    def parse(
        self, shape: pydantic.TypeAdapter[_T], body: Any, deployment_id: str | None, what: str
    ) -> _T:
        """``body`` (the answer to ``what``, such as ``"GET /v1/x"``) as ``shape``; a
        RollbackError naming the first field that does not fit."""
        try:
            return shape.validate_python(body)
        except pydantic.ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            raise RollbackError(
                self.provider,
                deployment_id,
                f"unexpected answer to {what}: {where}: {first['msg']}",
            ) from None


def _detail(response: httpx.Response) -> str:
    """The provider's own error message, from any of the shapes in api-contracts.md."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and "message" in error:  # Vercel
            return str(error["message"])
        if isinstance(error, str):  # the app's own API: {"success": false, "error": "..."}
            return error
        for key in ("message", "detail"):  # Render, Sentry
            if key in body:
                return str(body[key])
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):  # GraphQL
            return str(errors[0].get("message", errors[0]))
    return str(body)[:200]
