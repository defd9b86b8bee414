"""The Sentry signal: error rate, users affected, latency change and each flag's error rate of a
deployment's release, from Sentry's Discover table (``GET /api/0/organizations/{org}/events/``,
``api-contracts.md`` §4).

Queries that differ only in their fields share one request, so a tick sends fewer. A failed
request costs only the metrics computed from it: each becomes a ProbeError. Sentry sends no
``Retry-After``, so a 429, or a window too short for another tick, stops every request until
the ``X-Sentry-Rate-Limit-Reset`` it announced: polling slows instead of hammering.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Any, TypeGuard

import httpx
import structlog

from watchdog.clock import Clock
from watchdog.errors import ConfigError
from watchdog.model import Deployment, Reading
from watchdog.settings import SentryConfig, TargetSentry
from watchdog.signals.base import Failure, Probe, ProbeError

log = structlog.get_logger("watchdog.signals.sentry")

PERCENTILES = ("p50", "p75", "p95")
BASELINE = timedelta(hours=1)
"""How long before the deploy the previous release's latency is measured."""

_DURATIONS = tuple(f"{p}(transaction.duration)" for p in PERCENTILES)
_COUNTS = ("count()", "count_unique(user)")
_LATENCY = "latency_change{check=sentry}"

Row = dict[str, float | None]


@dataclass(frozen=True, slots=True)
class _Query:
    """One aggregate row over one release's events in [start, end)."""

    dataset: str
    fields: tuple[str, ...]
    release: str
    start: datetime
    end: datetime
    search: str = ""  # more terms, ANDed with the release

    @property
    def query(self) -> str:
        release = self.release.replace('"', '\\"')
        return f'release:"{release}" {self.search}'.strip()

    def describe(self) -> str:
        return f"{self.dataset} of {self.query} from {_iso(self.start)} to {_iso(self.end)}"


@dataclass(frozen=True, slots=True)
class _Problem:
    failure: Failure
    message: str


class SentrySignal:
    """Reads one target's Sentry project; one instance per target, kept across ticks, since it
    remembers the rate-limit back-off, the latency baseline and what it already logged."""

    name = "sentry"

    def __init__(
        self, config: SentryConfig, target: TargetSentry, client: httpx.AsyncClient, clock: Clock
    ) -> None:
        self._config = config
        self._target = target
        self._client = client
        self._clock = clock
        self._url = f"{config.api_url}/api/0/organizations/{config.organization}/events/"
        self._resume_at: datetime | None = None
        self._known: dict[_Query, Row] = {}  # the latest complete latency baseline
        self._misconfigured = False

    async def read(self, deployment: Deployment, at: datetime) -> Probe:
        """Every metric of the tick; never raises for what Sentry or the network does."""
        probe = await self._read(deployment, at)
        problem = next((e for e in probe.errors if e.failure is Failure.CONFIG), None)
        if problem is not None and not self._misconfigured:
            log.error(
                "sentry.misconfigured",
                error=problem.message,
                organization=self._config.organization,
                project=self._target.project,
                target=deployment.target,
                deployment=deployment.id,
            )
        self._misconfigured = problem is not None
        return probe

    async def _read(self, deployment: Deployment, at: datetime) -> Probe:
        if self._resume_at is not None and self._clock.now() < self._resume_at:
            message = f"Sentry's rate limit is reached: no requests until {_iso(self._resume_at)}"
            return self._lost(Failure.RATE_LIMITED, message)
        release = deployment.sentry_release
        if release is None:
            return self._lost(
                Failure.CONFIG,
                f"deployment {deployment.id} of {deployment.target} has no Sentry release: "
                "announce it with a release or a commit",
            )
        try:
            token = self._config.token.reveal()
        except ConfigError as exc:
            return self._lost(Failure.CONFIG, str(exc))
        deployed = deployment.deployed_at
        start = max(deployed, at - self._config.lookback)
        if start >= at:
            return self._lost(Failure.NO_DATA, f"no time since the deploy at {_iso(deployed)}")

        errors = _Query("errors", ("count()",), release, start, at)
        requests = _Query("transactions", ("count()", *_DURATIONS), release, start, at)
        error_users = _Query("errors", ("count_unique(user)",), release, deployed, at)
        users = _Query("transactions", ("count_unique(user)",), release, deployed, at)
        flags = {
            key: (
                replace(errors, search=search),
                replace(requests, search=search, fields=("count()",)),
            )
            for key, search in self._target.flags.items()
        }
        queries = [errors, requests, error_users, users, *chain(*flags.values())]
        baseline = None
        if deployment.previous_release is not None:
            hour = (deployed - BASELINE, deployed)
            baseline = _Query("transactions", _DURATIONS, deployment.previous_release, *hour)
            queries.append(baseline)

        # The hour before the deploy is over: once Sentry has its latency, it is not asked again.
        plan = _merged(q for q in queries if q not in self._known)
        sent = list(dict.fromkeys(plan.values()))
        answers = await asyncio.gather(*(self._fetch(q, token, len(sent)) for q in sent))
        by_request = dict(zip(sent, answers, strict=True))
        results: dict[_Query, Row | _Problem] = dict(self._known)
        results.update((q, _project(by_request[merged], q)) for q, merged in plan.items())
        if baseline is not None and _complete(fresh := results[baseline]):
            self._known = {baseline: fresh}

        probe = self._ratio(at, "error_rate", {}, errors, requests, results)
        probe += self._ratio(at, "users_affected", {}, error_users, users, results)
        probe += self._latency(at, deployment, requests, baseline, results)
        for key, (flag_errors, flag_requests) in flags.items():
            probe += self._ratio(
                at, "flag_error_rate", {"flag": key}, flag_errors, flag_requests, results
            )
        return probe

    def _lost(self, failure: Failure, message: str, *series: str) -> Probe:
        """No reading of ``series``, by default of every metric this source gives."""
        flags = (f"flag_error_rate{{flag={key}}}" for key in self._target.flags)
        series = series or ("error_rate", "users_affected", _LATENCY, *flags)
        return Probe(errors=tuple(ProbeError(self.name, failure, message, s) for s in series))

    def _ratio(
        self,
        at: datetime,
        metric: str,
        labels: dict[str, str],
        numerator: _Query,
        denominator: _Query,
        results: dict[_Query, Row | _Problem],
    ) -> Probe:
        series = f"{metric}{{flag={labels['flag']}}}" if labels else metric
        rows = _rows(results[numerator], results[denominator])
        if isinstance(rows, _Problem):
            return self._lost(rows.failure, rows.message, series)
        top, bottom = rows
        total = bottom[denominator.fields[0]]
        if not total:
            return self._lost(Failure.NO_DATA, f"no {denominator.describe()}", series)
        # Errors are events, not failed requests: one request may report several, or none of
        # its own (a background job), but the share of requests that failed is at most 1.
        value = min((top[numerator.fields[0]] or 0) / total, 1.0)
        return Probe(readings=(Reading(at, metric, value, labels, samples=int(total)),))

    def _latency(
        self,
        at: datetime,
        deployment: Deployment,
        current: _Query,
        baseline: _Query | None,
        results: dict[_Query, Row | _Problem],
    ) -> Probe:
        if baseline is None:
            message = f"deployment {deployment.id} names no previous release to compare with"
            return self._lost(Failure.NO_DATA, message, _LATENCY)
        rows = _rows(results[baseline], results[current])
        if isinstance(rows, _Problem):
            return self._lost(rows.failure, rows.message, _LATENCY)
        before, now = rows
        for query, row in ((baseline, before), (current, now)):
            if not _complete(row):
                message = f"no transaction durations in {query.describe()}"
                return self._lost(Failure.NO_DATA, message, _LATENCY)
        return Probe(
            readings=tuple(
                Reading(
                    at,
                    "latency_change",
                    (now[d] or 0) / (before[d] or 1) - 1,
                    {"check": "sentry", "percentile": p},
                    samples=int(now["count()"] or 0),
                )
                for p, d in zip(PERCENTILES, _DURATIONS, strict=True)
            )
        )

    async def _fetch(self, query: _Query, token: str, batch: int) -> Row | _Problem:
        """One request, its failure translated; ``batch`` is how many requests this tick made,
        so a window with fewer left pauses polling until it resets."""
        params = {
            "dataset": query.dataset,
            "field": query.fields,
            "query": query.query,
            # Sentry takes a numeric project id as `project`, a slug only as `projectSlug`.
            "project" if self._target.project.isdigit() else "projectSlug": self._target.project,
            "environment": self._target.environment,
            "start": _iso(query.start),
            "end": _iso(query.end),
        }
        try:
            response = await self._client.get(
                self._url, params=params, headers={"Authorization": f"Bearer {token}"}
            )
        except httpx.TimeoutException:
            return _Problem(Failure.TIMEOUT, f"Sentry did not answer in time: {query.describe()}")
        except httpx.HTTPError as exc:
            return _Problem(
                Failure.UNREACHABLE, f"cannot reach Sentry at {self._config.api_url}: {exc}"
            )
        self._note_rate_limit(response, batch)
        status = response.status_code
        if status == 429:
            return _Problem(Failure.RATE_LIMITED, f"Sentry's rate limit: {_detail(response)}")
        if status in (401, 403, 404):
            return _Problem(Failure.CONFIG, self._fix(status))
        if not response.is_success:
            return _Problem(
                Failure.STATUS,
                f"Sentry answered {status} to {query.describe()}: {_detail(response)}",
            )
        try:
            return _row(response.json(), query.fields)
        except ValueError as exc:
            return _Problem(Failure.MALFORMED, f"unexpected answer to {query.describe()}: {exc}")

    def _note_rate_limit(self, response: httpx.Response, batch: int) -> None:
        try:
            reset = datetime.fromtimestamp(int(response.headers["X-Sentry-Rate-Limit-Reset"]), UTC)
            remaining = int(response.headers.get("X-Sentry-Rate-Limit-Remaining", batch))
        except (KeyError, ValueError, OverflowError, OSError):
            return  # without a usable reset time the next tick is the retry
        if response.status_code == 429 or remaining < batch:
            self._resume_at = max(reset, self._resume_at or reset)

    def _fix(self, status: int) -> str:
        org, project = self._config.organization, self._target.project
        if status == 401:
            return "Sentry rejected the token (401): set sentry.token to a valid auth token"
        if status == 403:
            return (
                f"Sentry refused organization {org!r} (403): check sentry.organization and "
                "that the token has the org:read scope there"
            )
        return (
            f"Sentry has no project {project!r} in organization {org!r} (404): "
            "check the target's sentry.project"
        )


def _merged(queries: Iterable[_Query]) -> dict[_Query, _Query]:
    """Each query and the request that answers it: queries that differ only in their fields
    share one request for all their fields, since Sentry returns them in one row. Within the
    lookback after a deploy, a tick's error and user counts cover the same window."""
    groups: dict[_Query, list[_Query]] = {}
    for query in queries:
        groups.setdefault(replace(query, fields=()), []).append(query)
    plan: dict[_Query, _Query] = {}
    for key, members in groups.items():
        fields = tuple(dict.fromkeys(chain.from_iterable(q.fields for q in members)))
        plan.update(dict.fromkeys(members, replace(key, fields=fields)))
    return plan


def _project(result: Row | _Problem, query: _Query) -> Row | _Problem:
    """A query's own fields of a merged request's row; a failed request fails every query."""
    return result if isinstance(result, _Problem) else {f: result[f] for f in query.fields}


def _rows(*results: Row | _Problem) -> list[Row] | _Problem:
    """The rows a metric is computed from, or the first problem among them."""
    rows = []
    for result in results:
        if isinstance(result, _Problem):
            return result
        rows.append(result)
    return rows


def _complete(result: Row | _Problem) -> TypeGuard[Row]:
    """Whether a row holds every latency percentile (none is null or zero)."""
    return isinstance(result, dict) and all(result[d] for d in _DURATIONS)


def _row(body: Any, fields: tuple[str, ...]) -> Row:
    """The one row of an aggregate answer; an empty ``data`` means no events at all."""
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, list):
        raise ValueError("expected an object with a list 'data'")
    if not data:
        return {f: 0 if f in _COUNTS else None for f in fields}
    if not isinstance(data[0], dict):
        raise ValueError("expected 'data' to hold objects")
    row: Row = {}
    for field in fields:
        value = data[0].get(field)
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not (number or (value is None and field not in _COUNTS)):
            raise ValueError(f"expected a number for {field}, found {value!r:.40}")
        row[field] = value
    return row


def _detail(response: httpx.Response) -> str:
    """Sentry's ``{"detail": ...}``, else the start of the body."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.text[:200]


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
