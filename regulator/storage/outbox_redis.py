"""Outbox on Redis (redis.asyncio), shared by every replica.

Layout (all names built by :class:`OutboxKeys`, below, and nowhere else; ``p`` is
the prefix, ``regulator`` by default). Every key carries the hash tag ``{outbox}``
so they share one Redis Cluster slot and the Lua scripts that touch several of
them stay valid on a cluster:

- ``p:{outbox}:events``          hash  event_id → event JSON (stored once)
- ``p:{outbox}:refs``            hash  event_id → deliveries left (the event goes at 0)
- ``p:{outbox}:targets``         set   target names seen (for counts and listings)
- ``p:{outbox}:due:<target>``    zset  event_id → next attempt (unix seconds)
- ``p:{outbox}:dead:<target>``   zset  event_id → died at (unix seconds): the dead list
- ``p:{outbox}:meta:<target>``   hash  event_id → ``{"a": attempts, "s": since,
  "e": last error, "d": died at}`` — present while the delivery exists, pending or dead
- ``p:{outbox}:sent:<target>``   zset  event_id → since: deliveries done, kept for
  ``sent_retention_s`` so that enqueueing the same event again (a journal replayed
  after a crash) does not send it twice

Every change is one Lua script, hence atomic: an Ack marking a delivery done can't
race a retry bringing it back. Durability is the server's: run Redis with AOF
(``appendonly yes``) for undelivered events to survive a Redis restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import redis.asyncio as aioredis

from regulator.ports import SENT_RETENTION_S, DeadLetter, Delivery, OutboxEvent


@dataclass(frozen=True, slots=True)
class OutboxKeys:
    """The one place where the outbox's Redis key names are defined."""

    prefix: str = "regulator"

    @property
    def tag(self) -> str:
        return self.prefix + ":{outbox}"

    @property
    def events(self) -> str:
        return f"{self.tag}:events"

    @property
    def refs(self) -> str:
        return f"{self.tag}:refs"

    @property
    def targets(self) -> str:
        return f"{self.tag}:targets"

    def due(self, target: str) -> str:
        return f"{self.tag}:due:{target}"

    def dead(self, target: str) -> str:
        return f"{self.tag}:dead:{target}"

    def meta(self, target: str) -> str:
        return f"{self.tag}:meta:{target}"

    def sent(self, target: str) -> str:
        return f"{self.tag}:sent:{target}"

    def per_target(self, target: str) -> list[str]:
        return [self.due(target), self.meta(target), self.dead(target)]


# KEYS: events, refs, targets, then (due, meta, sent) per target.
# ARGV: now, forget sent deliveries enqueued before, number of targets, target names…,
# then event_id, body pairs.
_ENQUEUE = """
local now = ARGV[1]
local nt = tonumber(ARGV[3])
local first = 4 + nt
local count = (#ARGV - first + 1) / 2
local added = 0
for i = 1, nt do
  redis.call('SADD', KEYS[3], ARGV[3 + i])
  redis.call('ZREMRANGEBYSCORE', KEYS[3 + 3 * i], '-inf', '(' .. ARGV[2])
end
for j = first, #ARGV, 2 do
  local id, body = ARGV[j], ARGV[j + 1]
  -- Events enqueued together keep their order: scores a microsecond apart, all <= now.
  local rank = (j - first) / 2
  local score = string.format('%.6f', tonumber(now) - (count - rank) * 0.000001)
  for i = 1, nt do
    local due, meta, sent = KEYS[1 + 3 * i], KEYS[2 + 3 * i], KEYS[3 + 3 * i]
    if redis.call('HEXISTS', meta, id) == 0 and not redis.call('ZSCORE', sent, id) then
      redis.call('HSET', meta, id, cjson.encode({a = 0, s = now}))
      redis.call('ZADD', due, score, id)
      redis.call('HINCRBY', KEYS[2], id, 1)
      redis.call('HSETNX', KEYS[1], id, body)
      added = added + 1
    end
  end
end
return added
"""

# KEYS: due, meta, events. ARGV: now, limit, lease until.
# Returns id, meta, body triples and leases them.
_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local meta = redis.call('HGET', KEYS[2], id)
  local body = redis.call('HGET', KEYS[3], id)
  if meta and body then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[3], id)
    out[#out + 1] = id
    out[#out + 1] = meta
    out[#out + 1] = body
  else
    redis.call('ZREM', KEYS[1], id)  -- orphan: nothing left to deliver
  end
end
return out
"""

# KEYS: due, meta, dead, events, refs, sent. ARGV: id.
_DELIVERED = """
local id = ARGV[1]
redis.call('ZREM', KEYS[1], id)
redis.call('ZREM', KEYS[3], id)
local m = redis.call('HGET', KEYS[2], id)
if not m then return 0 end
redis.call('ZADD', KEYS[6], cjson.decode(m).s, id)
redis.call('HDEL', KEYS[2], id)
if redis.call('HINCRBY', KEYS[5], id, -1) <= 0 then
  redis.call('HDEL', KEYS[5], id)
  redis.call('HDEL', KEYS[4], id)
end
return 1
"""

# KEYS: due, meta. ARGV: id, next_at, attempts, error as JSON.
_RETRY = """
local id = ARGV[1]
if not redis.call('ZSCORE', KEYS[1], id) then return 0 end
local m = cjson.decode(redis.call('HGET', KEYS[2], id))
m.a = tonumber(ARGV[3])
m.e = cjson.decode(ARGV[4])
redis.call('HSET', KEYS[2], id, cjson.encode(m))
redis.call('ZADD', KEYS[1], 'XX', ARGV[2], id)
return 1
"""

# KEYS: due, meta, dead. ARGV: id, died_at, error as JSON, attempts ('' keeps).
_DEAD = """
local id = ARGV[1]
if redis.call('ZREM', KEYS[1], id) == 0 then return 0 end
local m = cjson.decode(redis.call('HGET', KEYS[2], id))
local e = cjson.decode(ARGV[3])
if e ~= cjson.null then m.e = e end
if ARGV[4] ~= '' then m.a = tonumber(ARGV[4]) end
m.d = ARGV[2]
redis.call('HSET', KEYS[2], id, cjson.encode(m))
redis.call('ZADD', KEYS[3], ARGV[2], id)
return 1
"""

# KEYS: due, meta, dead. ARGV: now, ids… (none: the whole dead list).
_REDRIVE = """
local ids = {}
if #ARGV > 1 then
  for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZRANGE', KEYS[3], 0, -1)
end
local n = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', KEYS[3], id) == 1 then
    local m = cjson.decode(redis.call('HGET', KEYS[2], id))
    m.a = 0
    m.s = ARGV[1]
    m.d = nil
    redis.call('HSET', KEYS[2], id, cjson.encode(m))
    redis.call('ZADD', KEYS[1], ARGV[1], id)
    n = n + 1
  end
end
return n
"""


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _dt(value: Any) -> datetime:
    return datetime.fromtimestamp(float(_str(value)), UTC)


def _ts(value: datetime) -> str:
    # A string keeps full precision through Lua's cjson (numbers keep 14 digits).
    return repr(value.timestamp())


def _err(value: Any) -> str | None:
    return None if value is None or isinstance(value, dict | list) else str(value)


class OutboxRedisStore:
    """:class:`regulator.interconnect.outbox.OutboxStore` on Redis.

    Give it a client (the store doesn't close it) or use :meth:`from_url`.
    """

    name = "redis"

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str = "regulator",
        *,
        owns_client: bool = False,
        sent_retention_s: float = SENT_RETENTION_S,
    ) -> None:
        self.client = client
        self.keys = OutboxKeys(prefix)
        self.owns_client = owns_client
        self.sent_retention_s = sent_retention_s
        self._enqueue = client.register_script(_ENQUEUE)
        self._due = client.register_script(_DUE)
        self._delivered = client.register_script(_DELIVERED)
        self._retry = client.register_script(_RETRY)
        self._dead = client.register_script(_DEAD)
        self._redrive = client.register_script(_REDRIVE)

    @classmethod
    def from_url(cls, url: str, prefix: str = "regulator") -> OutboxRedisStore:
        return cls(aioredis.Redis.from_url(url), prefix, owns_client=True)

    async def open(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        if self.owns_client:
            await self.client.aclose()

    async def enqueue(
        self, events: Sequence[OutboxEvent], targets: Sequence[str], now: datetime
    ) -> int:
        if not events or not targets:
            return 0
        k = self.keys
        keys = [k.events, k.refs, k.targets]
        for target in targets:
            keys += [k.due(target), k.meta(target), k.sent(target)]
        forget = repr(now.timestamp() - self.sent_retention_s)
        args: list[str | bytes] = [_ts(now), forget, str(len(targets)), *targets]
        for event in events:
            args += [event.event_id, orjson.dumps(event.as_json())]
        return int(await self._enqueue(keys=keys, args=args))

    async def due(
        self, target: str, now: datetime, limit: int, lease_s: float = 60.0
    ) -> list[Delivery]:
        k = self.keys
        at = now.timestamp()
        raw = await self._due(
            keys=[k.due(target), k.meta(target), k.events],
            args=[repr(at), str(limit), repr(at + lease_s)],
        )
        out: list[Delivery] = []
        for i in range(0, len(raw), 3):
            meta = orjson.loads(raw[i + 1])
            out.append(
                Delivery(
                    target=target,
                    event=OutboxEvent.from_json(orjson.loads(raw[i + 2])),
                    attempts=int(meta.get("a", 0)),
                    since=_dt(meta["s"]),
                    last_error=_err(meta.get("e")),
                )
            )
        return out

    async def mark_delivered(self, target: str, event_id: str) -> bool:
        k = self.keys
        keys = [*k.per_target(target), k.events, k.refs, k.sent(target)]
        return bool(await self._delivered(keys=keys, args=[event_id]))

    async def mark_retry(
        self, target: str, event_id: str, next_at: datetime, attempts: int, error: str | None
    ) -> bool:
        k = self.keys
        args: list[str | bytes] = [event_id, _ts(next_at), str(attempts), orjson.dumps(error)]
        return bool(await self._retry(keys=[k.due(target), k.meta(target)], args=args))

    async def mark_dead(
        self,
        target: str,
        event_id: str,
        error: str | None,
        died_at: datetime,
        attempts: int | None = None,
    ) -> bool:
        args: list[str | bytes] = [
            event_id,
            _ts(died_at),
            orjson.dumps(error),
            "" if attempts is None else str(attempts),
        ]
        return bool(await self._dead(keys=self.keys.per_target(target), args=args))

    async def _targets(self, target: str | None) -> list[str]:
        if target is not None:
            return [target]
        members: Any = await self.client.smembers(self.keys.targets)
        return sorted(_str(m) for m in members)

    async def dead(self, target: str | None = None, limit: int = 1000) -> list[DeadLetter]:
        k = self.keys
        letters: list[DeadLetter] = []
        for name in await self._targets(target):
            pairs: Any = await self.client.zrange(k.dead(name), 0, limit - 1, withscores=True)
            if not pairs:
                continue
            ids = [_str(member) for member, _score in pairs]
            metas: list[Any] = await self.client.hmget(k.meta(name), ids)
            bodies: list[Any] = await self.client.hmget(k.events, ids)
            for (_member, score), meta_raw, body in zip(pairs, metas, bodies, strict=True):
                if meta_raw is None or body is None:
                    continue
                meta = orjson.loads(meta_raw)
                letters.append(
                    DeadLetter(
                        target=name,
                        event=OutboxEvent.from_json(orjson.loads(body)),
                        attempts=int(meta.get("a", 0)),
                        error=_err(meta.get("e")),
                        died_at=datetime.fromtimestamp(float(score), UTC),
                    )
                )
        letters.sort(key=lambda d: (d.died_at, d.event.event_id))
        return letters[:limit]

    async def redrive(self, target: str, event_ids: Sequence[str] | None, now: datetime) -> int:
        if event_ids is not None and not event_ids:
            return 0
        args = [_ts(now), *(event_ids or [])]
        return int(await self._redrive(keys=self.keys.per_target(target), args=args))

    async def pending_count(self, target: str | None = None) -> int:
        total = 0
        for name in await self._targets(target):
            total += int(await self.client.zcard(self.keys.due(name)))
        return total


__all__ = ["OutboxKeys", "OutboxRedisStore"]
