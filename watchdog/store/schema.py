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

# Version 2: what several replicas share (leases), the notification outbox, webhook
# deliveries seen, the latency probe history, and a watch's incident report.
_V2 = [
    "ALTER TABLE watches ADD COLUMN incident_report TEXT",
    # One row per name, forever: token must keep growing across owners, so a lease is expired
    # on release, never deleted.
    """CREATE TABLE leases (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, token BIGINT NOT NULL,
        expires_at {ts} NOT NULL)""",
    # No foreign key on watch_id: a notification must be queued even about something the
    # watches table does not hold (a rollback by hand), never lost to a constraint.
    """CREATE TABLE notifications (
        id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, watch_id TEXT, kind TEXT NOT NULL,
        notifier TEXT NOT NULL, payload TEXT NOT NULL, created_at {ts} NOT NULL,
        due_at {ts} NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
        sent_at {ts}, last_error TEXT)""",
    "CREATE INDEX notifications_due ON notifications (status, due_at)",
    "CREATE INDEX notifications_by_watch ON notifications (watch_id, created_at)",
    """CREATE TABLE deliveries (
        source TEXT NOT NULL, delivery_id TEXT NOT NULL, seen_at {ts} NOT NULL,
        PRIMARY KEY (source, delivery_id))""",
    # seq keeps the samples of one tick in the order they were taken.
    """CREATE TABLE latency_samples (
        target TEXT NOT NULL, check_name TEXT NOT NULL, at {ts} NOT NULL, seq INTEGER NOT NULL,
        seconds DOUBLE PRECISION NOT NULL)""",
    "CREATE INDEX latency_samples_by_target ON latency_samples (target, at)",
]

MIGRATIONS = {
    "sqlite": [[s.format(ts="TEXT") for s in step] for step in (_COMMON, _V2)],
    "postgres": [[s.format(ts="TIMESTAMPTZ") for s in step] for step in (_COMMON, _V2)],
}

# Taken first in the migrating transaction, so that replicas starting together upgrade the
# schema one after the other. SQLite's BEGIN IMMEDIATE already serialises writers.
MIGRATION_LOCK = {
    "sqlite": None,
    "postgres": "SELECT pg_advisory_xact_lock(7245104937160612)",
}
