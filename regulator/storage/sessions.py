"""Console sessions (``core.sessions``) in both stores, shared by every replica.

Mixed into :class:`~regulator.storage.sqlite.SqliteStore` and
:class:`~regulator.storage.redis.RedisStore` like :mod:`regulator.storage.figures`.
Only the hash of a session id is stored (``ConsoleSession.key``). An ended session is
never answered: SQLite checks its end on read and drops ended rows when a session is
created; Redis gives each key a TTL equal to the time left, renewed when a use is
written back, so Redis forgets it by itself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import aiosqlite
import orjson

from regulator.core.sessions import ConsoleSession
from regulator.storage import codec

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from regulator.storage.keys import Keys

#: SQLite table (appended to the store's schema): one row per live session.
SESSIONS_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_sessions (
    key         TEXT PRIMARY KEY,
    token_name  TEXT NOT NULL,
    expires_us  INTEGER NOT NULL,
    body        TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS console_sessions_token ON console_sessions (token_name);
CREATE INDEX IF NOT EXISTS console_sessions_expires ON console_sessions (expires_us);
"""


def _body(session: ConsoleSession) -> str:
    return orjson.dumps(session.to_dict()).decode()


def _session(raw: str | bytes) -> ConsoleSession:
    return ConsoleSession.from_dict(orjson.loads(raw))


def _ttl_ms(session: ConsoleSession, now: datetime) -> int:
    """Milliseconds left at ``now`` (relative: Redis's clock need not be the service's)."""
    return max(1, (session.expires_at - now) // timedelta(milliseconds=1))


class SqliteSessions:
    """Console sessions on SQLite."""

    if TYPE_CHECKING:

        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...
        def _read(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

    async def create_session(self, session: ConsoleSession) -> None:
        async with self._tx() as conn:
            await conn.execute(
                "DELETE FROM console_sessions WHERE expires_us <= ?",
                (codec.to_us(session.created_at),),
            )
            await conn.execute(
                "INSERT OR REPLACE INTO console_sessions (key, token_name, expires_us, body) "
                "VALUES (?, ?, ?, ?)",
                (
                    session.key,
                    session.token_name,
                    codec.to_us(session.expires_at),
                    _body(session),
                ),
            )

    async def get_session(
        self, key: str, now: datetime, *, touch: bool = True
    ) -> ConsoleSession | None:
        async with self._read() as conn:
            sql = "SELECT body FROM console_sessions WHERE key = ?"
            async with conn.execute(sql, (key,)) as cur:
                row = await cur.fetchone()
        if row is None:
            return None
        session = _session(row[0])
        if not session.alive(now):
            return None
        if touch and session.needs_touch(now):
            session = session.touched(now)
            async with self._tx() as conn:  # a session deleted meanwhile stays deleted
                await conn.execute(
                    "UPDATE console_sessions SET expires_us = ?, body = ? WHERE key = ?",
                    (codec.to_us(session.expires_at), _body(session), key),
                )
        return session

    async def delete_session(self, key: str) -> bool:
        async with self._tx() as conn:
            cur = await conn.execute("DELETE FROM console_sessions WHERE key = ?", (key,))
            return cur.rowcount > 0

    async def delete_sessions_of(self, token_name: str) -> int:
        async with self._tx() as conn:
            cur = await conn.execute(
                "DELETE FROM console_sessions WHERE token_name = ?", (token_name,)
            )
            return cur.rowcount


#: KEYS[1] the token's session set; ARGV[1] the session key prefix. Deletes every
#: session of the set and the set, atomically (a session created meanwhile is either
#: deleted or in a fresh set). Answers how many sessions were live. The session keys
#: are not in KEYS: on Redis Cluster this needs the hash-tagged prefix (storage/keys.py)
#: that puts every key in one slot.
DELETE_SESSIONS_OF_LUA = """
local n = 0
for _, key in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    n = n + redis.call('DEL', ARGV[1] .. key)
end
redis.call('DEL', KEYS[1])
return n
"""


class RedisSessions:
    """Console sessions on Redis (keys ``session`` and ``sessions_of``, storage/keys.py)."""

    if TYPE_CHECKING:
        keys: Keys

        def _db(self) -> Redis: ...
        def _errors(self, op: str) -> AbstractContextManager[None]: ...
        async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any: ...

    async def create_session(self, session: ConsoleSession) -> None:
        of = self.keys.sessions_of(session.token_name)
        with self._errors("create_session"):
            async with self._db().pipeline(transaction=True) as pipe:
                pipe.set(
                    self.keys.session(session.key),
                    _body(session),
                    px=_ttl_ms(session, session.created_at),
                )
                pipe.sadd(of, session.key)
                pipe.pexpire(of, session.max_age // timedelta(milliseconds=1))
                await pipe.execute()

    async def get_session(
        self, key: str, now: datetime, *, touch: bool = True
    ) -> ConsoleSession | None:
        name = self.keys.session(key)
        with self._errors("get_session"):
            raw = await cast(Awaitable[bytes | None], self._db().get(name))
        if raw is None:
            return None
        session = _session(raw)
        if not session.alive(now):
            return None
        if touch and session.needs_touch(now):
            session = session.touched(now)
            with self._errors("touch_session"):  # XX: a session deleted meanwhile stays so
                await self._db().set(name, _body(session), px=_ttl_ms(session, now), xx=True)
        return session

    async def delete_session(self, key: str) -> bool:
        with self._errors("delete_session"):
            return bool(await self._db().delete(self.keys.session(key)))

    async def delete_sessions_of(self, token_name: str) -> int:
        with self._errors("delete_sessions_of"):
            deleted = await self._script(
                "delete_sessions_of", [self.keys.sessions_of(token_name)], [self.keys.session("")]
            )
        return int(deleted)


__all__ = ["SESSIONS_SCHEMA", "RedisSessions", "SqliteSessions"]
