"""In-process publish/subscribe of live events (calls, referrals) for the consoles.

Each subscriber has a bounded queue: a slow client loses its oldest events and is
told to resynchronise, it never stalls the publisher or other clients. Events
carry a monotonically increasing id so an SSE client can resume with
``Last-Event-ID`` from the recent history kept here.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class BusEvent:
    id: int
    kind: str  # "call", "referral", "visit", "quality"
    mmg: str
    data: dict[str, Any]


@dataclass(eq=False)
class Subscription:
    """One listener; ``accept`` filters by role (e.g. only its MMG)."""

    accept: Callable[[BusEvent], bool]
    queue: asyncio.Queue[BusEvent | None] = field(default_factory=lambda: asyncio.Queue(256))
    dropped: int = 0


class EventBus:
    def __init__(self, history: int = 1000) -> None:
        self._ids = itertools.count(1)
        self._history: deque[BusEvent] = deque(maxlen=history)
        self._subs: set[Subscription] = set()

    def publish(self, kind: str, mmg: str, data: dict[str, Any]) -> BusEvent:
        event = BusEvent(next(self._ids), kind, mmg, data)
        self._history.append(event)
        for sub in list(self._subs):
            if not sub.accept(event):
                continue
            if sub.queue.full():  # slow client: drop its oldest event, never block
                sub.queue.get_nowait()
                sub.dropped += 1
            sub.queue.put_nowait(event)
        return event

    def subscribe(
        self, accept: Callable[[BusEvent], bool], last_id: int | None = None
    ) -> Subscription:
        sub = Subscription(accept)
        if last_id is not None:
            for event in self._history:
                if event.id > last_id and accept(event) and not sub.queue.full():
                    sub.queue.put_nowait(event)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def close_all(self) -> None:
        """Wake every subscriber with None so SSE streams end cleanly on shutdown."""
        for sub in list(self._subs):
            if sub.queue.full():
                sub.queue.get_nowait()
            sub.queue.put_nowait(None)
        self._subs.clear()

    @property
    def subscribers(self) -> int:
        return len(self._subs)
