"""One event path: what happened, published once, heard by every subscriber.

The call path and the API publish facts (:class:`CallRouted`, :class:`CallEnded`,
:class:`ReferralChanged`, :class:`VisitRecorded`); the live consoles (SSE), the
outbox and the metrics subscribe. Subscribers run synchronously inside
:meth:`Events.publish`, in subscription order: the outbox's journal write is done
before the webhook or the API request is answered. A failing subscriber is logged
and skipped: it never affects the call, the request or the other subscribers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

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


Event = CallRouted | CallEnded | ReferralChanged | VisitRecorded
E = TypeVar("E", CallRouted, CallEnded, ReferralChanged, VisitRecorded)


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
