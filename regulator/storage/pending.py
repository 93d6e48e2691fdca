"""Pending callers in memory: the webhook path's referral look-up without a round trip.

Every first webhook of a call asks "has this caller a pending (or acknowledged)
referral to this MMG?" (``pending_referral`` in the decision). Each replica keeps the
answer for every caller in a :class:`PendingIndex`: a set of ``{mmg}:{digest}``
strings (:func:`regulator.storage.keys.pending_member`, the SHA-256 of the number as in
the Redis key names: no phone number is held in memory beyond what the store holds).

Kept current from the store (``follow_pending`` of each store):

- Redis: the referral scripts that change a pending set also keep ``P:pending_index``
  (the set of pending members), bump ``P:pending_seq`` and ``PUBLISH`` the change on
  ``P:pending_changes`` — in the same script, so a change and its notification never
  diverge. A replica subscribes, then loads the index and the sequence number in one
  atomic read; it applies notifications in sequence order, and a gap (a message lost to
  a reconnect), a re-subscription, a dead connection (no reply to a PING within
  :data:`STALE_AFTER_S`) or a failed load makes it *not in sync* until the next load
  succeeds. It also reloads every :data:`REDIS_RESYNC_S`.
- SQLite: the store updates the index in process after each committed referral change,
  and reloads it every :data:`SQLITE_RESYNC_S` for changes another process made to the
  same file (another ``serve`` worker, a maintenance command).

While the index is not in sync (start-up before the first load, a disconnect until the
reload completes, a failed reload) the call path asks the store as before.

The safety rule — a stale index may only ever send a caller to regulation, never to
the front desk wrongly — is kept by how the answer is used, not by timing:

- "not pending" from an index in sync is the answer (no round trip: nearly every call).
  If it is stale because a *creation* has not reached this replica yet, the caller goes
  to regulation: the safe side, within the propagation delay (p99 ≤ 50 ms, see
  ``benchmarks/propagation.py``).
- "pending" is only a reason to ask the store, which decides (one round trip, for the
  few callers who do hold a referral). A cancellation, a no-show or an arrival on
  another replica (or its lost notification) therefore never grants direct access on
  this one, not even for a millisecond.

A rolling upgrade from a version without the index: old replicas change pending sets
without notifying or keeping ``P:pending_index``. Their creations are missed by the
new replicas' indexes (callers go to regulation: safe) until ``DEL
P:pending_index_built`` makes the next load rebuild the index from the pending sets;
their removals are caught by the confirmation anyway.

The other way — making removals reach every replica before the change is acknowledged —
was rejected: it needs a membership of live replicas, acknowledgements and leases whose
safety rests on clocks and on a hung replica noticing its own lease ran out; a replica
that is slow, partitioned or mid-GC would block cancellations, or be trusted wrongly.
The confirmation costs the direct-access calls their one round trip of today, and
nothing else.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, runtime_checkable

from regulator.logs import get_logger
from regulator.storage.keys import pending_member

log = get_logger(__name__)

#: Redis: a PING on the subscription this often; the index is out of sync when nothing
#: (a message or the PING's reply) came back for STALE_AFTER_S.
REDIS_PING_S = 1.0
STALE_AFTER_S = 3.0
#: Redis: a full reload this often, whatever the notifications say (a backstop).
REDIS_RESYNC_S = 60.0
#: SQLite: a full reload this often (changes of other processes on the same file).
SQLITE_RESYNC_S = 1.0
#: After a failed load or a lost subscription: first wait before trying again, and the
#: longest (doubling in between).
RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


class PendingIndex:
    """One replica's set of pending callers, and whether it may be trusted.

    ``lookup`` is the call path's question; ``load``, ``apply`` and ``lose`` are the
    follower's (the store's ``follow_pending``). Single-threaded: every method runs on
    the event loop.
    """

    def __init__(
        self,
        *,
        stale_after_s: float = STALE_AFTER_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._members: set[str] = set()
        self._seq = 0
        self._synced = False
        self._stale_after_s = stale_after_s
        self._fresh_until = 0.0
        self._monotonic = monotonic
        #: Bumped by every change applied: a reload that started before one is stale.
        self.generation = 0
        #: How many loads completed (tests and the benchmark wait on it).
        self.loads = 0

    # -------------------------------------------------------------- the call path
    @property
    def in_sync(self) -> bool:
        """Loaded, and the follower heard from the store within ``stale_after_s``."""
        return self._synced and self._monotonic() < self._fresh_until

    def lookup(self, mmg: str, caller: str) -> bool | None:
        """``False``: in sync and ``caller`` is not pending for ``mmg`` (the answer).
        ``True``: the index lists the caller (ask the store: it may have changed).
        ``None``: not in sync (ask the store)."""
        if not self.in_sync:
            return None
        return pending_member(mmg, caller) in self._members

    async def answer(
        self, mmg: str, caller: str, ask: Callable[[str, str], Awaitable[bool]]
    ) -> bool:
        """Whether ``caller`` has a pending referral to ``mmg``: ``False`` from the index
        when it is in sync and lacks the caller, else whatever ``ask`` (the store's
        ``has_pending_referral``) says — so "pending" always comes from the store."""
        if self.lookup(mmg, caller) is False:
            return False
        return await ask(mmg, caller)

    def __len__(self) -> int:
        return len(self._members)

    # ------------------------------------------------------------- the follower
    @property
    def seq(self) -> int:
        """The sequence number of the last change applied (Redis; 0 on SQLite)."""
        return self._seq

    def alive(self) -> None:
        """The store answered the follower just now: the index stays trusted a while."""
        self._fresh_until = self._monotonic() + self._stale_after_s

    def load(self, members: Iterable[str], seq: int = 0) -> None:
        """Replace the index by a full read of the store, made at sequence ``seq``."""
        self._members = set(members)
        self._seq = seq
        self.generation += 1
        self.loads += 1
        if not self._synced:
            log.info("pending_index_in_sync", callers=len(self._members))
        self._synced = True
        self.alive()

    def apply(self, member: str, present: bool, seq: int | None = None) -> bool:
        """One change: ``member`` is now pending (``present``) or not.

        ``seq`` (Redis): changes at or before the last load are skipped; one that is
        not the next in sequence is a gap — nothing is applied, the index is no longer
        in sync and ``False`` says "reload". Out of sync, changes are dropped (the next
        load has them)."""
        if not self._synced:
            return True
        if seq is not None:
            if seq <= self._seq:
                return True
            if seq != self._seq + 1:
                self.lose("gap")
                return False
            self._seq = seq
        if present:
            self._members.add(member)
        else:
            self._members.discard(member)
        self.generation += 1
        return True

    def stop(self) -> None:
        """The follower stopped (shutdown): untrusted from now on, without a warning."""
        self._synced = False

    def lose(self, reason: str) -> None:
        """Stop trusting the index until the next successful load."""
        if self._synced:
            log.warning("pending_index_out_of_sync", reason=reason)
        self._synced = False


@runtime_checkable
class PendingSource(Protocol):
    """A store that can keep a :class:`PendingIndex` current (both stores can)."""

    async def follow_pending(self, index: PendingIndex) -> None:
        """Keep ``index`` current until cancelled; never returns otherwise."""
        ...


__all__ = [
    "REDIS_PING_S",
    "REDIS_RESYNC_S",
    "SQLITE_RESYNC_S",
    "STALE_AFTER_S",
    "PendingIndex",
    "PendingSource",
]
