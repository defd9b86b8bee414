"""The Sentry stand-in over real loopback HTTP: exact numbers for scripted timelines, and the
shapes, headers and errors of api-contracts.md §4."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchdog.clock import ManualClock
from watchdog.sandbox import sentry
from watchdog.sandbox.events import Event, EventLog, Timeline, is_hit, write_timeline
from watchdog.sandbox.faults import Faults
from watchdog.sandbox.server import serve

from .conftest import T0, TOKEN, sentry_app

MINUTE = timedelta(minutes=1)
RATE_HEADERS = ("Limit", "Remaining", "Reset", "ConcurrentLimit", "ConcurrentRemaining")


def deploy(log: EventLog, release: str, start: datetime, minutes: int, **kwargs: Any) -> Timeline:
    """100 requests a minute of ``release`` in acme-api/production, from ``start``."""
    return write_timeline(
        log,
        project="acme-api",
        environment="production",
        release=release,
        start=start,
        end=start + minutes * MINUTE,
        per_minute=100,
        **kwargs,
    )


def window(start: datetime, end: datetime) -> dict[str, str]:
    return {"start": start.isoformat(), "end": end.isoformat()}


def row(api: httpx.Client, dataset: str, query: str, *fields: str, **params: Any) -> Any:
    response = api.get(
        "/events/", params={"dataset": dataset, "query": query, "field": list(fields), **params}
    )
    assert response.status_code == 200, response.text
    return response.json()["data"][0]


@pytest.fixture
def bad_deploy(log: EventLog) -> Timeline:
    """r1 healthy for an hour before T0, then r2 with 2 % errors on 20 of 100 users for 30m."""
    deploy(log, "r1", T0 - 60 * MINUTE, 60, error_fraction=0.001, p95_ms=100)
    return deploy(log, "r2", T0, 30, error_fraction=0.02, error_user_fraction=0.2, p95_ms=300)


def test_a_scripted_timeline_gives_exact_error_counts(
    api: httpx.Client, bad_deploy: Timeline
) -> None:
    span = window(T0, T0 + 30 * MINUTE)

    errors = row(api, "errors", 'release:"r2"', "count()", "count_unique(user)", **span)
    requests = row(
        api,
        "transactions",
        "release:r2",
        "count()",
        "count_unique(user)",
        "failure_rate()",
        "p95(transaction.duration)",
        **span,
    )

    assert bad_deploy == Timeline(transactions=3000, errors=60, users=100, error_users=20)
    assert errors == {"count()": 60, "count_unique(user)": 20}
    assert requests["count()"] == 3000
    assert requests["count_unique(user)"] == 100
    assert requests["failure_rate()"] == pytest.approx(0.02)
    assert requests["p95(transaction.duration)"] == pytest.approx(300)


def test_the_window_is_half_open_and_stats_period_ends_now(
    api: httpx.Client, clock: ManualClock, bad_deploy: Timeline
) -> None:
    clock.set(T0 + 30 * MINUTE)

    first_minute = row(api, "transactions", "release:r2", "count()", **window(T0, T0 + MINUTE))
    last_ten = row(api, "transactions", "release:r2", "count()", statsPeriod="10m")
    previous_hour = row(
        api,
        "transactions",
        "release:r1",
        "p95(transaction.duration)",
        **window(T0 - 60 * MINUTE, T0),
    )

    assert first_minute["count()"] == 100
    assert last_ten["count()"] == 1000
    assert previous_hour["p95(transaction.duration)"] == pytest.approx(100)


def test_an_aggregate_over_no_events_is_one_row_of_zero_and_null(api: httpx.Client) -> None:
    data = row(
        api,
        "transactions",
        "release:nope",
        "count()",
        "p95(transaction.duration)",
        "failure_rate()",
        statsPeriod="1h",
    )

    assert data == {"count()": 0, "p95(transaction.duration)": None, "failure_rate()": None}


def test_a_page_past_the_aggregate_row_is_the_empty_shape(api: httpx.Client) -> None:
    response = api.get(
        "/events/", params={"dataset": "errors", "field": "count()", "cursor": "0:100:0"}
    )

    assert response.json() == {"data": [], "meta": {}}


def test_projects_environments_tags_and_event_types_filter(
    api: httpx.Client, log: EventLog
) -> None:
    deploy(log, "r2", T0, 10, error_fraction=0.1, tags={"feature": "new_checkout"})
    deploy(log, "r2", T0, 10, error_fraction=0.5)
    write_timeline(
        log,
        project="acme-api",
        environment="staging",
        release="r2",
        start=T0,
        end=T0 + MINUTE,
        per_minute=7,
    )
    write_timeline(
        log,
        project="acme-web",
        environment="production",
        release="r2",
        start=T0,
        end=T0 + MINUTE,
        per_minute=11,
    )
    span = window(T0, T0 + 10 * MINUTE)

    def count(dataset: str, query: str, **params: Any) -> int:
        return int(row(api, dataset, query, "count()", **span, **params)["count()"])

    assert count("transactions", "release:r2") == 2000 + 7 + 11
    assert count("transactions", "release:r2", environment="production") == 2011
    assert count("transactions", "release:r2", projectSlug="acme-web") == 11
    assert count("transactions", "release:r2", project="2") == 11
    assert count("transactions", "release:r2", project=["1", "2"], environment="staging") == 7
    assert count("transactions", "release:r2", project="-1") == 2018
    assert count("errors", "release:r2 feature:new_checkout") == 100
    assert count("transactions", 'feature:"new_checkout"') == 1000
    assert count("discover", "event.type:error release:r2") == 600
    assert count("discover", "is_transaction:true") == 2018


def test_events_written_late_count_in_their_window(api: httpx.Client, log: EventLog) -> None:
    deploy(log, "r2", T0 + 10 * MINUTE, 10)
    deploy(log, "r2", T0, 10, error_fraction=0.1)  # written after the ten minutes it precedes
    straddling = window(T0 + 5 * MINUTE, T0 + 15 * MINUTE)

    requests = row(api, "transactions", "release:r2", "count()", "failure_rate()", **straddling)
    errors = row(api, "errors", "release:r2", "count()", **straddling)

    assert requests == {"count()": 1000, "failure_rate()": pytest.approx(0.05)}
    assert errors == {"count()": 50}


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"field": "count()"}, "dataset is required"),
        ({"field": "count()", "dataset": "metrics"}, "metrics is not a valid dataset"),
        ({"field": "count_if(x)", "dataset": "errors"}, "Unsupported field: count_if(x)"),
        ({"field": "count()", "dataset": "errors", "query": "release:'r2"}, "Invalid query."),
        ({"field": "count()", "dataset": "errors", "start": T0.isoformat()}, "both required"),
        ({"field": "count()", "dataset": "errors", "per_page": "101"}, "per_page"),
        ({"field": "count()", "dataset": "errors", "cursor": "banana"}, "cursor"),
    ],
)
def test_bad_requests_are_400_with_a_detail(
    api: httpx.Client, params: dict[str, str], detail: str
) -> None:
    response = api.get("/events/", params=params)

    assert response.status_code == 400
    assert detail in response.json()["detail"]


def test_events_stats_buckets_are_aligned_and_zero_filled(api: httpx.Client, log: EventLog) -> None:
    deploy(log, "r2", T0 + MINUTE, 1, error_fraction=0.1)
    params = {"interval": "1m", "query": "release:r2", **window(T0, T0 + 3 * MINUTE)}
    start = int(T0.timestamp())

    one = api.get("/events-stats/", params={**params, "dataset": "errors"}).json()
    two = api.get(
        "/events-stats/",
        params={**params, "dataset": "transactions", "yAxis": ["count()", "failure_rate()"]},
    ).json()

    assert one == {
        "data": [
            [start, [{"count": 0}]],
            [start + 60, [{"count": 10}]],
            [start + 120, [{"count": 0}]],
        ],
        "start": start,
        "end": start + 180,
        "isMetricsData": False,
    }
    assert [bucket[1][0]["count"] for bucket in two["count()"]["data"]] == [0, 100, 0]
    assert [bucket[1][0]["count"] for bucket in two["failure_rate()"]["data"]] == [0, 0.1, 0]
    assert (two["count()"]["order"], two["failure_rate()"]["order"]) == (0, 1)


def test_issues_group_errors_by_title_and_page_with_link_cursors(
    api: httpx.Client, log: EventLog, clock: ManualClock
) -> None:
    clock.set(T0 + 10 * MINUTE)
    deploy(log, "r1", T0 - 10 * MINUTE, 10, error_fraction=0.01, error_title="KeyError: 'a'")
    deploy(log, "r2", T0, 10, error_fraction=0.02, error_title="KeyError: 'a'", users=10)
    deploy(log, "r2", T0, 10, error_fraction=0.05, error_title="PaymentError: declined")
    params = {"query": "release:r2", "sort": "freq", "limit": "1", **window(T0, T0 + MINUTE * 10)}

    first = api.get("/issues/", params=params)
    second = api.get("/issues/", params={**params, "cursor": "0:1:0"})
    new_in_r2 = api.get("/issues/", params={"query": "firstRelease:r2"}).json()

    assert [(i["title"], i["count"], i["userCount"]) for i in first.json() + second.json()] == [
        ("PaymentError: declined", "50", 50),
        ("KeyError: 'a'", "20", 10),
    ]
    assert second.json()[0]["lifetime"]["count"] == "30"
    assert 'rel="next"; results="true"; cursor="0:1:0"' in first.headers["Link"]
    assert 'rel="next"; results="false"; cursor="0:2:0"' in second.headers["Link"]
    assert 'rel="previous"; results="true"; cursor="0:0:1"' in second.headers["Link"]
    assert [issue["title"] for issue in new_in_r2] == ["PaymentError: declined"]


@pytest.mark.parametrize(
    ("path", "headers", "status", "detail"),
    [
        (
            "/api/0/organizations/acme/issues/",
            {},
            401,
            "Authentication credentials were not provided.",
        ),
        (
            "/api/0/organizations/acme/issues/",
            {"Authorization": "Bearer nope"},
            401,
            "Invalid token",
        ),
        (
            "/api/0/organizations/umbrella/issues/",
            {"Authorization": f"Bearer {TOKEN}"},
            403,
            "You do not have permission to perform this action.",
        ),
        (
            "/api/0/organizations/acme/issues/?project=acme-api",
            {"Authorization": f"Bearer {TOKEN}"},
            400,
            "Invalid project parameter. Values must be numbers.",
        ),
        (
            "/api/0/organizations/acme/issues/?project=1&projectSlug=acme-api",
            {"Authorization": f"Bearer {TOKEN}"},
            400,
            "Cannot query for both ids and slugs",
        ),
        (
            "/api/0/organizations/acme/issues/?projectSlug=acme-db",
            {"Authorization": f"Bearer {TOKEN}"},
            404,
            "The requested resource does not exist",
        ),
    ],
)
def test_auth_org_and_project_errors(
    sentry_url: str, path: str, headers: dict[str, str], status: int, detail: str
) -> None:
    response = httpx.get(sentry_url + path, headers=headers)

    assert (response.status_code, response.json()) == (status, {"detail": detail})
    assert "X-Sentry-Rate-Limit-Remaining" in response.headers


def test_the_fixed_window_answers_429_without_retry_after(
    log: EventLog, clock: ManualClock
) -> None:
    clock.set(T0 + timedelta(seconds=5))
    app = sentry_app(log, clock, rate_limit=sentry.RateLimit(2, 60))
    with (
        serve(app) as url,
        httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as client,
    ):
        statuses = [client.get("/api/0/organizations/acme/issues/") for _ in range(3)]
        clock.advance(timedelta(seconds=55))
        next_window = client.get("/api/0/organizations/acme/issues/")

    limited = statuses[2]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert limited.json() == {
        "detail": "You are attempting to use this endpoint too frequently. "
        "Limit is 2 requests in 60 seconds"
    }
    assert "Retry-After" not in limited.headers
    assert limited.headers["X-Sentry-Rate-Limit-Remaining"] == "0"
    assert limited.headers["X-Sentry-Rate-Limit-Reset"] == str(int(T0.timestamp()) + 60)
    assert next_window.status_code == 200


def test_the_fault_switch_fails_slows_and_throttles(
    api: httpx.Client, faults: Faults, clock: ManualClock
) -> None:
    faults.fail_next(1, 500)
    faults.garble_next(1)
    faults.stall_next(1, 0.2)
    failed, malformed = api.get("/issues/"), api.get("/issues/")
    started = time.perf_counter()
    slow = api.get("/issues/")
    elapsed = time.perf_counter() - started
    faults.rate_limit(T0 + MINUTE)
    throttled = api.get("/issues/")
    clock.advance(MINUTE)
    recovered = api.get("/issues/")

    assert failed.status_code == 500
    assert failed.json() == {"detail": "Internal Error"}
    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    assert (slow.status_code, elapsed >= 0.2) == (200, True)
    assert throttled.status_code == 429
    assert throttled.json() == {"detail": sentry.RateLimit(1000, 60).refusal}
    assert "Retry-After" not in throttled.headers
    assert all("X-Sentry-Rate-Limit-Remaining" in r.headers for r in (failed, throttled))
    assert recovered.status_code == 200


def test_faults_are_armed_per_endpoint(api: httpx.Client, faults: Faults) -> None:
    faults.fail_next(1, 500, operation="events-stats")

    issues = api.get("/issues/")
    stats = api.get("/events-stats/", params={"dataset": "errors"})
    again = api.get("/events-stats/", params={"dataset": "errors"})

    assert (issues.status_code, stats.status_code, again.status_code) == (200, 500, 200)


# --- contract: the example payloads of api-contracts.md §4 ---------------------------------

EVENTS_EXAMPLE = {
    "data": [{"count()": 42, "failure_rate()": 0.0123}],
    "meta": {
        "fields": {"count()": "integer", "failure_rate()": "percentage"},
        "units": {"count()": None, "failure_rate()": None},
        "isMetricsData": False,
        "dataset": "transactions",
    },
}
STATS_EXAMPLE = {
    "data": [[1700000000, [{"count": 3}]], [1700000060, [{"count": 0}]]],
    "start": 1700000000,
    "end": 1700003600,
    "isMetricsData": False,
}
ISSUE_EXAMPLE = {
    "id": "1",
    "shortId": "PUMP-STATION-1",
    "title": "This is an example Python exception",
    "culprit": "raven.scripts.runner in main",
    "level": "error",
    "status": "unresolved",
    "substatus": "new",
    "isUnhandled": False,
    "count": "150",
    "userCount": 0,
    "firstSeen": "2018-11-06T21:19:55Z",
    "lastSeen": "2018-12-06T21:19:55Z",
    "project": {"id": "2", "name": "Pump Station", "slug": "pump-station", "platform": "python"},
    "permalink": "https://sentry.io/the-interstellar-jurisdiction/pump-station/issues/1/",
    "stats": {"24h": [[1541455200, 473], [1541458800, 914]]},
    "lifetime": {
        "count": "150",
        "userCount": 0,
        "firstSeen": "2018-11-06T21:19:55Z",
        "lastSeen": "2018-12-06T21:19:55Z",
    },
    "filtered": None,
    "issueCategory": "error",
    "issueType": "error",
    "priority": "medium",
    "metadata": {"title": "This is an example Python exception"},
}
LINK = re.compile(
    r'<(?P<url>http://[^>]+\?[^>]*)&cursor=0:0:1>; rel="previous"; results="false"; '
    r'cursor="0:0:1", <(?P=url)&cursor=0:100:0>; rel="next"; results="(true|false)"; '
    r'cursor="0:100:0"'
)


def shape(value: Any) -> Any:
    """The JSON types of a payload, keeping keys; a list's shape is its first item's."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return type(value).__name__


def test_payloads_match_the_contract_examples(api: httpx.Client, bad_deploy: Timeline) -> None:
    span = window(T0, T0 + 30 * MINUTE)
    events = api.get(
        "/events/",
        params={
            "dataset": "transactions",
            "query": "release:r2",
            "field": ["count()", "failure_rate()"],
            **span,
        },
    )
    stats = api.get("/events-stats/", params={"interval": "1m", "dataset": "errors", **span})
    issues = api.get("/issues/", params={"query": "release:r2", **span})
    issue = issues.json()[0]

    assert shape(events.json()) == shape(EVENTS_EXAMPLE)
    assert events.json()["meta"] == EVENTS_EXAMPLE["meta"]
    assert shape(stats.json()) == shape(STATS_EXAMPLE)
    assert shape(issue) == shape(ISSUE_EXAMPLE)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", issue["firstSeen"])
    assert LINK.fullmatch(events.headers["Link"])
    assert LINK.fullmatch(issues.headers["Link"])
    for response in (events, stats, issues):
        assert all(f"X-Sentry-Rate-Limit-{name}" in response.headers for name in RATE_HEADERS)


# --- the scripted timelines themselves ----------------------------------------------------


@given(n=st.integers(0, 5000), cut=st.integers(0, 5000), fraction=st.floats(0, 1))
def test_hits_are_exact_however_a_run_is_cut(n: int, cut: int, fraction: float) -> None:
    cut = min(cut, n)
    hits = [is_hit(i, fraction) for i in range(n)]

    assert sum(hits) == round(n * fraction)
    assert sum(hits[:cut]) + sum(hits[cut:]) == sum(hits)


def test_a_timeline_written_in_pieces_equals_one_written_at_once() -> None:
    whole, pieces = EventLog(), EventLog()
    deploy(whole, "r2", T0, 10, error_fraction=0.013)
    for minute in range(10):
        deploy(pieces, "r2", T0 + minute * MINUTE, 1, error_fraction=0.013, first=minute * 100)

    def summary(log: EventLog) -> list[tuple[datetime, str, str | None]]:
        return [(e.timestamp, e.type, e.user) for e in log.snapshot()]

    assert summary(pieces) == summary(whole)
    assert sum(e.type == "error" for e in whole.snapshot()) == 13


def test_events_need_an_aware_timestamp() -> None:
    with pytest.raises(ValueError, match="time zone"):
        Event(T0.replace(tzinfo=None), "acme-api", "production", "r1", "error")
