"""Pending-referral look-ups made concurrently (many webhooks at once) each get their
own answer — the Redis store coalesces them into one round trip."""

from __future__ import annotations

import asyncio

from regulator.ports import Store
from tests.support.store import CALLER, MMG, OTHER_MMG, referral


async def test_concurrent_lookups_each_get_their_own_answer(store: Store) -> None:
    await store.create_referral(referral("R1"), None)
    await store.create_referral(referral("R2", callback_number="+33622334455"), None)
    asks = [
        (MMG, CALLER, True),
        (MMG, "+33600000000", False),
        (OTHER_MMG, CALLER, False),
        (MMG, "+33622334455", True),
    ] * 10
    answers = await asyncio.gather(*(store.has_pending_referral(m, c) for m, c, _ in asks))
    assert answers == [expected for _, _, expected in asks]


async def test_a_lookup_given_up_by_its_caller_does_not_disturb_the_others(store: Store) -> None:
    await store.create_referral(referral("R1"), None)
    abandoned = asyncio.ensure_future(store.has_pending_referral(MMG, CALLER))
    kept = asyncio.ensure_future(store.has_pending_referral(MMG, CALLER))
    await asyncio.sleep(0)
    abandoned.cancel()
    assert await kept
    assert abandoned.cancelled()
    assert await store.has_pending_referral(MMG, CALLER)
