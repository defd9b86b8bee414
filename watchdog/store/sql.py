"""The StateStore written once in SQL that SQLite and PostgreSQL both speak; a Backend
supplies the connection, the placeholders and the DDL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Protocol

from watchdog.errors import StoreError
from watchdog.model import Decision, Deployment, Reading
from watchdog.signals.base import ProbeError
from watchdog.store import codec
from watchdog.store.base import LeaseLost, RaisedSignal
from watchdog.store.codec import Row
from watchdog.store.records import (
    ActionRecord,
    ActionStatus,
    Lease,
    NotificationRecord,
    NotificationStatus,
    WatchRecord,
    WatchState,
)
from watchdog.store.schema import MIGRATION_LOCK, MIGRATIONS

# A released lease expires "now" whatever clock the caller keeps: at the start of time.
_RELEASED = datetime(1970, 1, 1, tzinfo=UTC)

# Take the lease when it is free or expired, renew it for its owner; the token grows only
# when the owner changes. One statement, so racing replicas cannot both win: the database
# serialises them on the row, and the loser's WHERE sees the winner's unexpired lease.
_ACQUIRE = """INSERT INTO leases (name, owner, token, expires_at)
    VALUES (%(name)s, %(owner)s, 1, %(expires_at)s)
    ON CONFLICT (name) DO UPDATE SET
        token = CASE WHEN leases.owner = excluded.owner THEN leases.token
                     ELSE leases.token + 1 END,
        owner = excluded.owner,
        expires_at = excluded.expires_at
    WHERE leases.owner = excluded.owner OR leases.expires_at <= %(now)s
    RETURNING *"""


class Tx(Protocol):
    """One transaction: statements use ``%(name)s`` placeholders."""

    async def run(self, statement: str, params: Row | None = None) -> list[Row]: ...

    async def run_many(self, statement: str, rows: Sequence[Row]) -> None: ...


class Backend(Protocol):
    dialect: str

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction that commits on success and rolls back on any error; driver errors
        are raised as StoreError."""

    async def close(self) -> None: ...


def _insert(table: str, row: Row, suffix: str = "") -> str:
    columns = ", ".join(row)
    values = ", ".join(f"%({c})s" for c in row)
    return f"INSERT INTO {table} ({columns}) VALUES ({values}) {suffix}".strip()  # noqa: S608


# Columns people and the follow-up set, each through its own method: a watch writing its
# state never overwrites them with a stale copy (another replica may have set them).
_NOT_THE_WATCHS = {"id", "held", "acknowledged_at", "incident_report"}


class SqlStore:
    """StateStore over a Backend (see watchdog/store/base.py for the contract)."""

    def __init__(self, backend: Backend) -> None:
        self._db = backend

    async def migrate(self) -> None:
        steps = MIGRATIONS[self._db.dialect]
        lock = MIGRATION_LOCK[self._db.dialect]
        async with self._db.transaction() as tx:
            if lock is not None:
                await tx.run(lock)
            await tx.run("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            rows = await tx.run("SELECT MAX(version) AS v FROM schema_version")
            current = rows[0]["v"] or 0
            for version, statements in enumerate(steps[current:], start=current + 1):
                for statement in statements:
                    await tx.run(statement)
                await tx.run("INSERT INTO schema_version (version) VALUES (%(v)s)", {"v": version})

    async def close(self) -> None:
        await self._db.close()

    async def _one(self, statement: str, params: Row) -> Row | None:
        async with self._db.transaction() as tx:
            rows = await tx.run(statement, params)
        return rows[0] if rows else None

    async def _all(self, statement: str, params: Row | None = None) -> list[Row]:
        async with self._db.transaction() as tx:
            return await tx.run(statement, params)

    async def save_deployment(self, deployment: Deployment) -> bool:
        row = codec.deployment_row(deployment)
        stored = await self._one(
            _insert("deployments", row, "ON CONFLICT (target, id) DO NOTHING RETURNING id"), row
        )
        return stored is not None

    async def deployment(self, target: str, deployment_id: str) -> Deployment | None:
        row = await self._one(
            "SELECT * FROM deployments WHERE target = %(t)s AND id = %(i)s",
            {"t": target, "i": deployment_id},
        )
        return codec.deployment(row) if row else None

    async def open_watch(self, watch: WatchRecord) -> WatchRecord:
        row = codec.watch_row(watch)
        async with self._db.transaction() as tx:
            await tx.run(_insert("watches", row, "ON CONFLICT DO NOTHING"), row)
            stored = await tx.run(
                "SELECT * FROM watches WHERE target = %(t)s AND deployment_id = %(d)s "
                "AND state <> 'closed'",
                {"t": watch.target, "d": watch.deployment_id},
            )
        return codec.watch(stored[0]) if stored else watch

    async def watch(self, watch_id: str) -> WatchRecord | None:
        row = await self._one("SELECT * FROM watches WHERE id = %(i)s", {"i": watch_id})
        return codec.watch(row) if row else None

    async def open_watches(self, target: str | None = None) -> list[WatchRecord]:
        of_target = "" if target is None else " AND target = %(t)s"
        rows = await self._all(
            f"SELECT * FROM watches WHERE state <> %(c)s{of_target} ORDER BY started_at",  # noqa: S608
            {"c": str(WatchState.CLOSED), "t": target},
        )
        return [codec.watch(r) for r in rows]

    async def recent_watches(self, limit: int) -> list[WatchRecord]:
        rows = await self._all(
            "SELECT * FROM watches ORDER BY started_at DESC LIMIT %(n)s", {"n": limit}
        )
        return [codec.watch(r) for r in rows]

    async def update_watch(self, watch: WatchRecord, fence: Lease | None = None) -> None:
        row = codec.watch_row(watch)
        sets = ", ".join(f"{c} = %({c})s" for c in row if c not in _NOT_THE_WATCHS)
        async with self._db.transaction() as tx:
            if fence is not None:
                await _hold(tx, fence, None)
            await tx.run(f"UPDATE watches SET {sets} WHERE id = %(id)s", row)  # noqa: S608

    async def acknowledge_watch(self, watch_id: str, at: datetime) -> WatchRecord | None:
        row = await self._one(
            "UPDATE watches SET acknowledged_at = COALESCE(acknowledged_at, %(at)s) "
            "WHERE id = %(i)s RETURNING *",
            {"at": codec.put_ts(at), "i": watch_id},
        )
        return codec.watch(row) if row else None

    async def hold_watch(self, watch_id: str) -> WatchRecord | None:
        row = await self._one(
            "UPDATE watches SET held = TRUE WHERE id = %(i)s AND state <> %(c)s RETURNING *",
            {"i": watch_id, "c": str(WatchState.CLOSED)},
        )
        return codec.watch(row) if row else None

    async def set_incident_report(self, watch_id: str, path: str) -> None:
        await self._all(
            "UPDATE watches SET incident_report = %(p)s WHERE id = %(i)s",
            {"p": path, "i": watch_id},
        )

    async def add_tick(
        self,
        watch_id: str,
        readings: Sequence[Reading],
        errors: Sequence[ProbeError],
        decision: Decision,
        fence: Lease | None = None,
    ) -> WatchRecord:
        reading_rows = [codec.reading_row(watch_id, r) for r in readings]
        error_rows = [codec.probe_error_row(watch_id, decision.at, e) for e in errors]
        decision_row = codec.decision_row(watch_id, decision)
        async with self._db.transaction() as tx:
            if fence is not None:
                await _hold(tx, fence, None)
            if reading_rows:
                await tx.run_many(_insert("readings", reading_rows[0]), reading_rows)
            if error_rows:
                await tx.run_many(_insert("probe_errors", error_rows[0]), error_rows)
            await tx.run(_insert("decisions", decision_row), decision_row)
            stored = await tx.run("SELECT * FROM watches WHERE id = %(i)s", {"i": watch_id})
        return codec.watch(stored[0])  # the decision's foreign key refused an unknown watch

    async def readings(self, watch_id: str) -> list[Reading]:
        rows = await self._all(
            "SELECT * FROM readings WHERE watch_id = %(w)s ORDER BY at", {"w": watch_id}
        )
        return [codec.reading(r) for r in rows]

    async def probe_errors(self, watch_id: str) -> list[tuple[datetime, ProbeError]]:
        rows = await self._all(
            "SELECT * FROM probe_errors WHERE watch_id = %(w)s ORDER BY at", {"w": watch_id}
        )
        return [codec.probe_error(r) for r in rows]

    async def decisions(self, watch_id: str) -> list[Decision]:
        rows = await self._all(
            "SELECT * FROM decisions WHERE watch_id = %(w)s ORDER BY at", {"w": watch_id}
        )
        return [codec.decision(r) for r in rows]

    async def begin_action(self, action: ActionRecord, fence: Lease | None = None) -> ActionRecord:
        row = codec.action_row(action)
        async with self._db.transaction() as tx:
            if fence is not None:
                await _hold(tx, fence, action.started_at)
            await tx.run(_insert("actions", row, "ON CONFLICT (key) DO NOTHING"), row)
            stored = await tx.run("SELECT * FROM actions WHERE key = %(k)s", {"k": action.key})
        return codec.action(stored[0])

    async def finish_action(
        self,
        action_id: str,
        status: ActionStatus,
        finished_at: datetime,
        error: str | None = None,
        notes: Sequence[str] = (),
    ) -> ActionRecord:
        row = await self._one(
            "UPDATE actions SET status = %(s)s, finished_at = %(f)s, error = %(e)s, "
            "notes = %(n)s WHERE id = %(i)s RETURNING *",
            {
                "s": str(status),
                "f": codec.put_ts(finished_at),
                "e": error,
                "n": json.dumps(list(notes)),
                "i": action_id,
            },
        )
        assert row is not None, f"no action {action_id}"
        return codec.action(row)

    async def actions(self, watch_id: str) -> list[ActionRecord]:
        rows = await self._all(
            "SELECT * FROM actions WHERE watch_id = %(w)s ORDER BY started_at", {"w": watch_id}
        )
        return [codec.action(r) for r in rows]

    async def rolled_back(self, target: str) -> set[str]:
        rows = await self._all(
            "SELECT deployment_id FROM actions WHERE target = %(t)s AND kind = 'rollback'",
            {"t": target},
        )
        return {row["deployment_id"] for row in rows}

    async def rolled_back_to(self, target: str) -> set[str]:
        rows = await self._all(
            "SELECT to_release FROM actions WHERE target = %(t)s AND kind = 'rollback' "
            "AND status = 'done' AND to_release IS NOT NULL",
            {"t": target},
        )
        return {row["to_release"] for row in rows}

    async def unfinished_actions(self) -> list[ActionRecord]:
        rows = await self._all(
            "SELECT * FROM actions WHERE status = %(s)s ORDER BY started_at",
            {"s": str(ActionStatus.INTENDED)},
        )
        return [codec.action(r) for r in rows]

    async def raise_signal(
        self, target: str, deployment_id: str, kind: str, detail: str, at: datetime
    ) -> None:
        row = codec.signal_row(RaisedSignal(target, deployment_id, kind, detail, at))
        await self._all(_insert("signals", row), row)

    async def raised_signals(self, target: str, deployment_id: str) -> list[RaisedSignal]:
        rows = await self._all(
            "SELECT * FROM signals WHERE target = %(t)s AND deployment_id = %(d)s "
            "ORDER BY raised_at",
            {"t": target, "d": deployment_id},
        )
        return [codec.signal(r) for r in rows]

    async def acquire_lease(
        self, name: str, owner: str, ttl: timedelta, now: datetime
    ) -> Lease | None:
        if ttl <= timedelta(0):
            raise ValueError(f"lease {name!r}: ttl must be positive, got {ttl}")
        row = await self._one(
            _ACQUIRE,
            {
                "name": name,
                "owner": owner,
                "expires_at": codec.put_ts(now + ttl),
                "now": codec.put_ts(now),
            },
        )
        return codec.lease(row) if row else None

    async def renew_leases(
        self, names: Sequence[str], owner: str, ttl: timedelta, now: datetime
    ) -> list[Lease]:
        if ttl <= timedelta(0):
            raise ValueError(f"leases of {owner!r}: ttl must be positive, got {ttl}")
        if not names:
            return []
        params: Row = {f"n{i}": name for i, name in enumerate(names)}
        listed = ", ".join(f"%({key})s" for key in params)
        rows = await self._all(
            f"UPDATE leases SET expires_at = %(x)s WHERE owner = %(o)s AND name IN ({listed}) "  # noqa: S608
            "AND expires_at > %(r)s RETURNING *",
            {**params, "x": codec.put_ts(now + ttl), "o": owner, "r": _RELEASED},
        )
        return sorted((codec.lease(r) for r in rows), key=lambda lease: lease.name)

    async def release_lease(self, name: str, owner: str) -> None:
        await self._all(
            "UPDATE leases SET expires_at = %(x)s WHERE name = %(n)s AND owner = %(o)s",
            {"x": _RELEASED, "n": name, "o": owner},
        )

    async def leases(self, prefix: str = "") -> list[Lease]:
        # substr, not LIKE: SQLite's LIKE ignores case, and a prefix may hold % or _.
        rows = await self._all(
            "SELECT * FROM leases WHERE substr(name, 1, %(n)s) = %(p)s ORDER BY name",
            {"n": len(prefix), "p": prefix},
        )
        return [codec.lease(r) for r in rows]

    async def queue_notification(self, n: NotificationRecord) -> bool:
        row = codec.notification_row(n)
        stored = await self._one(
            _insert("notifications", row, "ON CONFLICT (key) DO NOTHING RETURNING id"), row
        )
        return stored is not None

    async def due_notifications(self, now: datetime, limit: int = 50) -> list[NotificationRecord]:
        rows = await self._all(
            "SELECT * FROM notifications WHERE status = %(s)s AND due_at <= %(now)s "
            "ORDER BY created_at, id LIMIT %(n)s",
            {"s": str(NotificationStatus.PENDING), "now": codec.put_ts(now), "n": limit},
        )
        return [codec.notification(r) for r in rows]

    async def notification_sent(self, notification_id: str, at: datetime) -> None:
        await self._change_notification(
            notification_id,
            "status = %(s)s, sent_at = %(at)s",
            {"s": str(NotificationStatus.SENT), "at": codec.put_ts(at)},
        )

    async def notification_failed(
        self, notification_id: str, error: str, retry_at: datetime | None
    ) -> None:
        sets = "attempts = attempts + 1, last_error = %(e)s, status = %(s)s"
        if retry_at is None:
            status = NotificationStatus.FAILED
        else:
            status = NotificationStatus.PENDING
            sets += ", due_at = %(r)s"
        await self._change_notification(
            notification_id,
            sets,
            {"e": error, "s": str(status), "r": codec.put_ts(retry_at)},
        )

    async def _change_notification(self, notification_id: str, sets: str, params: Row) -> None:
        row = await self._one(
            f"UPDATE notifications SET {sets} WHERE id = %(i)s RETURNING id",  # noqa: S608
            {**params, "i": notification_id},
        )
        if row is None:
            raise StoreError(f"no notification {notification_id!r}")

    async def notifications(self, watch_id: str) -> list[NotificationRecord]:
        rows = await self._all(
            "SELECT * FROM notifications WHERE watch_id = %(w)s ORDER BY created_at, id",
            {"w": watch_id},
        )
        return [codec.notification(r) for r in rows]

    async def remember_delivery(self, source: str, delivery_id: str, at: datetime) -> bool:
        row = {"source": source, "delivery_id": delivery_id, "seen_at": codec.put_ts(at)}
        stored = await self._one(
            _insert(
                "deliveries", row, "ON CONFLICT (source, delivery_id) DO NOTHING RETURNING source"
            ),
            row,
        )
        return stored is not None

    async def delivered(self, source: str, delivery_id: str) -> bool:
        row = await self._one(
            "SELECT source FROM deliveries WHERE source = %(s)s AND delivery_id = %(d)s",
            {"s": source, "d": delivery_id},
        )
        return row is not None

    async def add_latency_samples(
        self, target: str, check: str, at: datetime, seconds: Sequence[float]
    ) -> None:
        rows = [
            {
                "target": target,
                "check_name": check,
                "at": codec.put_ts(at),
                "seq": seq,
                "seconds": value,
            }
            for seq, value in enumerate(seconds)
        ]
        if rows:
            async with self._db.transaction() as tx:
                await tx.run_many(_insert("latency_samples", rows[0]), rows)

    async def latency_samples(
        self, target: str, since: datetime
    ) -> dict[str, list[tuple[datetime, float]]]:
        rows = await self._all(
            "SELECT check_name, at, seconds FROM latency_samples "
            "WHERE target = %(t)s AND at >= %(since)s ORDER BY at, seq",
            {"t": target, "since": codec.put_ts(since)},
        )
        samples: dict[str, list[tuple[datetime, float]]] = {}
        for row in rows:
            at = codec.ts(row["at"])
            assert at is not None
            samples.setdefault(row["check_name"], []).append((at, row["seconds"]))
        return samples

    async def prune_latency(self, target: str, before: datetime) -> None:
        await self._all(
            "DELETE FROM latency_samples WHERE target = %(t)s AND at < %(b)s",
            {"t": target, "b": codec.put_ts(before)},
        )


async def _hold(tx: Tx, fence: Lease, at: datetime | None) -> None:
    """Go on only while ``fence`` is still held (and unexpired at ``at``), keeping the lease
    row locked to the end of the transaction so that no takeover slips in before the write."""
    unexpired = "" if at is None else " AND expires_at > %(at)s"
    held = await tx.run(
        "UPDATE leases SET token = token "  # noqa: S608
        f"WHERE name = %(n)s AND owner = %(o)s AND token = %(t)s{unexpired} RETURNING token",
        {"n": fence.name, "o": fence.owner, "t": fence.token, "at": codec.put_ts(at)},
    )
    if not held:
        raise LeaseLost(
            f"lease {fence.name!r} is no longer held by {fence.owner!r} with token {fence.token}"
        )
