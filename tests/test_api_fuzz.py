"""Fuzz the daemon's HTTP API from the schema it serves (schemathesis): every operation, with
and without credentials, against a real started daemon on a SQLite store and the whole sandbox.

The daemon and uvicorn run in the test's event loop, as in ``tests/test_api.py``; Hypothesis
drives the cases from a worker thread over real HTTP on loopback, so the loop keeps serving
while a case waits for its answer. Cases are derandomized, so CI runs the same ones each time."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import given, note, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from schemathesis import Case, GenerationMode
from schemathesis.checks import CheckFunction
from schemathesis.core.result import Err
from schemathesis.schemas import APIOperation, BaseSchema
from schemathesis.specs.openapi import checks as openapi

from tests.test_api import AUTH, BODY, WITH_TOKEN, announce, running, serving
from tests.test_webhooks import (
    ENV,
    GITHUB_SECRET,
    RENDER_SECRET,
    VERCEL_SECRET,
    WEBHOOKS,
    configured,
)
from watchdog.api import create_api
from watchdog.clock import ManualClock
from watchdog.sandbox import stack, toyapp, webhooks
from watchdog.sandbox.deployments import BAD_RELEASE, Delivery
from watchdog.store.sql import SqlStore

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True, database=None)
CONFIG = {"checks": {"negative_data_rejection": {"expected-statuses": ["422"]}}}
"""A case that breaks the schema is a 422, nothing else (with the token; without, a 401)."""
CHECKS: list[CheckFunction] = [
    schemathesis.checks.not_a_server_error,  # any 5xx: a healthy store never answers 503
    openapi.status_code_conformance,
    openapi.content_type_conformance,
    openapi.response_headers_conformance,
    openapi.response_schema_conformance,
]
STORED = ("deployments", "watches", "actions", "signals", "deliveries", "notifications")
"""What a call can change. The ticks' own bookkeeping (readings, decisions, leases) is left
out: the daemon keeps ticking its watch while the cases run."""


@dataclass
class Served:
    """A started daemon's API, with one open watch to aim ``watch_id`` at."""

    schema: BaseSchema
    base_url: str
    db: Path
    clock: ManualClock
    watch_id: str
    targets: list[str]


@pytest.fixture
def sandbox(sandbox: stack.Stack, monkeypatch: pytest.MonkeyPatch) -> stack.Stack:
    """The conftest's sandbox, with the webhooks' secrets set and a healthy app: only an
    alert makes a watch act."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    sandbox.app.set_faults(toyapp.Faults(), BAD_RELEASE)
    return sandbox


@pytest.fixture
async def served(
    tmp_path: Path, sandbox: stack.Stack, store: SqlStore, clock: ManualClock
) -> AsyncIterator[Served]:
    config = configured(tmp_path, sandbox, WEBHOOKS + WITH_TOKEN)
    async with running(config, store, clock) as daemon:
        await daemon.start()
        async with serving(create_api(daemon, clock=clock)) as client:
            watch_id = await announce(client, store)
            raw = (await client.get("/openapi.json")).json()
            yield Served(
                schemathesis.openapi.from_dict(raw, config=schemathesis.Config.from_dict(CONFIG)),
                str(client.base_url),
                tmp_path / "state.db",
                clock,
                watch_id,
                list(config.settings.targets),
            )


def snapshot(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        return {
            table: sorted(conn.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in STORED
        }


def open_watch(db: Path) -> str | None:
    """A watch still open now: the one announced first is superseded once cases announce."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        row = conn.execute("SELECT id FROM watches WHERE state <> 'closed' LIMIT 1").fetchone()
    return None if row is None else str(row[0])


def operations(schema: BaseSchema) -> list[APIOperation]:
    """Every operation in the schema; one schemathesis cannot read fails the test."""
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    return found


def source(operation: APIOperation) -> str | None:
    """The webhook's sender (``vercel``, ``render``, ``github``), or None for the rest."""
    path = operation.path.removeprefix("/webhooks/")
    return None if path == operation.path else path


def negatable(operation: APIOperation, authenticated: bool) -> bool:
    """Whether a case can break the schema: a body with a schema, a query, or (sent without
    credentials) the bearer header. A webhook's body may be anything until it is verified."""
    raw = operation.definition.raw
    body = raw.get("requestBody", {}).get("content", {}).get("application/json", {})
    query = any(p["in"] == "query" for p in raw.get("parameters", []))
    return bool(body.get("schema")) or query or ("security" in raw and not authenticated)


def signed(served: Served, sender: str, case: Case) -> Delivery:
    """The case's body and headers, signed as ``sender`` signs (ids and events as generated)."""
    generated = dict(case.headers or {})
    match sender:
        case "vercel":
            return webhooks.vercel(case.body, secret=VERCEL_SECRET)
        case "render":
            msg_id = generated.get("webhook-id", "msg_fuzz")
            now = served.clock.now()
            return webhooks.render(case.body, secret=RENDER_SECRET, msg_id=msg_id, at=now)
        case _:
            event = generated.get("x-github-event", "deployment_status")
            guid = generated.get("x-github-delivery", "guid-fuzz")
            return webhooks.github(event, case.body, secret=GITHUB_SECRET, delivery_id=guid)


Expect = Callable[[Case, schemathesis.Response], None]
Seen = Counter[tuple[str, int]]


def unparsable(case: Case) -> bool:
    """The case sends bytes that are not JSON (schemathesis' "random bytes" negation)."""
    if not isinstance(case.body, bytes):
        return False
    try:
        json.loads(case.body)
    except ValueError:
        return True
    return False


def not_json_text(case: Case, response: schemathesis.Response, authenticated: bool) -> bool:
    """With the token, a body that is not JSON text at all (not UTF-8) is the documented 400,
    not a 422: FastAPI cannot read it to say which field is wrong. Nothing is stored."""
    if source(case.operation) is not None or not unparsable(case):
        return False
    return authenticated and response.status_code == 400


@dataclass
class Fuzz:
    """One pass over every operation: generated in ``mode``, sent with the token (and webhooks
    signed) when ``authenticated``; each answer must pass ``checks``, then ``expect``."""

    served: Served
    authenticated: bool
    mode: GenerationMode
    checks: list[CheckFunction]
    expect: Expect

    def run(self) -> Seen:
        """How often each operation answered each status. Failures are gathered across
        operations, so that one run reports all of them."""
        seen: Seen = Counter()
        failures: list[str] = []
        for operation in operations(self.served.schema):
            if self.mode.is_negative and not negatable(operation, self.authenticated):
                continue
            try:
                self.operation(operation, seen)
            except (AssertionError, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup
                notes = getattr(exc, "__notes__", [])
                failures.append("\n".join([f"{operation.label}:", str(exc), *notes]))
        assert not failures, "\n\n".join(failures)
        return seen

    def strategy(self, operation: APIOperation) -> SearchStrategy[tuple[Case, str | None]]:
        token = AUTH if self.authenticated and source(operation) is None else None
        cases = operation.as_strategy(self.mode, headers=token)
        if any(p.name == "watch_id" for p in operation.path_parameters):
            aimed = {"watch_id": open_watch(self.served.db) or self.served.watch_id}
            cases |= operation.as_strategy(self.mode, headers=token, path_parameters=aimed)
        # A generated target is never a configured one, so every case would stop at the 422:
        # a valid case names a configured one half of the time.
        known = st.none()
        if self.mode.is_positive:
            known |= st.sampled_from(self.served.targets)
        return st.tuples(cases, known)

    def operation(self, operation: APIOperation, seen: Seen) -> None:
        sender = source(operation)

        @SETTINGS
        @given(drawn=self.strategy(operation))
        def case_passes(drawn: tuple[Case, str | None]) -> None:
            case, target = drawn
            if target is not None and isinstance(case.body, dict) and "target" in case.body:
                case.body = {**case.body, "target": target}
            signature: dict[str, Any] = {}
            if self.authenticated and sender is not None:
                delivery = signed(self.served, sender, case)
                signature = {"headers": dict(delivery.headers), "data": delivery.body}
            response = case.call(base_url=self.served.base_url, timeout=10, **signature)
            sent = dict(response.request.headers)  # the token shows as [Filtered]
            note(case.as_curl_command(headers=sent, base_url=self.served.base_url))
            seen[(operation.label, response.status_code)] += 1
            if not_json_text(case, response, self.authenticated):
                return
            case.validate_response(response, checks=self.checks)
            self.expect(case, response)

        case_passes()


def refused(case: Case, response: schemathesis.Response) -> None:
    """Without the token (or a webhook's signature) every change is refused, and says how
    to authenticate."""
    if case.operation.method.upper() == "POST":
        assert response.status_code == 401, response.text
        if source(case.operation) is None:
            assert response.headers.get("www-authenticate") == ["Bearer"]


def admitted(case: Case, response: schemathesis.Response) -> None:
    assert response.status_code != 401, response.text


def anything(case: Case, response: schemathesis.Response) -> None:
    """The checks said it all."""


def labels(served: Served) -> set[str]:
    return {operation.label for operation in operations(served.schema)}


def answered(seen: Seen) -> dict[str, set[int]]:
    by_operation: dict[str, set[int]] = {}
    for label, status in seen:
        by_operation.setdefault(label, set()).add(status)
    return by_operation


async def test_without_credentials_every_change_is_401_and_nothing_is_stored(
    served: Served,
) -> None:
    before = snapshot(served.db)
    seen: Seen = Counter()
    for mode in GenerationMode:
        seen += await asyncio.to_thread(Fuzz(served, False, mode, CHECKS, refused).run)
    assert snapshot(served.db) == before
    assert set(answered(seen)) == labels(served)


async def test_with_credentials_every_answer_is_documented_and_no_server_error(
    served: Served,
) -> None:
    seen = await asyncio.to_thread(
        Fuzz(served, True, GenerationMode.POSITIVE, CHECKS, admitted).run
    )
    statuses = answered(seen)
    assert set(statuses) == labels(served)
    # The cases got past validation: deploys were watched and alerts raised.
    assert 202 in statuses["POST /api/deploys"]
    assert 202 in statuses["POST /api/signals"]


async def test_with_the_token_what_breaks_the_schema_is_422_and_stores_nothing(
    served: Served,
) -> None:
    before = snapshot(served.db)
    rejection = [*CHECKS, openapi.negative_data_rejection]
    seen = await asyncio.to_thread(
        Fuzz(served, True, GenerationMode.NEGATIVE, rejection, anything).run
    )
    assert snapshot(served.db) == before
    assert set(answered(seen)) == {"POST /api/deploys", "POST /api/signals", "GET /api/watches"}


# What the fuzzing found, each as its smallest case, reported for api.py in issue 7. Each is
async def test_without_the_token_a_body_that_is_not_json_is_401(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        answers = [
            await client.post(path, content=body, headers={"content-type": "application/json"})
            for path in ("/api/deploys", "/api/signals")
            for body in (b"{", b"\xff")
        ]
    assert [a.status_code for a in answers] == [401] * 4


async def test_with_the_token_a_body_that_is_not_utf8_is_the_documented_400(
    served: Served,
) -> None:
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        response = await client.post(
            "/api/deploys", content=b"\xff", headers={**AUTH, "content-type": "application/json"}
        )
        schema = (await client.get("/openapi.json")).json()
    assert response.status_code == 400, response.text
    assert "400" in schema["paths"]["/api/deploys"]["post"]["responses"]


@pytest.mark.parametrize(
    "deployed_at",
    [
        "9999-12-31T23:59:59Z",  # the watch would close after the last date Python holds
        "0001-01-01T00:00:00+14:00",  # in UTC, before the first
    ],
)
async def test_a_deploy_time_out_of_range_is_422_and_the_open_watch_stays_open(
    served: Served, deployed_at: str
) -> None:
    before = snapshot(served.db)
    async with httpx.AsyncClient(base_url=served.base_url) as client:
        body = {**BODY, "deployment_id": "dep-3", "deployed_at": deployed_at}
        response = await client.post("/api/deploys", json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "deployed_at"]]
    assert snapshot(served.db) == before
