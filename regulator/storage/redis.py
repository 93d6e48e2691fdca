"""The shared store: Redis, for several replicas of the service behind one load balancer.

Every multi-key change is ONE Lua script, so a record and its counters, or a referral
and its indexes, are never half-written, and two replicas racing on the same call or
referral can't double-count or lose an update:

- ``record_calls``: one ``EVALSHA`` per batch. A call is new iff its hash
  ``P:call:{id}`` does not exist yet; only then are the hash written, the counters
  incremented (``indicators.call_counter_deltas``), the entry appended to the month's
  log stream and the retention index updated. Updates that came first (kept in
  ``P:orphan:{id}``) are applied in Python to the record before it is written; the
  script checks that they are still the ones applied (else: re-read, retry).
- ``update_calls``: read the calls' current route/ground (one pipeline), compute the
  counter moves in Python (``indicators.reroute_deltas``, the single definition), then
  one script that applies them only if no call changed meanwhile (compare-and-set);
  on a conflict the batch is re-read and retried. Only the fields the updates carry
  are written, so a status from one replica and a duration from another both stay.
  An update whose call is not recorded yet is kept (same script, same check: the
  record can't land in between) until the record lands or the daily purge drops it.
- referrals: compare-and-set on the version in a script that also keeps the listing
  indexes and the pending-callback index (``P:pending:{mmg}:{caller}``) in step and
  upserts the visit.

Key names are in :mod:`regulator.storage.keys`.

Connecting (``REGULATOR_REDIS_URL``):

- ``redis://[:password@]host:6379/0``, ``rediss://…`` (TLS) and
  ``unix:///run/redis/redis.sock?db=0``: redis-py URLs, see ``Redis.from_url``.
- Sentinel: redis-py has no URL form for Sentinel, so this store accepts
  ``sentinel://[:password@]host1:26379,host2:26379/mymaster[/db]`` (password = the
  master's; ``?sentinel_password=…`` for the Sentinels, ``?ssl=true`` for TLS to the
  master) and connects through :class:`redis.asyncio.sentinel.Sentinel`, which follows
  failovers.
- Cluster: not implemented (no URL form, not tested). It would be configured with a
  prefix holding a hash tag (``REGULATOR_REDIS_PREFIX={regulator}``) so every key
  shares one slot — each script touches several keys, and one (the hash of a visit's
  previous month) is only known inside the script — and a
  ``redis.asyncio.cluster.RedisCluster`` client in place of ``Redis`` (the commands
  used here all exist there). The data set fits one shard; Cluster would
  bring failover, which Sentinel already gives.

Timeouts are short (the hot path must never hang on a dead Redis): a failed
connect or read surfaces as :class:`~regulator.ports.StoreError` within about a
second, and the call writer spools (:mod:`regulator.storage.batch`).

Operating notes: run Redis with the append-only file (``appendonly yes``); a write
Redis acknowledged is not spooled, so ``appendfsync everysec`` can lose up to a
second of calls on a crash of the Redis host and ``always`` none. Nothing expires on
its own except idempotency keys (30 days) and orphan update lists (two days, a
backstop: the purge drops them after one): call records (phone numbers) go only
through :meth:`RedisStore.purge_calls`, which the service must run periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast
from urllib.parse import parse_qs, unquote

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError, WatchError

from regulator.core.history import ProtocolVersion
from regulator.core.indicators import call_counter_deltas
from regulator.core.legs import Leg, LegChange, LegEvent
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
from regulator.storage.figures import PUT_FIGURES_LUA, RedisFigures
from regulator.storage.keys import Keys, pending_member
from regulator.storage.pending import (
    REDIS_PING_S,
    REDIS_RESYNC_S,
    RETRY_FIRST_S,
    RETRY_MAX_S,
    PendingIndex,
)
from regulator.storage.sessions import DELETE_SESSIONS_OF_LUA, RedisSessions

log = get_logger(__name__)

#: Idempotency keys (API ``Idempotency-Key``) are remembered this long.
IDEMPOTENCY_TTL_S = 30 * 24 * 3600
_PURGE_BATCH = 500
_CAS_ATTEMPTS = 20
#: Backstop only (the daily purge drops orphan updates after ORPHAN_TTL): a list
#: whose purge never ran still goes away on its own.
_ORPHAN_LIST_TTL_S = int(2 * codec.ORPHAN_TTL.total_seconds())

# ----------------------------------------------------------------------------- Lua
# Both call scripts take their per-call data as ONE JSON argument (decoded by cjson
# inside Redis): packing tens of thousands of separate arguments per batch in Python
# cost more than the whole script. Every value in that JSON is a string (a Lua number
# would print 1.7e15-sized instants in exponent form).

# KEYS: per record (call hash, counters hash, log stream, orphan list), then the
#       retention zset and the orphan index.
# ARGV[1]: JSON list, per record [[field, value, …], [counter, delta, …], at_us, call_id,
#          how many orphan updates were applied to it].
# Returns, per record, 1 if it was new else 0 — or, writing nothing, {-1, call_id, …}:
# new calls whose orphan updates are not the ones applied (read them, retry).
# A batch's counter moves are summed per counters hash and written once per field at
# the end (one HINCRBY per field of a batch, not six per call: 14.2 → 10.9 µs of Redis
# per record), and each call's EXISTS is read once: Redis is shared by every replica.
_RECORD_LUA = """
local by_at, orphans = KEYS[#KEYS - 1], KEYS[#KEYS]
local batch = cjson.decode(ARGV[1])
local stale, fresh = {-1}, {}
for i, rec in ipairs(batch) do
  if redis.call('EXISTS', KEYS[4 * i - 3]) == 0 then
    fresh[i] = true
    if redis.call('LLEN', KEYS[4 * i]) ~= tonumber(rec[5]) then
      stale[#stale + 1] = rec[4]
    end
  end
end
if #stale > 1 then return stale end
local out, written, sums = {}, {}, {}
for i, rec in ipairs(batch) do
  local ck, cnt, log, early = KEYS[4 * i - 3], KEYS[4 * i - 2], KEYS[4 * i - 1], KEYS[4 * i]
  if fresh[i] and not written[ck] then
    written[ck] = true
    local xid = redis.call('XADD', log, '*', 'call_id', rec[4], 'at', rec[3])
    redis.call('HSET', ck, 'xid', xid, unpack(rec[1]))
    local acc = sums[cnt]
    if acc == nil then acc = {}; sums[cnt] = acc end
    local deltas = rec[2]
    for j = 1, #deltas, 2 do
      acc[deltas[j]] = (acc[deltas[j]] or 0) + tonumber(deltas[j + 1])
    end
    redis.call('ZADD', by_at, rec[3], rec[4])
    if rec[5] ~= '0' then
      redis.call('DEL', early)
      redis.call('ZREM', orphans, rec[4])
    end
    out[i] = 1
  else
    out[i] = 0
  end
end
for cnt, acc in pairs(sums) do
  for field, delta in pairs(acc) do
    redis.call('HINCRBY', cnt, field, string.format('%d', delta))
  end
end
return out
"""

# KEYS: per call (call hash, counters hash, orphan list), then the orphan index.
# ARGV[1]: JSON list, per call [expected route ('' = not recorded yet), expected ground
#          ('' = none), [field, value, …], [counter, delta, …], [orphan update, …], call_id].
# ARGV[2]: now (µs), ARGV[3]: orphan updates kept per call, ARGV[4]: orphan list TTL (s).
# Returns {0} (nothing written) if any call changed since it was read (or was
# recorded meanwhile), else {1, orphan updates dropped over the per-call limit}.
_UPDATE_LUA = """
local orphans = KEYS[#KEYS]
local batch = cjson.decode(ARGV[1])
for i, op in ipairs(batch) do
  local cur = redis.call('HMGET', KEYS[3 * i - 2], 'route', 'ground')
  if (cur[1] or '') ~= op[1] or (cur[2] or '') ~= op[2] then return {0} end
end
local dropped = 0
for i, op in ipairs(batch) do
  local ck, cnt, early = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  if op[1] == '' then
    local room = tonumber(ARGV[3]) - redis.call('LLEN', early)
    for j, update in ipairs(op[5]) do
      if j <= room then redis.call('RPUSH', early, update) else dropped = dropped + 1 end
    end
    if room > 0 then
      redis.call('EXPIRE', early, ARGV[4])
      redis.call('ZADD', orphans, 'NX', ARGV[2], op[6])
    end
  else
    if #op[3] > 0 then redis.call('HSET', ck, unpack(op[3])) end
    local deltas = op[4]
    for j = 1, #deltas, 2 do redis.call('HINCRBY', cnt, deltas[j], deltas[j + 1]) end
  end
end
return {1, dropped}
"""

# The pending-callers notification (storage/pending.py), appended to each referral
# script that changes a pending set, last (after every write that could fail), so a
# change and its notification cannot diverge: the member joins or leaves the index set,
# the sequence moves on by one and the change is published with its number.
# Expects locals idx (index set key), seq (sequence key), chan (channel name).
_NOTIFY_LUA = """
local function notify(member, present)
  if present then redis.call('SADD', idx, member) else redis.call('SREM', idx, member) end
  local n = redis.call('INCR', seq)
  redis.call('PUBLISH', chan, n .. (present and ' 1 ' or ' 0 ') .. member)
end
"""

# KEYS: 1 referral, 2 idempotency key (or KEYS[1]), 3 index all, 4 index all+status,
#       5 index mmg, 6 index mmg+status, 7 pending set (or KEYS[1]), 8 pending index
#       set, 9 pending sequence
# ARGV: 1 has idem, 2 id, 3 json, 4 version, 5 status, 6 mmg, 7 created µs,
#       8 pending key name or '', 9 idem ttl, 10 request fingerprint,
#       11 pending member ('{mmg}:{digest}'), 12 pending-changes channel
# Returns {1, id} if created, {0, existing id} otherwise; the idempotency key's value
# is "<id>\n<fingerprint>" (just "<id>" when written by an older version).
_CREATE_REFERRAL_LUA = (
    """
local idx, seq, chan = KEYS[8], KEYS[9], ARGV[12]
"""
    + _NOTIFY_LUA
    + """
if ARGV[1] == '1' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {0, existing} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ARGV[2]} end
redis.call('HSET', KEYS[1], 'v', ARGV[4], 's', ARGV[5], 'm', ARGV[6], 'c', ARGV[7],
           'p', ARGV[8], 'd', ARGV[3])
for k = 3, 6 do redis.call('ZADD', KEYS[k], ARGV[7], ARGV[2]) end
if ARGV[1] == '1' then redis.call('SET', KEYS[2], ARGV[2] .. '\\n' .. ARGV[10], 'EX', ARGV[9]) end
if ARGV[8] ~= '' then
  redis.call('SADD', KEYS[7], ARGV[2])
  notify(ARGV[11], true)
end
return {1, ARGV[2]}
"""
)

# KEYS: 1 referral, 2 old mmg+status index, 3 old all+status index, 4 new mmg+status
#       index, 5 new all+status index, 6 old pending set, 7 new pending set,
#       8 visits hash, 9 visit location  (unused slots repeat KEYS[1]), 10 pending
#       index set, 11 pending sequence
# ARGV: 1 expected version, 2 old status, 3 old pending key name, 4 new version,
#       5 new status, 6 new pending key name, 7 json, 8 id, 9 created µs,
#       10 visit id ('' = no visit), 11 visit json, 12 old pending member,
#       13 new pending member, 14 pending-changes channel
# Returns 1 saved, 0 version mismatch (or unknown id), -1 stale read (retry).
_SAVE_REFERRAL_LUA = (
    """
local idx, seq, chan = KEYS[10], KEYS[11], ARGV[14]
"""
    + _NOTIFY_LUA
    + """
local cur = redis.call('HMGET', KEYS[1], 'v', 's', 'p')
if not cur[1] or tonumber(cur[1]) ~= tonumber(ARGV[1]) then return 0 end
if cur[2] ~= ARGV[2] or cur[3] ~= ARGV[3] then return -1 end
local id = ARGV[8]
if ARGV[2] ~= ARGV[5] then
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[4], ARGV[9], id)
  redis.call('ZADD', KEYS[5], ARGV[9], id)
end
redis.call('HSET', KEYS[1], 'v', ARGV[4], 's', ARGV[5], 'p', ARGV[6], 'd', ARGV[7])
if ARGV[10] ~= '' then
  local old = redis.call('GET', KEYS[9])
  if old and old ~= KEYS[8] then redis.call('HDEL', old, ARGV[10]) end
  redis.call('SET', KEYS[9], KEYS[8])
  redis.call('HSET', KEYS[8], ARGV[10], ARGV[11])
end
if ARGV[3] ~= ARGV[6] then
  -- Another referral of the same caller may keep the old set non-empty: still pending.
  if ARGV[3] ~= '' then
    redis.call('SREM', KEYS[6], id)
    if redis.call('EXISTS', KEYS[6]) == 0 then notify(ARGV[12], false) end
  end
  if ARGV[6] ~= '' then
    redis.call('SADD', KEYS[7], id)
    notify(ARGV[13], true)
  end
end
return 1
"""
)

# KEYS: 1 pending index set, 2 pending sequence, 3 index-built marker.
# Returns {sequence, members} (one atomic read), or {-1} while the index is not built.
_PENDING_SNAPSHOT_LUA = """
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1} end
return {tonumber(redis.call('GET', KEYS[2]) or '0'), redis.call('SMEMBERS', KEYS[1])}
"""

# KEYS: pending sets found by SCAN, then the pending index set; ARGV: their members.
# Each member's presence follows its set's, read in the same atomic step (a set a
# referral script empties meanwhile is never added back).
_PENDING_BACKFILL_LUA = """
local idx = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('SADD', idx, ARGV[i])
  else
    redis.call('SREM', idx, ARGV[i])
  end
end
return #KEYS - 1
"""

# KEYS: the keys to test. Returns EXISTS of each, in order (coalesced look-ups).
_EXISTS_EACH_LUA = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('EXISTS', key) end
return out
"""

# KEYS: 1 visit location, 2 idempotency key (or KEYS[1]), 3 visits hash
# ARGV: 1 has idem, 2 id, 3 json, 4 idem ttl, 5 request fingerprint
_ADD_VISIT_LUA = """
if ARGV[1] == '1' then
  local existing = redis.call('GET', KEYS[2])
  if existing then return {0, existing} end
end
if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ARGV[2]} end
redis.call('SET', KEYS[1], KEYS[3])
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
if ARGV[1] == '1' then redis.call('SET', KEYS[2], ARGV[2] .. '\\n' .. ARGV[5], 'EX', ARGV[4]) end
return {1, ARGV[2]}
"""


# ------------------------------------------------------------------------ helpers


def _apply_change(index: PendingIndex, data: Any) -> bool:
    """Apply one ``{seq} {1|0} {member}`` notification; False on a gap (reload)."""
    seq, present, member = _s(data).split(" ", 2)
    return index.apply(member, present == "1", int(seq))


#: Fields of a call hash that an update may change, in the order they are written.
_UPDATE_FIELDS = ("route", "ground", "rule", "status", "duration_s", "routes")


def _carried_fields(update: CallUpdate) -> set[str]:
    """The call-hash fields ``update`` sets (a new route sets the ground too)."""
    carried = {"route", "ground"} if update.route is not None else set()
    if update.offered is not None or update.route is not None:
        carried.add("routes")  # the route history grows (codec.apply_update)
    if update.rule is not None:
        carried.add("rule")
    if update.status is not None:
        carried.add("status")
    if update.duration_s is not None:
        carried.add("duration_s")
    return carried


def _field_value(state: codec.CallState, name: str) -> str:
    value = getattr(state, name)
    return "" if value is None else str(value)


def _s(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return str(value)


def _first_id(raw: Any, fingerprint: str) -> str:
    """The id an idempotency key names ("<id>\\n<fingerprint>" or a bare id);
    :class:`IdempotencyMismatch` if it was first used with another request."""
    first_id, _, first = _s(raw).partition("\n")
    if first and fingerprint and first != fingerprint:
        raise IdempotencyMismatch(first_id, first)
    return first_id


def _call_fields(record: CallRecord) -> list[str]:
    """Field/value pairs of a call hash, all strings (see the note on the call scripts)."""
    return [
        "call_id",
        record.call_id,
        "mmg",
        record.mmg,
        "month",
        record.month,
        "platform",
        record.platform,
        "caller",
        record.caller,
        "at",
        str(codec.to_us(record.at)),
        "day_type",
        record.day_type.value,
        "hour",
        str(record.hour),
        "route",
        record.route.value,
        "ground",
        record.ground.value if record.ground is not None else "",
        "rule",
        record.rule,
        "failsafe",
        "1" if record.failsafe else "0",
        "status",
        record.status,
        "duration_s",
        str(record.duration_s) if record.duration_s is not None else "",
        "routes",
        codec.routes_to_text(record.routes),
        "protocol_version",
        record.protocol_version,
    ]


def _record_from_hash(raw: dict[bytes, bytes]) -> CallRecord:
    h = {k.decode(): v.decode() for k, v in raw.items()}
    return CallRecord(
        call_id=h["call_id"],
        mmg=h["mmg"],
        platform=h["platform"],
        caller=h["caller"],
        at=codec.from_us(int(h["at"])),
        month=h["month"],
        day_type=DayType(h["day_type"]),
        hour=int(h["hour"]),
        route=Route(h["route"]),
        ground=Ground(h["ground"]) if h.get("ground") else None,
        rule=h["rule"],
        failsafe=h.get("failsafe") == "1",
        status=h["status"],
        duration_s=int(h["duration_s"]) if h.get("duration_s") else None,
        routes=codec.routes_from_text(h.get("routes")),
        protocol_version=h.get("protocol_version", ""),
    )


def _member(version: ProtocolVersion) -> str:
    return f"{version.mmg}:{version.version}"


def _version_fields(v: ProtocolVersion) -> dict[str, str]:
    return {
        "mmg": v.mmg,
        "version": v.version,
        "loaded_at": str(codec.to_us(v.loaded_at)),
        "file": v.file,
        "file_sha256": v.file_sha256,
        "roster_file": v.roster_file,
        "roster_sha256": v.roster_sha256,
        "summary": json.dumps(list(v.summary), ensure_ascii=False),
        "document": v.document,
    }


def _version_from_hash(raw: dict[bytes, bytes]) -> ProtocolVersion:
    h = {k.decode(): v.decode() for k, v in raw.items()}
    return ProtocolVersion(
        mmg=h["mmg"],
        version=h["version"],
        loaded_at=codec.from_us(int(h["loaded_at"])),
        file=h["file"],
        file_sha256=h["file_sha256"],
        summary=tuple(str(line) for line in json.loads(h["summary"])),
        document=h["document"],
        roster_file=h.get("roster_file", ""),
        roster_sha256=h.get("roster_sha256", ""),
    )


@dataclass(frozen=True, slots=True)
class SentinelUrl:
    """What a ``sentinel://`` URL names: the Sentinels, the service, the master's
    database and credentials, the Sentinels' own password, TLS."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int
    username: str | None
    password: str | None
    sentinel_password: str | None
    ssl: bool


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Split ``sentinel://[:pw@]h1:26379,h2/mymaster[/db][?sentinel_password=…&ssl=true]``."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("sentinel", "redis+sentinel"):
        raise ValueError("a Sentinel URL starts with sentinel://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    username: str | None = None
    password: str | None = None
    if "@" in netloc:
        userinfo, _, netloc = netloc.rpartition("@")
        user, has_pw, pw = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(pw) if has_pw else None
    sentinels: list[tuple[str, int]] = []
    for item in netloc.split(","):
        if not item:
            continue
        if item.startswith("["):  # [ipv6]:port
            host, _, port = item[1:].partition("]")
            port = port.lstrip(":")
        else:
            host, _, port = item.rpartition(":") if ":" in item else (item, "", "")
        sentinels.append((host, int(port) if port else 26379))
    parts = [p for p in path.split("/") if p]
    if not sentinels or not parts:
        raise ValueError("a Sentinel URL needs host:port[,host:port…]/service_name")
    params = {k: v[-1] for k, v in parse_qs(query).items()}
    return SentinelUrl(
        sentinels=sentinels,
        service=unquote(parts[0]),
        db=int(parts[1]) if len(parts) > 1 else int(params.get("db", "0")),
        username=username,
        password=password,
        sentinel_password=params.get("sentinel_password"),
        ssl=params.get("ssl", "").lower() in ("1", "true", "yes"),
    )


class RedisStore(RedisFigures, RedisSessions):
    """:class:`regulator.ports.Store` on Redis (one server, Sentinel or a hash-tagged Cluster)."""

    name = "redis"

    def __init__(
        self,
        url: str,
        prefix: str = "regulator",
        *,
        socket_timeout: float = 1.0,
        connect_timeout: float = 0.5,
        max_connections: int = 64,
        idempotency_ttl_s: int = IDEMPOTENCY_TTL_S,
        clock: Clock | None = None,
    ) -> None:
        self.keys = Keys(prefix)
        self._clock = clock or SystemClock()
        self._url = url
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._max_connections = max_connections
        self._idem_ttl = idempotency_ttl_s
        self._client: Redis | None = None
        self._sentinel: Sentinel | None = None
        self._scripts: dict[str, AsyncScript] = {}
        # Pending-referral look-ups waiting for this event-loop turn's round trip.
        self._lookups: list[tuple[str, asyncio.Future[bool]]] = []
        self._lookup_tasks: set[asyncio.Task[None]] = set()
        #: Pending-referral look-ups asked of Redis (the index spares most of them).
        self.pending_lookups = 0

    @classmethod
    def from_client(
        cls, client: Redis, prefix: str = "regulator", *, idempotency_ttl_s: int = IDEMPOTENCY_TTL_S
    ) -> RedisStore:
        """A store on a client built elsewhere (custom TLS, connection pool…); ``close``
        closes it."""
        store = cls("", prefix, idempotency_ttl_s=idempotency_ttl_s)
        store._client = client
        store._register()
        return store

    # ------------------------------------------------------------------ plumbing
    def _build(self) -> Redis:
        # One retry without backoff: reconnects a pooled connection the server closed
        # (restart, idle timeout) but gives up fast when the server is really gone.
        common: dict[str, Any] = {
            "socket_timeout": self._socket_timeout,
            "socket_connect_timeout": self._connect_timeout,
            "retry": Retry(NoBackoff(), 1),
            "client_name": "regulator",
        }
        if self._url.startswith(("sentinel://", "redis+sentinel://")):
            conf = parse_sentinel_url(self._url)
            sentinel_kwargs: dict[str, Any] = {
                "socket_timeout": self._socket_timeout,
                "socket_connect_timeout": self._connect_timeout,
            }
            if conf.sentinel_password:
                sentinel_kwargs["password"] = conf.sentinel_password
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]
                conf.sentinels, sentinel_kwargs=sentinel_kwargs
            )
            master_kwargs = dict(common, db=conf.db, max_connections=self._max_connections)
            if conf.password is not None:
                master_kwargs["password"] = conf.password
            if conf.username is not None:
                master_kwargs["username"] = conf.username
            if conf.ssl:
                master_kwargs["ssl"] = True
            return cast(Redis, self._sentinel.master_for(conf.service, **master_kwargs))
        return Redis.from_url(self._url, max_connections=self._max_connections, **common)

    def _register(self) -> None:
        client = self._db()
        self._scripts = {
            "record": client.register_script(_RECORD_LUA),
            "update": client.register_script(_UPDATE_LUA),
            "create_referral": client.register_script(_CREATE_REFERRAL_LUA),
            "save_referral": client.register_script(_SAVE_REFERRAL_LUA),
            "add_visit": client.register_script(_ADD_VISIT_LUA),
            "exists_each": client.register_script(_EXISTS_EACH_LUA),
            "pending_snapshot": client.register_script(_PENDING_SNAPSHOT_LUA),
            "pending_backfill": client.register_script(_PENDING_BACKFILL_LUA),
            # The mixins' scripts, registered once with the others (not on every call).
            "put_figures": client.register_script(PUT_FIGURES_LUA),
            "delete_sessions_of": client.register_script(DELETE_SESSIONS_OF_LUA),
        }

    async def open(self) -> None:
        """Build the client and ping. On StoreError the store stays usable: it
        reconnects on the next command once Redis is back."""
        if self._client is None:
            try:
                self._client = self._build()
            except (RedisError, OSError, ValueError) as exc:
                raise StoreError(f"bad Redis settings: {exc}") from exc
            self._register()
        await self.ping()

    async def close(self) -> None:
        client, self._client = self._client, None
        sentinel, self._sentinel = self._sentinel, None
        with self._errors("close"):
            if client is not None:
                await client.aclose()
            if sentinel is not None:
                await sentinel.aclose()

    def _db(self) -> Redis:
        if self._client is None:
            raise StoreError("Redis store is not open")
        return self._client

    @contextmanager
    def _errors(self, op: str) -> Iterator[None]:
        try:
            yield
        except (TimeoutError, RedisError, OSError) as exc:
            raise StoreError(f"Redis {op} failed: {type(exc).__name__}: {exc}") from exc

    async def _script(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await self._scripts[name](keys=list(keys), args=list(args))

    async def ping(self) -> None:
        with self._errors("ping"):
            await cast(Awaitable[Any], self._db().ping())

    # --------------------------------------------------------------------- calls
    async def record_calls(self, records: Sequence[CallRecord]) -> list[bool]:
        if not records:
            return []
        early: dict[str, list[CallUpdate]] = {}  # orphan updates read, by call id
        with self._errors("record_calls"):
            await self._mark_versions_used(records)
            for _ in range(_CAS_ATTEMPTS):
                keys: list[str] = []
                batch: list[list[Any]] = []
                for record in records:
                    keys += [
                        self.keys.call(record.call_id),
                        self.keys.counters(record.mmg, record.month),
                        self.keys.call_log(record.mmg, record.month),
                        self.keys.orphan_updates(record.call_id),
                    ]
                    applied = early.get(record.call_id, [])
                    if applied:
                        record = codec.record_with_updates(record, applied)
                    deltas = [str(x) for kv in call_counter_deltas(record).items() for x in kv]
                    batch.append(
                        [
                            _call_fields(record),
                            deltas,
                            str(codec.to_us(record.at)),
                            record.call_id,
                            str(len(applied)),
                        ]
                    )
                keys += [self.keys.calls_by_at(), self.keys.orphans_by_at()]
                result = await self._script("record", keys, [codec.dumps(batch)])
                if not result or int(result[0]) != -1:
                    return [int(flag) == 1 for flag in result]
                stale = [_s(call_id) for call_id in result[1:]]
                async with self._db().pipeline(transaction=False) as pipe:
                    for call_id in stale:
                        pipe.lrange(self.keys.orphan_updates(call_id), 0, -1)
                    lists = await pipe.execute()
                for call_id, raw in zip(stale, lists, strict=True):
                    early[call_id] = [codec.update_from_json(item) for item in raw]
        raise StoreError("Redis record_calls: too many concurrent changes, giving up")

    async def _mark_versions_used(self, records: Sequence[CallRecord]) -> None:
        """Before the records: a version must never look unnamed while a record names it
        (a failed write after this only keeps a version longer)."""
        used: dict[str, int] = {}
        for record in records:
            if record.protocol_version:
                member = f"{record.mmg}:{record.protocol_version}"
                used[member] = max(used.get(member, 0), codec.to_us(record.at))
        if used:
            await self._db().zadd(self.keys.protocol_versions_used(), used, gt=True)

    async def update_calls(self, updates: Sequence[CallUpdate]) -> None:
        if not updates:
            return
        ids = list(dict.fromkeys(u.call_id for u in updates))
        client = self._db()
        fields = ("mmg", "month", "route", "ground", "rule", "status", "duration_s", "routes")
        with self._errors("update_calls"):
            for _ in range(_CAS_ATTEMPTS):
                async with client.pipeline(transaction=False) as pipe:
                    for call_id in ids:
                        pipe.hmget(self.keys.call(call_id), fields)
                    rows = await pipe.execute()
                read: dict[str, codec.CallState] = {}
                for call_id, row in zip(ids, rows, strict=True):
                    if row[0] is None:
                        continue  # not recorded yet (or purged): kept as an orphan below
                    mmg, month, route, ground, rule, status, duration, routes = (
                        _s(v) if v is not None else "" for v in row
                    )
                    read[call_id] = codec.CallState(
                        mmg,
                        month,
                        route,
                        ground or None,
                        rule,
                        status,
                        int(duration) if duration else None,
                        routes,
                    )
                state = {cid: replace(s) for cid, s in read.items()}
                moves: dict[str, dict[str, int]] = {cid: {} for cid in read}
                carried: dict[str, set[str]] = {cid: set() for cid in read}
                early: dict[str, list[CallUpdate]] = {}
                for update in updates:
                    call = state.get(update.call_id)
                    if call is None:
                        early.setdefault(update.call_id, []).append(update)
                        continue
                    net = moves[update.call_id]
                    for key, delta in codec.apply_update(call, update).items():
                        net[key] = net.get(key, 0) + delta
                    carried[update.call_id].update(_carried_fields(update))
                keys: list[str] = []
                batch: list[list[Any]] = []
                for cid, before in read.items():
                    after = state[cid]
                    keys += [
                        self.keys.call(cid),
                        self.keys.counters(before.mmg, before.month),
                        self.keys.orphan_updates(cid),
                    ]
                    # Only what the updates carry: a concurrent write of another
                    # field (a duration from another replica) must survive.
                    new_fields = [
                        x
                        for name in _UPDATE_FIELDS
                        if name in carried[cid]
                        for x in (name, _field_value(after, name))
                    ]
                    deltas = [str(x) for kv in moves[cid].items() if kv[1] for x in kv]
                    batch.append([before.route, before.ground or "", new_fields, deltas, [], cid])
                for cid, kept in early.items():
                    keys += [
                        self.keys.call(cid),
                        self.keys.counters(kept[0].mmg, kept[0].month),
                        self.keys.orphan_updates(cid),
                    ]
                    batch.append(
                        ["", "", [], [], [codec.update_to_json(u).decode() for u in kept], cid]
                    )
                keys.append(self.keys.orphans_by_at())
                args = [
                    codec.dumps(batch),
                    codec.to_us(self._clock.now()),
                    codec.ORPHAN_LIMIT,
                    _ORPHAN_LIST_TTL_S,
                ]
                result = await self._script("update", keys, args)
                if int(result[0]) == 1:
                    if int(result[1]):
                        log.warning("orphan_updates_dropped", updates=int(result[1]))
                    return
            raise StoreError("Redis update_calls: too many concurrent changes, giving up")

    async def get_call(self, call_id: str) -> CallRecord | None:
        with self._errors("get_call"):
            raw = await cast(
                Awaitable[dict[bytes, bytes]], self._db().hgetall(self.keys.call(call_id))
            )
        return _record_from_hash(raw) if raw else None

    async def route_history(self, call_id: str) -> RouteHistory | None:
        with self._errors("route_history"):
            mmg, route, routes, caller = await cast(
                Awaitable[list[bytes | None]],
                self._db().hmget(self.keys.call(call_id), ["mmg", "route", "routes", "caller"]),
            )
        if mmg is None or route is None:
            return None
        history = codec.routes_from_text(_s(routes) if routes is not None else None)
        return RouteHistory(
            mmg=_s(mmg),
            routes=codec.history_of(Route(_s(route)), history),
            caller=_s(caller) if caller is not None else "",
        )

    async def call_counters(self, mmg: str, month: str) -> dict[str, int]:
        with self._errors("call_counters"):
            raw = await cast(
                Awaitable[dict[bytes, bytes]], self._db().hgetall(self.keys.counters(mmg, month))
            )
        counters = {k.decode(): int(v) for k, v in raw.items()}
        return {k: v for k, v in counters.items() if v}

    async def purge_calls(self, before: datetime) -> int:
        """Delete call hashes and their log entries with ``at < before``, a batch at a time.

        Not one transaction (a year of calls is too big for one script) but safe to
        interrupt and to run on several replicas: each step is idempotent.
        """
        client = self._db()
        index = self.keys.calls_by_at()
        bound = f"({codec.to_us(before)}"
        purged = 0
        with self._errors("purge_calls"):
            while True:
                ids = [
                    _s(i)
                    for i in await client.zrangebyscore(
                        index, "-inf", bound, start=0, num=_PURGE_BATCH
                    )
                ]
                if not ids:
                    await self._purge_orphans()
                    await self._purge_legs(before)
                    return purged
                async with client.pipeline(transaction=False) as pipe:
                    for call_id in ids:
                        pipe.hmget(self.keys.call(call_id), ["mmg", "month", "xid"])
                    rows = await pipe.execute()
                async with client.pipeline(transaction=False) as pipe:
                    for call_id, (mmg, month, xid) in zip(ids, rows, strict=True):
                        if mmg is not None and month is not None and xid is not None:
                            pipe.xdel(self.keys.call_log(_s(mmg), _s(month)), xid)
                        pipe.delete(self.keys.call(call_id))
                        pipe.zrem(index, call_id)
                    results = await pipe.execute()
                deleted_flags = iter(results)
                for mmg, month, xid in rows:
                    if mmg is not None and month is not None and xid is not None:
                        next(deleted_flags)  # XDEL
                    purged += int(next(deleted_flags))  # DEL
                    next(deleted_flags)  # ZREM

    # ------------------------------------------------------------------- legs
    async def record_leg_events(self, events: Sequence[LegEvent]) -> list[LegChange]:
        if not events:
            return []
        client = self._db()
        pairs = list(dict.fromkeys((ev.call_id, ev.target) for ev in events))
        names = [self.keys.leg(call_id, target.value) for call_id, target in pairs]
        with self._errors("record_leg_events"):
            async with client.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(*names)
                        raw = await pipe.mget(names)
                        stored = {
                            pair: codec.leg_from_dict(json.loads(value))
                            for pair, value in zip(pairs, raw, strict=True)
                            if value is not None
                        }
                        changes, changed = codec.fold_events(stored, events)
                        pipe.multi()  # type: ignore[no-untyped-call]
                        for (call_id, target), leg in changed.items():
                            # Read back with rsplit: a target never holds "|", a call id may.
                            member = f"{call_id}|{target.value}"
                            score = codec.to_us(leg.offered_at)
                            old = stored.get((call_id, target))
                            if old is not None and old.mmg != leg.mmg:
                                pipe.zrem(self.keys.legs(old.mmg), member)
                            pipe.set(
                                self.keys.leg(call_id, target.value),
                                json.dumps(codec.leg_to_dict(leg)),
                            )
                            pipe.zadd(self.keys.legs(leg.mmg), {member: score})
                            pipe.zadd(self.keys.legs_by_at(), {member: score})
                        await pipe.execute()
                        return changes
                    except WatchError:
                        continue  # another replica folded one of these legs: read again

    async def legs(self, mmg: str, start: datetime, end: datetime) -> list[Leg]:
        client = self._db()
        with self._errors("legs"):
            members = await client.zrangebyscore(
                self.keys.legs(mmg), codec.to_us(start), f"({codec.to_us(end)}"
            )
            if not members:
                return []
            names = [self.keys.leg(*_s(m).rsplit("|", 1)) for m in members]
            raw = await client.mget(names)
        return [codec.leg_from_dict(json.loads(v)) for v in raw if v is not None]

    async def _purge_legs(self, before: datetime) -> None:
        client = self._db()
        index = self.keys.legs_by_at()
        bound = f"({codec.to_us(before)}"
        while True:
            members = [
                _s(m)
                for m in await client.zrangebyscore(index, "-inf", bound, start=0, num=_PURGE_BATCH)
            ]
            if not members:
                return
            names = [self.keys.leg(*m.rsplit("|", 1)) for m in members]
            raw = await client.mget(names)
            async with client.pipeline(transaction=False) as pipe:
                for member, name, value in zip(members, names, raw, strict=True):
                    if value is not None:
                        pipe.zrem(self.keys.legs(str(json.loads(value).get("mmg") or "")), member)
                    pipe.delete(name)
                    pipe.zrem(index, member)
                await pipe.execute()

    async def _purge_orphans(self) -> None:
        """Drop orphan updates kept longer than ORPHAN_TTL (their record never came)."""
        client = self._db()
        index = self.keys.orphans_by_at()
        bound = f"({codec.to_us(self._clock.now() - codec.ORPHAN_TTL)}"
        while ids := [
            _s(i)
            for i in await client.zrangebyscore(index, "-inf", bound, start=0, num=_PURGE_BATCH)
        ]:
            async with client.pipeline(transaction=False) as pipe:
                for call_id in ids:
                    pipe.delete(self.keys.orphan_updates(call_id))
                pipe.zrem(index, *ids)
                await pipe.execute()

    # --------------------------------------------------------- protocol versions
    async def add_protocol_version(self, version: ProtocolVersion) -> bool:
        client = self._db()
        history = self.keys.protocol_history(version.mmg)
        with self._errors("add_protocol_version"):
            newest = await client.zrevrange(history, 0, 0)
            if newest and _s(newest[0]) == version.version:
                return False
            loaded = codec.to_us(version.loaded_at)
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self.keys.protocol_version(version.mmg, version.version),
                    mapping=cast("dict[Any, Any]", _version_fields(version)),
                )
                pipe.zadd(history, {version.version: loaded})
                pipe.zadd(self.keys.protocol_versions_by_at(), {_member(version): loaded})
                await pipe.execute()
        return True

    async def protocol_history(self, mmg: str, limit: int = 100) -> list[ProtocolVersion]:
        if limit <= 0:
            return []
        client = self._db()
        with self._errors("protocol_history"):
            # ZREVRANGE: newest first, equal times in descending version order (as SQLite).
            key = self.keys.protocol_history(mmg)
            ids = [_s(v) for v in await client.zrevrange(key, 0, limit - 1)]
            async with client.pipeline(transaction=False) as pipe:
                for version in ids:
                    pipe.hgetall(self.keys.protocol_version(mmg, version))
                rows = await pipe.execute()
        return [_version_from_hash(raw) for raw in rows if raw]

    async def get_protocol_version(self, mmg: str, version: str) -> ProtocolVersion | None:
        with self._errors("get_protocol_version"):
            raw = await cast(
                Awaitable[dict[bytes, bytes]],
                self._db().hgetall(self.keys.protocol_version(mmg, version)),
            )
        return _version_from_hash(raw) if raw else None

    async def purge_protocol_versions(
        self, before: datetime, keep: Collection[tuple[str, str]]
    ) -> int:
        client = self._db()
        cutoff = codec.to_us(before)
        kept = {f"{mmg}:{version}" for mmg, version in keep}
        deleted = 0
        with self._errors("purge_protocol_versions"):
            old = [
                _s(m)
                for m in await client.zrangebyscore(
                    self.keys.protocol_versions_by_at(), "-inf", f"({cutoff}"
                )
            ]
            candidates = [m for m in old if m not in kept]
            if not candidates:
                return 0
            used = self.keys.protocol_versions_used()
            scores = await client.zmscore(used, candidates)
            for member, last_call in zip(candidates, scores, strict=True):
                if last_call is not None and last_call >= cutoff:
                    continue  # a call record within retention names it
                mmg, _, version = member.partition(":")
                async with client.pipeline(transaction=True) as pipe:
                    pipe.delete(self.keys.protocol_version(mmg, version))
                    pipe.zrem(self.keys.protocol_history(mmg), version)
                    pipe.zrem(self.keys.protocol_versions_by_at(), member)
                    pipe.zrem(used, member)
                    await pipe.execute()
                deleted += 1
        return deleted

    # ------------------------------------------------------------ replay guards
    async def record_answers(self, answers: Sequence[HookAnswer]) -> list[bool]:
        if not answers:
            return []
        with self._errors("record_answers"):
            async with self._db().pipeline(transaction=False) as pipe:
                for a in answers:
                    pipe.set(
                        self.keys.hook_answer(*a.key),
                        codec.dumps(codec.answer_to_dict(a)),
                        nx=True,
                        ex=HOOK_ANSWER_TTL_S,
                    )
                results = await pipe.execute()
        return [bool(r) for r in results]

    async def hook_answer(
        self, platform: str, call_id: str, stage: str, digits: str
    ) -> HookAnswer | None:
        with self._errors("hook_answer"):
            raw = await self._db().get(self.keys.hook_answer(platform, call_id, stage, digits))
        return codec.answer_from_dict(json.loads(raw)) if raw is not None else None

    async def claim_token_id(
        self, scope: str, token_id: str, now: float, expires_at: float
    ) -> bool:
        ttl_ms = max(int((expires_at - now) * 1000), 1)
        with self._errors("claim_token_id"):
            claimed = await self._db().set(
                self.keys.token_id(scope, token_id), b"1", nx=True, px=ttl_ms
            )
        return bool(claimed)

    # ----------------------------------------------------------------- referrals
    async def create_referral(
        self, referral: Referral, idempotency_key: str | None, fingerprint: str = ""
    ) -> tuple[Referral, bool]:
        k = self.keys
        ref_key = k.referral(referral.id)
        pending = (
            k.pending(referral.mmg, referral.callback_number or "")
            if codec.is_pending(referral)
            else ""
        )
        keys = [
            ref_key,
            k.idempotency("referral", idempotency_key) if idempotency_key is not None else ref_key,
            k.referrals(None),
            k.referrals(None, referral.status),
            k.referrals(referral.mmg),
            k.referrals(referral.mmg, referral.status),
            pending or ref_key,
            k.pending_index(),
            k.pending_seq(),
        ]
        args = [
            "1" if idempotency_key is not None else "0",
            referral.id,
            codec.referral_to_json(referral),
            referral.version,
            referral.status.value,
            referral.mmg,
            codec.to_us(referral.created_at),
            pending,
            self._idem_ttl,
            fingerprint,
            pending_member(referral.mmg, referral.callback_number or "") if pending else "",
            k.pending_changes(),
        ]
        with self._errors("create_referral"):
            created, ref_id = await self._script("create_referral", keys, args)
            if int(created) == 1:
                return referral, True
            existing = await self.get_referral(_first_id(ref_id, fingerprint))
        if existing is None:
            raise StoreError("Redis create_referral: idempotency key names a missing referral")
        return existing, False

    async def get_referral(self, referral_id: str) -> Referral | None:
        with self._errors("get_referral"):
            raw = await cast(
                Awaitable[bytes | None], self._db().hget(self.keys.referral(referral_id), "d")
            )
        return codec.referral_from_json(raw) if raw is not None else None

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
        # The indexes to merge: one per MMG in scope (or the all-MMG one) and status.
        # Each gives at most ``limit`` candidates already inside the scope, so the
        # merged page is the ``limit`` newest of the scope, never a filtered page.
        scopes: list[str | None] = (
            [mmg] if mmgs is None else list(sorted(mmgs if mmg is None else mmgs & {mmg}))
        )
        index_keys = [
            self.keys.referrals(scope, status)
            for scope in scopes
            for status in (sorted(statuses) if statuses is not None else [None])
        ]
        if not index_keys:
            return []
        client = self._db()
        with self._errors("list_referrals"):
            async with client.pipeline(transaction=False) as pipe:
                for key in index_keys:
                    if before is None:
                        pipe.zrevrange(key, 0, limit - 1, withscores=True)
                    else:
                        at_us = codec.to_us(before[0])
                        # Same instant, smaller id (all of them: ties are rare), then older.
                        pipe.zrangebyscore(key, at_us, at_us, withscores=True)
                        pipe.zrevrangebyscore(
                            key, f"({at_us}", "-inf", start=0, num=limit, withscores=True
                        )
                ranked = await pipe.execute()
            candidates = {(int(score), _s(member)) for rows in ranked for member, score in rows}
            if before is not None:
                cursor = (codec.to_us(before[0]), before[1])
                candidates = {c for c in candidates if c < cursor}
            ids = [member for _, member in sorted(candidates, reverse=True)[:limit]]
            if not ids:
                return []
            async with client.pipeline(transaction=False) as pipe:
                for ref_id in ids:
                    pipe.hget(self.keys.referral(ref_id), "d")
                docs = await pipe.execute()
        return [codec.referral_from_json(doc) for doc in docs if doc is not None]

    async def save_referral(
        self, referral: Referral, expected_version: int, visit: Visit | None = None
    ) -> bool:
        k = self.keys
        ref_key = k.referral(referral.id)
        client = self._db()
        new_pending = (
            k.pending(referral.mmg, referral.callback_number or "")
            if codec.is_pending(referral)
            else ""
        )
        pending_prefix = f"{k.prefix}:pending:"
        with self._errors("save_referral"):
            for _ in range(_CAS_ATTEMPTS):
                version, old_status_raw, old_pending_raw, mmg_raw, created = await cast(
                    Awaitable[list[bytes | None]],
                    client.hmget(ref_key, ["v", "s", "p", "m", "c"]),
                )
                if version is None or int(version) != expected_version:
                    return False
                old_status = _s(old_status_raw)
                old_pending = _s(old_pending_raw) if old_pending_raw is not None else ""
                mmg = _s(mmg_raw)
                # The member is the key's tail (P:pending:{mmg}:{digest}): no number to hash.
                old_member = old_pending.removeprefix(pending_prefix)
                keys = [
                    ref_key,
                    k.referrals(mmg, old_status),
                    k.referrals(None, old_status),
                    k.referrals(mmg, referral.status),
                    k.referrals(None, referral.status),
                    old_pending or ref_key,
                    new_pending or ref_key,
                    k.visits(visit.mmg, visit.month) if visit is not None else ref_key,
                    k.visit(visit.id) if visit is not None else ref_key,
                    k.pending_index(),
                    k.pending_seq(),
                ]
                args = [
                    expected_version,
                    old_status,
                    old_pending,
                    referral.version,
                    referral.status.value,
                    new_pending,
                    codec.referral_to_json(referral),
                    referral.id,
                    _s(created),
                    visit.id if visit is not None else "",
                    codec.visit_to_json(visit) if visit is not None else "",
                    old_member,
                    new_pending.removeprefix(pending_prefix),
                    k.pending_changes(),
                ]
                result = int(await self._script("save_referral", keys, args))
                if result != -1:
                    return result == 1
            raise StoreError("Redis save_referral: too many concurrent changes, giving up")

    # ------------------------------------------------------- pending-callers index
    async def follow_pending(
        self,
        index: PendingIndex,
        *,
        ping_s: float = REDIS_PING_S,
        resync_s: float = REDIS_RESYNC_S,
    ) -> None:
        """Keep ``index`` current until cancelled (storage/pending.py): subscribe, load,
        apply the notifications in sequence; on any trouble the index is out of sync
        and this starts again (subscribe first, so no change falls between the load and
        the first notification)."""
        wait = RETRY_FIRST_S
        while True:
            loads = index.loads
            try:
                await self._follow_pending_once(index, ping_s=ping_s, resync_s=resync_s)
            except asyncio.CancelledError:
                index.stop()
                raise
            except Exception as exc:  # any failure: out of sync, start again
                index.lose(type(exc).__name__)
                log.warning("pending_index_follow_failed", error=str(exc) or type(exc).__name__)
            if index.loads > loads:  # it worked for a while: a fresh outage
                wait = RETRY_FIRST_S
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_MAX_S)

    async def _follow_pending_once(
        self, index: PendingIndex, *, ping_s: float, resync_s: float
    ) -> None:
        loop = asyncio.get_running_loop()
        pubsub = self._db().pubsub()
        try:
            await pubsub.subscribe(self.keys.pending_changes())
            subscribed = False
            heard = loop.time()
            next_ping = heard + ping_s
            next_load = heard
            while True:
                message = await pubsub.get_message(timeout=ping_s / 4)
                now = loop.time()
                if message is not None:
                    heard = now
                    kind = message["type"]
                    if kind == "subscribe":
                        # The first confirms our subscription; a later one is redis-py
                        # re-subscribing after a reconnect: notifications were lost.
                        if subscribed:
                            index.lose("resubscribed")
                        subscribed = True
                        next_load = now
                    elif kind == "message" and not _apply_change(index, message["data"]):
                        next_load = now  # a gap: reload at once
                    if index.in_sync:
                        index.alive()
                if now - heard > 3 * ping_s:
                    raise StoreError("Redis pending-changes subscription: no reply to PING")
                if subscribed and now >= next_load:
                    await self.load_pending(index)
                    next_load = loop.time() + resync_s
                if now >= next_ping:
                    await pubsub.ping()
                    next_ping = now + ping_s
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def load_pending(self, index: PendingIndex) -> None:
        """Load ``index`` from ``P:pending_index`` (building it first if needed)."""
        k = self.keys
        keys = [k.pending_index(), k.pending_seq(), k.pending_index_built()]
        with self._errors("pending_snapshot"):
            result = await self._script("pending_snapshot", keys, [])
            if int(result[0]) == -1:
                await self._build_pending_index()
                result = await self._script("pending_snapshot", keys, [])
        if int(result[0]) == -1:
            raise StoreError("Redis pending index: not built")
        index.load((_s(m) for m in result[1]), int(result[0]))

    async def _build_pending_index(self) -> None:
        """Add the pending sets written before ``P:pending_index`` existed (one SCAN,
        once per prefix; several replicas doing it at once only repeat the work)."""
        client = self._db()
        head = f"{self.keys.prefix}:pending:"
        batch: list[str] = []

        async def flush() -> None:
            if batch:
                members = [key.removeprefix(head) for key in batch]
                await self._script("pending_backfill", [*batch, self.keys.pending_index()], members)
                batch.clear()

        async for key in client.scan_iter(match=f"{head}*", count=1000):
            batch.append(_s(key))
            if len(batch) >= 500:
                await flush()
        await flush()
        await client.set(self.keys.pending_index_built(), "1")
        log.info("pending_index_built")

    async def has_pending_referral(self, mmg: str, caller: str) -> bool:
        # On the hot path of every incoming call while the MMG is open. Look-ups made
        # in the same event-loop turn (concurrent webhooks) share one round trip: one
        # EXISTS alone, several in one read-only script — far less client CPU per call.
        self.pending_lookups += 1
        loop = asyncio.get_running_loop()
        found: asyncio.Future[bool] = loop.create_future()
        if not self._lookups:
            loop.call_soon(self._send_lookups)
        self._lookups.append((self.keys.pending(mmg, caller), found))
        with self._errors("has_pending_referral"):
            return await found

    def _send_lookups(self) -> None:
        batch, self._lookups = self._lookups, []
        task = asyncio.get_running_loop().create_task(self._run_lookups(batch))
        self._lookup_tasks.add(task)  # keep a reference until it is done
        task.add_done_callback(self._lookup_tasks.discard)

    async def _run_lookups(self, batch: list[tuple[str, asyncio.Future[bool]]]) -> None:
        try:
            if len(batch) == 1:
                flags = [await self._db().exists(batch[0][0])]
            else:
                flags = await self._script("exists_each", [key for key, _ in batch], [])
        except asyncio.CancelledError:
            for _, waiter in batch:
                waiter.cancel()
            raise
        except Exception as exc:  # each waiter raises it (StoreError via _errors)
            for _, waiter in batch:
                if not waiter.done():  # a caller that timed out is gone
                    waiter.set_exception(exc)
            return
        for (_, waiter), flag in zip(batch, flags, strict=True):
            if not waiter.done():
                waiter.set_result(int(flag) > 0)

    # -------------------------------------------------------------------- visits
    async def add_visit(
        self, visit: Visit, idempotency_key: str | None, fingerprint: str = ""
    ) -> tuple[Visit, bool]:
        k = self.keys
        loc = k.visit(visit.id)
        keys = [
            loc,
            k.idempotency("visit", idempotency_key) if idempotency_key is not None else loc,
            k.visits(visit.mmg, visit.month),
        ]
        args = [
            "1" if idempotency_key is not None else "0",
            visit.id,
            codec.visit_to_json(visit),
            self._idem_ttl,
            fingerprint,
        ]
        with self._errors("add_visit"):
            created, visit_id = await self._script("add_visit", keys, args)
            if int(created) == 1:
                return visit, True
            existing = await self._get_visit(_first_id(visit_id, fingerprint))
        if existing is None:
            raise StoreError("Redis add_visit: idempotency key names a missing visit")
        return existing, False

    async def _get_visit(self, visit_id: str) -> Visit | None:
        client = self._db()
        where = await cast(Awaitable[bytes | None], client.get(self.keys.visit(visit_id)))
        if where is None:
            return None
        raw = await cast(Awaitable[bytes | None], client.hget(_s(where), visit_id))
        return codec.visit_from_json(raw) if raw is not None else None

    async def visits(self, mmg: str, month: str) -> list[Visit]:
        with self._errors("visits"):
            raw = await cast(Awaitable[list[bytes]], self._db().hvals(self.keys.visits(mmg, month)))
        found = [codec.visit_from_json(doc) for doc in raw]
        found.sort(key=lambda v: (v.at, v.id))
        return found


__all__ = ["IDEMPOTENCY_TTL_S", "RedisStore", "SentinelUrl", "parse_sentinel_url"]
