"""Console sessions in both stores (real SQLite, real Redis): created on one replica,
honoured and ended on the other; idle and absolute timeouts; only hashes stored."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from regulator.core.sessions import TOUCH_EVERY, ConsoleSession, session_key
from regulator.ports import Store
from tests.support.store import T0

IDLE = timedelta(minutes=30)
MAX_AGE = timedelta(hours=12)


def new_session(
    name: str = "accueil-nimes", *, created: datetime = T0
) -> tuple[str, ConsoleSession]:
    session_id = secrets.token_urlsafe(32)
    session = ConsoleSession(
        key=session_key(session_id),
        token_name=name,
        token_fingerprint="f" * 32,
        created_at=created,
        seen_at=created,
        idle=IDLE,
        max_age=MAX_AGE,
    )
    return session_id, session


async def test_a_session_created_on_one_replica_is_honoured_and_ended_on_the_other(
    store: Store, replica: Store
) -> None:
    session_id, session = new_session()
    await store.create_session(session)
    seen = await replica.get_session(session_key(session_id), T0 + timedelta(minutes=5))
    assert seen is not None
    assert seen.token_name == "accueil-nimes"
    assert seen.seen_at == T0 + timedelta(minutes=5)  # touched: the idle clock restarts
    assert await replica.delete_session(session.key) is True
    gone = await store.get_session(session.key, T0 + timedelta(minutes=6))
    print(f"{store.name}: created on one replica, read on the other, deleted: then {gone}")
    assert gone is None
    assert await store.delete_session(session.key) is False


async def test_idle_and_absolute_timeouts(store: Store) -> None:
    _, idle = new_session()
    await store.create_session(idle)
    assert await store.get_session(idle.key, T0 + IDLE - timedelta(seconds=1)) is not None
    # Touched at T0 + IDLE - 1 s: alive until twice the idle timeout, not after.
    assert await store.get_session(idle.key, T0 + 2 * IDLE - timedelta(seconds=2)) is not None
    late = await store.get_session(idle.key, T0 + 4 * IDLE)
    _, busy = new_session()
    await store.create_session(busy)
    at, alive_until = T0, T0
    while at < T0 + MAX_AGE + timedelta(hours=1):
        at += timedelta(minutes=10)
        if await store.get_session(busy.key, at) is not None:
            alive_until = at
    print(f"{store.name}: idle 2 h → {late}; used every 10 min: alive until +{alive_until - T0}")
    assert late is None
    assert MAX_AGE - timedelta(minutes=10) <= alive_until - T0 < MAX_AGE


async def test_reads_without_touch_and_recent_uses_write_nothing(store: Store) -> None:
    _, session = new_session()
    await store.create_session(session)
    at = T0 + TOUCH_EVERY / 2
    assert (await store.get_session(session.key, at)) == session  # too recent to write
    later = T0 + TOUCH_EVERY * 5
    peek = await store.get_session(session.key, later, touch=False)
    assert peek == session
    assert (await store.get_session(session.key, later)) == session.touched(later)


async def test_deleting_a_tokens_sessions_leaves_the_others(store: Store, replica: Store) -> None:
    mine = [new_session("accueil-nimes")[1] for _ in range(3)]
    other = new_session("samu30")[1]
    for session in (*mine, other):
        await store.create_session(session)
    deleted = await replica.delete_sessions_of("accueil-nimes")
    left = [await store.get_session(s.key, T0, touch=False) for s in mine]
    print(f"{store.name}: deleted {deleted} sessions of accueil-nimes; left {left}")
    assert deleted == 3
    assert left == [None, None, None]
    assert await store.get_session(other.key, T0, touch=False) == other
    assert await store.delete_sessions_of("accueil-nimes") == 0


async def test_the_store_holds_only_the_hash_of_a_session_id(store: Store) -> None:
    session_id, session = new_session()
    await store.create_session(session)
    assert await store.get_session(session_id, T0) is None  # the id itself is no key
    assert session.key == session_key(session_id) != session_id
    assert session_id not in str(session.to_dict())
