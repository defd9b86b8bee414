"""The watch summary (ARCHITECTURE §4): what ``watch --json``, ``rollback --json`` and
``GET /api/watches/{id}`` print, one shape for all three."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from watchdog.providers.registry import target_seconds
from watchdog.settings import Settings
from watchdog.store.base import StateStore
from watchdog.store.records import ActionRecord, WatchRecord
from watchdog.verify import Check, Verification


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def action_json(action: ActionRecord, target_seconds: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": action.kind,
        "provider": action.provider,
        "to": action.to,
        "status": str(action.status),
        "started_at": iso(action.started_at),
        "finished_at": iso(action.finished_at),
        "seconds": action.seconds,
        "target_seconds": target_seconds,
    }
    if action.error:
        out["error"] = action.error
    if action.notes:
        out["notes"] = list(action.notes)
    return out


def verification_json(verification: Verification | None) -> dict[str, Any] | None:
    if verification is None:
        return None
    return {
        "passed": verification.passed,
        "checks": [
            {"name": c.name, "passed": c.passed, **({"detail": c.detail} if c.detail else {})}
            for c in verification.checks
        ],
    }


def summary_json(
    *,
    target: str,
    deployment_id: str,
    previous_deployment_id: str | None,
    verdict: str,
    rule: str | None,
    dry_run: bool,
    started_at: datetime,
    decided_at: datetime | None,
    closed_at: datetime | None,
    actions: list[dict[str, Any]],
    verification: Verification | None,
    incident_report: str | None = None,
    explanation: str | None = None,
) -> dict[str, Any]:
    out = {
        "target": target,
        "deployment_id": deployment_id,
        "previous_deployment_id": previous_deployment_id,
        "verdict": verdict,
        "rule": rule,
        "dry_run": dry_run,
        "started_at": iso(started_at),
        "decided_at": iso(decided_at),
        "closed_at": iso(closed_at),
        "actions": actions,
        "verification": verification_json(verification),
        "incident_report": incident_report,
    }
    if explanation:
        out["explanation"] = explanation
    return out


async def watch_summary(
    store: StateStore, settings: Settings, record: WatchRecord
) -> dict[str, Any]:
    """The summary of a stored watch, open or closed."""
    deployment = await store.deployment(record.target, record.deployment_id)
    actions = await store.actions(record.id)
    config = settings.targets[record.target].provider if record.target in settings.targets else None
    seconds = target_seconds(config) if config is not None else 300
    verification = (
        None
        if record.verification is None
        else Verification(
            tuple(Check(name, passed, detail) for name, passed, detail in record.verification)
        )
    )
    rolled_back_to = next((a.to for a in actions if a.kind == "rollback"), None)
    return summary_json(
        target=record.target,
        deployment_id=record.deployment_id,
        previous_deployment_id=rolled_back_to or (deployment.previous_id if deployment else None),
        verdict=str(record.outcome) if record.outcome else str(record.state),
        rule=record.rule,
        dry_run=record.dry_run,
        started_at=record.started_at,
        decided_at=record.decided_at,
        closed_at=record.closed_at,
        actions=[action_json(a, 60 if a.kind.endswith("_flag") else seconds) for a in actions],
        verification=verification,
        incident_report=record.incident_report,
        explanation=record.explanation,
    )
