"""Outbox on SQLite (aiosqlite): two tables of their own in the service's database file.

``outbox_events`` holds each event once; ``outbox_deliveries`` holds one row per
(target, event) with its state (``pending`` or ``dead``), attempts, next attempt
time and last error. An event row is deleted with its last delivery row.
``outbox_sent`` remembers the deliveries done for ``sent_retention_s`` (enqueue is
idempotent by event id, also after delivery).

The file is shared with the main store, which has its own connection: WAL mode
and a busy timeout let both write without "database is locked" errors.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite
import orjson

from regulator.ports import SENT_RETENTION_S, DeadLetter, Delivery, OutboxEvent

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox_events (
    event_id    TEXT PRIMARY KEY,
    body        BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS outbox_deliveries (
    target      TEXT NOT NULL,
    event_id    TEXT NOT NULL REFERENCES outbox_events(event_id),
    state       TEXT NOT NULL DEFAULT 'pending',   -- pending | dead
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     REAL NOT NULL,                     -- unix seconds
    since       REAL NOT NULL,                     -- enqueued or redriven at
    last_error  TEXT,
    died_at     REAL,
    PRIMARY KEY (target, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_deliveries_due
    ON outbox_deliveries (target, state, next_at);
-- Deliveries done, kept for sent_retention_s after their enqueue: enqueueing the same
-- event again (a journal replayed after a crash) must not send it twice.
CREATE TABLE IF NOT EXISTS outbox_sent (
    target      TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    since       REAL NOT NULL,                     -- when the delivery was enqueued
    PRIMARY KEY (target, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_sent_since ON outbox_sent (since);
"""


def _ts(value: datetime) -> float:
    return value.timestamp()


def _dt(value: float) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def _event(body: bytes | str) -> OutboxEvent:
    return OutboxEvent.from_json(orjson.loads(body))


class OutboxSqliteStore:
    """:class:`regulator.interconnect.outbox.OutboxStore` on a SQLite file."""

    name = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_ms: int = 5000,
        sent_retention_s: float = SENT_RETENTION_S,
    ) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = busy_timeout_ms
        self.sent_retention_s = sent_retention_s
        self._db: aiosqlite.Connection | None = None
        # One connection, many coroutines: transactions must not interleave.
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        if self._db is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            await db.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            await db.execute("PRAGMA journal_mode = WAL")
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.executescript(_SCHEMA)
        except BaseException:
            await db.close()
            raise
        self._db = db

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("OutboxSqliteStore is not open")
        return self._db

    async def _transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``work`` in one IMMEDIATE transaction.

        Shielded from cancellation: a worker stopped mid-write (shutdown) must not
        leave a half-open transaction on the shared connection.
        """
        return await asyncio.shield(self._run_transaction(work))

    async def _run_transaction(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        db = self.db
        async with self._lock:
            await db.execute("BEGIN IMMEDIATE")
            try:
                result = await work(db)
                await db.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(Exception):
                    await db.execute("ROLLBACK")
                raise
            return result

    async def _write(self, statements: Iterable[tuple[str, Sequence[Any]]]) -> list[int]:
        """Run statements in one transaction; returns each one's rowcount."""

        async def work(db: aiosqlite.Connection) -> list[int]:
            counts: list[int] = []
            for sql, params in statements:
                cursor = await db.execute(sql, params)
                counts.append(cursor.rowcount)
                await cursor.close()
            return counts

        return await self._transaction(work)

    async def enqueue(
        self, events: Sequence[OutboxEvent], targets: Sequence[str], now: datetime
    ) -> int:
        if not events or not targets:
            return 0
        at = _ts(now)
        statements: list[tuple[str, Sequence[Any]]] = [
            ("DELETE FROM outbox_sent WHERE since < ?", (at - self.sent_retention_s,))
        ]
        deliveries: list[int] = []  # indexes of the delivery inserts
        for event in events:
            statements.append(
                (
                    "INSERT OR IGNORE INTO outbox_events (event_id, body) VALUES (?, ?)",
                    (event.event_id, orjson.dumps(event.as_json())),
                )
            )
            for target in targets:
                deliveries.append(len(statements))
                statements.append(
                    (
                        "INSERT OR IGNORE INTO outbox_deliveries "
                        "(target, event_id, next_at, since) SELECT ?, ?, ?, ? WHERE NOT EXISTS "
                        "(SELECT 1 FROM outbox_sent WHERE target = ? AND event_id = ?)",
                        (target, event.event_id, at, at, target, event.event_id),
                    )
                )
            statements.append(self._gc(event.event_id))  # every target had it already
        counts = await self._write(statements)
        return sum(counts[i] for i in deliveries)

    async def due(
        self, target: str, now: datetime, limit: int, lease_s: float = 60.0
    ) -> list[Delivery]:
        at = _ts(now)

        async def work(db: aiosqlite.Connection) -> list[Any]:
            cursor = await db.execute(
                "SELECT d.event_id, d.attempts, d.since, d.last_error, e.body "
                "FROM outbox_deliveries d JOIN outbox_events e USING (event_id) "
                "WHERE d.target = ? AND d.state = 'pending' AND d.next_at <= ? "
                "ORDER BY d.next_at, d.since, d.rowid LIMIT ?",
                (target, at, limit),
            )
            rows = list(await cursor.fetchall())
            await cursor.close()
            if rows:
                await db.executemany(
                    "UPDATE outbox_deliveries SET next_at = ? WHERE target = ? AND event_id = ?",
                    [(at + lease_s, target, row[0]) for row in rows],
                )
            return rows

        rows = await self._transaction(work)
        return [
            Delivery(
                target=target,
                event=_event(row[4]),
                attempts=int(row[1]),
                since=_dt(float(row[2])),
                last_error=row[3],
            )
            for row in rows
        ]

    def _gc(self, event_id: str) -> tuple[str, Sequence[Any]]:
        return (
            "DELETE FROM outbox_events WHERE event_id = ? AND NOT EXISTS "
            "(SELECT 1 FROM outbox_deliveries WHERE event_id = ?)",
            (event_id, event_id),
        )

    async def mark_delivered(self, target: str, event_id: str) -> bool:
        counts = await self._write(
            [
                (
                    "INSERT OR REPLACE INTO outbox_sent (target, event_id, since) "
                    "SELECT target, event_id, since FROM outbox_deliveries "
                    "WHERE target = ? AND event_id = ?",
                    (target, event_id),
                ),
                (
                    "DELETE FROM outbox_deliveries WHERE target = ? AND event_id = ?",
                    (target, event_id),
                ),
                self._gc(event_id),
            ]
        )
        return counts[1] > 0

    async def mark_retry(
        self, target: str, event_id: str, next_at: datetime, attempts: int, error: str | None
    ) -> bool:
        counts = await self._write(
            [
                (
                    "UPDATE outbox_deliveries SET next_at = ?, attempts = ?, last_error = ? "
                    "WHERE target = ? AND event_id = ? AND state = 'pending'",
                    (_ts(next_at), attempts, error, target, event_id),
                )
            ]
        )
        return counts[0] > 0

    async def mark_dead(
        self,
        target: str,
        event_id: str,
        error: str | None,
        died_at: datetime,
        attempts: int | None = None,
    ) -> bool:
        counts = await self._write(
            [
                (
                    "UPDATE outbox_deliveries SET state = 'dead', died_at = ?, "
                    "last_error = COALESCE(?, last_error), attempts = COALESCE(?, attempts) "
                    "WHERE target = ? AND event_id = ? AND state = 'pending'",
                    (_ts(died_at), error, attempts, target, event_id),
                )
            ]
        )
        return counts[0] > 0

    async def dead(self, target: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        sql = (
            "SELECT d.target, d.attempts, d.last_error, d.died_at, e.body "
            "FROM outbox_deliveries d JOIN outbox_events e USING (event_id) "
            "WHERE d.state = 'dead'"
        )
        params: list[Any] = []
        if target is not None:
            sql += " AND d.target = ?"
            params.append(target)
        sql += " ORDER BY d.died_at, d.rowid LIMIT ?"
        params.append(limit)
        async with self._lock:
            cursor = await self.db.execute(sql, params)
            rows = await cursor.fetchall()
            await cursor.close()
        return [
            DeadLetter(
                target=row[0],
                event=_event(row[4]),
                attempts=int(row[1]),
                error=row[2],
                died_at=_dt(float(row[3])),
            )
            for row in rows
        ]

    async def redrive(self, target: str, event_ids: Sequence[str] | None, now: datetime) -> int:
        at = _ts(now)
        reset = (
            "UPDATE outbox_deliveries SET state = 'pending', attempts = 0, next_at = ?, "
            "since = ?, died_at = NULL WHERE target = ? AND state = 'dead'"
        )
        if event_ids is None:
            counts = await self._write([(reset, (at, at, target))])
        else:
            counts = await self._write(
                [(reset + " AND event_id = ?", (at, at, target, eid)) for eid in event_ids]
            )
        return sum(counts)

    async def pending_count(self, target: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM outbox_deliveries WHERE state = 'pending'"
        params: tuple[str, ...] = ()
        if target is not None:
            sql += " AND target = ?"
            params = (target,)
        async with self._lock:
            cursor = await self.db.execute(sql, params)
            row = await cursor.fetchone()
            await cursor.close()
        return int(row[0]) if row else 0


__all__ = ["OutboxSqliteStore"]
