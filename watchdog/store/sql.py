"""The StateStore written once in SQL that SQLite and PostgreSQL both speak; a Backend
supplies the connection, the placeholders and the DDL."""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from watchdog.model import Decision, Deployment, Reading
from watchdog.signals.base import ProbeError
from watchdog.store import codec
from watchdog.store.base import RaisedSignal
from watchdog.store.codec import Row
from watchdog.store.records import ActionRecord, ActionStatus, WatchRecord, WatchState
from watchdog.store.schema import MIGRATIONS


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


class SqlStore:
    """StateStore over a Backend (see watchdog/store/base.py for the contract)."""

    def __init__(self, backend: Backend) -> None:
        self._db = backend

    async def migrate(self) -> None:
        steps = MIGRATIONS[self._db.dialect]
        async with self._db.transaction() as tx:
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

    async def open_watches(self) -> list[WatchRecord]:
        rows = await self._all(
            "SELECT * FROM watches WHERE state <> %(c)s ORDER BY started_at",
            {"c": str(WatchState.CLOSED)},
        )
        return [codec.watch(r) for r in rows]

    async def recent_watches(self, limit: int) -> list[WatchRecord]:
        rows = await self._all(
            "SELECT * FROM watches ORDER BY started_at DESC LIMIT %(n)s", {"n": limit}
        )
        return [codec.watch(r) for r in rows]

    async def update_watch(self, watch: WatchRecord) -> None:
        row = codec.watch_row(watch)
        sets = ", ".join(f"{c} = %({c})s" for c in row if c != "id")
        await self._all(f"UPDATE watches SET {sets} WHERE id = %(id)s", row)  # noqa: S608

    async def add_readings(
        self, watch_id: str, readings: Sequence[Reading], errors: Sequence[ProbeError], at: datetime
    ) -> None:
        reading_rows = [codec.reading_row(watch_id, r) for r in readings]
        error_rows = [codec.probe_error_row(watch_id, at, e) for e in errors]
        async with self._db.transaction() as tx:
            if reading_rows:
                await tx.run_many(_insert("readings", reading_rows[0]), reading_rows)
            if error_rows:
                await tx.run_many(_insert("probe_errors", error_rows[0]), error_rows)

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

    async def add_decision(self, watch_id: str, decision: Decision) -> None:
        row = codec.decision_row(watch_id, decision)
        await self._all(_insert("decisions", row), row)

    async def decisions(self, watch_id: str) -> list[Decision]:
        rows = await self._all(
            "SELECT * FROM decisions WHERE watch_id = %(w)s ORDER BY at", {"w": watch_id}
        )
        return [codec.decision(r) for r in rows]

    async def begin_action(self, action: ActionRecord) -> ActionRecord:
        row = codec.action_row(action)
        async with self._db.transaction() as tx:
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
