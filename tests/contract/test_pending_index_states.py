"""The pending-callers index under any order of changes, deliveries and losses.

Two replicas, A and B, on one real Redis prefix (and, for SQLite, two stores on one
file). Referrals are created, acknowledged, cancelled, closed by the no-show sweeper or
by an arrival, on either replica; each replica's notifications are delivered late,
dropped, or not at all; either replica may reload. After every step:

- safety: the answer the call path uses (``PendingIndex.answer`` over the replica's own
  store look-up) says "pending" only when the store says so — the index alone never
  grants direct access;
- accuracy: a replica whose index is in sync and has applied every change since its
  last load (Redis: its sequence is the store's; SQLite: no change made by the other
  process since) agrees with the store exactly, so it spares the store the look-up for
  every caller without a referral.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from regulator.core.models import Referral, ReferralStatus
from regulator.core.referrals import OPEN_STATUSES
from regulator.storage.pending import PendingIndex
from regulator.storage.redis import RedisStore
from regulator.storage.sqlite import SqliteStore
from tests.support.store import advance, referral

S = ReferralStatus
MMGS = ("nimes", "ales")
CALLERS = ("+33611223344", "+33622334455", "+33633445566")
CLOSING = (S.CANCELLED, S.NO_SHOW, S.ARRIVED)
REPLICAS = st.sampled_from((0, 1))
#: The index is trusted for ever here: freshness is tested elsewhere, losses are steps.
FOREVER_S = 1e9

RUN = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@dataclass
class Replica:
    store: RedisStore | SqliteStore
    index: PendingIndex = field(default_factory=lambda: PendingIndex(stale_after_s=FOREVER_S))
    pubsub: PubSub | None = None
    read_seq: int = 0  # Redis: the last notification taken off the subscription
    foreign_changes: int = 0  # SQLite: changes by the other store since the last load


class PendingMachine(RuleBasedStateMachine):
    """Shared rules; the subclasses set up the stores and how notifications travel."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.replicas: list[Replica] = []
        self.referrals: dict[str, Referral] = {}

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def teardown(self) -> None:
        self.run(self.close())
        self.loop.close()

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.store.close()

    def changed_on(self, side: int) -> None:
        """A change was made through replica ``side``'s store."""

    # ------------------------------------------------------------------ changes
    @rule(side=REPLICAS, mmg=st.sampled_from(MMGS), caller=st.sampled_from(CALLERS))
    def create(self, side: int, mmg: str, caller: str) -> None:
        ref = referral(uuid.uuid4().hex[:8], mmg=mmg, callback_number=caller)
        self.run(self.replicas[side].store.create_referral(ref, None))
        self.referrals[ref.id] = ref
        self.changed_on(side)

    def _move(self, side: int, pick: int, status: S) -> None:
        open_refs = sorted(r for r, ref in self.referrals.items() if ref.status in OPEN_STATUSES)
        if not open_refs:
            return
        ref = self.referrals[open_refs[pick % len(open_refs)]]
        if status is S.ACKNOWLEDGED and ref.status is not S.PENDING:
            return
        moved = advance(ref, status)
        assert self.run(self.replicas[side].store.save_referral(moved, ref.version))
        self.referrals[ref.id] = moved
        self.changed_on(side)

    @rule(side=REPLICAS, pick=st.integers(0, 20))
    def acknowledge(self, side: int, pick: int) -> None:
        self._move(side, pick, S.ACKNOWLEDGED)

    @rule(side=REPLICAS, pick=st.integers(0, 20), status=st.sampled_from(CLOSING))
    def close_referral(self, side: int, pick: int, status: S) -> None:
        """Cancelled by the regulator, expired by the no-show sweeper, or arrived."""
        self._move(side, pick, status)

    # --------------------------------------------------------------- invariants
    def truth(self, mmg: str, caller: str) -> bool:
        return any(
            ref.mmg == mmg and ref.callback_number == caller and ref.status in OPEN_STATUSES
            for ref in self.referrals.values()
        )

    def caught_up(self, replica: Replica) -> bool:
        raise NotImplementedError

    @invariant()
    def never_pending_unless_the_store_says_so(self) -> None:
        for replica in self.replicas:
            for mmg in MMGS:
                for caller in CALLERS:
                    truth = self.truth(mmg, caller)
                    answer = self.run(
                        replica.index.answer(mmg, caller, replica.store.has_pending_referral)
                    )
                    assert truth or not answer, (mmg, caller)  # never pending wrongly
                    if self.caught_up(replica):
                        assert replica.index.lookup(mmg, caller) is truth, (mmg, caller)


class RedisMachine(PendingMachine):
    url = ""

    def __init__(self) -> None:
        super().__init__()
        self.prefix = f"regtest:{uuid.uuid4().hex[:12]}"
        self.client = Redis.from_url(self.url)
        self.run(self.start())

    async def start(self) -> None:
        for _ in range(2):
            store = RedisStore(self.url, prefix=self.prefix)
            await store.open()
            replica = Replica(store)
            # Subscribed before the load, as follow_pending does.
            replica.pubsub = store._db().pubsub()
            await replica.pubsub.subscribe(store.keys.pending_changes())
            await self.next_message(replica, "subscribe")
            await store.load_pending(replica.index)
            replica.read_seq = replica.index.seq
            self.replicas.append(replica)

    async def close(self) -> None:
        keys = [key async for key in self.client.scan_iter(match=f"{self.prefix}:*")]
        if keys:
            await self.client.delete(*keys)
        await self.client.aclose()
        for replica in self.replicas:
            if replica.pubsub is not None:
                await replica.pubsub.aclose()  # type: ignore[no-untyped-call]
        await super().close()

    @staticmethod
    async def next_message(replica: Replica, kind: str = "message") -> Any:
        assert replica.pubsub is not None
        for _ in range(100):
            message = await replica.pubsub.get_message(timeout=0.1)
            if message is not None and message["type"] == kind:
                return message
        raise AssertionError(f"no {kind} on the subscription")

    def published(self) -> int:
        raw = self.run(self.client.get(f"{self.prefix}:pending_seq"))
        return int(raw or 0)

    def caught_up(self, replica: Replica) -> bool:
        return replica.index.in_sync and replica.index.seq == self.published()

    def _take(self, side: int, apply: bool) -> None:
        replica = self.replicas[side]
        if replica.read_seq >= self.published():
            return
        message = self.run(self.next_message(replica))
        seq, present, member = message["data"].decode().split(" ", 2)
        replica.read_seq = int(seq)
        if apply:
            replica.index.apply(member, present == "1", int(seq))

    @rule(side=REPLICAS)
    def deliver(self, side: int) -> None:
        self._take(side, apply=True)

    @rule(side=REPLICAS)
    def drop(self, side: int) -> None:
        self._take(side, apply=False)

    @rule(side=REPLICAS)
    def reload(self, side: int) -> None:
        self.run(self.replicas[side].store.load_pending(self.replicas[side].index))


class SqliteMachine(PendingMachine):
    path = Path()

    def __init__(self) -> None:
        super().__init__()
        self.file = self.path / f"{uuid.uuid4().hex[:8]}.sqlite3"
        self.run(self.start())

    async def start(self) -> None:
        for _ in range(2):
            store = SqliteStore(self.file)
            await store.open()
            replica = Replica(store)
            store.track_pending(replica.index)  # its own changes, as they commit
            await store.load_pending(replica.index)
            self.replicas.append(replica)

    def changed_on(self, side: int) -> None:
        self.replicas[1 - side].foreign_changes += 1

    def caught_up(self, replica: Replica) -> bool:
        return replica.index.in_sync and replica.foreign_changes == 0

    @rule(side=REPLICAS)
    def reload(self, side: int) -> None:
        replica = self.replicas[side]
        self.run(replica.store.load_pending(replica.index))
        replica.foreign_changes = 0


def test_redis_index_is_never_what_says_pending(redis_url: str) -> None:
    RedisMachine.url = redis_url
    run_state_machine_as_test(RedisMachine, settings=RUN)


def test_sqlite_index_is_never_what_says_pending(tmp_path: Path) -> None:
    SqliteMachine.path = tmp_path
    run_state_machine_as_test(SqliteMachine, settings=RUN)
