"""The embedded store: one SQLite file (WAL), for a single replica.

One writer connection, under one :class:`asyncio.Lock`, so a transaction of one
coroutine never sees (or commits) the half-done statements of another. Writes use
``BEGIN IMMEDIATE`` so a second process opening the same file (``regulator report``
while ``serve`` runs) waits on ``busy_timeout`` instead of failing mid-transaction.

Reads go to a small pool of their own connections (each its own aiosqlite thread):
in WAL mode a reader sees the last commit and never waits for a writer, so the
pending-referral look-up on the hot path stays inside its budget while a large batch
write, the daily purge or another process's transaction holds the writer.

An update that arrives before its call's record (another replica, or a record still
queued) is kept in ``orphan_updates`` and applied when the record lands; the daily
purge drops those older than :data:`~regulator.storage.codec.ORPHAN_TTL`.

``synchronous=NORMAL`` in WAL mode: a power cut may lose the last commits but never
corrupts the file; the group-committing writer (:mod:`regulator.storage.batch`)
keeps the number of commits per second low.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence, Sized
from contextlib import asynccontextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from regulator.core.history import ProtocolVersion
from regulator.core.indicators import call_counter_deltas
from regulator.core.legs import Leg, LegChange, LegEvent, LegOutcome, LegStatus
from regulator.core.models import (
    HOOK_ANSWER_TTL_S,
    CallRecord,
    CallUpdate,
    DayType,
    Ground,
    HookAnswer,
    Referral,
    ReferralStatus,
    Route,
    Visit,
)
from regulator.logs import get_logger
from regulator.ports import Clock, IdempotencyMismatch, RouteHistory, StoreError, SystemClock
from regulator.storage import codec
from regulator.storage.figures import FIGURES_SCHEMA, SqliteFigures
from regulator.storage.keys import pending_member
from regulator.storage.pending import SQLITE_RESYNC_S, PendingIndex
from regulator.storage.sessions import SESSIONS_SCHEMA, SqliteSessions
from regulator.storage.spool import make_private, open_private

T = TypeVar("T")

log = get_logger(__name__)

_SCHEMA_VERSION = 3  # 2: calls.routes; 3: idempotency.request, calls.protocol_version
_CHUNK = 400  # bound on "?" placeholders per statement (SQLite's limit is higher)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id    TEXT PRIMARY KEY,
    mmg        TEXT NOT NULL,
    month      TEXT NOT NULL,
    platform   TEXT NOT NULL,
    caller     TEXT NOT NULL,
    at_us      INTEGER NOT NULL,
    day_type   TEXT NOT NULL,
    hour       INTEGER NOT NULL,
    route      TEXT NOT NULL,
    ground     TEXT,
    rule       TEXT NOT NULL,
    failsafe   INTEGER NOT NULL,
    status     TEXT NOT NULL,
    duration_s INTEGER,
    routes     TEXT NOT NULL DEFAULT '',
    protocol_version TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calls_mmg_month ON calls (mmg, month);
CREATE INDEX IF NOT EXISTS calls_at ON calls (at_us);

CREATE TABLE IF NOT EXISTS counters (
    mmg   TEXT NOT NULL,
    month TEXT NOT NULL,
    key   TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (mmg, month, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS referrals (
    id              TEXT PRIMARY KEY,
    mmg             TEXT NOT NULL,
    status          TEXT NOT NULL,
    callback_number TEXT,
    version         INTEGER NOT NULL,
    created_us      INTEGER NOT NULL,
    data            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS referrals_mmg_created ON referrals (mmg, created_us);
CREATE INDEX IF NOT EXISTS referrals_status_created ON referrals (status, created_us);
CREATE INDEX IF NOT EXISTS referrals_callback ON referrals (mmg, callback_number, status);

CREATE TABLE IF NOT EXISTS visits (
    id          TEXT PRIMARY KEY,
    mmg         TEXT NOT NULL,
    month       TEXT NOT NULL,
    at_us       INTEGER NOT NULL,
    referral_id TEXT,
    data        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS visits_mmg_month ON visits (mmg, month, at_us);

CREATE TABLE IF NOT EXISTS orphan_updates (
    seq         INTEGER PRIMARY KEY,
    call_id     TEXT NOT NULL,
    received_us INTEGER NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS orphan_updates_call ON orphan_updates (call_id);
CREATE INDEX IF NOT EXISTS orphan_updates_received ON orphan_updates (received_us);

-- One row per protocol version of an MMG (core/history.ProtocolVersion); a version
-- that comes back in force moves to the top (loaded_us) with its new summary.
CREATE TABLE IF NOT EXISTS protocol_versions (
    mmg         TEXT NOT NULL,
    version     TEXT NOT NULL,
    loaded_us   INTEGER NOT NULL,
    file        TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    roster_file TEXT NOT NULL,
    roster_sha256 TEXT NOT NULL,
    summary     TEXT NOT NULL,
    document    TEXT NOT NULL,
    PRIMARY KEY (mmg, version)
);
CREATE INDEX IF NOT EXISTS protocol_versions_loaded ON protocol_versions (mmg, loaded_us);

-- One row per dial leg (core/legs.py): a destination dialled for a call. Folded in
-- Python inside the write transaction (order-proof, idempotent), read by MMG and time.
CREATE TABLE IF NOT EXISTS legs (
    call_id     TEXT NOT NULL,
    target      TEXT NOT NULL,
    mmg         TEXT NOT NULL,
    platform    TEXT NOT NULL,
    offered_us  INTEGER NOT NULL,
    answered_us INTEGER,
    ended_us    INTEGER,
    outcome     TEXT,
    seen        TEXT NOT NULL DEFAULT '',  -- the statuses reported, comma-separated
    PRIMARY KEY (call_id, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS legs_mmg_offered ON legs (mmg, offered_us);

CREATE TABLE IF NOT EXISTS idempotency (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    id         TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    request    TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS hook_answers (
    platform     TEXT NOT NULL,
    call_id      TEXT NOT NULL,
    stage        TEXT NOT NULL,
    digits       TEXT NOT NULL,
    body         BLOB NOT NULL,
    content_type TEXT NOT NULL,
    at_us        INTEGER NOT NULL,
    expires_us   INTEGER NOT NULL,
    PRIMARY KEY (platform, call_id, stage, digits)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hook_answers_expiry ON hook_answers (expires_us);

CREATE TABLE IF NOT EXISTS token_ids (
    scope      TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    expires_us INTEGER NOT NULL,
    PRIMARY KEY (scope, token_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS token_ids_expiry ON token_ids (expires_us);
"""

#: Columns added after version 1, created on open in files made before them.
_MIGRATIONS = (
    ("calls", "routes", "TEXT NOT NULL DEFAULT ''"),  # 2: the route history
    ("idempotency", "request", "TEXT NOT NULL DEFAULT ''"),  # 3: the request's fingerprint
    ("calls", "protocol_version", "TEXT NOT NULL DEFAULT ''"),  # 3: the version that decided
    ("legs", "seen", "TEXT NOT NULL DEFAULT ''"),  # the statuses reported (core/legs.py)
)

_CALL_COLUMNS = (
    "call_id, mmg, month, platform, caller, at_us, day_type, hour, route, ground, rule,"
    " failsafe, status, duration_s, routes, protocol_version"
)
# Only constant column lists and "?" placeholders are ever formatted into SQL (S608).
_INSERT_CALL = f"INSERT OR IGNORE INTO calls ({_CALL_COLUMNS}) VALUES ({', '.join('?' * 16)})"  # noqa: S608
_ADD_COUNTER = (
    "INSERT INTO counters (mmg, month, key, value) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (mmg, month, key) DO UPDATE SET value = value + excluded.value"
)
_INSERT_IDEMPOTENCY = (
    "INSERT INTO idempotency (scope, key, id, created_us, request) VALUES (?, ?, ?, ?, ?)"
)
_UPSERT_VISIT = (
    "INSERT INTO visits (id, mmg, month, at_us, referral_id, data) VALUES (?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET mmg = excluded.mmg, month = excluded.month,"
    " at_us = excluded.at_us, referral_id = excluded.referral_id, data = excluded.data"
)

_LEG_COLUMNS = "call_id, target, mmg, platform, offered_us, answered_us, ended_us, outcome, seen"
_UPSERT_LEG = (
    f"INSERT INTO legs ({_LEG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"  # noqa: S608
    " ON CONFLICT (call_id, target) DO UPDATE SET mmg = excluded.mmg,"
    " platform = excluded.platform, offered_us = excluded.offered_us,"
    " answered_us = excluded.answered_us, ended_us = excluded.ended_us,"
    " outcome = excluded.outcome, seen = excluded.seen"
)

_PENDING = tuple(sorted(s.value for s in codec.OPEN_FOR_CALLBACK))

Counters = dict[tuple[str, str, str], int]


def _chunks(items: Sequence[T], size: int = _CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _marks(items: Sized) -> str:
    """``?,?,…`` for an IN list of ``len(items)`` parameters."""
    return ",".join("?" * len(items))


def _call_row(r: CallRecord) -> tuple[Any, ...]:
    return (
        r.call_id,
        r.mmg,
        r.month,
        r.platform,
        r.caller,
        codec.to_us(r.at),
        r.day_type.value,
        r.hour,
        r.route.value,
        r.ground.value if r.ground is not None else None,
        r.rule,
        int(r.failsafe),
        r.status,
        r.duration_s,
        codec.routes_to_text(r.routes),
        r.protocol_version,
    )


def _record_from_row(row: sqlite3.Row | tuple[Any, ...]) -> CallRecord:
    (
        call_id,
        mmg,
        month,
        platform,
        caller,
        at_us,
        day_type,
        hour,
        route,
        ground,
        rule,
        failsafe,
        status,
        duration_s,
        routes,
        protocol_version,
    ) = tuple(row)
    return CallRecord(
        call_id=call_id,
        mmg=mmg,
        platform=platform,
        caller=caller,
        at=codec.from_us(at_us),
        month=month,
        day_type=DayType(day_type),
        hour=hour,
        route=Route(route),
        ground=Ground(ground) if ground else None,
        rule=rule,
        failsafe=bool(failsafe),
        status=status,
        duration_s=duration_s,
        routes=codec.routes_from_text(routes),
        protocol_version=protocol_version,
    )


def _add(counters: Counters, mmg: str, month: str, deltas: dict[str, int]) -> None:
    for key, delta in deltas.items():
        slot = (mmg, month, key)
        counters[slot] = counters.get(slot, 0) + delta


class SqliteStore(SqliteFigures, SqliteSessions):
    """:class:`regulator.ports.Store` on a local SQLite file."""

    name = "sqlite"

    def __init__(
        self,
        path: Path,
        *,
        busy_timeout_ms: int = 5000,
        readers: int = 2,
        clock: Clock | None = None,
    ) -> None:
        if readers < 1:
            raise ValueError("readers must be positive")
        self.path = Path(path)
        self._busy_timeout_ms = busy_timeout_ms
        self._conn: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self._reader_count = readers
        self._readers: list[aiosqlite.Connection] = []
        self._idle: asyncio.Queue[aiosqlite.Connection] | None = None
        self._clock = clock or SystemClock()
        # Run after the current write transaction commits (under the writer's lock).
        self._on_commit: list[Callable[[], object]] = []
        # The in-memory pending-callers index this store keeps current (follow_pending).
        self._pending_index: PendingIndex | None = None
        #: Pending-referral look-ups asked of SQLite (the index spares most of them).
        self.pending_lookups = 0

    # ------------------------------------------------------------------ plumbing
    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # The file holds phone numbers: created 0600 before SQLite opens it, so the
            # -wal and -shm files it creates take the same mode (SQLite copies the main
            # file's); those an older version left wider are tightened.
            if not self.path.exists():
                with suppress(FileExistsError):  # another process created it meanwhile
                    os.close(open_private(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL))
            for suffix in ("", "-wal", "-shm", "-journal"):
                make_private(self.path.with_name(self.path.name + suffix))
            conn = await aiosqlite.connect(self.path, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await conn.executescript(_SCHEMA + FIGURES_SCHEMA + SESSIONS_SCHEMA)
            await self._migrate(conn)
            await conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            readers = await self._open_readers()
        except (sqlite3.Error, OSError) as exc:
            await conn.close()
            raise StoreError(f"cannot initialise SQLite store {self.path}: {exc}") from exc
        self._readers = readers
        self._idle = asyncio.Queue()
        for reader in readers:
            self._idle.put_nowait(reader)
        self._conn = conn

    @staticmethod
    async def _migrate(conn: aiosqlite.Connection) -> None:
        """Add the columns a file made by an older version lacks (idempotent)."""
        for table, column, decl in _MIGRATIONS:
            async with conn.execute(f"PRAGMA table_info({table})") as cur:
                present = {row[1] for row in await cur.fetchall()}
            if column not in present:
                await conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        # After the column exists (an older file has the table without it): the purge
        # of protocol versions asks whether any call names one.
        await conn.execute(
            "CREATE INDEX IF NOT EXISTS calls_protocol_version ON calls (mmg, protocol_version)"
        )

    async def _open_readers(self) -> list[aiosqlite.Connection]:
        """The read connections (after the writer made the file WAL and created the schema)."""
        readers: list[aiosqlite.Connection] = []
        try:
            for _ in range(self._reader_count):
                reader = await aiosqlite.connect(self.path, isolation_level=None)
                readers.append(reader)
                await reader.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
                await reader.execute("PRAGMA query_only = ON")
        except BaseException:
            for reader in readers:
                with suppress(sqlite3.Error, OSError):
                    await reader.close()
            raise
        return readers

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        readers, self._readers = self._readers, []
        idle, self._idle = self._idle, None
        if conn is None:
            return
        errors: list[BaseException] = []
        if idle is not None:
            for _ in readers:  # each one once its read is done
                reader = await idle.get()
                try:
                    await reader.close()
                except (sqlite3.Error, OSError) as exc:
                    errors.append(exc)
        async with self._lock:
            try:
                await conn.close()
            except (sqlite3.Error, OSError) as exc:
                errors.append(exc)
        if errors:
            raise StoreError(f"error closing SQLite store: {errors[0]}") from errors[0]

    def _db(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreError("SQLite store is not open")
        return self._conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        """A read connection of the pool: never behind the writer's lock."""
        self._db()
        idle = self._idle
        assert idle is not None
        conn = await idle.get()
        try:
            yield conn
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc
        finally:
            idle.put_nowait(conn)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; rolled back on any error (mapped to StoreError)."""
        async with self._lock:
            conn = self._db()
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except (sqlite3.Error, OSError, ValueError) as exc:
                raise StoreError(f"SQLite write failed: {exc}") from exc
            self._on_commit.clear()
            try:
                yield conn
                await conn.execute("COMMIT")
                # Still under the lock: in-memory followers see commits in their order.
                for apply in self._on_commit:
                    apply()
            except BaseException as exc:
                with suppress(sqlite3.Error, OSError, ValueError):
                    await conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error | OSError | ValueError):
                    raise StoreError(f"SQLite write failed: {exc}") from exc
                raise

    async def ping(self) -> None:
        async with self._read() as conn:
            await conn.execute("SELECT 1")

    @staticmethod
    async def _flush_counters(conn: aiosqlite.Connection, counters: Counters) -> None:
        rows = [(m, mo, k, v) for (m, mo, k), v in counters.items() if v != 0]
        if rows:
            await conn.executemany(_ADD_COUNTER, rows)

    # --------------------------------------------------------------------- calls
    async def record_calls(self, records: Sequence[CallRecord]) -> list[bool]:
        if not records:
            return []
        ids = list(dict.fromkeys(r.call_id for r in records))
        async with self._tx() as conn:
            known: set[str] = set()
            for chunk in _chunks(ids):
                sql = f"SELECT call_id FROM calls WHERE call_id IN ({_marks(chunk)})"  # noqa: S608
                async with conn.execute(sql, chunk) as cur:
                    known.update(row[0] for row in await cur.fetchall())
            early = await self._take_orphans(conn, [i for i in ids if i not in known])
            fresh: list[bool] = []
            rows: list[tuple[Any, ...]] = []
            counters: Counters = {}
            for record in records:
                is_new = record.call_id not in known
                fresh.append(is_new)
                if is_new:
                    known.add(record.call_id)
                    if record.call_id in early:
                        record = codec.record_with_updates(record, early[record.call_id])
                    rows.append(_call_row(record))
                    _add(counters, record.mmg, record.month, call_counter_deltas(record))
            if rows:
                await conn.executemany(_INSERT_CALL, rows)
                await self._flush_counters(conn, counters)
        return fresh

    @staticmethod
    async def _take_orphans(
        conn: aiosqlite.Connection, call_ids: Sequence[str]
    ) -> dict[str, list[CallUpdate]]:
        """Remove and return the updates kept for calls about to be recorded, in order."""
        found: dict[str, list[CallUpdate]] = {}
        for chunk in _chunks(call_ids):
            sql = (
                "SELECT call_id, data FROM orphan_updates"  # noqa: S608
                f" WHERE call_id IN ({_marks(chunk)}) ORDER BY seq"
            )
            async with conn.execute(sql, chunk) as cur:
                rows = await cur.fetchall()
            for call_id, data in rows:
                found.setdefault(call_id, []).append(codec.update_from_json(data))
            if rows:
                sql = f"DELETE FROM orphan_updates WHERE call_id IN ({_marks(chunk)})"  # noqa: S608
                await conn.execute(sql, chunk)
        return found

    async def _keep_orphans(self, conn: aiosqlite.Connection, updates: list[CallUpdate]) -> None:
        """Keep updates of calls not recorded yet (at most ORPHAN_LIMIT per call)."""
        ids = list(dict.fromkeys(u.call_id for u in updates))
        kept: dict[str, int] = {}
        for chunk in _chunks(ids):
            sql = (
                "SELECT call_id, COUNT(*) FROM orphan_updates"  # noqa: S608
                f" WHERE call_id IN ({_marks(chunk)}) GROUP BY call_id"
            )
            async with conn.execute(sql, chunk) as cur:
                kept.update((str(cid), int(n)) for cid, n in await cur.fetchall())
        received = codec.to_us(self._clock.now())
        rows: list[tuple[str, int, str]] = []
        for update in updates:
            if kept.get(update.call_id, 0) >= codec.ORPHAN_LIMIT:
                continue
            kept[update.call_id] = kept.get(update.call_id, 0) + 1
            rows.append((update.call_id, received, codec.update_to_json(update).decode()))
        if len(rows) < len(updates):
            log.warning("orphan_updates_dropped", updates=len(updates) - len(rows))
        await conn.executemany(
            "INSERT INTO orphan_updates (call_id, received_us, data) VALUES (?, ?, ?)", rows
        )

    async def update_calls(self, updates: Sequence[CallUpdate]) -> None:
        if not updates:
            return
        ids = list(dict.fromkeys(u.call_id for u in updates))
        async with self._tx() as conn:
            state: dict[str, codec.CallState] = {}
            for chunk in _chunks(ids):
                sql = (
                    "SELECT call_id, mmg, month, route, ground, rule, status, duration_s,"  # noqa: S608
                    " routes"
                    f" FROM calls WHERE call_id IN ({_marks(chunk)})"
                )
                async with conn.execute(sql, chunk) as cur:
                    for row in await cur.fetchall():
                        state[row[0]] = codec.CallState(*row[1:])
            counters: Counters = {}
            touched: set[str] = set()
            early: list[CallUpdate] = []
            for update in updates:
                call = state.get(update.call_id)
                if call is None:
                    early.append(update)  # its record is not here yet (or was purged)
                    continue
                _add(counters, call.mmg, call.month, codec.apply_update(call, update))
                touched.add(update.call_id)
            if early:
                await self._keep_orphans(conn, early)
            if touched:
                await conn.executemany(
                    "UPDATE calls SET route = ?, ground = ?, rule = ?, status = ?, duration_s = ?,"
                    " routes = ? WHERE call_id = ?",
                    [
                        (c.route, c.ground, c.rule, c.status, c.duration_s, c.routes, cid)
                        for cid, c in ((cid, state[cid]) for cid in touched)
                    ],
                )
                await self._flush_counters(conn, counters)

    async def get_call(self, call_id: str) -> CallRecord | None:
        async with self._read() as conn:
            sql = f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id = ?"  # noqa: S608
            async with conn.execute(sql, (call_id,)) as cur:
                row = await cur.fetchone()
        return _record_from_row(row) if row is not None else None

    async def route_history(self, call_id: str) -> RouteHistory | None:
        async with self._read() as conn:
            sql = "SELECT mmg, route, routes, caller FROM calls WHERE call_id = ?"
            async with conn.execute(sql, (call_id,)) as cur:
                row = await cur.fetchone()
        if row is None:
            return None
        mmg, route, routes, caller = row
        return RouteHistory(
            mmg=str(mmg),
            routes=codec.history_of(Route(route), codec.routes_from_text(routes)),
            caller=str(caller or ""),
        )

    async def call_counters(self, mmg: str, month: str) -> dict[str, int]:
        async with self._read() as conn:
            sql = "SELECT key, value FROM counters WHERE mmg = ? AND month = ? AND value != 0"
            async with conn.execute(sql, (mmg, month)) as cur:
                rows = await cur.fetchall()
        return {str(key): int(value) for key, value in rows}

    async def purge_calls(self, before: datetime) -> int:
        stale = codec.to_us(self._clock.now() - codec.ORPHAN_TTL)
        async with self._tx() as conn:
            cur = await conn.execute("DELETE FROM calls WHERE at_us < ?", (codec.to_us(before),))
            count = cur.rowcount
            await cur.close()
            await conn.execute("DELETE FROM orphan_updates WHERE received_us < ?", (stale,))
            await conn.execute("DELETE FROM legs WHERE offered_us < ?", (codec.to_us(before),))
        return max(count, 0)

    # --------------------------------------------------------------------- legs
    async def record_leg_events(self, events: Sequence[LegEvent]) -> list[LegChange]:
        if not events:
            return []
        keys = list(dict.fromkeys((ev.call_id, ev.target.value) for ev in events))
        async with self._tx() as conn:
            stored: dict[tuple[str, Route], Leg] = {}
            for chunk in _chunks(keys, _CHUNK // 2):
                where = " OR ".join("(call_id = ? AND target = ?)" for _ in chunk)
                sql = f"SELECT {_LEG_COLUMNS} FROM legs WHERE {where}"  # noqa: S608
                args = [part for key in chunk for part in key]
                async with conn.execute(sql, args) as cur:
                    for row in await cur.fetchall():
                        leg = _leg_from_row(row)
                        stored[(leg.call_id, leg.target)] = leg
            changes, changed = codec.fold_events(stored, events)
            if changed:
                await conn.executemany(_UPSERT_LEG, [_leg_row(leg) for leg in changed.values()])
        return changes

    async def legs(self, mmg: str, start: datetime, end: datetime) -> list[Leg]:
        async with self._read() as conn:
            sql = (
                f"SELECT {_LEG_COLUMNS} FROM legs"  # noqa: S608
                " WHERE mmg = ? AND offered_us >= ? AND offered_us < ?"
                " ORDER BY offered_us, call_id, target"
            )
            args = (mmg, codec.to_us(start), codec.to_us(end))
            async with conn.execute(sql, args) as cur:
                rows = await cur.fetchall()
        return [_leg_from_row(row) for row in rows]

    # ----------------------------------------------------------------- referrals
    @staticmethod
    async def _idempotent_id(
        conn: aiosqlite.Connection, scope: str, key: str, fingerprint: str
    ) -> str | None:
        """The id recorded with ``key``; :class:`IdempotencyMismatch` if it was recorded
        with another request."""
        sql = "SELECT id, request FROM idempotency WHERE scope = ? AND key = ?"
        async with conn.execute(sql, (scope, key)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        first_id, first = str(row[0]), str(row[1])
        if first and fingerprint and first != fingerprint:
            raise IdempotencyMismatch(first_id, first)
        return first_id

    async def create_referral(
        self, referral: Referral, idempotency_key: str | None, fingerprint: str = ""
    ) -> tuple[Referral, bool]:
        async with self._tx() as conn:
            existing_id = referral.id
            if idempotency_key is not None:
                existing_id = (
                    await self._idempotent_id(conn, "referral", idempotency_key, fingerprint)
                    or referral.id
                )
            async with conn.execute(
                "SELECT data FROM referrals WHERE id = ?", (existing_id,)
            ) as cur:
                row = await cur.fetchone()
            if row is not None:
                return codec.referral_from_json(row[0]), False
            await conn.execute(
                "INSERT INTO referrals"
                " (id, mmg, status, callback_number, version, created_us, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    referral.id,
                    referral.mmg,
                    referral.status.value,
                    referral.callback_number,
                    referral.version,
                    codec.to_us(referral.created_at),
                    codec.referral_to_json(referral).decode(),
                ),
            )
            if codec.is_pending(referral):
                await self._pending_after_commit(conn, (referral.mmg, referral.callback_number))
            if idempotency_key is not None:
                await conn.execute(
                    _INSERT_IDEMPOTENCY,
                    (
                        "referral",
                        idempotency_key,
                        referral.id,
                        codec.to_us(referral.created_at),
                        fingerprint,
                    ),
                )
        return referral, True

    async def get_referral(self, referral_id: str) -> Referral | None:
        async with self._read() as conn:
            sql = "SELECT data FROM referrals WHERE id = ?"
            async with conn.execute(sql, (referral_id,)) as cur:
                row = await cur.fetchone()
        return codec.referral_from_json(row[0]) if row is not None else None

    async def list_referrals(
        self,
        *,
        mmg: str | None = None,
        mmgs: frozenset[str] | None = None,
        statuses: frozenset[ReferralStatus] | None = None,
        limit: int = 200,
        before: tuple[datetime, str] | None = None,
    ) -> list[Referral]:
        if limit <= 0 or (statuses is not None and not statuses) or (mmgs is not None and not mmgs):
            return []
        where: list[str] = []
        params: list[Any] = []
        if mmg is not None:
            where.append("mmg = ?")
            params.append(mmg)
        if mmgs is not None:
            where.append(f"mmg IN ({_marks(mmgs)})")
            params.extend(sorted(mmgs))
        if statuses is not None:
            where.append(f"status IN ({_marks(statuses)})")
            params.extend(sorted(s.value for s in statuses))
        if before is not None:
            where.append("(created_us < ? OR (created_us = ? AND id < ?))")
            at_us = codec.to_us(before[0])
            params.extend((at_us, at_us, before[1]))
        sql = "SELECT data FROM referrals"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_us DESC, id DESC LIMIT ?"
        params.append(limit)
        async with self._read() as conn, conn.execute(sql, params) as cur:
            rows = await cur.fetchall()
        return [codec.referral_from_json(row[0]) for row in rows]

    async def save_referral(
        self, referral: Referral, expected_version: int, visit: Visit | None = None
    ) -> bool:
        async with self._tx() as conn:
            async with conn.execute(
                "SELECT mmg, callback_number FROM referrals WHERE id = ?", (referral.id,)
            ) as found:
                before = await found.fetchone()
            cur = await conn.execute(
                "UPDATE referrals SET mmg = ?, status = ?, callback_number = ?, version = ?,"
                " created_us = ?, data = ? WHERE id = ? AND version = ?",
                (
                    referral.mmg,
                    referral.status.value,
                    referral.callback_number,
                    referral.version,
                    codec.to_us(referral.created_at),
                    codec.referral_to_json(referral).decode(),
                    referral.id,
                    expected_version,
                ),
            )
            changed = cur.rowcount
            await cur.close()
            if changed != 1:
                return False
            if before is not None:
                await self._pending_after_commit(
                    conn, (before[0], before[1]), (referral.mmg, referral.callback_number)
                )
            if visit is not None:
                await conn.execute(_UPSERT_VISIT, _visit_row(visit))
        return True

    async def _pending_after_commit(
        self, conn: aiosqlite.Connection, *pairs: tuple[str, str | None]
    ) -> None:
        """Tell the in-memory index, once this transaction commits, whether each
        (MMG, callback number) is still pending — read inside the transaction, so the
        answer is the committed state (another referral may keep a caller pending)."""
        index = self._pending_index
        if index is None:
            return
        for mmg, caller in dict.fromkeys(pairs):
            if not caller:
                continue
            sql = (
                "SELECT 1 FROM referrals WHERE mmg = ? AND callback_number = ?"  # noqa: S608
                f" AND status IN ({_marks(_PENDING)}) LIMIT 1"
            )
            async with conn.execute(sql, (mmg, caller, *_PENDING)) as cur:
                present = await cur.fetchone() is not None
            member = pending_member(mmg, caller)
            self._on_commit.append(functools.partial(index.apply, member, present))

    def track_pending(self, index: PendingIndex | None) -> None:
        """Apply this store's own referral changes to ``index`` as they commit."""
        self._pending_index = index

    async def load_pending(self, index: PendingIndex) -> None:
        """Load ``index`` with every pending caller in the file (StoreError if it can't).

        A change of ours applied during the read makes it read again (twice at most;
        either way a stale load can only err to the safe side)."""
        sql = (
            "SELECT DISTINCT mmg, callback_number FROM referrals"  # noqa: S608
            " WHERE callback_number IS NOT NULL AND callback_number != ''"
            f" AND status IN ({_marks(_PENDING)})"
        )
        for attempt in range(3):
            generation = index.generation
            async with self._read() as conn, conn.execute(sql, _PENDING) as cur:
                rows = await cur.fetchall()
            if index.generation == generation or attempt == 2:
                index.load(pending_member(mmg, caller) for mmg, caller in rows)
                return

    async def follow_pending(
        self, index: PendingIndex, *, resync_s: float = SQLITE_RESYNC_S
    ) -> None:
        """Keep ``index`` current until cancelled (storage/pending.py): this store's own
        changes as they commit, the file's full contents every ``resync_s`` (another
        process's changes). A failed read puts the index out of sync until one works."""
        self.track_pending(index)
        try:
            while True:
                try:
                    await self.load_pending(index)
                except Exception as exc:  # out of sync until a read works
                    index.lose(type(exc).__name__)
                    log.warning("pending_index_load_failed", error=str(exc))
                await asyncio.sleep(resync_s)
        finally:
            self.track_pending(None)
            index.stop()

    async def has_pending_referral(self, mmg: str, caller: str) -> bool:
        self.pending_lookups += 1
        sql = (
            "SELECT 1 FROM referrals WHERE mmg = ? AND callback_number = ?"  # noqa: S608
            f" AND status IN ({_marks(_PENDING)}) LIMIT 1"
        )
        async with self._read() as conn, conn.execute(sql, (mmg, caller, *_PENDING)) as cur:
            row = await cur.fetchone()
        return row is not None

    # -------------------------------------------------------------------- visits
    async def add_visit(
        self, visit: Visit, idempotency_key: str | None, fingerprint: str = ""
    ) -> tuple[Visit, bool]:
        async with self._tx() as conn:
            existing_id = visit.id
            if idempotency_key is not None:
                existing_id = (
                    await self._idempotent_id(conn, "visit", idempotency_key, fingerprint)
                    or visit.id
                )
            async with conn.execute("SELECT data FROM visits WHERE id = ?", (existing_id,)) as cur:
                row = await cur.fetchone()
            if row is not None:
                return codec.visit_from_json(row[0]), False
            await conn.execute(_UPSERT_VISIT, _visit_row(visit))
            if idempotency_key is not None:
                await conn.execute(
                    _INSERT_IDEMPOTENCY,
                    ("visit", idempotency_key, visit.id, codec.to_us(visit.at), fingerprint),
                )
        return visit, True

    async def visits(self, mmg: str, month: str) -> list[Visit]:
        sql = "SELECT data FROM visits WHERE mmg = ? AND month = ? ORDER BY at_us, id"
        async with self._read() as conn, conn.execute(sql, (mmg, month)) as cur:
            rows = await cur.fetchall()
        return [codec.visit_from_json(row[0]) for row in rows]

    # --------------------------------------------------------- protocol versions
    async def add_protocol_version(self, version: ProtocolVersion) -> bool:
        async with self._tx() as conn:
            sql = (
                "SELECT version FROM protocol_versions WHERE mmg = ?"
                " ORDER BY loaded_us DESC, version DESC LIMIT 1"
            )
            async with conn.execute(sql, (version.mmg,)) as cur:
                newest = await cur.fetchone()
            if newest is not None and newest[0] == version.version:
                return False
            await conn.execute(_UPSERT_VERSION, _version_row(version))
        return True

    async def protocol_history(self, mmg: str, limit: int = 100) -> list[ProtocolVersion]:
        sql = f"SELECT {_VERSION_COLUMNS} FROM protocol_versions WHERE mmg = ?{_NEWEST_N}"  # noqa: S608
        async with self._read() as conn, conn.execute(sql, (mmg, max(limit, 0))) as cur:
            rows = await cur.fetchall()
        return [_version_from_row(row) for row in rows]

    async def get_protocol_version(self, mmg: str, version: str) -> ProtocolVersion | None:
        sql = f"SELECT {_VERSION_COLUMNS} FROM protocol_versions WHERE mmg = ? AND version = ?"  # noqa: S608
        async with self._read() as conn, conn.execute(sql, (mmg, version)) as cur:
            row = await cur.fetchone()
        return _version_from_row(row) if row is not None else None

    async def purge_protocol_versions(
        self, before: datetime, keep: Collection[tuple[str, str]]
    ) -> int:
        kept = set(keep)
        deleted = 0
        async with self._tx() as conn:
            sql = (
                "SELECT mmg, version FROM protocol_versions v WHERE loaded_us < ? AND NOT EXISTS"
                " (SELECT 1 FROM calls c WHERE c.mmg = v.mmg AND c.protocol_version = v.version"
                " AND c.at_us >= ?)"
            )
            cutoff = codec.to_us(before)
            async with conn.execute(sql, (cutoff, cutoff)) as cur:
                stale = [(str(m), str(v)) for m, v in await cur.fetchall()]
            for mmg, ver in stale:
                if (mmg, ver) in kept:
                    continue
                await conn.execute(
                    "DELETE FROM protocol_versions WHERE mmg = ? AND version = ?", (mmg, ver)
                )
                deleted += 1
        return deleted

    # ------------------------------------------------------------ replay guards
    async def record_answers(self, answers: Sequence[HookAnswer]) -> list[bool]:
        if not answers:
            return []
        now_us = codec.to_us(self._clock.now())
        flags: list[bool] = []
        async with self._tx() as conn:
            # Expired rows first: an answer past its horizon no longer blocks a new one.
            await conn.execute("DELETE FROM hook_answers WHERE expires_us <= ?", (now_us,))
            for a in answers:
                at_us = codec.to_us(a.at)
                cur = await conn.execute(
                    "INSERT OR IGNORE INTO hook_answers (platform, call_id, stage, digits,"
                    " body, content_type, at_us, expires_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        *a.key,
                        a.body,
                        a.content_type,
                        at_us,
                        now_us + HOOK_ANSWER_TTL_S * 1_000_000,
                    ),
                )
                flags.append(cur.rowcount == 1)
                await cur.close()
        return flags

    async def hook_answer(
        self, platform: str, call_id: str, stage: str, digits: str
    ) -> HookAnswer | None:
        sql = (
            "SELECT body, content_type, at_us FROM hook_answers WHERE platform = ?"
            " AND call_id = ? AND stage = ? AND digits = ? AND expires_us > ?"
        )
        now_us = codec.to_us(self._clock.now())
        args = (platform, call_id, stage, digits, now_us)
        async with self._read() as conn, conn.execute(sql, args) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return HookAnswer(
            platform=platform,
            call_id=call_id,
            stage=stage,
            digits=digits,
            body=bytes(row[0]),
            content_type=str(row[1]),
            at=codec.from_us(int(row[2])),
        )

    async def claim_token_id(
        self, scope: str, token_id: str, now: float, expires_at: float
    ) -> bool:
        now_us = int(now * 1_000_000)
        async with self._tx() as conn:
            await conn.execute("DELETE FROM token_ids WHERE expires_us <= ?", (now_us,))
            cur = await conn.execute(
                "INSERT OR IGNORE INTO token_ids (scope, token_id, expires_us) VALUES (?, ?, ?)",
                (scope, token_id, int(expires_at * 1_000_000)),
            )
            claimed = cur.rowcount == 1
            await cur.close()
        return claimed


_VERSION_COLUMNS = (
    "mmg, version, loaded_us, file, file_sha256, roster_file, roster_sha256, summary, document"
)
_NEWEST_N = " ORDER BY loaded_us DESC, version DESC LIMIT ?"
_UPSERT_VERSION = (
    f"INSERT INTO protocol_versions ({_VERSION_COLUMNS}) VALUES ({', '.join('?' * 9)})"  # noqa: S608
    " ON CONFLICT (mmg, version) DO UPDATE SET loaded_us = excluded.loaded_us,"
    " file = excluded.file, file_sha256 = excluded.file_sha256,"
    " roster_file = excluded.roster_file, roster_sha256 = excluded.roster_sha256,"
    " summary = excluded.summary"
)


def _version_row(v: ProtocolVersion) -> tuple[Any, ...]:
    return (
        v.mmg,
        v.version,
        codec.to_us(v.loaded_at),
        v.file,
        v.file_sha256,
        v.roster_file,
        v.roster_sha256,
        json.dumps(list(v.summary), ensure_ascii=False),
        v.document,
    )


def _version_from_row(row: sqlite3.Row | tuple[Any, ...]) -> ProtocolVersion:
    mmg, version, loaded_us, file, file_sha, roster, roster_sha, summary, document = tuple(row)
    return ProtocolVersion(
        mmg=mmg,
        version=version,
        loaded_at=codec.from_us(loaded_us),
        file=file,
        file_sha256=file_sha,
        summary=tuple(str(line) for line in json.loads(summary)),
        document=document,
        roster_file=roster,
        roster_sha256=roster_sha,
    )


def _visit_row(visit: Visit) -> tuple[Any, ...]:
    return (
        visit.id,
        visit.mmg,
        visit.month,
        codec.to_us(visit.at),
        visit.referral_id,
        codec.visit_to_json(visit).decode(),
    )


__all__ = ["SqliteStore"]


def _leg_row(leg: Leg) -> tuple[Any, ...]:
    return (
        leg.call_id,
        leg.target.value,
        leg.mmg,
        leg.platform,
        codec.to_us(leg.offered_at),
        codec.to_us(leg.answered_at) if leg.answered_at else None,
        codec.to_us(leg.ended_at) if leg.ended_at else None,
        leg.outcome.value if leg.outcome else None,
        ",".join(sorted(status.value for status in leg.seen)),
    )


def _leg_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Leg:
    call_id, target, mmg, platform, offered, answered, ended, outcome, seen = row
    return Leg(
        call_id=str(call_id),
        target=Route(target),
        mmg=str(mmg),
        platform=str(platform),
        offered_at=codec.from_us(offered),
        answered_at=codec.from_us(answered) if answered is not None else None,
        ended_at=codec.from_us(ended) if ended is not None else None,
        outcome=LegOutcome(outcome) if outcome else None,
        seen=frozenset(LegStatus(status) for status in str(seen).split(",") if status),
    )
