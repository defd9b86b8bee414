"""Each runbook line and each boundary, as literal readings and the verdict they must give."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.rules.build import DEPLOY, RULES, TICK, at, err, errs, healthy_background, metric
from watchdog.model import Reading, Scope, Verdict
from watchdog.rules import decide

CASES: list[tuple[str, list[Reading], int, Verdict, str | None]] = [
    # --- error rate (">1 % in first 10 minutes", "0.5-1 % monitor", "<0.1 % do not roll back")
    (
        "2 % over 3,000 twice: roll back",
        errs([0.02, 0.02]),
        2,
        Verdict.ROLLBACK,
        "error-rate-critical",
    ),
    (
        "exactly 1 % is not above 1 %",
        errs([0.01, 0.01], 100_000),
        2,
        Verdict.MONITOR,
        "error-rate-elevated",
    ),
    (
        "just above 1 % with ample traffic",
        errs([0.0102, 0.0102], 2_000_000),
        2,
        Verdict.ROLLBACK,
        "error-rate-critical",
    ),
    ("0.1 %: fix forward", errs([0.001, 0.001]), 2, Verdict.NONE, None),
    ("under 0.1 %: fix forward", errs([0.0009, 0.0009]), 2, Verdict.NONE, None),
    (
        "0.5 % is the start of the monitor band",
        errs([0.005]),
        1,
        Verdict.MONITOR,
        "error-rate-elevated",
    ),
    ("0.49 % is below it", errs([0.0049]), 1, Verdict.NONE, None),
    (
        "one noisy reading: watch, do not act",
        errs([0.0004, 0.03]),
        2,
        Verdict.MONITOR,
        "error-rate-high",
    ),
    ("one noisy reading that passed", errs([0.03, 0.0004]), 2, Verdict.NONE, None),
    (
        "1 error in 40 requests is no proof",
        errs([0.025, 0.025], 40),
        2,
        Verdict.MONITOR,
        "error-rate-high",
    ),
    (
        "60 errors in 3,000 requests is",
        errs([0.02, 0.02], 3000),
        2,
        Verdict.ROLLBACK,
        "error-rate-critical",
    ),
    (
        "rising 0.5-1 % over 3 readings",
        errs([0.0055, 0.007, 0.0085]),
        3,
        Verdict.ROLLBACK,
        "error-rate-rising",
    ),
    ("flat 0.7 %: monitor", errs([0.007, 0.007, 0.007]), 3, Verdict.MONITOR, "error-rate-elevated"),
    (
        "a jump from healthy into the band is not yet rising",
        errs([0.0004, 0.0005, 0.006]),
        3,
        Verdict.MONITOR,
        "error-rate-elevated",
    ),
    (
        "rising but only two readings",
        errs([0.006, 0.008]),
        2,
        Verdict.MONITOR,
        "error-rate-elevated",
    ),
    (
        "rising across a missing tick is not a trend",
        [err(1, 0.0055), err(2, 0.007), err(4, 0.0085)],
        4,
        Verdict.MONITOR,
        "error-rate-elevated",
    ),
    (
        "rising on too little traffic",
        errs([0.0055, 0.007, 0.0085], 100),
        3,
        Verdict.MONITOR,
        "error-rate-elevated",
    ),
    # --- critical features ("authentication, payments, core workflows")
    (
        "login broken twice",
        healthy_background(range(1, 3))
        + [metric(1, "flow", 0, flow="auth"), metric(2, "flow", 0, flow="auth")],
        2,
        Verdict.ROLLBACK,
        "critical-flow-broken",
    ),
    (
        "payments broken twice",
        healthy_background(range(1, 3))
        + [metric(1, "flow", 0, flow="payments"), metric(2, "flow", 0, flow="payments")],
        2,
        Verdict.ROLLBACK,
        "critical-flow-broken",
    ),
    (
        "a flow the config marks critical",
        healthy_background(range(1, 3))
        + [metric(t, "flow", 0, flow="checkout", critical="true") for t in (1, 2)],
        2,
        Verdict.ROLLBACK,
        "critical-flow-broken",
    ),
    (
        "login broken once: one failed probe is not proof",
        healthy_background(range(1, 2)) + [metric(1, "flow", 0, flow="auth")],
        1,
        Verdict.NONE,
        None,
    ),
    (
        "login broken then fixed",
        healthy_background(range(1, 3))
        + [metric(1, "flow", 0, flow="auth"), metric(2, "flow", 1, flow="auth")],
        2,
        Verdict.NONE,
        None,
    ),
    (
        "a non-critical flow broken: workaround exists, monitor",
        healthy_background(range(1, 3))
        + [metric(t, "flow", 0, flow="search", critical="false") for t in (1, 2)],
        2,
        Verdict.MONITOR,
        "flow-broken",
    ),
    (
        "a health check failing twice",
        healthy_background(range(1, 3)) + [metric(t, "health", 0, check="api") for t in (1, 2)],
        2,
        Verdict.ROLLBACK,
        "health-check-failing",
    ),
    (
        "two different checks failing once each is no hold",
        healthy_background(range(1, 3))
        + [
            metric(1, "health", 0, check="api"),
            metric(2, "health", 0, check="database"),
            metric(1, "health", 1, check="database"),
            metric(2, "health", 1, check="api"),
        ],
        2,
        Verdict.NONE,
        None,
    ),
    # --- database migration, security, users
    (
        "migration failed",
        healthy_background(range(1, 2)) + [metric(1, "migration_failed", 1)],
        1,
        Verdict.ROLLBACK,
        "migration-failed",
    ),
    (
        "security alert",
        healthy_background(range(1, 2)) + [metric(1, "security_alert", 1)],
        1,
        Verdict.ROLLBACK,
        "security-alert",
    ),
    (
        "20 % of 500 users twice",
        healthy_background(range(1, 3))
        + [metric(t, "users_affected", 0.2, samples=500) for t in (1, 2)],
        2,
        Verdict.ROLLBACK,
        "users-affected",
    ),
    (
        "2 of 10 users is no proof of 10 %",
        healthy_background(range(1, 3))
        + [metric(t, "users_affected", 0.2, samples=10) for t in (1, 2)],
        2,
        Verdict.MONITOR,
        "users-affected-some",
    ),
    (
        "under 1 % of users: do not roll back",
        healthy_background(range(1, 3))
        + [metric(t, "users_affected", 0.009, samples=5000) for t in (1, 2)],
        2,
        Verdict.NONE,
        None,
    ),
    # --- feature flags
    (
        "a flag's errors: disable the flag",
        healthy_background(range(1, 3))
        + [metric(t, "flag_error_rate", 0.05, samples=2000, flag="new_checkout") for t in (1, 2)],
        2,
        Verdict.DISABLE_FLAG,
        "flag-broken",
    ),
    (
        "1 flag error in 30 requests: no proof",
        healthy_background(range(1, 3))
        + [metric(t, "flag_error_rate", 1 / 30, samples=30, flag="new_checkout") for t in (1, 2)],
        2,
        Verdict.NONE,
        None,
    ),
    (
        "flag errors and a site-wide spike: rollback wins",
        errs([0.03, 0.03])
        + [metric(t, "flag_error_rate", 0.2, samples=2000, flag="new_checkout") for t in (1, 2)],
        2,
        Verdict.ROLLBACK,
        "error-rate-critical",
    ),
    # --- latency
    (
        "p75 +210 % held 2m: roll back within 10 minutes",
        healthy_background(range(1, 10))
        + [metric(t, "latency_change", 2.1, check="api", percentile="p75") for t in range(1, 10)],
        9,
        Verdict.ROLLBACK,
        "latency-critical",
    ),
    (
        "p75 +210 % for 1m45s: not yet",
        healthy_background(range(1, 9))
        + [metric(t, "latency_change", 2.1, check="api", percentile="p75") for t in range(1, 9)],
        8,
        Verdict.MONITOR,
        "latency-degraded",
    ),
    (
        "p95 +250 % alone is the slowest 5 %: monitor",
        healthy_background(range(1, 10))
        + [metric(t, "latency_change", 2.5, check="api") for t in range(1, 10)],
        9,
        Verdict.MONITOR,
        "latency-degraded",
    ),
    (
        "+50 %: monitor",
        healthy_background(range(1, 2)) + [metric(1, "latency_change", 0.5, check="api")],
        1,
        Verdict.MONITOR,
        "latency-degraded",
    ),
    (
        "+40 %: nothing",
        healthy_background(range(1, 2)) + [metric(1, "latency_change", 0.4, check="api")],
        1,
        Verdict.NONE,
        None,
    ),
    # --- precedence
    (
        "migration and error spike: the first rollback rule in the file",
        errs([0.03, 0.03]) + [metric(2, "migration_failed", 1)],
        2,
        Verdict.ROLLBACK,
        "migration-failed",
    ),
    # --- missing data
    ("a spike then silence: missing is not a breach", errs([0.03, 0.03]), 3, Verdict.NONE, None),
    (
        "a spike with a tick missing between is no hold",
        [err(1, 0.03), err(3, 0.03)],
        3,
        Verdict.MONITOR,
        "error-rate-high",
    ),
    ("nothing for 2 intervals: not blind yet", [], 1, Verdict.NONE, None),
    ("nothing for 3 intervals: blind", [], 2, Verdict.INCONCLUSIVE, None),
    ("error rate gone for 3 intervals: blind", errs([0.0004]), 4, Verdict.INCONCLUSIVE, None),
    (
        "blind but the health check fails: act on what is seen",
        [metric(t, "health", 0, check="api") for t in (1, 2, 3, 4)],
        4,
        Verdict.ROLLBACK,
        "health-check-failing",
    ),
    (
        "blind outranks a latency monitor",
        [metric(t, "latency_change", 0.8, check="api") for t in (1, 2, 3, 4)],
        4,
        Verdict.INCONCLUSIVE,
        None,
    ),
    (
        "readings from before the deploy do not count",
        errs([0.03, 0.03], start=-1) + healthy_background(range(1, 2)),
        1,
        Verdict.NONE,
        None,
    ),
]


@pytest.mark.parametrize(
    ("readings", "tick", "verdict", "rule"), [pytest.param(*c[1:], id=c[0]) for c in CASES]
)
def test_runbook_table(
    readings: list[Reading], tick: int, verdict: Verdict, rule: str | None
) -> None:
    decision = decide(RULES, DEPLOY, readings, at(tick), TICK)
    assert (decision.verdict, decision.rule) == (verdict, rule), decision.explanation


@pytest.mark.parametrize(
    ("minute_offset", "verdict", "rule"),
    [
        (timedelta(minutes=9, seconds=45), Verdict.ROLLBACK, "error-rate-critical"),
        (timedelta(minutes=10), Verdict.ROLLBACK, "error-rate-critical"),
        (timedelta(minutes=10, seconds=15), Verdict.MONITOR, "error-rate-high"),
        (timedelta(minutes=11), Verdict.MONITOR, "error-rate-high"),
    ],
)
def test_error_rate_rule_holds_only_in_the_first_ten_minutes(
    minute_offset: timedelta, verdict: Verdict, rule: str
) -> None:
    now = DEPLOY.deployed_at + minute_offset
    readings = [
        Reading(now - TICK, "error_rate", 0.02, samples=3000),
        Reading(now, "error_rate", 0.02, samples=3000),
    ]
    decision = decide(RULES, DEPLOY, readings, now, TICK)
    assert (decision.verdict, decision.rule) == (verdict, rule)


def test_explanation_names_values_thresholds_hold_and_window() -> None:
    readings = errs([0.021, 0.023], 4120)
    decision = decide(RULES, DEPLOY, readings, at(2), TICK)
    assert decision.explanation == (
        "error_rate 2.3 % over 4,120 requests > 1 % (95 % lower bound 1.88 %) for 2 readings "
        "in the first 10m → rollback, immediate"
    )
    assert decision.evidence == tuple(readings)
    assert (decision.urgency, decision.scope) == ("immediate", Scope.APPLICATION)


def test_rollback_decision_lists_the_other_rules_that_fired() -> None:
    readings = errs([0.03, 0.03]) + [metric(2, "migration_failed", 1)]
    decision = decide(RULES, DEPLOY, readings, at(2), TICK)
    assert decision.scope is Scope.FULL
    assert decision.also_fired == ("error-rate-critical", "error-rate-high")


def test_flag_decision_names_the_flag() -> None:
    readings = healthy_background(range(1, 3)) + [
        metric(t, "flag_error_rate", 0.05, samples=2000, flag="new_checkout") for t in (1, 2)
    ]
    decision = decide(RULES, DEPLOY, readings, at(2), TICK)
    assert decision.flag == "new_checkout"
    assert decision.explanation.endswith("→ disable flag new_checkout")


def test_latency_rollback_has_a_deadline_ten_minutes_after_the_breach_began() -> None:
    readings = healthy_background(range(1, 10)) + [
        metric(t, "latency_change", 2.1, check="api", percentile="p75") for t in range(1, 10)
    ]
    decision = decide(RULES, DEPLOY, readings, at(9), TICK)
    assert decision.urgency == "within 10m"
    assert decision.deadline == at(1) + timedelta(minutes=10)


def test_latency_monitor_alerts_again_after_fifteen_minutes() -> None:
    ticks = range(1, 62)  # 15m15s of +60 %
    readings = healthy_background(ticks) + [
        metric(t, "latency_change", 0.6, check="api") for t in ticks
    ]
    early = decide(RULES, DEPLOY, readings, at(30), TICK)
    assert (early.verdict, early.escalate) == (Verdict.MONITOR, False)
    assert early.deadline == at(1) + timedelta(minutes=15)
    assert "monitor until 12:15:15Z" in early.explanation
    late = decide(RULES, DEPLOY, readings, at(61), TICK)
    assert (late.verdict, late.rule, late.escalate) == (Verdict.MONITOR, "latency-degraded", True)
    assert late.explanation.endswith("still true after 15m of monitoring → alert again")


def test_blind_watch_says_how_long_it_has_been_blind() -> None:
    decision = decide(RULES, DEPLOY, errs([0.0004]), at(4), TICK)
    assert decision.explanation.startswith("no error_rate reading for 45s (3 intervals of 15s)")


def test_a_reading_two_branches_of_an_any_match_is_explained_once() -> None:
    flows = [metric(t, "flow", 0, flow="auth", critical="true") for t in (1, 2)]
    decision = decide(RULES, DEPLOY, healthy_background(range(1, 3)) + flows, at(2), TICK)
    assert decision.rule == "critical-flow-broken"
    assert decision.explanation.count("is 0 for 2 readings") == 1, decision.explanation
    assert len(decision.evidence) == 2  # each reading once
