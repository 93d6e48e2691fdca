"""Dial legs: what happened to each destination a call was put through to.

A *leg* is one destination dialled for one call (the regulation line, the front desk,
the pharmacy on duty). No destination is offered twice to a call (the fail-safe rule,
``core/decision.py``), so ``(call_id, target)`` names a leg. The platforms report a
leg's life in several callbacks (initiated, ringing, answered, completed…), retried and
in any order; :func:`fold` merges one normalised :class:`LegEvent` into the stored
:class:`Leg`, and is built so that **the same set of events gives the same leg whatever
their order or repetition** (every field is a min, a max or a ranked maximum):

1. ``offered_at`` — the earliest instant any event names (a leg is offered no later
   than anything reported about it; an answer derived from a completion counts too).
2. ``answered_at`` — the earliest answer: an ``answered`` event, or a ``completed``
   event's instant minus its talk time (``duration_s``) when the platform gives it.
3. ``ended_at`` — the latest end (``completed``, ``abandoned``, ``no_answer``,
   ``busy``, ``failed``).
4. ``outcome`` — the highest-ranked outcome seen (:data:`OUTCOME_RANK`): an answer,
   once known, wins over any failure report; the caller hanging up first
   (``abandoned``) over the line's own failures.
5. ``mmg``, ``platform`` — the greatest non-empty value seen: an empty one (a callback
   that does not carry it) never wins, and two that disagree give the same leg in
   either order.
6. ``seen`` — the statuses reported (a union). Until an ``offered`` or ``ringing``
   report is in (``offer_seen``), ``offered_at`` may be the answer's own instant and
   the wait is not known; ``line_failed``: a ``no_answer``, ``busy`` or ``failed``
   report is in (what :func:`settled` needs to count each leg once).

Pure: no I/O, no clock; times are aware UTC datetimes given by the adapters (the
platform's own timestamp where it sends one, the receipt time otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Final

from regulator.core.models import Route


class LegStatus(StrEnum):
    """A platform's report about one leg, normalised (adapters map their vocabulary)."""

    OFFERED = "offered"  # initiated / started / trying: the dial began
    RINGING = "ringing"  # first provisional reply (180/183, "ringing")
    ANSWERED = "answered"  # the destination picked up (200 OK, "answered", in-progress)
    COMPLETED = "completed"  # the leg ended after being answered (duration_s: talk time)
    ABANDONED = "abandoned"  # the caller hung up before the destination answered
    NO_ANSWER = "no_answer"  # the destination rang out (timeout, no-answer, 408/480)
    BUSY = "busy"  # busy or rejected (486/600/603)
    FAILED = "failed"  # could not be reached at all (unresolvable, 5xx, 404)


class LegOutcome(StrEnum):
    """How a leg ended (``Leg.outcome``); None while it is in progress."""

    ANSWERED = "answered"
    ABANDONED = "abandoned"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"


#: The outcome each terminal status gives (``completed`` means answered).
_OUTCOME_OF: Final[dict[LegStatus, LegOutcome]] = {
    LegStatus.ANSWERED: LegOutcome.ANSWERED,
    LegStatus.COMPLETED: LegOutcome.ANSWERED,
    LegStatus.ABANDONED: LegOutcome.ABANDONED,
    LegStatus.NO_ANSWER: LegOutcome.NO_ANSWER,
    LegStatus.BUSY: LegOutcome.BUSY,
    LegStatus.FAILED: LegOutcome.FAILED,
}

#: Statuses that end a leg (``ended_at``).
ENDING: Final[frozenset[LegStatus]] = frozenset(
    {
        LegStatus.COMPLETED,
        LegStatus.ABANDONED,
        LegStatus.NO_ANSWER,
        LegStatus.BUSY,
        LegStatus.FAILED,
    }
)

#: When two reports disagree, the higher rank wins (rule 4): order-proof by construction.
OUTCOME_RANK: Final[dict[LegOutcome, int]] = {
    LegOutcome.FAILED: 1,
    LegOutcome.NO_ANSWER: 2,
    LegOutcome.BUSY: 3,
    LegOutcome.ABANDONED: 4,
    LegOutcome.ANSWERED: 5,
}

#: Reports made before any answer: they name the offer's own instant (rule 6).
_OFFERING: Final[frozenset[LegStatus]] = frozenset({LegStatus.OFFERED, LegStatus.RINGING})
#: The line's own failures (rule 6).
_LINE_FAILURES: Final[frozenset[LegStatus]] = frozenset(
    {LegStatus.NO_ANSWER, LegStatus.BUSY, LegStatus.FAILED}
)

#: The lines a leg can be on, as named in reports and metric labels.
LINE_NAMES: Final[dict[Route, str]] = {
    Route.REGULATION: "regulation",
    Route.DIRECT_ACCESS: "front_desk",
    Route.PHARMACY: "pharmacy",
}


@dataclass(frozen=True, slots=True)
class LegEvent:
    """One platform report about one leg, normalised by its adapter.

    ``mmg`` may be empty when the platform's callback does not carry it: the call
    router fills it from the call's route history before the event is stored.
    ``duration_s``: with ``COMPLETED``, the talk time when the platform gives it.
    """

    call_id: str
    target: Route  # one of DESTINATION_ROUTES
    status: LegStatus
    at: datetime  # aware, UTC
    mmg: str = ""
    platform: str = ""
    duration_s: int | None = None

    @property
    def answered_at(self) -> datetime | None:
        """The answer this event establishes, if any (rule 2)."""
        if self.status is LegStatus.ANSWERED:
            return self.at
        if self.status is LegStatus.COMPLETED and self.duration_s is not None:
            return self.at - timedelta(seconds=max(self.duration_s, 0))
        return None


@dataclass(frozen=True, slots=True)
class Leg:
    """One dialled destination of one call, as stored (see the module docstring)."""

    call_id: str
    target: Route
    mmg: str
    platform: str
    offered_at: datetime
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    outcome: LegOutcome | None = None
    seen: frozenset[LegStatus] = frozenset()  # rule 6

    @property
    def line(self) -> str:
        """The line's report name (``regulation``, ``front_desk``, ``pharmacy``)."""
        return LINE_NAMES.get(self.target, self.target.value)

    @property
    def wait_s(self) -> float | None:
        """Seconds from offered to answered, None when not answered (or unknown)."""
        if self.answered_at is None:
            return None
        return max((self.answered_at - self.offered_at).total_seconds(), 0.0)

    @property
    def abandon_s(self) -> float | None:
        """Seconds the caller waited before hanging up, for an abandoned leg."""
        if self.outcome is not LegOutcome.ABANDONED or self.ended_at is None:
            return None
        return max((self.ended_at - self.offered_at).total_seconds(), 0.0)

    @property
    def offer_seen(self) -> bool:
        """An ``offered`` or ``ringing`` report is in: ``offered_at`` is the offer's."""
        return not self.seen.isdisjoint(_OFFERING)

    @property
    def line_failed(self) -> bool:
        """The line itself reported a failure (``no_answer``, ``busy``, ``failed``)."""
        return not self.seen.isdisjoint(_LINE_FAILURES)

    def is_short_abandon(self, short_abandon_s: float) -> bool:
        """Abandoned before ``short_abandon_s`` (QRAARM: noise, not an abandon)."""
        waited = self.abandon_s
        return waited is not None and waited < short_abandon_s


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def fold(leg: Leg | None, ev: LegEvent) -> Leg:
    """``leg`` with ``ev`` applied (rules 1–6 of the module docstring).

    Commutative and idempotent: any order of the same events, any repetition, gives
    the same leg. ``leg`` None: the first event known for ``(ev.call_id, ev.target)``.
    """
    answered = ev.answered_at
    # 1. offered: the earliest instant anything reported names.
    earliest = _earliest(ev.at, answered)
    assert earliest is not None
    if leg is None:
        leg = Leg(
            call_id=ev.call_id,
            target=ev.target,
            mmg=ev.mmg,
            platform=ev.platform,
            offered_at=earliest,
        )
    offered_at = min(leg.offered_at, earliest)
    # 2. answered: the earliest answer.
    answered_at = _earliest(leg.answered_at, answered)
    # 3. ended: the latest end.
    ended_at = _latest(leg.ended_at, ev.at if ev.status in ENDING else None)
    # 4. outcome: the highest rank seen.
    outcome = leg.outcome
    new = _OUTCOME_OF.get(ev.status)
    if new is not None and (outcome is None or OUTCOME_RANK[new] > OUTCOME_RANK[outcome]):
        outcome = new
    # 5. mmg, platform: a max, not "the first non-empty one" (which depends on the order).
    return replace(
        leg,
        mmg=max(leg.mmg, ev.mmg),
        platform=max(leg.platform, ev.platform),
        offered_at=offered_at,
        answered_at=answered_at,
        ended_at=ended_at,
        outcome=outcome,
        seen=leg.seen | {ev.status},
    )


@dataclass(frozen=True, slots=True)
class LegChange:
    """One event's effect on its leg, as the store settled it: ``before`` (None: the
    event created the leg) and ``after``. What metrics are counted from, once, in the
    write path: a replay changes nothing, so it counts nothing."""

    before: Leg | None
    after: Leg


@dataclass(frozen=True, slots=True)
class Settled:
    """What a :class:`LegChange` adds to the live counters (``regulator_legs_*``).

    A leg counts as offered once it is answered or has ended unanswered, short abandons
    excluded, the report's own rule (:mod:`regulator.core.answer_quality`), so that the
    QS60 the alert computes from the counters reads as the report's. One exception,
    for contradictory reports only: a short abandon whose line also reported a failure
    stays offered (see ``_counts_as_offered``: counters cannot go back down).
    """

    offered: bool = False
    answer_delay_s: float | None = None  # the leg's wait just became known: this long
    abandoned: bool = False


def _counts_as_offered(leg: Leg | None, short_abandon_s: float) -> bool:
    """Settled, and not a short abandon — unless the line reported a failure too: a
    leg once counted (``no_answer``…) must stay counted when an ``abandoned`` report
    (which outranks it) makes it look short, else a later, earlier-dated report making
    the abandon long would count it a second time. Only ever turns true."""
    if leg is None or leg.outcome is None:
        return False
    return leg.line_failed or not leg.is_short_abandon(short_abandon_s)


def _long_abandon(leg: Leg | None, short_abandon_s: float) -> bool:
    return (
        leg is not None
        and leg.outcome is LegOutcome.ABANDONED
        and not leg.is_short_abandon(short_abandon_s)
    )


def _wait_known(leg: Leg | None) -> bool:
    """The leg's wait can be observed: its answer time is known (not merely that it was
    answered: a ``completed`` without talk time), and so is its offer — an offer or
    ringing report was folded, or the leg has ended (its events are in, most likely).

    Every part only ever turns true, so a leg's delay is observed once. An answer
    reported before the offer (callbacks out of order) thus waits for the offer instead
    of being observed as a zero wait, which the QS60 would count as within 60 s."""
    return (
        leg is not None
        and leg.answered_at is not None
        and (leg.offer_seen or leg.ended_at is not None)
    )


def settled(change: LegChange, short_abandon_s: float) -> Settled:
    """What ``change`` newly settles (see :class:`Settled`); nothing for a repeat."""
    before, after = change.before, change.after
    offered = _counts_as_offered(after, short_abandon_s) and not _counts_as_offered(
        before, short_abandon_s
    )
    delay = after.wait_s if _wait_known(after) and not _wait_known(before) else None
    abandoned = _long_abandon(after, short_abandon_s) and not _long_abandon(before, short_abandon_s)
    return Settled(offered=offered, answer_delay_s=delay, abandoned=abandoned)


__all__ = [
    "ENDING",
    "LINE_NAMES",
    "OUTCOME_RANK",
    "Leg",
    "LegChange",
    "LegEvent",
    "LegOutcome",
    "LegStatus",
    "Settled",
    "fold",
    "settled",
]
