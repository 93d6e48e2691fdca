"""The one event path: subscribers hear each event synchronously, in order, and one
that fails never stops the others nor the publisher."""

from __future__ import annotations

from datetime import UTC, datetime

from regulator.core.models import DayType, Visit, VisitChannel
from regulator.events import CallEnded, Events, VisitRecorded

VISIT = Visit(
    id="v1",
    mmg="nimes",
    channel=next(iter(VisitChannel)),
    at=datetime(2026, 11, 24, 20, 0, tzinfo=UTC),
    month="2026-11",
    day_type=next(iter(DayType)),
    hour=21,
)


def test_subscribers_hear_an_event_before_publish_returns_in_subscription_order() -> None:
    events = Events()
    heard: list[str] = []
    events.subscribe(VisitRecorded, lambda e: heard.append(f"first {e.visit.id}"))
    events.subscribe(VisitRecorded, lambda e: heard.append(f"second {e.visit.id}"))
    events.publish(VisitRecorded(VISIT))
    assert heard == ["first v1", "second v1"]


def test_a_failing_subscriber_neither_raises_nor_silences_the_next_one() -> None:
    events = Events()
    heard: list[str] = []

    def broken(event: VisitRecorded) -> None:
        raise RuntimeError("console down")

    events.subscribe(VisitRecorded, broken)
    events.subscribe(VisitRecorded, lambda e: heard.append(e.visit.id))
    events.publish(VisitRecorded(VISIT))  # does not raise
    assert heard == ["v1"]


def test_only_subscribed_kinds_are_wanted_and_unsubscribing_stops_delivery() -> None:
    events = Events()
    heard: list[object] = []
    assert not events.wants(CallEnded)
    events.subscribe(VisitRecorded, heard.append)
    assert events.wants(VisitRecorded) and not events.wants(CallEnded)
    events.unsubscribe(VisitRecorded, heard.append)
    events.publish(VisitRecorded(VISIT))
    assert heard == [] and not events.wants(VisitRecorded)


def test_leg_changes_are_told_once_per_mmg_without_those_that_changed_nothing() -> None:
    from regulator.core.legs import Leg, LegChange
    from regulator.core.models import Route
    from regulator.events import legs_changed

    at = datetime(2026, 11, 24, 20, 0, tzinfo=UTC)

    def leg(call_id: str, mmg: str, answered: bool = False) -> Leg:
        return Leg(call_id, Route.REGULATION, mmg, "generic", at, at if answered else None)

    new_nimes = LegChange(None, leg("a", "nimes"))
    answered_nimes = LegChange(leg("b", "nimes"), leg("b", "nimes", answered=True))
    retried_metz = LegChange(leg("c", "metz"), leg("c", "metz"))  # a platform's retry
    new_metz = LegChange(None, leg("d", "metz"))
    told = legs_changed([new_nimes, retried_metz, answered_nimes, new_metz])
    assert [(e.mmg, e.changes) for e in told] == [
        ("nimes", (new_nimes, answered_nimes)),
        ("metz", (new_metz,)),
    ]
    assert legs_changed([retried_metz]) == []
