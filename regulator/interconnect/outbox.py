"""Durable outbox: every event reaches every target at least once, or lands in a dead list.

Flow: the service calls :meth:`OutboxWorker.enqueue` (one store write, before or
beside the answer to the platform); per-target loops take due deliveries from the
store, send them with the target's :class:`Sender`, and record the outcome:

- ``delivered`` — removed from the outbox;
- ``retry`` — tried again after an exponential backoff with full jitter
  (``uniform(0, min(max_backoff, base * 2**(attempts-1)))``);
- ``await_ack`` — Hub Santé accepted the message; the delivery is done when the
  recipient's Ack arrives (:mod:`regulator.interconnect.hubsante` marks it), and
  it is published again if no Ack came within ``ack_timeout_s``;
- ``dead`` — moved to the dead-letter list (also when a delivery has been pending
  for more than ``max_age_s``); :meth:`OutboxWorker.redrive` puts it back.

At-least-once: a delivery stays in the store until marked; ``due`` leases what it
returns (``next_at`` moved ``lease_s`` ahead) so a crash mid-send, or a second
replica, sees it again only after the lease. Receivers de-duplicate on the
event's stable ``event_id`` (``X-Regulator-Event-Id``, Hub Santé ``distributionID``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Protocol

from regulator.interconnect.events import OutboxEvent, Target
from regulator.logs import get_logger
from regulator.ports import SENT_RETENTION_S, Clock, DeadLetter, Delivery, OutboxStore

log = get_logger("regulator.outbox")


class Result(StrEnum):
    """Outcome of one send; also the ``result`` label of ``regulator_outbox_deliveries_total``."""

    DELIVERED = "delivered"
    RETRY = "retry"
    AWAIT_ACK = "await_ack"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class SendResult:
    result: Result
    error: str | None = None
    #: For AWAIT_ACK: seconds before publishing again if no Ack arrived.
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What ``on_delivery`` receives for each attempt (and each expiry)."""

    target: str
    event_id: str
    kind: str
    attempts: int
    result: Result
    error: str | None


class Sender(Protocol):
    """Sends one event to one target. Must not raise: failures are a :class:`SendResult`."""

    async def send(self, event: OutboxEvent) -> SendResult: ...


def backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff after ``attempts`` failed attempts (≥ 1)."""
    ceiling = min(max_s, base_s * (2 ** min(max(attempts - 1, 0), 62)))
    return rng.uniform(0.0, ceiling)


class OutboxWorker:
    """Delivers the outbox to the configured targets.

    ``senders`` maps target names to their :class:`Sender`; ``targets`` (from
    :func:`regulator.interconnect.events.load_targets`) decide which target gets
    which event and each target's concurrency.
    """

    def __init__(
        self,
        store: OutboxStore,
        targets: Sequence[Target],
        senders: Mapping[str, Sender],
        clock: Clock,
        *,
        max_age_s: float = 86400.0,
        base_backoff_s: float = 1.0,
        max_backoff_s: float = 300.0,
        poll_interval_s: float = 1.0,
        batch_size: int = 100,
        lease_s: float | None = None,
        on_delivery: Callable[[str, DeliveryReport], None] | None = None,
        on_pending: Callable[[int], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        missing = [t.name for t in targets if t.name not in senders]
        if missing:
            raise ValueError(f"no sender for target(s): {', '.join(missing)}")
        self.store = store
        self.targets = list(targets)
        self.senders = dict(senders)
        self.clock = clock
        self.max_age_s = max_age_s
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self.poll_interval_s = poll_interval_s
        self.batch_size = batch_size
        self.lease_s = lease_s
        self.on_delivery = on_delivery
        self.on_pending = on_pending
        self.rng = rng or random.SystemRandom()
        self._semaphores = {t.name: asyncio.Semaphore(t.concurrency) for t in self.targets}
        self._wake = {t.name: asyncio.Event() for t in self.targets}
        self._tasks: list[asyncio.Task[None]] = []

    # ---- writing -----------------------------------------------------------------
    async def enqueue(self, events: Sequence[OutboxEvent]) -> int:
        """Store ``events`` for the targets that want them; returns new deliveries.

        Events with the same set of targets are written in one store write. Full
        phone numbers are stored only if one of those targets may see them.
        """
        groups: dict[tuple[str, ...], list[OutboxEvent]] = {}
        for event in events:
            chosen = [t for t in self.targets if t.wants(event)]
            if not chosen:
                continue
            event = event.numbers_for(chosen)
            groups.setdefault(tuple(t.name for t in chosen), []).append(event)
        added = 0
        now = self.clock.now()
        for names, group in groups.items():
            added += await self.store.enqueue(group, names, now)
            for name in names:
                self._wake[name].set()
        if added:
            await self._report_pending()
        return added

    async def redrive(self, target: str, event_ids: Sequence[str] | None = None) -> int:
        """Put dead letters of ``target`` back in the queue (all when ``event_ids`` is None)."""
        count = await self.store.redrive(target, event_ids, self.clock.now())
        if target in self._wake:
            self._wake[target].set()
        await self._report_pending()
        return count

    # ---- delivering ----------------------------------------------------------------
    async def run_once(self, target: str | None = None) -> int:
        """One pass over due deliveries (of one target or all); returns attempts made."""
        names = [target] if target is not None else [t.name for t in self.targets]
        counts = await asyncio.gather(*(self._run_target(n) for n in names))
        await self._report_pending()
        return sum(counts)

    async def _run_target(self, name: str) -> int:
        target = next(t for t in self.targets if t.name == name)
        lease = self.lease_s if self.lease_s is not None else target.timeout_s * 2 + 30.0
        now = self.clock.now()
        batch = await self.store.due(name, now, self.batch_size, lease)
        if not batch:
            return 0
        await asyncio.gather(*(self._deliver(target, d) for d in batch))
        return len(batch)

    async def _deliver(self, target: Target, delivery: Delivery) -> None:
        name = target.name
        event = delivery.event
        now = self.clock.now()
        if (now - delivery.since).total_seconds() > self.max_age_s:
            error = delivery.last_error or "no successful delivery"
            error = f"expired after {self.max_age_s:g} s: {error}"
            await self.store.mark_dead(name, event.event_id, error, now, delivery.attempts)
            self._report(name, event, delivery.attempts, Result.DEAD, error)
            log.warning(
                "outbox_dead", target=name, event_id=event.event_id, kind=event.kind, error=error
            )
            return
        async with self._semaphores[name]:
            try:
                result = await self.senders[name].send(event)
            except Exception as exc:  # a sender must not raise; never let it stop the loop
                log.exception("outbox_sender_crashed", target=name, event_id=event.event_id)
                result = SendResult(Result.RETRY, f"sender error: {type(exc).__name__}: {exc}")
        attempts = delivery.attempts + 1
        now = self.clock.now()
        if result.result is Result.DELIVERED:
            await self.store.mark_delivered(name, event.event_id)
        elif result.result is Result.DEAD:
            await self.store.mark_dead(name, event.event_id, result.error, now, attempts)
            log.warning(
                "outbox_dead",
                target=name,
                event_id=event.event_id,
                kind=event.kind,
                error=result.error,
            )
        else:
            if result.result is Result.AWAIT_ACK and result.retry_after_s is not None:
                delay = result.retry_after_s
            else:
                delay = backoff_s(attempts, self.base_backoff_s, self.max_backoff_s, self.rng)
            next_at = now + timedelta(seconds=delay)
            await self.store.mark_retry(name, event.event_id, next_at, attempts, result.error)
            if result.result is Result.RETRY:
                log.info(
                    "outbox_retry",
                    target=name,
                    event_id=event.event_id,
                    attempts=attempts,
                    delay_s=round(delay, 3),
                    error=result.error,
                )
        self._report(name, event, attempts, result.result, result.error)

    def _report(
        self, target: str, event: OutboxEvent, attempts: int, result: Result, error: str | None
    ) -> None:
        if self.on_delivery is None:
            return
        try:
            self.on_delivery(
                target,
                DeliveryReport(target, event.event_id, event.kind, attempts, result, error),
            )
        except Exception:
            log.exception("outbox_on_delivery_failed", target=target)

    async def _report_pending(self) -> None:
        if self.on_pending is None:
            return
        try:
            self.on_pending(await self.store.pending_count())
        except Exception:
            log.exception("outbox_on_pending_failed")

    # ---- life cycle ------------------------------------------------------------------
    def start(self) -> None:
        """Start one delivery loop per target on the running event loop."""
        if self._tasks:
            return
        for target in self.targets:
            task = asyncio.create_task(self._loop(target.name), name=f"outbox:{target.name}")
            self._tasks.append(task)

    async def stop(self) -> None:
        """Stop the loops; deliveries in flight are abandoned and retried after their lease."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if tasks:  # a loop cancelled between a delivery and its report: refresh the gauge
            with contextlib.suppress(Exception):
                await self._report_pending()

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    async def _loop(self, name: str) -> None:
        wake = self._wake[name]
        while True:
            try:
                wake.clear()
                attempted = await self._run_target(name)
                await self._report_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                # Store down or similar: keep the loop alive and try again later.
                log.exception("outbox_loop_error", target=name)
                attempted = 0
            if attempted >= self.batch_size:
                continue  # more may be due right now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self.poll_interval_s)

    def wake(self, target: str | None = None) -> None:
        """Make the loop(s) look for due deliveries now (e.g. after an Ack timeout change)."""
        for name, event in self._wake.items():
            if target is None or name == target:
                event.set()


__all__ = [
    "SENT_RETENTION_S",
    "DeadLetter",
    "Delivery",
    "DeliveryReport",
    "OutboxStore",
    "OutboxWorker",
    "Result",
    "SendResult",
    "Sender",
    "backoff_s",
]
