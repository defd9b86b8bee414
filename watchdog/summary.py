"""The watch summary (ARCHITECTURE §4): what ``watch --json``, ``rollback --json`` and
``GET /api/watches/{id}`` print, one shape for all three."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from watchdog.store.records import ActionRecord
from watchdog.verify import Verification


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
