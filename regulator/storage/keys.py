"""Every Redis key name the service uses, in one place, under one prefix.

Several deployments (or test runs) can share one Redis by choosing different
prefixes, like arq's ``arq:`` keys. For Redis Cluster, choose a prefix with a hash
tag, e.g. ``{regulator}``: every key then lands in one hash slot, so the
multi-key Lua scripts (a call record and its counters, a referral and its indexes)
stay atomic. The data set (calls of a few hundred MMGs) fits one shard; Cluster is
then used for failover, not for spreading keys.

Layout (``P`` is the prefix; types in brackets):

- ``P:call:{call_id}`` [hash] one call record (fields of :class:`CallRecord`, ``xid`` =
  its entry in the month's log, ``routes`` = its route history ``direct_access,regulation``,
  read by ``route_history`` on a failed dial); its existence makes ``record_calls``
  idempotent.
- ``P:calls:{mmg}:{month}`` [stream] the call log of one MMG and month (``call_id``, ``at``).
- ``P:calls:by_at`` [sorted set] call ids scored by call time (µs): the retention index.
- ``P:counters:{mmg}:{month}`` [hash] counter key → int (see ``indicators.call_counter_deltas``).
- ``P:orphan:{call_id}`` [list] update JSONs that reached Redis before the call's record
  (another replica's writer had not stored it yet), oldest first, at most
  ``codec.ORPHAN_LIMIT``: ``record_calls`` applies them to the record and deletes the
  list, so no route change, status or duration is lost to a race between replicas.
- ``P:orphans:by_at`` [sorted set] call ids with orphan updates, scored by when the first
  arrived (µs): the daily purge drops those older than ``codec.ORPHAN_TTL``, so junk
  call ids can't grow Redis without limit (each list also expires after twice that).
- ``P:referral:{id}`` [hash] ``v`` version, ``s`` status, ``p`` pending-set key or "",
  ``d`` the referral JSON.
- ``P:referrals:{mmg|*}`` and ``P:referrals:{mmg|*}:{status}`` [sorted sets] referral ids
  by creation time (µs), for newest-first listings with or without a status filter.
- ``P:pending:{mmg}:{caller}`` [set] ids of pending/acknowledged referrals calling back
  from ``caller`` (E.164): ``has_pending_referral`` is one ``EXISTS`` on the hot path.
- ``P:pending_index`` [set] ``{mmg}:{digest}`` of every non-empty ``P:pending`` set,
  kept by the same referral scripts: each replica's in-memory index of pending callers
  (:mod:`regulator.storage.pending`) loads it in one atomic read with ``P:pending_seq``,
  where a ``SCAN`` of the pending sets would be neither atomic nor cheap beside millions
  of call keys.
- ``P:pending_seq`` [string] counter bumped by every script that changes a pending set:
  the order of the notifications, so a replica that misses one (a reconnect) sees the
  gap and reloads, and one that just loaded knows which notifications it already has.
- ``P:pending_changes`` [pub/sub channel] ``{seq} {1|0} {mmg}:{digest}`` published by
  the same script as the change (one script: a change and its notification can't
  diverge); ``1`` = the caller is now pending for the MMG, ``0`` = no longer.
- ``P:pending_index_built`` [string] set once ``P:pending_index`` holds every pending set
  (sets written before the index existed are added by one ``SCAN``, once); while it is
  absent no replica trusts the index.
- ``P:idem:{scope}:{key}`` [string] the id created with an ``Idempotency-Key``.
- ``P:visits:{mmg}:{month}`` [hash] visit id → visit JSON.
- ``P:visit:{id}`` [string] the ``visits`` hash that holds the visit (so an upsert that
  changes its month moves it).
- ``P:protocol:{mmg}:{version}`` [hash] one protocol version (fields of
  :class:`regulator.core.history.ProtocolVersion`, ``summary`` as a JSON list): kept in
  Redis, not on each replica's disk, so every replica shows the same history and
  ``regulator explain`` finds the document whichever replica decided the call.
- ``P:protocols:{mmg}`` [sorted set] version ids by when they came into force (µs): the
  newest-first history, and "is it already the newest" for an idempotent record.
- ``P:protocols_by_at`` [sorted set] ``mmg:version`` by when it came into force (µs):
  the purge's index over every MMG.
- ``P:protocols_used`` [sorted set] ``mmg:version`` by the newest call time (µs) of a
  record naming it (``ZADD GT`` before the record is written): a version whose score is
  before the retention cutoff is named by no call record left once calls are purged.
- ``P:leg:{call_id}:{target}`` [string] one dial leg (``core.legs.Leg``) as JSON, folded
  under WATCH (optimistic: two replicas folding events of one leg both count).
- ``P:legs:{mmg}`` [sorted set] ``call_id|target`` by offered time (µs; split on the
  last ``|``: a call id may hold one, a target never): the report's
  and the consoles' range read. ``P:legs_by_at`` [sorted set] the same over every MMG:
  the purge's index.
- ``P:answer:{sha256(platform, call_id, stage, digits)}`` [string] the first answer of a
  later-stage webhook (``HookAnswer`` JSON), ``SET NX`` with a TTL of
  ``HOOK_ANSWER_TTL_S``: what a replayed webhook gets back on any replica.
- ``P:jti:{scope}:{sha256(jti)}`` [string] a signed token's id, ``SET NX`` until the
  token expires: a replayed Vonage JWT is refused on every replica.
- ``P:figures:{mmg}:{kind}:{period}`` [string] the current entered figures (``core.figures``:
  ED passages of a month, costs of a year) as JSON, with who entered them and when.
- ``P:figures_history:{mmg}:{kind}:{period}`` [list] every revision of those, oldest first
  (the audit: the previous value of an entry is the revision before it).
- ``P:session:{key}`` [string] one console session (``core.sessions.ConsoleSession``) as
  JSON; ``key`` is the SHA-256 of the cookie's id, never the id. Its TTL is the time
  left before the idle or absolute timeout, renewed when a use is written back.
- ``P:sessions_of:{token_name}`` [set] the session keys opened with one API token, so
  removing the token from the tokens file can delete them (the web layer already
  refuses them, by fingerprint); it expires with the newest session's absolute timeout.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from regulator.core.models import ReferralStatus

#: Stand-in for "every MMG" in the referral index keys (MMG ids are slugs, never "*").
ALL_MMGS = "*"


def caller_digest(caller: str) -> str:
    """What stands for a caller's number in key names and in memory (SHA-256, 128 bits)."""
    return hashlib.sha256(caller.encode()).hexdigest()[:32]


def pending_member(mmg: str, caller: str) -> str:
    """``{mmg}:{digest}``: a pending caller in ``P:pending:…``, ``P:pending_index`` and
    the in-memory index (the same string everywhere, so a snapshot needs no parsing)."""
    return f"{mmg}:{caller_digest(caller)}"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one prefix (no trailing colon)."""

    prefix: str = "regulator"

    def call(self, call_id: str) -> str:
        return f"{self.prefix}:call:{call_id}"

    def call_log(self, mmg: str, month: str) -> str:
        return f"{self.prefix}:calls:{mmg}:{month}"

    def calls_by_at(self) -> str:
        return f"{self.prefix}:calls:by_at"

    def counters(self, mmg: str, month: str) -> str:
        return f"{self.prefix}:counters:{mmg}:{month}"

    def orphan_updates(self, call_id: str) -> str:
        return f"{self.prefix}:orphan:{call_id}"

    def orphans_by_at(self) -> str:
        return f"{self.prefix}:orphans:by_at"

    def referral(self, referral_id: str) -> str:
        return f"{self.prefix}:referral:{referral_id}"

    def referrals(self, mmg: str | None = None, status: ReferralStatus | str | None = None) -> str:
        scope = mmg if mmg is not None else ALL_MMGS
        if status is None:
            return f"{self.prefix}:referrals:{scope}"
        return f"{self.prefix}:referrals:{scope}:{status}"

    def pending(self, mmg: str, caller: str) -> str:
        # Hashed: phone numbers must not show up in key scans, MONITOR or memory reports.
        return f"{self.prefix}:pending:{pending_member(mmg, caller)}"

    def pending_index(self) -> str:
        # An underscore, never in "pending:": no clash with pending(mmg, caller).
        return f"{self.prefix}:pending_index"

    def pending_seq(self) -> str:
        return f"{self.prefix}:pending_seq"

    def pending_changes(self) -> str:
        """The pub/sub channel of pending-caller changes (a channel, not a key)."""
        return f"{self.prefix}:pending_changes"

    def pending_index_built(self) -> str:
        return f"{self.prefix}:pending_index_built"

    def idempotency(self, scope: str, key: str) -> str:
        return f"{self.prefix}:idem:{scope}:{key}"

    def visits(self, mmg: str, month: str) -> str:
        return f"{self.prefix}:visits:{mmg}:{month}"

    def visit(self, visit_id: str) -> str:
        return f"{self.prefix}:visit:{visit_id}"

    def protocol_version(self, mmg: str, version: str) -> str:
        return f"{self.prefix}:protocol:{mmg}:{version}"

    def protocol_history(self, mmg: str) -> str:
        return f"{self.prefix}:protocols:{mmg}"

    def protocol_versions_by_at(self) -> str:
        # An underscore, never in an MMG id (a slug): no clash with protocol_history.
        return f"{self.prefix}:protocols_by_at"

    def protocol_versions_used(self) -> str:
        return f"{self.prefix}:protocols_used"

    def leg(self, call_id: str, target: str) -> str:
        return f"{self.prefix}:leg:{call_id}:{target}"

    def legs(self, mmg: str) -> str:
        return f"{self.prefix}:legs:{mmg}"

    def legs_by_at(self) -> str:
        # An underscore, never in an MMG id (a slug): no clash with legs(mmg).
        return f"{self.prefix}:legs_by_at"

    def hook_answer(self, platform: str, call_id: str, stage: str, digits: str) -> str:
        # Hashed: a call id may hold ":" (SIP Call-IDs), the parts stay unambiguous.
        digest = hashlib.sha256("\x1f".join((platform, call_id, stage, digits)).encode())
        return f"{self.prefix}:answer:{digest.hexdigest()}"

    def token_id(self, scope: str, token_id: str) -> str:
        digest = hashlib.sha256(token_id.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.prefix}:jti:{scope}:{digest}"

    def figures(self, mmg: str, kind: str, period: str) -> str:
        return f"{self.prefix}:figures:{mmg}:{kind}:{period}"

    def figures_history(self, mmg: str, kind: str, period: str) -> str:
        return f"{self.prefix}:figures_history:{mmg}:{kind}:{period}"

    def session(self, key: str) -> str:
        return f"{self.prefix}:session:{key}"

    def sessions_of(self, token_name: str) -> str:
        # An underscore, never in "session:": no clash with session(key).
        return f"{self.prefix}:sessions_of:{token_name}"

    def pattern(self) -> str:
        """``SCAN`` pattern matching every key of this prefix (tests, maintenance)."""
        return f"{self.prefix}:*"


__all__ = ["ALL_MMGS", "Keys", "caller_digest", "pending_member"]
