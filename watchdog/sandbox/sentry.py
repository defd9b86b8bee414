"""A Sentry API stand-in over an ``EventLog``: ``/events/``, ``/events-stats/`` and ``/issues/``
answered as ``api-contracts.md`` §4 says, with Sentry's auth, rate-limit headers and 429s, and
``faults.Faults`` that make it fail on demand, so the Sentry signal is tested without the internet.

Choices where Sentry itself is vague or richer than we need:
- an aggregate query (fields are all functions, no group-by) answers one row even over no
  events, as Snuba does: ``count()`` 0, percentiles and ``failure_rate()`` null ("no data" must
  never look healthy); the contract's empty shape ``{"data": [], "meta": {}}`` is a page past
  that row;
- ``dataset`` is required on ``/events/`` (400 when missing or unknown), as the public OpenAPI
  says; ``/events-stats/`` defaults to ``discover``, as the server does;
- ``per_page`` and ``limit`` above 100, and an unknown ``sort``, are a 400, so a client that
  asks for more than Sentry gives is caught;
- the query language is ``key:value`` and ``key:"value"`` terms joined by spaces (AND), with
  ``release``, ``event.type``, ``is_transaction`` and any tag; issues also take ``is:`` and
  ``firstRelease:``. Anything else is a 400 ``Invalid query``;
- percentiles interpolate linearly between the sorted durations;
- faults are armed per endpoint (``"events"``, ``"events-stats"``, ``"issues"``) or for every
  request; an armed 429 is Sentry's own (``RateLimit.refusal``, no ``Retry-After``), a 500 is
  ``{"detail": "Internal Error"}``, and both still carry the ``X-Sentry-Rate-Limit-*`` headers.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import shlex
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from sentry_sdk.envelope import Envelope
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from watchdog.clock import Clock
from watchdog.sandbox.events import Event, EventLog, Stream
from watchdog.sandbox.faults import Faults, Garbled, Refused

_DATASETS = {
    "errors": {"error"},
    "transactions": {"transaction"},
    "discover": {"error", "transaction"},
}
_DEFAULT_PERIOD = timedelta(days=90)  # no range given: assumed to be Sentry's MAX_STATS_PERIOD
_PERIOD = re.compile(r"^(\d+)([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_PAGE = 100
_OK_STATUSES = {"ok", "cancelled", "unknown"}  # what failure_rate() does not count as failed
_GARBLED = '{"data": [{"count()": '  # a garbled answer: JSON cut off mid-row


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Sentry's fixed window per caller and endpoint, aligned to the epoch (``window_seconds``
    long, ``limit`` requests); the concurrent limit is reported in headers, not enforced."""

    limit: int = 40
    window_seconds: int = 1
    concurrent_limit: int = 25

    @property
    def refusal(self) -> str:
        """The 429 body's ``detail``, word for word Sentry's."""
        return (
            "You are attempting to use this endpoint too frequently. "
            f"Limit is {self.limit} requests in {self.window_seconds} seconds"
        )


@dataclass(frozen=True, slots=True)
class EnvelopeItem:
    """One item of an envelope an SDK sent to ``/api/{project_id}/envelope/`` (an ``event``,
    a ``check_in``…): kept so tests can read what the watchdog reported about itself."""

    project_id: str
    type: str
    payload: dict[str, Any]


def _percentile(q: float) -> Callable[[list[Event]], float | None]:
    def aggregate(events: list[Event]) -> float | None:
        values = sorted(e.duration_ms for e in events if e.duration_ms is not None)
        if not values:
            return None
        position = q * (len(values) - 1)
        low = math.floor(position)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (position - low)

    return aggregate


def _failure_rate(events: list[Event]) -> float | None:
    if not events:
        return None
    return sum(e.status not in _OK_STATUSES for e in events) / len(events)


Aggregate = Callable[[list[Event]], float | None]
_FIELDS: dict[str, tuple[str, str | None, Aggregate]] = {
    "count()": ("integer", None, len),
    "count_unique(user)": ("integer", None, lambda es: len({e.user for e in es if e.user})),
    "p50(transaction.duration)": ("duration", "millisecond", _percentile(0.50)),
    "p75(transaction.duration)": ("duration", "millisecond", _percentile(0.75)),
    "p95(transaction.duration)": ("duration", "millisecond", _percentile(0.95)),
    "failure_rate()": ("percentage", None, _failure_rate),
}
_ISSUE_SORTS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "date": lambda issue: issue["lastSeen"],
    "new": lambda issue: issue["firstSeen"],
    "freq": lambda issue: int(issue["count"]),
    "user": lambda issue: issue["userCount"],
}


def _bad(detail: str) -> HTTPException:
    return HTTPException(status_code=400, detail=detail)


def _period(text: str) -> timedelta | None:
    match = _PERIOD.match(text)
    return timedelta(seconds=int(match[1]) * _UNITS[match[2]]) if match else None


def _instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise _bad(f"{text} is not a valid ISO8601 date query") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _terms(query: str) -> list[tuple[str, str]]:
    """``release:"1.2" event.type:error`` → ``[("release", "1.2"), ("event.type", "error")]``."""
    try:
        tokens = shlex.split(query)
    except ValueError:
        raise _bad("Invalid query.") from None
    terms = [tuple(token.split(":", 1)) for token in tokens]
    if any(len(term) != 2 or not term[0] for term in terms):
        raise _bad("Invalid query.")
    return [(key, value) for key, value in terms]


_STREAM_TERMS = {"release", "event.type", "is_transaction"}  # the rest are tags


def _in_stream(stream: Stream, key: str, value: str) -> bool:
    if key == "release":
        return stream.release == value
    if key == "event.type":
        return stream.type == value
    return (stream.type == "transaction") == (value == "true")  # is_transaction


@dataclass(frozen=True, slots=True)
class _Selection:
    """Which events a request asks about: projects, environments, [start, end), types, terms."""

    projects: frozenset[str]
    environments: frozenset[str]
    start: datetime
    end: datetime
    types: frozenset[str]
    terms: tuple[tuple[str, str], ...]

    def select(self, log: EventLog) -> list[Event]:
        """The matching events, in no set order; only the window of the wanted streams is read."""
        stream_terms = [(key, value) for key, value in self.terms if key in _STREAM_TERMS]
        tags = [(key, value) for key, value in self.terms if key not in _STREAM_TERMS]

        def wanted(stream: Stream) -> bool:
            return (
                stream.project in self.projects
                and stream.type in self.types
                and (not self.environments or stream.environment in self.environments)
                and all(_in_stream(stream, key, value) for key, value in stream_terms)
            )

        chosen = log.between(self.start, self.end, wanted)
        if not tags:
            return chosen
        return [e for e in chosen if all(e.tags.get(key) == value for key, value in tags)]


def _page_size(request: Request, name: str) -> int:
    text = request.query_params.get(name, str(_MAX_PAGE))
    if not text.isdigit() or not 1 <= int(text) <= _MAX_PAGE:
        raise _bad(f"Invalid {name} parameter. It must be between 1 and {_MAX_PAGE}.")
    return int(text)


def _paginate(request: Request, rows: Sequence[Any], per_page: int) -> tuple[list[Any], str]:
    """One page of ``rows`` and its ``Link`` header, with Sentry's ``0:offset:is_prev`` cursors."""
    match = re.fullmatch(r"[^:]*:(\d+):[01]", request.query_params.get("cursor", "0:0:0"))
    if match is None:
        raise _bad("Invalid cursor parameter.")
    offset = int(match[1])
    query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "cursor"])
    url = f"{request.url.scheme}://{request.url.netloc}{request.url.path}?{query}"
    links = [
        ("previous", f"0:{max(offset - per_page, 0)}:1", offset > 0),
        ("next", f"0:{offset + per_page}:0", offset + per_page < len(rows)),
    ]
    header = ", ".join(
        f'<{url}&cursor={cursor}>; rel="{rel}"; results="{str(more).lower()}"; cursor="{cursor}"'
        for rel, cursor, more in links
    )
    return list(rows[offset : offset + per_page]), header


def create_app(
    log: EventLog,
    *,
    token: str,
    clock: Clock,
    organization: str,
    projects: Collection[str],
    rate_limit: RateLimit = RateLimit(),
    faults: Faults | None = None,
    envelopes: list[EnvelopeItem] | None = None,
) -> FastAPI:
    """The stand-in for ``organization`` and its ``projects`` (slugs; ids are 1, 2, … in order);
    SDK envelopes posted to it are appended to ``envelopes``."""
    project_ids = {slug: str(number) for number, slug in enumerate(projects, start=1)}
    by_id = {number: slug for slug, number in project_ids.items()}
    faults = faults if faults is not None else Faults()
    windows: dict[str, tuple[int, int]] = {}
    in_flight = 0
    app = FastAPI(title="Sentry stand-in")

    async def refusal(operation: str, used: int, now: datetime) -> Response | None:
        """What the rate limit or an armed fault answers instead of the endpoint, if anything."""
        try:
            if used > rate_limit.limit:
                raise Refused(429)
            await faults.admit(operation, now)
        except Refused as refused:
            details = {429: rate_limit.refusal, 500: "Internal Error"}
            detail = details.get(refused.status, refused.message)
            return JSONResponse({"detail": detail}, refused.status)
        except Garbled:
            return Response(_GARBLED, media_type="application/json")
        return None

    # Plain ASGI, not ``@app.middleware("http")``: that runs every request in a task of its own,
    # which cost more CPU than answering the query (bench/scale.py asks ~270 times a second).
    def rate_limited(endpoints: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            nonlocal in_flight
            if scope["type"] != "http":
                await endpoints(scope, receive, send)
                return
            path: str = scope["path"]
            now = clock.now()
            window = math.floor(now.timestamp() / rate_limit.window_seconds)
            previous, used = windows.get(path, (window, 0))
            used = used + 1 if previous == window else 1
            windows[path] = (window, used)
            in_flight += 1
            headers = {
                "X-Sentry-Rate-Limit-Limit": str(rate_limit.limit),
                "X-Sentry-Rate-Limit-Remaining": str(max(rate_limit.limit - used, 0)),
                "X-Sentry-Rate-Limit-Reset": str((window + 1) * rate_limit.window_seconds),
                "X-Sentry-Rate-Limit-ConcurrentLimit": str(rate_limit.concurrent_limit),
                "X-Sentry-Rate-Limit-ConcurrentRemaining": str(
                    rate_limit.concurrent_limit - in_flight
                ),
            }

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message).update(headers)
                await send(message)

            try:
                answer = await refusal(path.rstrip("/").rpartition("/")[2], used, now)
                if answer is None:
                    await endpoints(scope, receive, send_with_headers)
                else:
                    await answer(scope, receive, send_with_headers)
            finally:
                in_flight -= 1

        return limited

    app.add_middleware(rate_limited)

    async def authorize(org: str, authorization: Annotated[str | None, Header()] = None) -> None:
        if authorization is None:
            raise HTTPException(401, "Authentication credentials were not provided.")
        if authorization != f"Bearer {token}":
            raise HTTPException(401, "Invalid token")
        if org != organization:
            raise HTTPException(403, "You do not have permission to perform this action.")

    def selection(request: Request, dataset: str, terms: list[tuple[str, str]]) -> _Selection:
        params = request.query_params
        if dataset not in _DATASETS:
            raise _bad(f"{dataset} is not a valid dataset")
        # As the server: `project` takes numeric ids only, slugs go in `projectSlug`.
        ids = params.getlist("project")
        slugs = {s for s in params.getlist("projectSlug") if s}
        if ids and slugs:
            raise _bad("Cannot query for both ids and slugs")
        if not all(i.lstrip("-").isdigit() for i in ids):
            raise _bad("Invalid project parameter. Values must be numbers.")
        wanted_ids = set(ids) - {"-1"}
        if wanted_ids - by_id.keys() or slugs - project_ids.keys():
            raise HTTPException(404, "The requested resource does not exist")
        wanted = {by_id[i] for i in wanted_ids} | slugs
        now = clock.now()
        if period := params.get("statsPeriod"):
            length = _period(period)
            if length is None:
                raise _bad(f"Invalid statsPeriod: {period}")
            start, end = now - length, now
        elif "start" in params or "end" in params:
            if not (params.get("start") and params.get("end")):
                raise _bad("start and end are both required")
            start, end = _instant(params["start"]), _instant(params["end"])
        else:
            start, end = now - _DEFAULT_PERIOD, now
        return _Selection(
            projects=frozenset(wanted or project_ids),
            environments=frozenset(params.getlist("environment")),
            start=start,
            end=end,
            types=frozenset(_DATASETS[dataset]),
            terms=tuple(terms),
        )

    def aggregates(names: list[str]) -> list[tuple[str, Aggregate]]:
        if not names:
            raise _bad("No columns selected")
        if unknown := [name for name in names if name not in _FIELDS]:
            raise _bad(f"Invalid query. Unsupported field: {unknown[0]}")
        return [(name, _FIELDS[name][2]) for name in names]

    router = APIRouter(prefix="/api/0/organizations/{org}", dependencies=[Depends(authorize)])

    @router.get("/events/")
    async def events(request: Request, response: Response) -> dict[str, Any]:
        dataset = request.query_params.get("dataset")
        if dataset is None:
            raise _bad("dataset is required")
        fields = aggregates(request.query_params.getlist("field"))
        terms = _terms(request.query_params.get("query", ""))
        chosen = selection(request, dataset, terms).select(log)
        row = {name: aggregate(chosen) for name, aggregate in fields}
        page, response.headers["Link"] = _paginate(request, [row], _page_size(request, "per_page"))
        if not page:
            return {"data": [], "meta": {}}
        return {
            "data": page,
            "meta": {
                "fields": {name: _FIELDS[name][0] for name, _ in fields},
                "units": {name: _FIELDS[name][1] for name, _ in fields},
                "isMetricsData": False,
                "dataset": dataset,
            },
        }

    @router.get("/events-stats/")
    async def events_stats(request: Request) -> dict[str, Any]:
        params = request.query_params
        axes = aggregates(params.getlist("yAxis") or ["count()"])
        chosen = selection(
            request, params.get("dataset", "discover"), _terms(params.get("query", ""))
        )
        rollup = int((_period(params.get("interval", "")) or timedelta(hours=1)).total_seconds())
        start = math.floor(chosen.start.timestamp() / rollup) * rollup
        end = math.ceil(chosen.end.timestamp() / rollup) * rollup
        buckets: dict[int, list[Event]] = defaultdict(list)
        for event in chosen.select(log):
            buckets[int(event.timestamp.timestamp() - start) // rollup].append(event)

        def series(aggregate: Aggregate) -> dict[str, Any]:
            data = [
                [start + i * rollup, [{"count": aggregate(buckets[i]) if buckets[i] else 0}]]
                for i in range((end - start) // rollup)
            ]
            return {"data": data, "start": start, "end": end, "isMetricsData": False}

        if len(axes) == 1:
            return series(axes[0][1])
        return {name: {**series(aggregate), "order": i} for i, (name, aggregate) in enumerate(axes)}

    @router.get("/issues/")
    async def issues(request: Request, response: Response) -> list[dict[str, Any]]:
        terms = _terms(request.query_params.get("query", "is:unresolved"))
        statuses = [value for key, value in terms if key == "is"]
        first_release = [value for key, value in terms if key == "firstRelease"]
        event_terms = [(k, v) for k, v in terms if k not in ("is", "firstRelease")]
        chosen = selection(request, "errors", event_terms)
        sort = request.query_params.get("sort", "date")
        if sort not in _ISSUE_SORTS:
            raise _bad(f"Invalid sort: {sort}")
        lifetime: dict[tuple[str, str], list[Event]] = defaultdict(list)
        for event in log.snapshot():
            if event.type == "error":
                lifetime[(event.project, event.title)].append(event)
        matched: dict[tuple[str, str], list[Event]] = defaultdict(list)
        for event in chosen.select(log):
            matched[(event.project, event.title)].append(event)
        found = [
            _issue(str(number), project_ids[key[0]], organization, matched[key], every, clock.now())
            for number, (key, every) in enumerate(lifetime.items(), start=1)
            if key in matched
            and all(status == "unresolved" for status in statuses)
            and all(min(every, key=_seen).release == release for release in first_release)
        ]
        found.sort(key=_ISSUE_SORTS[sort], reverse=True)
        page, response.headers["Link"] = _paginate(request, found, _page_size(request, "limit"))
        return page

    @app.post("/api/{project_id}/envelope/")
    async def envelope(project_id: str, request: Request) -> dict[str, Any]:
        body = await request.body()
        if request.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        received = Envelope.deserialize(body)
        if envelopes is not None:
            envelopes.extend(
                EnvelopeItem(project_id, item.type or "", json.loads(item.get_bytes()))
                for item in received.items
            )
        return {"id": received.headers.get("event_id")}

    app.include_router(router)
    return app


def _seen(event: Event) -> datetime:
    return event.timestamp


def _issue(
    issue_id: str,
    project_id: str,
    org: str,
    events: list[Event],
    every: list[Event],
    now: datetime,
) -> dict[str, Any]:
    """An issue object as the OpenAPI example has it: counts within the request's filters on
    top, all-time counts in ``lifetime``; ``count`` is a string, ``userCount`` an integer."""
    slug, title = every[0].project, every[0].title
    first, last = min(map(_seen, every)), max(map(_seen, every))
    hour = math.floor(now.timestamp() / 3600) * 3600
    return {
        "id": issue_id,
        "shortId": f"{slug.upper()}-{issue_id}",
        "title": title,
        "culprit": every[-1].tags.get("transaction", ""),
        "level": "error",
        "status": "unresolved",
        "substatus": "new",
        "isUnhandled": False,
        "count": str(len(events)),
        "userCount": len({e.user for e in events if e.user}),
        "firstSeen": _iso(first),
        "lastSeen": _iso(last),
        "project": {"id": project_id, "name": slug, "slug": slug, "platform": "python"},
        "permalink": f"https://sentry.io/{org}/{slug}/issues/{issue_id}/",
        "stats": {
            "24h": [
                [t, sum(t <= e.timestamp.timestamp() < t + 3600 for e in every)]
                for t in range(hour - 23 * 3600, hour + 1, 3600)
            ]
        },
        "lifetime": {
            "count": str(len(every)),
            "userCount": len({e.user for e in every if e.user}),
            "firstSeen": _iso(first),
            "lastSeen": _iso(last),
        },
        "filtered": None,
        "issueCategory": "error",
        "issueType": "error",
        "priority": "high",
        "metadata": {"title": title},
    }
