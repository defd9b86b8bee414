"""A realistic incident in a real store: a backend deploy at 12:00 whose error rate climbs from
0.2 % to 6 % in two minutes, the watchdog monitoring and then rolling back, the rollback done
in 41 s and verified healthy. Variants close it as a dry run, a failed rollback or a disabled
flag."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from watchdog.model import Decision, Deployment, Reading, Verdict
from watchdog.settings import Settings, load_rules
from watchdog.store.base import StateStore
from watchdog.store.records import ActionRecord, ActionStatus, Outcome, WatchRecord, WatchState

RULES = load_rules(Path(__file__).parents[1] / "config" / "rules.yaml")
T0 = datetime(2026, 1, 28, 12, 0, tzinfo=UTC)
TICK = timedelta(seconds=15)

SECRETS = (
    "sntrys_incident_sentry_token",
    "rnd_incident_render_key",
    "https://hooks.slack.com/services/T000/B000/incidentsecret",
    "incident-api-token",
)

ERROR_RATES = (0.002, 0.002, 0.003, 0.004, 0.006, 0.008, 0.012, 0.03, 0.06)
USERS_AFFECTED = (0.001, 0.001, 0.002, 0.004, 0.01, 0.02, 0.03, 0.05, 0.08)
LATENCY = (0.05, 0.05, 0.1, 0.1, 0.15, 0.2, 0.3, 0.35, 0.4)
# Per tick (12:00:15 … 12:02:15): what the engine said, with the rule that fired.
VERDICTS = (
    *[(Verdict.NONE, None)] * 4,
    (Verdict.MONITOR, "error-rate-elevated"),
    (Verdict.MONITOR, "error-rate-elevated"),
    (Verdict.MONITOR, "error-rate-high"),
    (Verdict.MONITOR, "error-rate-high"),
    (Verdict.ROLLBACK, "error-rate-critical"),
)
VERIFICATION = (
    ("health api", True, ""),
    ("flow auth", True, ""),
    ("error rate", True, "0.05 % < 0.1 % within 5m"),
)


def settings(incidents: Path) -> Settings:
    return Settings(
        incidents={"dir": incidents},
        api={"token": SECRETS[3]},
        sentry={"api_url": "https://sentry.example", "organization": "acme", "token": SECRETS[0]},
        slack={"webhook_url": SECRETS[2]},
        targets={
            "backend": {
                "provider": {"kind": "render", "service_id": "srv-123", "token": SECRETS[1]},
                "sentry": {"project": "acme-api"},
            }
        },
    )


@dataclass(frozen=True)
class Incident:
    watch: WatchRecord
    deployment: Deployment
    decisions: list[Decision]
    actions: list[ActionRecord]


async def store_incident(
    store: StateStore, *, deployment_id: str = "dep-2", outcome: Outcome = Outcome.ROLLED_BACK
) -> Incident:
    """Record the incident as the watch would have, closed with ``outcome``."""
    deployment = Deployment(
        "backend", deployment_id, T0, previous_id="dep-1", release="abc123", commit="abc123"
    )
    await store.save_deployment(deployment)
    watch = await store.open_watch(
        WatchRecord(
            id=f"watch-{deployment_id}",
            target="backend",
            deployment_id=deployment_id,
            state=WatchState.OBSERVING,
            started_at=T0 + timedelta(seconds=2),
            closes_at=T0 + timedelta(minutes=10),
            interval=TICK,
            dry_run=outcome is Outcome.WOULD_ROLL_BACK,
        )
    )
    flag = outcome is Outcome.FLAG_DISABLED
    decisions = []
    for n, (rate, users, latency, (verdict, rule)) in enumerate(
        zip(ERROR_RATES, USERS_AFFECTED, LATENCY, VERDICTS, strict=True), start=1
    ):
        at = T0 + n * TICK
        readings = [
            Reading(at, "error_rate", rate, samples=4000),
            Reading(at, "users_affected", users, samples=2500),
            Reading(at, "latency_change", latency, {"check": "api", "percentile": "p95"}),
        ]
        if flag and verdict is Verdict.ROLLBACK:
            verdict, rule = Verdict.DISABLE_FLAG, "flag-broken"
        decision = Decision(
            verdict,
            at,
            f"{rule or 'no rule'}: error_rate {rate * 100:g} % over 4,000 requests",
            rule=rule,
            evidence=(readings[0],) if rule else (),
            urgency="immediate" if verdict is Verdict.ROLLBACK else None,
            flag="new_checkout" if verdict is Verdict.DISABLE_FLAG else None,
        )
        await store.add_tick(watch.id, readings, [], decision)
        decisions.append(decision)
    decided = decisions[-1]
    watch = replace(
        watch,
        state=WatchState.CLOSED,
        outcome=outcome,
        rule=decided.rule,
        decided_at=decided.at,
        explanation=decided.explanation,
    )
    actions = []
    if outcome is not Outcome.WOULD_ROLL_BACK:
        action = await store.begin_action(
            ActionRecord(
                id=f"action-{deployment_id}",
                key=f"{'disable_flag' if flag else 'rollback'}:backend:{deployment_id}",
                watch_id=watch.id,
                target="backend",
                deployment_id=deployment_id,
                kind="disable_flag" if flag else "rollback",
                provider="sql" if flag else "render",
                to="new_checkout" if flag else "dep-1",
                status=ActionStatus.INTENDED,
                started_at=decided.at + timedelta(seconds=1),
                reason=decided.explanation,
            )
        )
        failed = outcome is Outcome.ROLLBACK_FAILED
        actions.append(
            await store.finish_action(
                action.id,
                ActionStatus.FAILED if failed else ActionStatus.DONE,
                decided.at + timedelta(seconds=42),
                "render: 503 Service Unavailable" if failed else None,
            )
        )
    match outcome:
        case Outcome.ROLLED_BACK:
            watch = replace(
                watch, closed_at=T0 + timedelta(minutes=5, seconds=40), verification=VERIFICATION
            )
        case Outcome.FLAG_DISABLED:
            watch = replace(watch, closed_at=watch.closes_at)
        case Outcome.ROLLBACK_FAILED:
            watch = replace(
                watch, closed_at=actions[0].finished_at, explanation=actions[0].error
            )
        case _:
            watch = replace(watch, closed_at=decided.at)
    await store.update_watch(watch)
    return Incident(watch, deployment, decisions, actions)
