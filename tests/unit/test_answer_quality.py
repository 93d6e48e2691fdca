"""Answer-quality figures (core/answer_quality.py) from the issue's recorded cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from regulator.core.answer_quality import answer_quality, live, quality, value_text
from regulator.core.legs import Leg, LegEvent, LegStatus, fold
from regulator.core.models import DayType, Route
from tests.support.figures import ISSUE_BLOCK

PARIS = ZoneInfo("Europe/Paris")
# Saturday 5 December 2026, 20:00 in Paris (19:00 UTC).
T0 = datetime(2026, 12, 5, 19, 0, tzinfo=UTC)


def leg(call: str, *events: tuple[LegStatus, float], target: Route = Route.REGULATION) -> Leg:
    """The leg of ``call`` after ``events`` (status, seconds after T0), folded in order."""
    folded: Leg | None = None
    for status, at in events:
        ev = LegEvent(call, target, status, T0 + timedelta(seconds=at), "nimes", "twilio")
        folded = fold(folded, ev)
    assert folded is not None
    return folded


ANSWERED_25 = leg("A25", (LegStatus.OFFERED, 0), (LegStatus.RINGING, 1), (LegStatus.ANSWERED, 25))
ANSWERED_75 = leg(
    "A75", (LegStatus.OFFERED, 0), (LegStatus.ANSWERED, 75), (LegStatus.COMPLETED, 200)
)
HUNG_UP_40 = leg("H40", (LegStatus.OFFERED, 0), (LegStatus.RINGING, 2), (LegStatus.ABANDONED, 40))
HUNG_UP_8 = leg("H08", (LegStatus.OFFERED, 0), (LegStatus.ABANDONED, 8))
BUSY = leg("BSY", (LegStatus.OFFERED, 0), (LegStatus.BUSY, 1))
NO_ANSWER = leg("NOA", (LegStatus.OFFERED, 0), (LegStatus.RINGING, 1), (LegStatus.NO_ANSWER, 30))


def saturday(day: date) -> DayType:
    return DayType.SATURDAY if day.weekday() == 5 else DayType.WEEKDAY


def test_the_six_recorded_cases_give_the_issue_figures() -> None:
    block = quality([ANSWERED_25, ANSWERED_75, HUNG_UP_40, HUNG_UP_8, BUSY, NO_ANSWER], 15)
    print(block)
    assert block == ISSUE_BLOCK


def test_shares_are_null_when_nothing_was_offered() -> None:
    block = quality([HUNG_UP_8], 15)
    assert block["offered"] == 0 and block["short_abandons"] == 1
    assert block["answer_rate"] is None and block["qs60"] is None and block["wait_median_s"] is None


@pytest.mark.parametrize(("threshold", "offered", "short"), [(0, 6, 0), (15, 5, 1), (45, 4, 2)])
def test_the_short_abandon_threshold_is_a_setting(
    threshold: float, offered: int, short: int
) -> None:
    block = quality([ANSWERED_25, ANSWERED_75, HUNG_UP_40, HUNG_UP_8, BUSY, NO_ANSWER], threshold)
    assert (block["offered"], block["short_abandons"]) == (offered, short)


def test_out_of_order_and_duplicate_events_give_the_same_figures() -> None:
    shuffled = leg(
        "A25",
        (LegStatus.ANSWERED, 25),
        (LegStatus.RINGING, 1),
        (LegStatus.ANSWERED, 25),
        (LegStatus.OFFERED, 0),
    )
    assert shuffled == ANSWERED_25
    # A completion without its "answered" callback: the answer is its end minus talk time.
    completed_only = fold(
        fold(None, LegEvent("A75", Route.REGULATION, LegStatus.OFFERED, T0, "nimes")),
        LegEvent(
            "A75",
            Route.REGULATION,
            LegStatus.COMPLETED,
            T0 + timedelta(seconds=200),
            "nimes",
            duration_s=125,
        ),
    )
    assert completed_only.wait_s == 75.0
    assert quality([shuffled, completed_only], 15) == quality([ANSWERED_25, ANSWERED_75], 15)


def test_report_blocks_per_line_and_per_hour_by_day_type() -> None:
    desk = leg("D1", (LegStatus.OFFERED, 0), (LegStatus.ANSWERED, 10), target=Route.DIRECT_ACCESS)
    pharmacy = leg("P1", (LegStatus.OFFERED, 0), (LegStatus.ANSWERED, 5), target=Route.PHARMACY)
    later = leg("L1", (LegStatus.OFFERED, 3600), (LegStatus.ANSWERED, 3620))
    report = answer_quality([ANSWERED_25, later, desk, pharmacy], PARIS, saturday, 15)
    assert report["regulation"]["offered"] == 2 and report["front_desk"]["offered"] == 1
    assert "pharmacy" not in report
    assert set(report["regulation"]["by_hour"]["saturday"]) == {"20", "21"}
    assert report["regulation"]["by_hour"]["saturday"]["21"]["qs60"] == 1.0
    assert report["front_desk"]["by_hour"] == {"saturday": {"20": quality([desk], 15)}}


def test_live_counts_the_callers_waiting_now() -> None:
    ringing = leg("R1", (LegStatus.OFFERED, 0), (LegStatus.RINGING, 2))
    now = T0 + timedelta(seconds=30)
    figures = live([ringing, ANSWERED_25], 15, now)
    assert figures["waiting"] == 1 and figures["offered"] == 1 and figures["answered"] == 1
    assert figures["answer_rate"] == 1.0  # the caller ringing now is not a miss (yet)


def test_a_leg_still_ringing_is_not_offered_yet() -> None:
    # A caller ringing for 3 s is neither a failure to answer nor one within 60 s:
    # the leg counts once its fate is known (the live counters' rule, core/legs.Settled).
    ringing = leg("R1", (LegStatus.OFFERED, 0), (LegStatus.RINGING, 3))
    six = [ANSWERED_25, ANSWERED_75, HUNG_UP_40, HUNG_UP_8, BUSY, NO_ANSWER]
    block = quality([*six, ringing], 15)
    print({k: block[k] for k in ("offered", "answer_rate", "qs60")})
    assert block == quality(six, 15)
    assert answer_quality([ringing], PARIS, saturday, 15)["regulation"]["by_hour"] == {}


def test_the_live_counters_count_what_the_report_counts() -> None:
    """Events folded one by one (as the store settles them): the counters' offered and
    abandoned totals (core/legs.settled) equal the report's at every step."""
    from regulator.core.legs import LegChange, settled

    sequences = {
        "A25": [(LegStatus.OFFERED, 0), (LegStatus.RINGING, 1), (LegStatus.ANSWERED, 25)],
        "H40": [(LegStatus.OFFERED, 0), (LegStatus.RINGING, 2), (LegStatus.ABANDONED, 40)],
        "H08": [(LegStatus.OFFERED, 0), (LegStatus.ABANDONED, 8)],
        "NOA": [(LegStatus.RINGING, 1), (LegStatus.OFFERED, 0), (LegStatus.NO_ANSWER, 30)],
    }
    legs: dict[str, Leg] = {}
    offered = abandoned = 0
    steps = max(len(s) for s in sequences.values())
    for step in range(steps):
        for call, events in sequences.items():
            if step >= len(events):
                continue
            status, at = events[step]
            ev = LegEvent(call, Route.REGULATION, status, T0 + timedelta(seconds=at), "nimes")
            before = legs.get(call)
            legs[call] = fold(before, ev)
            done = settled(LegChange(before, legs[call]), 15)
            offered += done.offered
            abandoned += done.abandoned
        block = quality(legs.values(), 15)
        assert (offered, abandoned) == (block["offered"], block["abandoned"]), step


def test_human_texts_say_percent_seconds_and_why_a_figure_is_missing() -> None:
    nbsp = "\u00a0"
    assert value_text("qs60", 0.2) == f"20,0{nbsp}%"
    assert value_text("answer_rate", None) == "non calculable (aucun appel présenté)"
    assert value_text("qs60_of_answered", None) == "non calculable (aucun appel décroché)"
    assert value_text("wait_median_s", None) == "non calculable (aucun appel décroché)"
    assert (value_text("wait_p90_s", 75.0), value_text("wait_p90_s", 25.5)) == (
        f"75{nbsp}s",
        f"25,5{nbsp}s",
    )
    assert value_text("short_abandons", 1) == "1"
