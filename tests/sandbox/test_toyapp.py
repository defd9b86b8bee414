"""The toy app over real loopback HTTP: its routes, its fault switch, and the events it leaves
for the Sentry stand-in."""

from __future__ import annotations

from datetime import timedelta

import httpx

from watchdog.clock import ManualClock
from watchdog.sandbox.events import FAILED_STATUS, EventLog, Timeline
from watchdog.sandbox.toyapp import Faults, ToyState, Traffic

from .conftest import PASSWORD, T0


def sign_in(toy: httpx.Client) -> dict[str, str]:
    response = toy.post(
        "/api/auth/login", json={"email": "smoke@acme.example", "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_a_healthy_release_passes_the_verification_checklist(toy: httpx.Client) -> None:
    auth = sign_in(toy)

    home = toy.get("/")
    assert (home.status_code, home.headers["content-type"].startswith("text/html")) == (200, True)
    assert toy.get("/health").json() == {"status": "healthy"}
    assert toy.get("/api/health/database").json() == {"status": "connected"}
    assert toy.get("/api/dashboard", headers=auth).json()["user"] == "smoke@acme.example"
    assert toy.post("/api/payments", headers=auth).json() == {"status": "succeeded"}
    assert len(toy.get("/api/appointments").json()) == 2


def test_wrong_passwords_and_missing_tokens_are_401(toy: httpx.Client) -> None:
    login = toy.post("/api/auth/login", json={"email": "smoke@acme.example", "password": "no"})

    assert login.status_code == 401
    assert toy.get("/api/dashboard").status_code == 401
    assert toy.post("/api/payments", headers={"Authorization": "Bearer forged"}).status_code == 401


def test_switched_faults_break_their_routes_and_leave_errors(
    toy: httpx.Client, state: ToyState, log: EventLog
) -> None:
    auth = sign_in(toy)
    state.set_faults(Faults(login_broken=True, payments_broken=True, database_broken=True))

    login = toy.post("/api/auth/login", json={"email": "a@b.c", "password": PASSWORD})
    health = toy.get("/health")

    assert login.status_code == 500
    assert toy.post("/api/payments", headers=auth).status_code == 500
    assert (health.status_code, health.json()) == (503, {"status": "unhealthy"})
    assert toy.get("/api/health/database").status_code == 503
    errors = [e for e in log.snapshot() if e.type == "error"]
    assert [(e.title, e.release) for e in errors] == [
        ("AuthError: session store unavailable", "r1"),
        ("PaymentError: card processor rejected the request", "r1"),
    ]
    assert errors[1].user == "smoke@acme.example"


def test_the_error_fraction_fails_exactly_that_share_of_requests(
    toy: httpx.Client, state: ToyState, log: EventLog, clock: ManualClock
) -> None:
    state.set_faults(Faults(error_fraction=0.25))
    clock.advance(timedelta(minutes=3))

    statuses = [toy.get("/api/appointments").status_code for _ in range(8)]
    health = toy.get("/health")

    assert statuses.count(500) == 2
    assert health.status_code == 200
    transactions = [e for e in log.snapshot() if e.type == "transaction"]
    assert len(transactions) == 9
    assert sum(e.status == FAILED_STATUS for e in transactions) == 2
    assert sum(e.type == "error" for e in log.snapshot()) == 2
    assert {e.timestamp for e in transactions} == {T0 + timedelta(minutes=3)}
    assert {e.user for e in transactions} == {"ip:127.0.0.1"}
    assert {e.tags["transaction"] for e in transactions} == {"GET /api/appointments", "GET /health"}


def test_faults_belong_to_a_release_and_go_away_with_it(toy: httpx.Client, state: ToyState) -> None:
    state.set_faults(Faults(error_fraction=1.0), release="r2")

    assert toy.get("/api/appointments").status_code == 200
    state.set_live("r2")
    assert toy.get("/api/appointments").status_code == 500
    state.set_live("r1")
    assert toy.get("/api/appointments").status_code == 200


def test_the_switch_is_reachable_over_http_and_not_recorded(
    toy: httpx.Client, state: ToyState, log: EventLog
) -> None:
    live = toy.post("/_sandbox/live", json={"release": "r2"})
    faults = toy.post("/_sandbox/faults", json={"faults": {"database_broken": True}})
    invalid = toy.post("/_sandbox/faults", json={"faults": {"error_fraction": 2}})

    assert live.json() == {"release": "r2"}
    assert faults.json()["database_broken"] is True
    assert invalid.status_code == 422
    assert state.live == "r2"
    assert state.faults("r2").database_broken
    assert not state.faults("r1").database_broken
    assert len(log) == 0


def test_added_latency_shows_in_recorded_durations(
    toy: httpx.Client, state: ToyState, log: EventLog
) -> None:
    state.set_faults(Faults(added_latency_ms=50))

    toy.get("/health")

    (transaction,) = log.snapshot()
    assert transaction.duration_ms is not None
    assert transaction.duration_ms >= 50


def test_traffic_writes_exact_counts_across_pumps(
    state: ToyState, log: EventLog, clock: ManualClock
) -> None:
    traffic = Traffic(
        state, log, clock, project="acme-api", environment="production", per_second=10
    )
    state.set_live("r2")
    state.set_faults(Faults(error_fraction=0.02))
    written = []
    for _ in range(100):
        clock.advance(timedelta(milliseconds=1500))
        written.append(traffic.pump())

    r2 = [e for e in log.snapshot() if e.release == "r2"]
    assert sum(t.transactions for t in written) == 1500
    assert sum(e.type == "transaction" for e in r2) == 1500
    assert sum(e.type == "error" for e in r2) == 30
    assert max(e.timestamp for e in r2) < clock.now()


def test_traffic_follows_the_live_release(
    state: ToyState, log: EventLog, clock: ManualClock
) -> None:
    traffic = Traffic(
        state, log, clock, project="acme-api", environment="production", per_second=5, users=10
    )
    clock.advance(timedelta(seconds=60))
    before = traffic.pump()
    state.set_live("r2")
    state.set_faults(Faults(error_fraction=0.1, added_latency_ms=200))
    clock.advance(timedelta(seconds=60))
    after = traffic.pump()

    assert before == Timeline(transactions=300, errors=0, users=10, error_users=0)
    assert after == Timeline(transactions=300, errors=30, users=10, error_users=10)
    slowest = max(e.duration_ms or 0 for e in log.snapshot() if e.release == "r2")
    assert slowest > 300


def test_sentry_sees_the_live_release_error_rate(
    toy: httpx.Client, api: httpx.Client, state: ToyState, clock: ManualClock
) -> None:
    state.set_live("r2")
    state.set_faults(Faults(error_fraction=0.5))
    clock.advance(timedelta(seconds=30))
    for _ in range(10):
        toy.get("/api/appointments")
    clock.advance(timedelta(seconds=30))

    def count(dataset: str) -> int:
        response = api.get(
            "/events/",
            params={
                "dataset": dataset,
                "field": "count()",
                "query": 'release:"r2"',
                "statsPeriod": "1m",
                "projectSlug": "acme-api",
                "environment": "production",
            },
        )
        return int(response.json()["data"][0]["count()"])

    assert (count("errors"), count("transactions")) == (5, 10)
