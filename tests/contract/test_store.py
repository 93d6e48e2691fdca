"""The Store contract: SQLite and Redis must behave identically (DESIGN.md §4, convention 4)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest

from regulator.core.indicators import CALLS, ground_key, route_key
from regulator.core.models import (
    CallUpdate,
    DayType,
    Ground,
    HookAnswer,
    Outcome,
    Referral,
    ReferralStatus,
    Route,
    VisitChannel,
)
from regulator.ports import FixedClock, Store
from regulator.storage.codec import ORPHAN_LIMIT, ORPHAN_TTL
from tests.support.store import (
    CALLER,
    MMG,
    MONTH,
    OTHER_MMG,
    T0,
    advance,
    call,
    expected_counters,
    referral,
    visit,
)

# ------------------------------------------------------------------------ plumbing


async def test_store_satisfies_the_protocol_and_answers_ping(store: Store) -> None:
    assert isinstance(store, Store)
    await store.ping()


async def test_open_twice_is_harmless(store: Store) -> None:
    await store.open()
    await store.ping()


# --------------------------------------------------------------------------- calls


async def test_empty_batches_do_nothing(store: Store) -> None:
    assert await store.record_calls([]) == []
    await store.update_calls([])
    assert await store.call_counters(MMG, MONTH) == {}


async def test_same_call_twice_in_one_batch_is_counted_once(store: Store) -> None:
    first = call("CA1")
    assert await store.record_calls([first, first, call("CA2")]) == [True, False, True]
    assert (await store.call_counters(MMG, MONTH))[CALLS] == 2


async def test_same_call_across_batches_is_counted_once(store: Store) -> None:
    assert await store.record_calls([call("CA1"), call("CA2")]) == [True, True]
    assert await store.record_calls([call("CA2"), call("CA3")]) == [False, True]
    # A retried webhook may carry a different route: the first record wins.
    assert await store.record_calls([call("CA1", route=Route.PHARMACY)]) == [False]
    counters = await store.call_counters(MMG, MONTH)
    assert counters[CALLS] == 3
    assert counters[route_key(Route.REGULATION)] == 3
    assert route_key(Route.PHARMACY) not in counters


async def test_counters_match_call_counter_deltas(store: Store) -> None:
    records = [
        call("CA1"),
        call("CA2", route=Route.DIRECT_ACCESS, ground=Ground.PROFESSIONAL, hour=21),
        call("CA3", route=Route.MENU, day_type=DayType.SUNDAY, hour=9, platform="vonage"),
        call("CA4", route=Route.REGULATION, failsafe=True, platform="kamailio", hour=23),
        call("CA5", route=Route.CLOSED, day_type=DayType.HOLIDAY, hour=0),
        call("CA6", route=Route.DIRECT_ACCESS, ground=Ground.PENDING_REFERRAL, hour=20),
    ]
    await store.record_calls(records[:3])
    await store.record_calls(records[3:])
    assert await store.call_counters(MMG, MONTH) == expected_counters(records)


async def test_one_large_batch_counts_each_new_call_once_per_mmg_and_month(
    store: Store,
) -> None:
    """Redis sums a batch's counter moves per counters hash before writing them: a
    batch of many calls over two MMGs and two months, with repeats inside it and of an
    earlier batch, must count exactly what the new calls' deltas say."""
    routes = (Route.REGULATION, Route.MENU, Route.PHARMACY, Route.CLOSED)
    records = [
        call(
            f"CA{n}",
            mmg=(MMG, OTHER_MMG)[n % 2],
            month=(MONTH, "2026-12")[n % 3 == 0],
            at=T0 + timedelta(days=10 * (n % 3 == 0)),
            route=routes[n % 4],
            hour=n % 24,
            failsafe=n % 7 == 0,
            day_type=(DayType.WEEKDAY, DayType.SUNDAY)[n % 5 == 0],
        )
        for n in range(240)
    ]
    assert await store.record_calls(records[:40]) == [True] * 40
    batch = records[20:] + records[100:110]  # 20 of the earlier batch, 10 twice here
    flags = await store.record_calls(batch)
    assert flags == [False] * 20 + [True] * 200 + [False] * 10
    for mmg in (MMG, OTHER_MMG):
        for month in (MONTH, "2026-12"):
            mine = [r for r in records if r.mmg == mmg and r.month == month]
            assert await store.call_counters(mmg, month) == expected_counters(mine)


async def test_counters_are_kept_per_mmg_and_month(store: Store) -> None:
    records = [
        call("CA1"),
        call("CA2", mmg=OTHER_MMG),
        call("CA3", month="2026-12", at=T0 + timedelta(days=10)),
    ]
    await store.record_calls(records)
    assert await store.call_counters(MMG, MONTH) == expected_counters(records[:1])
    assert await store.call_counters(OTHER_MMG, MONTH) == expected_counters(records[1:2])
    assert await store.call_counters(MMG, "2026-12") == expected_counters(records[2:])
    assert await store.call_counters(MMG, "2027-01") == {}


async def test_get_call_returns_the_stored_record(store: Store) -> None:
    record = call("CA1", route=Route.DIRECT_ACCESS, ground=Ground.PROFESSIONAL, failsafe=True)
    await store.record_calls([record])
    assert await store.get_call("CA1") == record
    assert await store.get_call("unknown") is None


async def test_reroute_moves_counters_once_even_if_applied_twice(store: Store) -> None:
    await store.record_calls([call("CA1", route=Route.MENU), call("CA2", route=Route.MENU)])
    overflow = CallUpdate(
        call_id="CA1",
        mmg=MMG,
        month=MONTH,
        route=Route.DIRECT_ACCESS,
        ground=Ground.REGULATION_OVERFLOW,
        rule="overflow after 90 s",
    )
    await store.update_calls([overflow])
    await store.update_calls([overflow, overflow])
    counters = await store.call_counters(MMG, MONTH)
    assert counters[CALLS] == 2
    assert counters[route_key(Route.MENU)] == 1
    assert counters[route_key(Route.DIRECT_ACCESS)] == 1
    assert counters[ground_key(Ground.REGULATION_OVERFLOW)] == 1
    stored = await store.get_call("CA1")
    assert stored is not None
    assert (stored.route, stored.ground, stored.rule) == (
        Route.DIRECT_ACCESS,
        Ground.REGULATION_OVERFLOW,
        "overflow after 90 s",
    )


async def test_updates_in_one_batch_apply_in_order(store: Store) -> None:
    await store.record_calls([call("CA1", route=Route.MENU)])
    await store.update_calls(
        [
            CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, route=Route.REGULATION),
            CallUpdate(
                call_id="CA1",
                mmg=MMG,
                month=MONTH,
                route=Route.DIRECT_ACCESS,
                ground=Ground.REGULATION_OVERFLOW,
            ),
            CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, status="completed", duration_s=42),
        ]
    )
    final = replace(
        call("CA1", route=Route.DIRECT_ACCESS, ground=Ground.REGULATION_OVERFLOW),
        status="completed",
        duration_s=42,
    )
    assert await store.call_counters(MMG, MONTH) == expected_counters([final])
    stored = await store.get_call("CA1")
    assert stored is not None
    assert (stored.route, stored.ground, stored.status, stored.duration_s) == (
        Route.DIRECT_ACCESS,
        Ground.REGULATION_OVERFLOW,
        "completed",
        42,
    )


async def test_reroute_to_a_route_without_ground_drops_the_ground(store: Store) -> None:
    await store.record_calls([call("CA1", route=Route.DIRECT_ACCESS, ground=Ground.PROFESSIONAL)])
    await store.update_calls(
        [CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, route=Route.PHARMACY)]
    )
    counters = await store.call_counters(MMG, MONTH)
    assert counters == expected_counters([call("CA1", route=Route.PHARMACY)])


async def test_status_update_does_not_move_counters(store: Store) -> None:
    await store.record_calls([call("CA1")])
    before = await store.call_counters(MMG, MONTH)
    await store.update_calls(
        [CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, status="completed", duration_s=65)]
    )
    assert await store.call_counters(MMG, MONTH) == before
    stored = await store.get_call("CA1")
    assert stored is not None
    assert (stored.status, stored.duration_s, stored.route) == ("completed", 65, Route.REGULATION)


async def test_an_update_without_its_record_creates_no_call(store: Store) -> None:
    await store.record_calls([call("CA1")])
    await store.update_calls(
        [
            CallUpdate(call_id="ghost", mmg=MMG, month=MONTH, route=Route.PHARMACY),
            CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, status="completed"),
        ]
    )
    assert await store.get_call("ghost") is None
    assert await store.call_counters(MMG, MONTH) == expected_counters([call("CA1")])
    stored = await store.get_call("CA1")
    assert stored is not None
    assert stored.status == "completed"


async def test_updates_that_arrive_before_their_record_are_applied_when_it_lands(
    store: Store,
) -> None:
    # Another replica answered the menu choice and the end of the call before this
    # replica's writer stored the first webhook's record.
    await store.update_calls(
        [
            CallUpdate(
                call_id="CA1",
                mmg=MMG,
                month=MONTH,
                route=Route.DIRECT_ACCESS,
                ground=Ground.REGULATION_OVERFLOW,
                rule="overflow after 90 s",
            ),
            CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, status="completed"),
        ]
    )
    await store.update_calls([CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, duration_s=42)])
    assert await store.get_call("CA1") is None
    assert await store.record_calls([call("CA1", route=Route.MENU), call("CA2")]) == [True, True]
    final = replace(
        call("CA1", route=Route.DIRECT_ACCESS, ground=Ground.REGULATION_OVERFLOW),
        rule="overflow after 90 s",
        status="completed",
        duration_s=42,
        routes=(Route.DIRECT_ACCESS,),  # the reroute joins the route history
    )
    assert await store.get_call("CA1") == final, "early updates were dropped"
    assert await store.call_counters(MMG, MONTH) == expected_counters([final, call("CA2")])
    # Applied once: the record again, or the same updates again, change nothing.
    assert await store.record_calls([call("CA1", route=Route.MENU)]) == [False]
    await store.update_calls([CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, status="completed")])
    assert await store.get_call("CA1") == final
    assert await store.call_counters(MMG, MONTH) == expected_counters([final, call("CA2")])


async def test_early_updates_older_than_a_day_are_purged(store: Store, clock: FixedClock) -> None:
    early = CallUpdate(call_id="late", mmg=MMG, month=MONTH, status="completed")
    await store.update_calls([early])
    clock.set(clock.now() + ORPHAN_TTL + timedelta(minutes=1))
    await store.update_calls([replace(early, call_id="recent")])
    await store.purge_calls(T0 - timedelta(days=30))
    await store.record_calls([call("late"), call("recent")])
    late, recent = await store.get_call("late"), await store.get_call("recent")
    assert late is not None
    assert recent is not None
    assert (late.status, recent.status) == ("in_progress", "completed")


async def test_early_updates_of_one_call_are_bounded(store: Store) -> None:
    junk = [
        CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, duration_s=n)
        for n in range(ORPHAN_LIMIT + 20)
    ]
    await store.update_calls(junk[:10])
    await store.update_calls(junk[10:])
    await store.record_calls([call("CA1")])
    stored = await store.get_call("CA1")
    assert stored is not None
    assert stored.duration_s == ORPHAN_LIMIT - 1


async def test_updates_racing_their_record_on_another_replica_are_kept(
    store: Store, replica: Store
) -> None:
    ids = [f"CA{n:03d}" for n in range(60)]
    for start in range(0, len(ids), 6):
        chunk = ids[start : start + 6]
        await asyncio.gather(
            store.record_calls([call(c, route=Route.MENU) for c in chunk]),
            replica.update_calls(
                [CallUpdate(call_id=c, mmg=MMG, month=MONTH, route=Route.PHARMACY) for c in chunk]
            ),
            replica.update_calls(
                [CallUpdate(call_id=c, mmg=MMG, month=MONTH, status="completed") for c in chunk]
            ),
        )
    stored = {c: await store.get_call(c) for c in ids}
    rerouted = [c for c, r in stored.items() if r is not None and r.route is Route.PHARMACY]
    completed = [c for c, r in stored.items() if r is not None and r.status == "completed"]
    assert (rerouted, completed) == (ids, ids), "updates racing their record were lost"
    final = [replace(call(c, route=Route.PHARMACY), status="completed") for c in ids]
    assert await store.call_counters(MMG, MONTH) == expected_counters(final)


async def test_status_and_duration_from_two_replicas_both_survive(
    store: Store, replica: Store
) -> None:
    ids = [f"CA{n:03d}" for n in range(40)]
    await store.record_calls([call(c, route=Route.MENU) for c in ids])
    for n, call_id in enumerate(ids):
        status = CallUpdate(call_id=call_id, mmg=MMG, month=MONTH, status="completed")
        duration = CallUpdate(call_id=call_id, mmg=MMG, month=MONTH, duration_s=60 + n)
        reroute = CallUpdate(call_id=call_id, mmg=MMG, month=MONTH, route=Route.REGULATION)
        first, second = (store, replica) if n % 2 else (replica, store)
        await asyncio.gather(
            first.update_calls([status]),
            second.update_calls([duration]),
            first.update_calls([reroute]),
        )
    for n, call_id in enumerate(ids):
        stored = await store.get_call(call_id)
        assert stored is not None
        assert (stored.route, stored.status, stored.duration_s) == (
            Route.REGULATION,
            "completed",
            60 + n,
        ), call_id
    final = [replace(call(c), status="completed") for c in ids]
    assert await store.call_counters(MMG, MONTH) == expected_counters(final)


async def test_purge_deletes_old_calls_and_keeps_counters(store: Store) -> None:
    old = [call(f"OLD{i}", at=T0 - timedelta(days=400 + i)) for i in range(3)]
    recent = [call("NEW1", at=T0), call("NEW2", at=T0 + timedelta(hours=1))]
    await store.record_calls(old + recent)
    counters = await store.call_counters(MMG, MONTH)

    assert await store.purge_calls(T0 - timedelta(days=30)) == 3
    assert await store.get_call("OLD0") is None
    assert await store.get_call("NEW1") is not None
    assert await store.call_counters(MMG, MONTH) == counters
    assert await store.purge_calls(T0 - timedelta(days=30)) == 0
    # An update for a purged call is ignored; nothing moves.
    await store.update_calls([CallUpdate(call_id="OLD1", mmg=MMG, month=MONTH, route=Route.MENU)])
    assert await store.call_counters(MMG, MONTH) == counters


async def test_purge_boundary_is_exclusive(store: Store) -> None:
    await store.record_calls([call("CA1", at=T0), call("CA2", at=T0 - timedelta(microseconds=1))])
    assert await store.purge_calls(T0) == 1
    assert await store.get_call("CA1") is not None
    assert await store.get_call("CA2") is None


# ----------------------------------------------------------------------- referrals


async def test_create_referral_and_read_it_back(store: Store) -> None:
    ref = referral("R1")
    stored, created = await store.create_referral(ref, None)
    assert created
    assert stored == ref
    assert await store.get_referral("R1") == ref
    assert await store.get_referral("nope") is None


async def test_create_referral_with_a_used_idempotency_key_returns_the_first(store: Store) -> None:
    first, created = await store.create_referral(referral("R1"), "key-1")
    assert created
    again, created_again = await store.create_referral(referral("R2"), "key-1")
    assert not created_again
    assert again == first
    assert await store.get_referral("R2") is None
    assert [r.id for r in await store.list_referrals()] == ["R1"]
    # A different key creates a new referral.
    _, created_other = await store.create_referral(referral("R3"), "key-2")
    assert created_other


async def test_create_referral_with_an_existing_id_keeps_the_first(store: Store) -> None:
    await store.create_referral(referral("R1"), None)
    stored, created = await store.create_referral(referral("R1", callback_number="+33699"), None)
    assert not created
    assert stored.callback_number == CALLER


async def test_save_referral_is_compare_and_set(store: Store) -> None:
    ref, _ = await store.create_referral(referral("R1"), None)
    acked = advance(ref, ReferralStatus.ACKNOWLEDGED)
    assert await store.save_referral(acked, expected_version=1)
    assert await store.get_referral("R1") == acked

    # A concurrent writer still holding version 1 loses and writes nothing — not even its visit.
    late = advance(ref, ReferralStatus.ARRIVED, visit_id="V1")
    late_visit = visit("V1", channel=VisitChannel.REGULATION, referral_id="R1")
    assert not await store.save_referral(late, expected_version=1, visit=late_visit)
    assert await store.get_referral("R1") == acked
    assert await store.visits(MMG, MONTH) == []


async def test_save_referral_of_an_unknown_id_returns_false(store: Store) -> None:
    assert not await store.save_referral(referral("ghost"), expected_version=1)
    assert await store.get_referral("ghost") is None


async def test_save_referral_upserts_its_visit(store: Store) -> None:
    ref, _ = await store.create_referral(referral("R1"), None)
    arrived = advance(ref, ReferralStatus.ARRIVED, visit_id="V1")
    seen = visit("V1", channel=VisitChannel.REGULATION, outcome=None, acts=0, referral_id="R1")
    assert await store.save_referral(arrived, expected_version=1, visit=seen)
    assert await store.visits(MMG, MONTH) == [seen]

    completed = advance(arrived, ReferralStatus.COMPLETED, outcome=Outcome.HOME, acts=2)
    seen_done = replace(seen, outcome=Outcome.HOME, acts=2)
    assert await store.save_referral(completed, expected_version=2, visit=seen_done)
    assert await store.visits(MMG, MONTH) == [seen_done]
    assert await store.get_referral("R1") == completed


async def test_visit_upsert_that_changes_month_moves_the_visit(store: Store) -> None:
    ref, _ = await store.create_referral(referral("R1"), None)
    arrived = advance(ref, ReferralStatus.ARRIVED, visit_id="V1")
    seen = visit("V1", channel=VisitChannel.REGULATION, referral_id="R1")
    assert await store.save_referral(arrived, expected_version=1, visit=seen)
    moved = replace(seen, at=T0 + timedelta(days=10), month="2026-12")
    completed = advance(arrived, ReferralStatus.COMPLETED)
    assert await store.save_referral(completed, expected_version=2, visit=moved)
    assert await store.visits(MMG, MONTH) == []
    assert await store.visits(MMG, "2026-12") == [moved]


async def test_has_pending_referral_follows_the_referral_lifecycle(store: Store) -> None:
    assert not await store.has_pending_referral(MMG, CALLER)
    ref, _ = await store.create_referral(referral("R1"), None)
    assert await store.has_pending_referral(MMG, CALLER)
    assert not await store.has_pending_referral(OTHER_MMG, CALLER)
    assert not await store.has_pending_referral(MMG, "+33600000000")

    acked = advance(ref, ReferralStatus.ACKNOWLEDGED)
    assert await store.save_referral(acked, expected_version=1)
    assert await store.has_pending_referral(MMG, CALLER)

    # A failed compare-and-set does not touch the index either.
    assert not await store.save_referral(advance(ref, ReferralStatus.CANCELLED), 1)
    assert await store.has_pending_referral(MMG, CALLER)

    arrived = advance(acked, ReferralStatus.ARRIVED)
    assert await store.save_referral(arrived, expected_version=2)
    assert not await store.has_pending_referral(MMG, CALLER)


async def test_has_pending_referral_follows_a_callback_number_change(store: Store) -> None:
    ref, _ = await store.create_referral(referral("R1"), None)
    other = "+33622334455"
    assert await store.save_referral(advance(ref, ReferralStatus.PENDING, callback_number=other), 1)
    assert not await store.has_pending_referral(MMG, CALLER)
    assert await store.has_pending_referral(MMG, other)


async def test_has_pending_referral_with_two_referrals_for_one_caller(store: Store) -> None:
    first, _ = await store.create_referral(referral("R1"), None)
    await store.create_referral(referral("R2", created_at=T0 + timedelta(minutes=5)), None)
    assert await store.save_referral(advance(first, ReferralStatus.CANCELLED), 1)
    assert await store.has_pending_referral(MMG, CALLER)


async def test_referral_without_callback_number_is_never_pending(store: Store) -> None:
    await store.create_referral(referral("R1", callback_number=None), None)
    assert await store.get_referral("R1") is not None
    assert not await store.has_pending_referral(MMG, "")


async def test_list_referrals_filters_and_is_newest_first(store: Store) -> None:
    refs = [
        referral("R1", created_at=T0),
        referral("R2", created_at=T0 + timedelta(minutes=1), mmg=OTHER_MMG),
        referral("R3", created_at=T0 + timedelta(minutes=2)),
        referral("R4", created_at=T0 + timedelta(minutes=3)),
    ]
    for ref in refs:
        await store.create_referral(ref, None)
    assert await store.save_referral(advance(refs[2], ReferralStatus.ACKNOWLEDGED), 1)
    assert await store.save_referral(advance(refs[3], ReferralStatus.CANCELLED), 1)

    def ids(items: Sequence[Referral]) -> list[str]:
        return [item.id for item in items]

    assert ids(await store.list_referrals()) == ["R4", "R3", "R2", "R1"]
    assert ids(await store.list_referrals(mmg=MMG)) == ["R4", "R3", "R1"]
    assert ids(await store.list_referrals(limit=2)) == ["R4", "R3"]
    open_statuses = frozenset({ReferralStatus.PENDING, ReferralStatus.ACKNOWLEDGED})
    assert ids(await store.list_referrals(statuses=open_statuses)) == ["R3", "R2", "R1"]
    assert ids(await store.list_referrals(mmg=MMG, statuses=open_statuses)) == ["R3", "R1"]
    assert ids(await store.list_referrals(mmg=MMG, statuses=open_statuses, limit=1)) == ["R3"]
    cancelled = frozenset({ReferralStatus.CANCELLED})
    assert ids(await store.list_referrals(statuses=cancelled)) == ["R4"]
    assert await store.list_referrals(mmg="unknown") == []
    assert await store.list_referrals(statuses=frozenset()) == []
    listed = await store.list_referrals(mmg=MMG, statuses=cancelled)
    assert listed[0].status is ReferralStatus.CANCELLED
    assert listed[0].version == 2


# -------------------------------------------------------------------------- visits


async def test_add_visit_is_idempotent_by_key(store: Store) -> None:
    first = visit("V1")
    stored, created = await store.add_visit(first, "desk-key-1")
    assert created
    assert stored == first
    again, created_again = await store.add_visit(visit("V2", acts=3), "desk-key-1")
    assert not created_again
    assert again == first
    assert await store.visits(MMG, MONTH) == [first]


async def test_add_visit_without_key_is_idempotent_by_id(store: Store) -> None:
    first = visit("V1")
    assert (await store.add_visit(first, None))[1]
    stored, created = await store.add_visit(replace(first, acts=5), None)
    assert not created
    assert stored == first


async def test_visits_are_per_mmg_and_month_in_time_order(store: Store) -> None:
    late = visit("V1", at=T0 + timedelta(hours=2), channel=VisitChannel.EMERGENCY_REORIENTATION)
    early = visit("V2", at=T0, outcome=Outcome.EMERGENCY)
    other_mmg = visit("V3", mmg=OTHER_MMG)
    next_month = visit("V4", month="2026-12", at=T0 + timedelta(days=10))
    for item in (late, early, other_mmg, next_month):
        await store.add_visit(item, None)
    assert await store.visits(MMG, MONTH) == [early, late]
    assert await store.visits(OTHER_MMG, MONTH) == [other_mmg]
    assert await store.visits(MMG, "2026-12") == [next_month]
    assert await store.visits(MMG, "2025-01") == []


@pytest.mark.parametrize("age_band", [None, "0-17"])
async def test_visit_optional_fields_round_trip(store: Store, age_band: str | None) -> None:
    item = replace(visit("V1", outcome=None, acts=0), age_band=age_band, reason=None)
    await store.add_visit(item, None)
    assert await store.visits(MMG, MONTH) == [item]


async def test_regulated_visit_keeps_its_case_id_and_tiers_payant(store: Store) -> None:
    sent = visit(
        "V1", channel=VisitChannel.REGULATION, case_id="DRFR15030000042", tiers_payant=True
    )
    walk_in = visit("V2", at=T0 + timedelta(minutes=5))
    await store.add_visit(sent, None)
    await store.add_visit(walk_in, None)
    stored = await store.visits(MMG, MONTH)
    assert stored == [sent, walk_in]
    assert (stored[0].case_id, stored[0].tiers_payant) == ("DRFR15030000042", True)
    assert (stored[1].case_id, stored[1].tiers_payant) == (None, False)


# ------------------------------------------------------------ replay guards (issue 18)


def _answer(body: bytes, digits: str = "2", call_id: str = "CAans1") -> HookAnswer:
    return HookAnswer("twilio", call_id, "digits", digits, body, "text/xml", T0)


async def test_the_first_answer_of_a_webhook_wins_and_is_read_back(store: Store) -> None:
    first = _answer(b"<Response><Dial>+33466333333</Dial></Response>")
    again = _answer(b"<Response><Dial>+33466000015</Dial></Response>")
    other = _answer(b"\x00\xff binary", digits="1")
    assert await store.record_answers([first, again, other]) == [True, False, True]
    assert await store.record_answers([again]) == [False]
    got = await store.hook_answer("twilio", "CAans1", "digits", "2")
    assert got is not None
    assert (got.body, got.content_type) == (first.body, "text/xml")
    binary = await store.hook_answer("twilio", "CAans1", "digits", "1")
    assert binary is not None and binary.body == other.body
    assert await store.hook_answer("twilio", "CAans1", "digits", "3") is None
    assert await store.hook_answer("vonage", "CAans1", "digits", "2") is None
    assert await store.record_answers([]) == []


async def test_answer_keys_with_separators_do_not_collide(store: Store) -> None:
    a = HookAnswer("twilio", "a:b", "digits", "1", b"A", "text/xml", T0)
    b = HookAnswer("twilio", "a", "digits", "b:1", b"B", "text/xml", T0)
    assert await store.record_answers([a, b]) == [True, True]
    got = await store.hook_answer("twilio", "a", "digits", "b:1")
    assert got is not None and got.body == b"B"


async def test_a_token_id_is_claimed_once_until_it_expires(store: Store) -> None:
    now = 1_900_000_000.0
    assert await store.claim_token_id("vonage", "jti-1", now, now + 330) is True
    assert await store.claim_token_id("vonage", "jti-1", now + 1, now + 331) is False
    assert await store.claim_token_id("other", "jti-1", now, now + 330) is True
    assert await store.claim_token_id("vonage", "jti-2", now, now + 330) is True
