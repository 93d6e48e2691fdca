"""Referral listings filter by scope before the limit, and page over every referral."""

from __future__ import annotations

from datetime import timedelta

from regulator.core.models import ReferralStatus
from regulator.ports import Store
from tests.support.store import MMG, T0, advance, referral

METZ = "metz"
OPEN = frozenset({ReferralStatus.PENDING, ReferralStatus.ACKNOWLEDGED})


async def test_a_scoped_listing_is_filtered_before_its_limit(store: Store) -> None:
    await store.create_referral(referral("N1", mmg=MMG, created_at=T0), None)
    for i in range(100):
        newer = T0 + timedelta(minutes=i + 1)
        await store.create_referral(referral(f"M{i:03}", mmg=METZ, created_at=newer), None)
    scoped = await store.list_referrals(mmgs=frozenset({MMG}), limit=50)
    scoped_open = await store.list_referrals(mmgs=frozenset({MMG}), statuses=OPEN, limit=50)
    print(
        f"1 {MMG} referral + 100 newer {METZ} referrals, listing limited to {MMG}, limit 50: "
        f"count={len(scoped)}, with open statuses: count={len(scoped_open)}"
    )
    assert [r.id for r in scoped] == ["N1"]
    assert [r.id for r in scoped_open] == ["N1"]
    both = await store.list_referrals(mmgs=frozenset({MMG, METZ}), limit=3)
    assert [r.id for r in both] == ["M099", "M098", "M097"]
    assert await store.list_referrals(mmgs=frozenset()) == []
    assert await store.list_referrals(mmg=METZ, mmgs=frozenset({MMG})) == []
    assert [r.id for r in await store.list_referrals(mmg=MMG, mmgs=frozenset({MMG, METZ}))] == [
        "N1"
    ]


async def test_keyset_pages_cover_every_referral_even_while_statuses_change(
    store: Store,
) -> None:
    # Ties on created_at (a fixed clock) are ordered by id, like the unpaged listing.
    refs = [
        referral(f"R{i:02}", mmg=MMG if i % 3 else METZ, created_at=T0 + timedelta(minutes=i // 4))
        for i in range(23)
    ]
    for ref in refs:
        await store.create_referral(ref, None)
    everything = [r.id for r in await store.list_referrals(limit=100)]
    seen: list[str] = []
    before = None
    while True:
        page = await store.list_referrals(statuses=OPEN, limit=5, before=before)
        for ref in page:  # closing what was read must not shift the next page
            assert await store.save_referral(advance(ref, ReferralStatus.NO_SHOW), ref.version)
        seen.extend(r.id for r in page)
        if len(page) < 5:
            break
        before = (page[-1].created_at, page[-1].id)
    print(f"23 open referrals read 5 at a time, each closed once read: {len(seen)} seen")
    assert seen == everything
    assert len(set(seen)) == 23
