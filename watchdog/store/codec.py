"""Rows to records and back, the same for every backend (times are aware UTC datetimes)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from watchdog.model import Decision, Deployment, Reading, Scope, Verdict
from watchdog.signals.base import Failure, ProbeError
from watchdog.store.base import RaisedSignal
from watchdog.store.records import (
    ActionRecord,
    ActionStatus,
    Lease,
    NotificationRecord,
    NotificationStatus,
    Outcome,
    WatchRecord,
    WatchState,
)

Row = dict[str, Any]


def ts(value: Any) -> datetime | None:
    """A stored time back as an aware UTC datetime (SQLite keeps ISO text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.astimezone(UTC)


def put_ts(value: datetime | None) -> datetime | None:
    return None if value is None else value.astimezone(UTC)


def _req(value: Any) -> datetime:
    out = ts(value)
    assert out is not None
    return out


def deployment_row(d: Deployment) -> Row:
    return {
        "target": d.target,
        "id": d.id,
        "deployed_at": put_ts(d.deployed_at),
        "previous_id": d.previous_id,
        "release": d.release,
        "previous_release": d.previous_release,
        "commit_sha": d.commit,
        "migration_version": d.migration_version,
        "migration_failed": d.migration_failed,
    }


def deployment(row: Row) -> Deployment:
    return Deployment(
        target=row["target"],
        id=row["id"],
        deployed_at=_req(row["deployed_at"]),
        previous_id=row["previous_id"],
        release=row["release"],
        previous_release=row["previous_release"],
        commit=row["commit_sha"],
        migration_version=row["migration_version"],
        migration_failed=bool(row["migration_failed"]),
    )


def watch_row(w: WatchRecord) -> Row:
    return {
        "id": w.id,
        "target": w.target,
        "deployment_id": w.deployment_id,
        "state": str(w.state),
        "started_at": put_ts(w.started_at),
        "closes_at": put_ts(w.closes_at),
        "interval_ms": round(w.interval.total_seconds() * 1000),
        "dry_run": w.dry_run,
        "held": w.held,
        "outcome": w.outcome and str(w.outcome),
        "rule": w.rule,
        "decided_at": put_ts(w.decided_at),
        "closed_at": put_ts(w.closed_at),
        "acknowledged_at": put_ts(w.acknowledged_at),
        "baseline": json.dumps(dict(w.baseline), sort_keys=True),
        "verification": None if w.verification is None else json.dumps(w.verification),
        "explanation": w.explanation,
        "incident_report": w.incident_report,
    }


def watch(row: Row) -> WatchRecord:
    return WatchRecord(
        id=row["id"],
        target=row["target"],
        deployment_id=row["deployment_id"],
        state=WatchState(row["state"]),
        started_at=_req(row["started_at"]),
        closes_at=_req(row["closes_at"]),
        interval=timedelta(milliseconds=row["interval_ms"]),
        dry_run=bool(row["dry_run"]),
        held=bool(row["held"]),
        outcome=Outcome(row["outcome"]) if row["outcome"] else None,
        rule=row["rule"],
        decided_at=ts(row["decided_at"]),
        closed_at=ts(row["closed_at"]),
        acknowledged_at=ts(row["acknowledged_at"]),
        baseline=json.loads(row["baseline"]),
        verification=None
        if row["verification"] is None
        else tuple(
            (name, bool(ok), detail) for name, ok, detail in json.loads(row["verification"])
        ),
        explanation=row["explanation"],
        incident_report=row["incident_report"],
    )


def reading_row(watch_id: str, r: Reading) -> Row:
    return {
        "watch_id": watch_id,
        "at": put_ts(r.at),
        "metric": r.metric,
        "value": r.value,
        "labels": json.dumps(dict(r.labels), sort_keys=True),
        "samples": r.samples,
    }


def reading(row: Row) -> Reading:
    return Reading(
        at=_req(row["at"]),
        metric=row["metric"],
        value=row["value"],
        labels=json.loads(row["labels"]),
        samples=row["samples"],
    )


def probe_error_row(watch_id: str, at: datetime, e: ProbeError) -> Row:
    return {
        "watch_id": watch_id,
        "at": put_ts(at),
        "source": e.source,
        "failure": str(e.failure),
        "metric": e.metric,
        "message": e.message,
    }


def probe_error(row: Row) -> tuple[datetime, ProbeError]:
    return _req(row["at"]), ProbeError(
        row["source"], Failure(row["failure"]), row["message"], row["metric"]
    )


def _reading_json(r: Reading) -> dict[str, Any]:
    return {
        "at": r.at.isoformat(),
        "metric": r.metric,
        "value": r.value,
        "labels": dict(r.labels),
        "samples": r.samples,
    }


def decision_row(watch_id: str, d: Decision) -> Row:
    return {
        "watch_id": watch_id,
        "at": put_ts(d.at),
        "verdict": str(d.verdict),
        "rule": d.rule,
        "explanation": d.explanation,
        "evidence": json.dumps([_reading_json(r) for r in d.evidence]),
        "urgency": d.urgency,
        "deadline": put_ts(d.deadline),
        "scope": d.scope and str(d.scope),
        "flag": d.flag,
        "escalate": d.escalate,
        "also_fired": json.dumps(list(d.also_fired)),
    }


def decision(row: Row) -> Decision:
    evidence = tuple(
        Reading(
            at=_req(e["at"]),
            metric=e["metric"],
            value=e["value"],
            labels=e["labels"],
            samples=e["samples"],
        )
        for e in json.loads(row["evidence"])
    )
    return Decision(
        verdict=Verdict(row["verdict"]),
        at=_req(row["at"]),
        explanation=row["explanation"],
        rule=row["rule"],
        evidence=evidence,
        urgency=row["urgency"],
        deadline=ts(row["deadline"]),
        scope=Scope(row["scope"]) if row["scope"] else None,
        flag=row["flag"],
        escalate=bool(row["escalate"]),
        also_fired=tuple(json.loads(row["also_fired"])),
    )


def action_row(a: ActionRecord) -> Row:
    return {
        "id": a.id,
        "key": a.key,
        "watch_id": a.watch_id,
        "target": a.target,
        "deployment_id": a.deployment_id,
        "kind": a.kind,
        "provider": a.provider,
        "to_id": a.to,
        "to_release": a.to_release,
        "status": str(a.status),
        "started_at": put_ts(a.started_at),
        "reason": a.reason,
        "finished_at": put_ts(a.finished_at),
        "error": a.error,
        "notes": json.dumps(list(a.notes)),
    }


def action(row: Row) -> ActionRecord:
    return ActionRecord(
        id=row["id"],
        key=row["key"],
        watch_id=row["watch_id"],
        target=row["target"],
        deployment_id=row["deployment_id"],
        kind=row["kind"],
        provider=row["provider"],
        to=row["to_id"],
        status=ActionStatus(row["status"]),
        started_at=_req(row["started_at"]),
        reason=row["reason"],
        to_release=row["to_release"],
        finished_at=ts(row["finished_at"]),
        error=row["error"],
        notes=tuple(json.loads(row["notes"])),
    )


def signal_row(s: RaisedSignal) -> Row:
    return {
        "target": s.target,
        "deployment_id": s.deployment_id,
        "kind": s.kind,
        "detail": s.detail,
        "raised_at": put_ts(s.raised_at),
    }


def signal(row: Row) -> RaisedSignal:
    return RaisedSignal(
        target=row["target"],
        deployment_id=row["deployment_id"],
        kind=row["kind"],
        detail=row["detail"],
        raised_at=_req(row["raised_at"]),
    )


def lease(row: Row) -> Lease:
    return Lease(
        name=row["name"],
        owner=row["owner"],
        token=row["token"],
        expires_at=_req(row["expires_at"]),
    )


def notification_row(n: NotificationRecord) -> Row:
    return {
        "id": n.id,
        "key": n.key,
        "watch_id": n.watch_id,
        "kind": n.kind,
        "notifier": n.notifier,
        "payload": json.dumps(dict(n.payload), sort_keys=True),
        "created_at": put_ts(n.created_at),
        "due_at": put_ts(n.due_at),
        "status": str(n.status),
        "attempts": n.attempts,
        "sent_at": put_ts(n.sent_at),
        "last_error": n.last_error,
    }


def notification(row: Row) -> NotificationRecord:
    return NotificationRecord(
        id=row["id"],
        key=row["key"],
        watch_id=row["watch_id"],
        kind=row["kind"],
        notifier=row["notifier"],
        payload=json.loads(row["payload"]),
        created_at=_req(row["created_at"]),
        due_at=_req(row["due_at"]),
        status=NotificationStatus(row["status"]),
        attempts=row["attempts"],
        sent_at=ts(row["sent_at"]),
        last_error=row["last_error"],
    )
