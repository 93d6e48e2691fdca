"""Entered figures (``core.figures``) in both stores: the current entry and its history.

Mixed into :class:`~regulator.storage.sqlite.SqliteStore` and
:class:`~regulator.storage.redis.RedisStore`, which provide the plumbing used here
(``_tx``/``_read``; ``_db``/``keys``/``_errors``). Writing an entry and appending it to
the history is one transaction (SQLite) or one Lua script (Redis), and answers the
entry it replaced: the audit "previous value" can never be another writer's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import TYPE_CHECKING, Any, cast

import aiosqlite
import orjson

from regulator.core.figures import FigureEntry, FigureKind

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from regulator.storage.keys import Keys

#: SQLite tables (appended to the store's schema): the current entry, every revision.
FIGURES_SCHEMA = """
CREATE TABLE IF NOT EXISTS entered_figures (
    mmg         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    period      TEXT NOT NULL,
    body        TEXT NOT NULL,
    PRIMARY KEY (mmg, kind, period)
);
CREATE TABLE IF NOT EXISTS entered_figures_history (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    mmg         TEXT NOT NULL,
    kind        TEXT NOT NULL,
    period      TEXT NOT NULL,
    body        TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entered_figures_history_of
    ON entered_figures_history (mmg, kind, period, seq);
"""


def _body(entry: FigureEntry) -> str:
    return orjson.dumps(entry.to_dict()).decode()


def _entry(raw: str | bytes) -> FigureEntry:
    return FigureEntry.from_dict(orjson.loads(raw))


class SqliteFigures:
    """Entered figures on SQLite."""

    if TYPE_CHECKING:

        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...
        def _read(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

    async def put_figures(self, entry: FigureEntry) -> FigureEntry | None:
        """Store ``entry`` as the current one and in the history; return the one replaced."""
        where = (entry.mmg, entry.kind.value, entry.period)
        async with self._tx() as conn:
            sql = "SELECT body FROM entered_figures WHERE mmg = ? AND kind = ? AND period = ?"
            async with conn.execute(sql, where) as cur:
                row = await cur.fetchone()
            await conn.execute(
                "INSERT INTO entered_figures (mmg, kind, period, body) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (mmg, kind, period) DO UPDATE SET body = excluded.body",
                (*where, _body(entry)),
            )
            await conn.execute(
                "INSERT INTO entered_figures_history (mmg, kind, period, body) VALUES (?, ?, ?, ?)",
                (*where, _body(entry)),
            )
        return _entry(row[0]) if row is not None else None

    async def get_figures(self, mmg: str, kind: FigureKind, period: str) -> FigureEntry | None:
        async with self._read() as conn:
            sql = "SELECT body FROM entered_figures WHERE mmg = ? AND kind = ? AND period = ?"
            async with conn.execute(sql, (mmg, kind.value, period)) as cur:
                row = await cur.fetchone()
        return _entry(row[0]) if row is not None else None

    async def figures_history(self, mmg: str, kind: FigureKind, period: str) -> list[FigureEntry]:
        async with self._read() as conn:
            sql = (
                "SELECT body FROM entered_figures_history "
                "WHERE mmg = ? AND kind = ? AND period = ? ORDER BY seq"
            )
            async with conn.execute(sql, (mmg, kind.value, period)) as cur:
                rows = await cur.fetchall()
        return [_entry(row[0]) for row in rows]


#: KEYS[1] current entry, KEYS[2] history list; ARGV[1] the new entry's JSON.
#: Answers the entry replaced (or false).
PUT_FIGURES_LUA = """
local previous = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return previous
"""


class RedisFigures:
    """Entered figures on Redis (keys ``figures`` and ``figures_history``, storage/keys.py)."""

    if TYPE_CHECKING:
        keys: Keys

        def _db(self) -> Redis: ...
        def _errors(self, op: str) -> AbstractContextManager[None]: ...
        async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

    async def put_figures(self, entry: FigureEntry) -> FigureEntry | None:
        where = (entry.mmg, entry.kind.value, entry.period)
        keys = [self.keys.figures(*where), self.keys.figures_history(*where)]
        with self._errors("put_figures"):
            previous = await self._script("put_figures", keys, [_body(entry)])
        return _entry(previous) if previous else None

    async def get_figures(self, mmg: str, kind: FigureKind, period: str) -> FigureEntry | None:
        with self._errors("get_figures"):
            raw = await cast(
                Awaitable[bytes | None], self._db().get(self.keys.figures(mmg, kind.value, period))
            )
        return _entry(raw) if raw is not None else None

    async def figures_history(self, mmg: str, kind: FigureKind, period: str) -> list[FigureEntry]:
        key = self.keys.figures_history(mmg, kind.value, period)
        with self._errors("figures_history"):
            raws = await cast(Awaitable[list[bytes]], self._db().lrange(key, 0, -1))
        return [_entry(raw) for raw in raws]


__all__ = ["FIGURES_SCHEMA", "RedisFigures", "SqliteFigures"]
