"""core/legs.py: the fold is order-proof and idempotent, outcomes read as the issue says,
and ``settled`` counts each leg once whatever the order of its events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regulator.core.legs import (
    Leg,
    LegChange,
    LegEvent,
    LegOutcome,
    LegStatus,
    Settled,
    fold,
    settled,
)
from regulator.core.models import Route

T0 = datetime(2026, 11, 24, 19, 30, tzinfo=UTC)
SHORT = 15.0  # REGULATOR_SHORT_ABANDON_S's default

PROPERTY_SETTINGS = settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def ev(
    status: LegStatus,
    s: float,
    *,
    duration_s: int | None = None,
    mmg: str = "nimes",
    platform: str = "twilio",
    target: Route = Route.REGULATION,
) -> LegEvent:
    """An event of leg ``(CA1, target)`` at ``T0 + s`` seconds."""
    return LegEvent(
        call_id="CA1",
        target=target,
        status=status,
        at=T0 + timedelta(seconds=s),
        mmg=mmg,
        platform=platform,
        duration_s=duration_s,
    )


def fold_all(events: list[LegEvent]) -> Leg:
    leg: Leg | None = None
    for event in events:
        leg = fold(leg, event)
    assert leg is not None
    return leg


def changes_of(events: list[LegEvent]) -> list[LegChange]:
    """One change per event, as a store settles them (codec.fold_events)."""
    out: list[LegChange] = []
    leg: Leg | None = None
    for event in events:
        after = fold(leg, event)
        out.append(LegChange(leg, after))
        leg = after
    return out


def totals(events: list[LegEvent], short: float = SHORT) -> tuple[int, list[float], int]:
    """(offered, answer delays observed, abandoned) summed over the events' changes."""
    done = [settled(change, short) for change in changes_of(events)]
    return (
        sum(d.offered for d in done),
        [d.answer_delay_s for d in done if d.answer_delay_s is not None],
        sum(d.abandoned for d in done),
    )


# ---- strategies -------------------------------------------------------------------
leg_events = st.builds(
    LegEvent,
    call_id=st.just("CA1"),
    target=st.just(Route.REGULATION),
    status=st.sampled_from(LegStatus),
    at=st.integers(min_value=0, max_value=400).map(lambda s: T0 + timedelta(seconds=s)),
    # Empty (the callback did not carry it) or one of two: the fold must not depend on
    # which one came first.
    mmg=st.sampled_from(["", "nimes", "ales"]),
    platform=st.sampled_from(["", "twilio", "vonage"]),
    duration_s=st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
)


@st.composite
def shuffled_with_repeats(draw: st.DrawFn) -> tuple[list[LegEvent], list[LegEvent]]:
    """A leg's events, and the same set retried and reordered (every event at least once)."""
    events = draw(st.lists(leg_events, min_size=1, max_size=8))
    repeats = draw(st.lists(st.sampled_from(events), max_size=8))
    return events, draw(st.permutations(events + repeats))


# ---- fold: order-proof and idempotent ----------------------------------------------
@PROPERTY_SETTINGS
@given(case=shuffled_with_repeats())
def test_fold_gives_the_same_leg_whatever_the_order_and_repetition(
    case: tuple[list[LegEvent], list[LegEvent]],
) -> None:
    events, reordered = case
    assert fold_all(reordered) == fold_all(events)


@PROPERTY_SETTINGS
@given(events=st.lists(leg_events, min_size=1, max_size=8))
def test_fold_is_idempotent(events: list[LegEvent]) -> None:
    leg = fold_all(events)
    for event in events:
        assert fold(leg, event) == leg


@PROPERTY_SETTINGS
@given(events=st.lists(leg_events, min_size=1, max_size=8))
def test_fold_bounds(events: list[LegEvent]) -> None:
    """offered_at is the earliest instant named, never after the answer or the end."""
    leg = fold_all(events)
    named = [e.at for e in events] + [a for e in events if (a := e.answered_at) is not None]
    assert leg.offered_at == min(named)
    if leg.answered_at is not None:
        assert leg.offered_at <= leg.answered_at
    if leg.ended_at is not None:
        assert leg.offered_at <= leg.ended_at


def test_two_mmgs_fold_to_the_same_one_in_either_order() -> None:
    """Reproduction: the fold kept the first non-empty MMG (``leg.mmg or ev.mmg``), so
    two replicas folding the same two events in opposite orders stored different legs."""
    a, b = ev(LegStatus.RINGING, 0, mmg="nimes"), ev(LegStatus.ANSWERED, 20, mmg="ales")
    assert fold_all([a, b]) == fold_all([b, a])
    # An empty MMG never wins over a known one, and a later one fills an empty one.
    assert fold_all([ev(LegStatus.RINGING, 0, mmg=""), b]).mmg == "ales"
    assert fold_all([b, ev(LegStatus.RINGING, 0, mmg="")]).mmg == "ales"


# ---- outcomes (the acceptance cases) ---------------------------------------
OFFER = ev(LegStatus.OFFERED, 0)
RING = ev(LegStatus.RINGING, 1)

CASES: dict[str, tuple[list[LegEvent], LegOutcome, float | None, float | None, bool]] = {
    # name: events, outcome, wait_s, abandon_s, short abandon (default 15 s)
    "answered at 25 s": (
        [OFFER, RING, ev(LegStatus.ANSWERED, 25), ev(LegStatus.COMPLETED, 185, duration_s=160)],
        LegOutcome.ANSWERED,
        25.0,
        None,
        False,
    ),
    "answered at 75 s": (
        [OFFER, RING, ev(LegStatus.ANSWERED, 75), ev(LegStatus.COMPLETED, 200, duration_s=125)],
        LegOutcome.ANSWERED,
        75.0,
        None,
        False,
    ),
    "caller hangs up at 40 s while ringing": (
        [OFFER, RING, ev(LegStatus.ABANDONED, 40)],
        LegOutcome.ABANDONED,
        None,
        40.0,
        False,
    ),
    "caller hangs up at 8 s": (
        [OFFER, RING, ev(LegStatus.ABANDONED, 8)],
        LegOutcome.ABANDONED,
        None,
        8.0,
        True,
    ),
    "busy": ([OFFER, ev(LegStatus.BUSY, 2)], LegOutcome.BUSY, None, None, False),
    "no answer": (
        [OFFER, RING, ev(LegStatus.NO_ANSWER, 30)],
        LegOutcome.NO_ANSWER,
        None,
        None,
        False,
    ),
    "failed": ([OFFER, ev(LegStatus.FAILED, 1)], LegOutcome.FAILED, None, None, False),
    "completed without answered, with its talk time": (
        [OFFER, RING, ev(LegStatus.COMPLETED, 130, duration_s=100)],
        LegOutcome.ANSWERED,
        30.0,
        None,
        False,
    ),
    "answered after a no_answer report": (
        [OFFER, RING, ev(LegStatus.NO_ANSWER, 30), ev(LegStatus.ANSWERED, 28)],
        LegOutcome.ANSWERED,
        28.0,
        None,
        False,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_outcomes(name: str) -> None:
    events, outcome, wait_s, abandon_s, short = CASES[name]
    for order in (events, list(reversed(events))):
        leg = fold_all(order)
        assert leg.offered_at == T0
        assert leg.outcome is outcome
        assert leg.wait_s == wait_s
        assert leg.abandon_s == abandon_s
        assert leg.is_short_abandon(SHORT) is short
        assert leg.line == "regulation"
        assert (leg.mmg, leg.platform, leg.call_id) == ("nimes", "twilio", "CA1")


def test_completed_without_answered_derives_the_answer() -> None:
    leg = fold_all([OFFER, ev(LegStatus.COMPLETED, 130, duration_s=100)])
    assert leg.answered_at == T0 + timedelta(seconds=30)
    assert leg.ended_at == T0 + timedelta(seconds=130)
    # Without its talk time the leg is answered, but when is not known.
    unknown = fold_all([OFFER, ev(LegStatus.COMPLETED, 130)])
    assert (unknown.outcome, unknown.answered_at, unknown.wait_s) == (
        LegOutcome.ANSWERED,
        None,
        None,
    )


def test_in_progress_leg_has_no_outcome() -> None:
    leg = fold_all([OFFER, RING])
    assert (leg.outcome, leg.ended_at, leg.wait_s, leg.abandon_s) == (None, None, None, None)
    assert not leg.is_short_abandon(SHORT)


def test_lines() -> None:
    assert fold_all([ev(LegStatus.OFFERED, 0, target=Route.DIRECT_ACCESS)]).line == "front_desk"
    assert fold_all([ev(LegStatus.OFFERED, 0, target=Route.PHARMACY)]).line == "pharmacy"


def test_short_abandon_threshold_is_a_setting() -> None:
    leg = fold_all([OFFER, ev(LegStatus.ABANDONED, 8)])
    assert leg.is_short_abandon(15.0)
    assert not leg.is_short_abandon(5.0)
    assert not leg.is_short_abandon(8.0)  # "before" the threshold: 8 s is not before 8 s


# ---- settled: each leg counted once -------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("answered at 25 s", (1, [25.0], 0)),
        ("answered at 75 s", (1, [75.0], 0)),
        ("caller hangs up at 40 s while ringing", (1, [], 1)),
        ("caller hangs up at 8 s", (0, [], 0)),
        ("busy", (1, [], 0)),
        ("no answer", (1, [], 0)),
        ("failed", (1, [], 0)),
        ("completed without answered, with its talk time", (1, [30.0], 0)),
        ("answered after a no_answer report", (1, [28.0], 0)),
    ],
)
def test_settled_counts_each_case_once(name: str, expected: tuple[int, list[float], int]) -> None:
    events = CASES[name][0]
    assert totals(events) == expected
    assert totals(events + events) == expected  # every callback retried


def test_a_repeat_settles_nothing() -> None:
    leg = fold_all([OFFER, ev(LegStatus.ANSWERED, 25)])
    assert settled(LegChange(leg, leg), SHORT) == Settled()


def test_short_abandon_becomes_long_when_an_earlier_event_arrives_late() -> None:
    """The offer arrives after the hang-up: 8 s after the ringing, 40 s after the offer."""
    events = [ev(LegStatus.RINGING, 32), ev(LegStatus.ABANDONED, 40), ev(LegStatus.OFFERED, 0)]
    done = [settled(change, SHORT) for change in changes_of(events)]
    assert done == [Settled(), Settled(), Settled(offered=True, abandoned=True)]
    assert totals(events + events) == (1, [], 1)


def test_answer_delay_counted_when_the_answer_follows_a_completion_without_duration() -> None:
    """Reproduction: ``completed`` (no talk time) first made the outcome ``answered`` with
    no answer time, and ``settled`` then took the later ``answered`` for a repeat (it
    looked at the outcome, not at the answer time): the delay was never observed, so the
    leg counted as not answered within 60 s in the QS60 the alert computes."""
    events = [OFFER, ev(LegStatus.COMPLETED, 200), ev(LegStatus.ANSWERED, 25)]
    assert totals(events) == (1, [25.0], 0)


#: Events of one leg whose terminal reports agree (at most one kind of failure), as
#: any platform sends them: the counters must then read the final leg whatever the order.
consistent = st.sampled_from(
    [LegStatus.NO_ANSWER, LegStatus.BUSY, LegStatus.FAILED, LegStatus.ABANDONED, None]
).flatmap(
    lambda failure: st.lists(
        leg_events.filter(
            lambda e: (
                e.status
                in {LegStatus.OFFERED, LegStatus.RINGING, LegStatus.ANSWERED, LegStatus.COMPLETED}
                or e.status is failure
            )
        ),
        min_size=1,
        max_size=8,
    ).filter(
        # An abandon (the caller hung up before any answer) with an answer is not a
        # consistent report.
        lambda events: (
            failure is not LegStatus.ABANDONED
            or all(e.status not in {LegStatus.ANSWERED, LegStatus.COMPLETED} for e in events)
        )
    )
)


@PROPERTY_SETTINGS
@given(events=consistent, data=st.data())
def test_settled_counts_the_final_leg_once_whatever_the_order(
    events: list[LegEvent], data: st.DataObject
) -> None:
    reordered = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events)))))
    final = fold_all(events)
    offered = final.outcome is not None and not final.is_short_abandon(SHORT)
    abandoned = final.outcome is LegOutcome.ABANDONED and offered
    assert not (final.line_failed and final.outcome is LegOutcome.ABANDONED)  # consistent
    for order in (events, reordered):
        n_offered, delays, n_abandoned = totals(order)
        assert n_offered == int(offered)
        assert n_abandoned == int(abandoned)
        # Observed once the answer and the offer are known (_wait_known).
        wait_known = final.answered_at is not None and (final.offer_seen or bool(final.ended_at))
        assert len(delays) == int(wait_known)


@PROPERTY_SETTINGS
@given(events=st.lists(leg_events, min_size=1, max_size=8), data=st.data())
def test_settled_never_counts_a_leg_twice(events: list[LegEvent], data: st.DataObject) -> None:
    reordered = data.draw(st.permutations(events + data.draw(st.lists(st.sampled_from(events)))))
    for order in (events, reordered):
        n_offered, delays, n_abandoned = totals(order)
        assert n_offered <= 1
        assert len(delays) <= 1
        assert n_abandoned <= 1


def test_a_failure_then_a_short_abandon_then_a_late_offer_counts_once() -> None:
    """Reproduction: ``no_answer`` counted the leg offered; the ``abandoned`` report
    (which outranks it) made it a short abandon, no longer counted; the late offer made
    the abandon long, counted again: offered twice. A line failure now keeps it counted
    (contradictory reports: the line's failure and the caller's hang-up)."""
    events = [ev(LegStatus.NO_ANSWER, 1), ev(LegStatus.ABANDONED, 15), ev(LegStatus.OFFERED, 0)]
    assert totals(events)[0] == 1
    for order in (events[::-1], events[1:] + events[:1], events + events):
        assert totals(order) == (1, [], 1)


@pytest.mark.parametrize("wait_s", [25, 75])
def test_an_answer_reported_before_its_offer_is_observed_with_the_offer(wait_s: int) -> None:
    """Reproduction: the ``answered`` callback first (the ``ringing`` one retried) made
    a leg offered at its answer instant, and ``settled`` observed a 0 s wait at once: a
    leg answered at 75 s counted as answered within 60 s in the live QS60."""
    events = [
        ev(LegStatus.ANSWERED, wait_s),
        ev(LegStatus.RINGING, 0),
        ev(LegStatus.COMPLETED, wait_s + 60, duration_s=60),
    ]
    done = [settled(change, SHORT) for change in changes_of(events)]
    assert [d.answer_delay_s for d in done] == [None, float(wait_s), None]
    assert sum(d.offered for d in done) == 1
    # Nothing before the answer ever arrives: observed when the leg ends.
    alone = [ev(LegStatus.ANSWERED, wait_s), ev(LegStatus.COMPLETED, wait_s + 60)]
    assert totals(alone) == (1, [0.0], 0)


def test_offer_seen_is_order_proof() -> None:
    events = [ev(LegStatus.ANSWERED, 25), ev(LegStatus.RINGING, 1)]
    assert fold_all(events).offer_seen and fold_all(events[::-1]).offer_seen
    assert not fold_all([ev(LegStatus.ANSWERED, 25)]).offer_seen


@PROPERTY_SETTINGS
@given(case=shuffled_with_repeats())
def test_offered_reads_the_final_leg_whatever_the_reports(
    case: tuple[list[LegEvent], list[LegEvent]],
) -> None:
    """Contradictory reports too: offered is counted once exactly when the final leg is
    settled and not a short abandon (or also a line failure), in any order."""
    final = fold_all(case[0])
    expected = final.outcome is not None and (
        final.line_failed or not final.is_short_abandon(SHORT)
    )
    for order in case:
        assert totals(order)[0] == int(expected)
