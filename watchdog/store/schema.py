"""Versioned schema migrations, one list per dialect, applied in order at start."""

from __future__ import annotations

_COMMON = [
    """CREATE TABLE deployments (
        target TEXT NOT NULL, id TEXT NOT NULL, deployed_at {ts} NOT NULL,
        previous_id TEXT, release TEXT, previous_release TEXT, commit_sha TEXT,
        migration_version TEXT, migration_failed BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (target, id))""",
    """CREATE TABLE watches (
        id TEXT PRIMARY KEY, target TEXT NOT NULL, deployment_id TEXT NOT NULL,
        state TEXT NOT NULL, started_at {ts} NOT NULL, closes_at {ts} NOT NULL,
        interval_ms BIGINT NOT NULL, dry_run BOOLEAN NOT NULL, held BOOLEAN NOT NULL,
        outcome TEXT, rule TEXT, decided_at {ts}, closed_at {ts}, acknowledged_at {ts},
        baseline TEXT NOT NULL DEFAULT '{{}}', verification TEXT, explanation TEXT,
        FOREIGN KEY (target, deployment_id) REFERENCES deployments (target, id))""",
    # One open watch per deployment: announcing a deploy twice watches it once.
    """CREATE UNIQUE INDEX watches_one_open ON watches (target, deployment_id)
        WHERE state <> 'closed'""",
    """CREATE TABLE readings (
        watch_id TEXT NOT NULL REFERENCES watches (id), at {ts} NOT NULL,
        metric TEXT NOT NULL, value DOUBLE PRECISION NOT NULL, labels TEXT NOT NULL,
        samples BIGINT)""",
    "CREATE INDEX readings_by_watch ON readings (watch_id, at)",
    """CREATE TABLE probe_errors (
        watch_id TEXT NOT NULL REFERENCES watches (id), at {ts} NOT NULL,
        source TEXT NOT NULL, failure TEXT NOT NULL, metric TEXT, message TEXT NOT NULL)""",
    "CREATE INDEX probe_errors_by_watch ON probe_errors (watch_id, at)",
    """CREATE TABLE decisions (
        watch_id TEXT NOT NULL REFERENCES watches (id), at {ts} NOT NULL,
        verdict TEXT NOT NULL, rule TEXT, explanation TEXT NOT NULL, evidence TEXT NOT NULL,
        urgency TEXT, deadline {ts}, scope TEXT, flag TEXT, escalate BOOLEAN NOT NULL,
        also_fired TEXT NOT NULL)""",
    "CREATE INDEX decisions_by_watch ON decisions (watch_id, at)",
    # key is the idempotency key: at most one rollback of a deployment, ever.
    """CREATE TABLE actions (
        id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, watch_id TEXT REFERENCES watches (id),
        target TEXT NOT NULL, deployment_id TEXT NOT NULL, kind TEXT NOT NULL,
        provider TEXT NOT NULL, to_id TEXT, to_release TEXT, status TEXT NOT NULL,
        started_at {ts} NOT NULL,
        reason TEXT NOT NULL, finished_at {ts}, error TEXT, notes TEXT NOT NULL)""",
    # Outside signals (a security alert) against a deployment. No foreign key: an alert may
    # name a deployment before it is announced, and counts once it is watched.
    """CREATE TABLE signals (
        target TEXT NOT NULL, deployment_id TEXT NOT NULL, kind TEXT NOT NULL,
        detail TEXT NOT NULL, raised_at {ts} NOT NULL)""",
    "CREATE INDEX signals_by_deployment ON signals (target, deployment_id, raised_at)",
]

MIGRATIONS = {
    "sqlite": [[s.format(ts="TEXT") for s in _COMMON]],
    "postgres": [[s.format(ts="TIMESTAMPTZ") for s in _COMMON]],
}
