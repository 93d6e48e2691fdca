"""One event path: what happened, published once, heard by every subscriber.

The call path and the API publish facts (:class:`CallRouted`, :class:`CallEnded`,
:class:`ReferralChanged`, :class:`VisitRecorded`, and from the call writer
:class:`LegChanged`); the live consoles (SSE), the
outbox and the metrics subscribe. Subscribers run synchronously inside
:meth:`Events.publish`, in subscription order: the outbox's journal write is done
before the webhook or the API request is answered. A failing subscriber is logged
and skipped: it never affects the call, the request or the other subscribers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from regulator.core.legs import LegChange
from regulator.core.models import CallRecord, Decision, Referral, Visit
from regulator.logs import get_logger

log = get_logger("regulator.events")


@dataclass(frozen=True, slots=True)
class CallRouted:
    """A decision taken for a call: the call as recorded with its current route, the
    decision, and ``first`` for the call's first webhook."""

    record: CallRecord
    decision: Decision
    first: bool


@dataclass(frozen=True, slots=True)
class CallEnded:
    """A call has ended (a final status callback): the call as recorded, with its final
    status and duration (the outbox's ``call.completed``)."""

    record: CallRecord


@dataclass(frozen=True, slots=True)
class ReferralChanged:
    """A referral created or moved on; ``event`` names the step (``created``,
    ``acknowledged``, ``arrived``, ``completed``, ``cancelled``, ``no_show``)."""

    referral: Referral
    event: str


@dataclass(frozen=True, slots=True)
class VisitRecorded:
    """A visit recorded at a front desk."""

    visit: Visit


@dataclass(frozen=True, slots=True)
class LegChanged:
    """Dial legs of one MMG changed in the store: the changes one batch of the call
    writer settled for that MMG (a replayed or repeated event, which changes nothing,
    is left out). Published after the write, so a reader of ``Store.legs`` sees them."""

    mmg: str
    changes: tuple[LegChange, ...]


def legs_changed(changes: Sequence[LegChange]) -> list[LegChanged]:
    """One :class:`LegChanged` per MMG of ``changes``, in first-seen order, without the
    changes that changed nothing (a platform's retry, a replay)."""
    by_mmg: dict[str, list[LegChange]] = {}
    for change in changes:
        if change.before != change.after:
            by_mmg.setdefault(change.after.mmg, []).append(change)
    return [LegChanged(mmg, tuple(found)) for mmg, found in by_mmg.items()]


Event = CallRouted | CallEnded | ReferralChanged | VisitRecorded | LegChanged
E = TypeVar("E", CallRouted, CallEnded, ReferralChanged, VisitRecorded, LegChanged)


class Events:
    """The subscribers of each kind of event, and :meth:`publish`."""

    def __init__(self) -> None:
        self._subscribers: dict[type[Any], list[Callable[[Any], None]]] = {}

    def subscribe(self, kind: type[E], subscriber: Callable[[E], None]) -> None:
        self._subscribers.setdefault(kind, []).append(subscriber)

    def unsubscribe(self, kind: type[E], subscriber: Callable[[E], None]) -> None:
        subscribers = self._subscribers.get(kind, [])
        if subscriber in subscribers:
            subscribers.remove(subscriber)

    def wants(self, kind: type[Event]) -> bool:
        """Whether anyone listens to ``kind`` (so the publisher can skip the work of
        building an event nobody hears: reading the store for an ended call)."""
        return bool(self._subscribers.get(kind))

    def publish(self, event: Event) -> None:
        for subscriber in self._subscribers.get(type(event), ()):
            try:
                subscriber(event)
            except Exception:  # a console, outbox or metrics problem never affects the call
                log.exception("event_subscriber_failed", kind=type(event).__name__)
