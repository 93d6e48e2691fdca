"""Durable hand-off of centre 15 events from the webhook handlers to the outbox store.

The events owed to centre 15 are kept like the call records (:mod:`regulator.storage.batch`),
with the same two pieces, in files of their own under the data directory:

- :meth:`EventFeed.put` appends the event to a write-ahead :class:`Journal`
  (``outbox-journal.<n>``, one ``write(2)``, no fsync) BEFORE it returns, so the
  webhook is answered only once its event is in the kernel's page cache, which
  outlives the process (``kill -9``, OOM). At start, what a dead process left is moved
  to the spool and replayed.
- A background task writes the events, in batches and in order, to the outbox store
  (``sink``: :meth:`Interconnect.enqueue`). When that fails, the batch goes to a local
  :class:`Spool` (``outbox-spool.jsonl``, fsync'd) and so does every newer event while
  the spool holds anything (nothing overtakes an older event: ``call.routed`` stays
  before ``call.completed``); the spool is replayed with an exponential backoff, for
  ever: an outage of any length delays events and drops none. Memory is bounded: past
  ``memory_limit`` events waiting, they move to the spool at once.

The outbox store's ``enqueue`` is idempotent by event id, also after delivery, so an
event written twice (a journal replayed after a crash that came between the store
write and the journal's release) is sent once.

A power cut can still lose the last few milliseconds (the journal is not fsync'd),
exactly like the call records. Local disk full too: events then wait in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from regulator.interconnect.events import OutboxEvent
from regulator.logs import get_logger
from regulator.ports import StoreError
from regulator.storage.batch import Journal
from regulator.storage.spool import Item, Spool

log = get_logger("regulator.interconnect")

#: Writes events to the outbox store (one call per batch); raises when it can't.
Sink = Callable[[Sequence[OutboxEvent]], Awaitable[object]]

JOURNAL_NAME = "outbox-journal"
SPOOL_NAME = "outbox-spool.jsonl"


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    """An event as the journal and the spool hold it (one line each)."""

    event: OutboxEvent

    def spool_line(self) -> bytes:
        return orjson.dumps({"e": self.event.as_json()})


def decode(line: bytes) -> SpooledEvent:
    """The event of one journal or spool line; ValueError/KeyError/TypeError if none."""
    data = orjson.loads(line)
    return SpooledEvent(OutboxEvent.from_json(data["e"]))


def _events(items: Sequence[Item]) -> list[OutboxEvent]:
    out = []
    for item in items:
        if not isinstance(item, SpooledEvent):  # never: this spool holds nothing else
            raise TypeError(f"not an outbox event: {type(item).__name__}")
        out.append(item.event)
    return out


class EventFeed:
    """Journal, in-memory queue, spool and background writer of the outbox events."""

    def __init__(
        self,
        sink: Sink,
        directory: Path,
        *,
        memory_limit: int = 20_000,
        max_batch: int = 500,
        retry_initial_s: float = 0.2,
        retry_max_s: float = 10.0,
        write_timeout_s: float = 10.0,
        stop_timeout_s: float = 10.0,
    ) -> None:
        if memory_limit < 1 or max_batch < 1:
            raise ValueError("memory_limit and max_batch must be positive")
        self.sink = sink
        self.memory_limit = memory_limit
        self.max_batch = max_batch
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.write_timeout_s = write_timeout_s
        self.stop_timeout_s = stop_timeout_s
        directory.mkdir(parents=True, exist_ok=True)
        self.spool = Spool(directory / SPOOL_NAME, decoder=decode, applier=self._apply)
        self._journal = Journal(directory / JOURNAL_NAME, decoder=decode)
        self.recovered = self._journal.recover(self.spool)
        self._queue: deque[tuple[int, SpooledEvent]] = deque()
        self._inflight: list[tuple[int, SpooledEvent]] = []
        self._seq = 0
        self._backoff = retry_initial_s
        self._next_try = 0.0  # the store failed: no write (replay or direct) before this
        self._disk_hold_until = 0.0  # the spool could not be written: not before this
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    # ------------------------------------------------------------------ public
    @property
    def queued(self) -> int:
        """Events waiting in memory (and in the journal), not in the spool."""
        return len(self._queue) + len(self._inflight)

    @property
    def backlog(self) -> int:
        """Events written locally (journal or spool) and not yet in the outbox store."""
        return len(self._queue) + len(self._inflight) + self.spool.pending

    def put(self, event: OutboxEvent) -> None:
        """Journal ``event`` and queue it; returns at once (never raises, never blocks)."""
        self._seq += 1
        item = (self._seq, SpooledEvent(event))
        self._journal.append(item[0], item[1])
        self._queue.append(item)
        if len(self._queue) > self.memory_limit and time.monotonic() >= self._disk_hold_until:
            # The store is slower than the calls, or down: the queue goes to the spool
            # now, in order (no fsync here: the writer task does it).
            self._spill()
        elif self._wake is not None and (
            len(self._queue) == 1 or len(self._queue) >= self.max_batch
        ):
            self._wake.set()

    def start(self) -> None:
        """Start the writer (it first replays what a previous run left in the spool)."""
        if self._task is not None:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="regulator-outbox-feed")

    async def stop(self) -> None:
        """Write what is queued (store, else fsync'd spool), stop the writer. Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            self._stopping = True
            assert self._wake is not None
            self._wake.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), self.stop_timeout_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Whatever is still in memory (a writer stopped mid-write, a sink too slow):
        # to the spool, fsync'd. The journal keeps it if even that fails.
        self._queue.extendleft(reversed(self._inflight))
        self._inflight = []
        if self._queue:
            self._spill()
        try:
            self.spool.close()
        except OSError:
            log.exception("outbox_spool_close_failed")
        self._journal.close(self._oldest())
        if self.backlog:
            log.warning("outbox_events_spooled_at_stop", pending=self.backlog)

    # ---------------------------------------------------------------- internals
    def _oldest(self) -> float:
        oldest: float = float("inf")
        if self._inflight:
            oldest = self._inflight[0][0]
        if self._queue:
            oldest = min(oldest, self._queue[0][0])
        return oldest

    def _release(self) -> None:
        self._journal.release(self._oldest())

    def _spill(self) -> bool:
        """Move the whole queue to the end of the spool; False (queue kept in memory, and
        in the journal) if the disk refused: no new attempt for ``retry_max_s``."""
        items = [entry for _, entry in self._queue]
        try:
            self.spool.append(items)
        except OSError as exc:
            log.error("outbox_spool_write_failed", kept_in_memory=len(items), error=str(exc))
            self._disk_hold_until = time.monotonic() + self.retry_max_s
            return False
        self._queue.clear()
        self._release()
        return True

    def _pause(self) -> None:
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self.retry_max_s)

    async def _apply(self, items: Sequence[Item]) -> None:
        """The spool's replay target. Every failure is an outage to wait out (StoreError):
        no event is ever set aside as unsendable."""
        try:
            async with asyncio.timeout(self.write_timeout_s):
                await self.sink(_events(items))
        except Exception as exc:
            raise StoreError(f"outbox store: {type(exc).__name__}: {exc}") from exc

    async def _write(self) -> None:
        """One batch from memory to the store; on failure, to the front of the spool."""
        self._inflight = [
            self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))
        ]
        try:
            await self._apply([entry for _, entry in self._inflight])
        except StoreError as exc:
            log.warning("outbox_enqueue_failed", events=len(self._inflight), error=str(exc))
            try:
                # In front: newer events may have been spooled by put() meanwhile.
                self.spool.prepend([entry for _, entry in self._inflight])
            except OSError as disk:
                log.error("outbox_spool_write_failed", error=str(disk))
                self._queue.extendleft(reversed(self._inflight))
                self._disk_hold_until = time.monotonic() + self.retry_max_s
            self._pause()
        else:
            self._backoff = self.retry_initial_s
        self._inflight = []
        self._release()

    async def _replay(self) -> None:
        try:
            applied = await self.spool.replay(None, batch_size=self.max_batch)
        except StoreError as exc:
            log.info("outbox_spool_replay_failed", pending=self.spool.pending, error=str(exc))
            self._pause()
        except OSError:
            log.exception("outbox_spool_replay_io_failed")
            self._pause()
        else:
            if applied:
                log.info("outbox_spool_replayed", applied=applied)
            self._backoff = self.retry_initial_s

    async def _wait(self, at_most_s: float | None) -> None:
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most_s):
                await self._wake.wait()
        self._wake.clear()

    async def _step(self) -> bool:
        """One round; False when there is nothing to do before the next wake-up."""
        now = time.monotonic()
        if self._queue and (self.spool.pending or now < self._next_try):
            # Behind the spool (or the store just failed): newer events join the end
            # of the spool, in order, fsync'd.
            if now < self._disk_hold_until:
                return await self._pause_until(self._disk_hold_until)
            if self._spill():
                await self.spool.sync_async()
            return True
        if self.spool.pending:
            if now < self._next_try:
                return await self._pause_until(self._next_try)
            await self._replay()
            return True
        if not self._queue:
            return False
        await self._write()
        return True

    async def _pause_until(self, instant: float) -> bool:
        if self._stopping:
            return False  # stop() spools what is left
        await self._wait(max(instant - time.monotonic(), 0.0))
        return True

    async def _run(self) -> None:
        while True:
            try:
                if not await self._step():
                    if self._stopping:
                        return
                    await self._wait(None)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox_feed_failed")
                await asyncio.sleep(0.1)


__all__ = ["JOURNAL_NAME", "SPOOL_NAME", "EventFeed", "Sink", "SpooledEvent", "decode"]
