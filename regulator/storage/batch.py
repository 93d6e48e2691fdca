"""Group commit of call records and updates: the webhook never waits for the store.

``submit_record`` / ``submit_update`` only append to an in-memory queue and return.
One background task drains the queue every few milliseconds into ONE
``record_calls`` and ONE ``update_calls`` per batch (records first — see
:func:`regulator.storage.spool.apply`), so a burst of calls costs a handful of
transactions, not one per call.

When the store fails, the batch goes to the local :class:`~regulator.storage.spool.Spool`
and, while the spool holds anything, every newer item goes there too (so nothing
overtakes an older write); the same task replays the spool every ~0.5 s, backing off
to a few seconds, and goes back to direct writes once it is empty. If the queue is
full (the store is slower than the calls), ``submit_*`` moves the queue and the new
item to the spool synchronously: back-pressure without blocking the caller.

Process crash (``kill -9``, OOM): with a ``journal`` path, ``submit_*`` also appends
the item to a write-ahead journal (one ``write(2)``, no fsync) BEFORE returning, so a
webhook answered after ``submit_*`` never depends on memory alone: its record is in
the store, in the spool or in the journal, all in the kernel's page cache, which
outlives the process. Journal segments are deleted as soon as everything they hold
has reached the store or the spool; at start, what a dead process left is moved to
the spool and replayed (the store's writes are idempotent and the journal is an
ordered suffix of the submissions, so items written twice converge to the same state).
A power cut can still lose the last few milliseconds: the journal is not fsync'd.

Local disk full or read-only too (the spool can't be written): nothing is dropped.
The items go back to the front of the in-memory queue, in order, and the writer
tries again after a pause (``retry_*``), the store directly when the spool is empty,
else the spool; meanwhile new items wait behind them in memory (and in the journal,
if it can still be written). ``stop()`` gives up after ``stop_timeout_s`` and says
how many items it could not save.

Order is kept: items reach the store (or the spool) in submission order, except
that within one batch records are written before updates. A batch that was in flight
when newer items were spooled is put back in FRONT of the spool if it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from regulator.core.legs import LegChange, LegEvent
from regulator.core.models import CallRecord, CallUpdate, HookAnswer
from regulator.logs import get_logger
from regulator.ports import Store, StoreError
from regulator.storage.spool import Item, Spool, decode, encode, open_private

log = get_logger(__name__)

ErrorCallback = Callable[[str], object]
SpoolCallback = Callable[[int], object]
LegsCallback = Callable[[Sequence[LegChange]], object]
#: ``on_records(records, new_flags)``: per record, True if the store took it as the
#: call's first, False if it already had one, None if it was spooled unsettled.
RecordsCallback = Callable[[Sequence[CallRecord], Sequence[bool | None]], object]


class Journal:
    """Write-ahead copies of the items the writer holds only in memory (see the module
    docstring). Segment files ``<path>.<n>``; a segment is sealed once it reaches
    :attr:`segment_bytes` and deleted once every item in it is durable elsewhere."""

    segment_bytes = 1 << 20

    def __init__(self, path: Path, *, decoder: Callable[[bytes], Item] = decode) -> None:
        """``decoder``: for a journal of another writer's items (see :class:`Spool`)."""
        self.path = Path(path)
        self._decode = decoder
        self._fd: int | None = None
        self._number = 0
        self._size = 0
        self._last_seq = 0  # last item written to the current segment
        self._sealed: list[tuple[Path, int]] = []  # (segment, its last seq), oldest first
        self._failing = False
        self._torn = False  # the segment ends in half a line (a write failed midway)

    def _segments(self) -> list[Path]:
        found: list[tuple[int, Path]] = []
        for candidate in self.path.parent.glob(self.path.name + ".*"):
            suffix = candidate.name[len(self.path.name) + 1 :]
            if suffix.isdigit():
                found.append((int(suffix), candidate))
        return [p for _, p in sorted(found)]

    def recover(self, spool: Spool) -> int:
        """Move what a previous process left into ``spool`` (fsync'd); return the count."""
        segments = self._segments()
        items: list[Item] = []
        for segment in segments:
            for line in segment.read_bytes().splitlines():
                try:
                    items.append(self._decode(line))
                except (ValueError, KeyError, TypeError):
                    log.error("journal_line_unreadable", path=str(segment))
        if items:
            spool.append(items)
            spool.sync()
            log.warning("journal_recovered", items=len(items), segments=len(segments))
        for segment in segments:
            segment.unlink(missing_ok=True)
        return len(items)

    def append(self, seq: int, item: Item) -> None:
        """Write one item (never raises: a journal that can't be written is logged)."""
        data = encode(item)
        if self._torn:  # end the half line a failed write left (see Spool.append)
            data = b"\n" + data
        try:
            if self._fd is None:
                self._number += 1
                name = self.path.with_name(f"{self.path.name}.{self._number:06d}")
                flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC
                self._fd = open_private(name, flags)
                self._size = 0
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if not self._failing:  # once per outage, not once per call
                log.error("journal_write_failed", error=str(exc))
            self._failing = True
            self._after_failed_write(data)
            return
        self._failing = False
        self._torn = False
        self._size += len(data)
        self._last_seq = seq
        if self._size >= self.segment_bytes:
            self._seal()

    def _after_failed_write(self, data: bytes) -> None:
        """Note whether the failed write of ``data`` left half a line in the segment."""
        if self._fd is None:
            return
        try:
            done = min(os.fstat(self._fd).st_size - self._size, len(data))
        except OSError:
            self._torn = True  # unknown: an empty line costs nothing, a glued one an item
            return
        if done > 0:
            self._torn = data[done - 1] != ord("\n")
            self._size += done

    def _current(self) -> Path:
        return self.path.with_name(f"{self.path.name}.{self._number:06d}")

    def _seal(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._sealed.append((self._current(), self._last_seq))

    def release(self, oldest_outstanding: float) -> None:
        """Forget every item whose seq is below ``oldest_outstanding`` (now durable)."""
        try:
            while self._sealed and self._sealed[0][1] < oldest_outstanding:
                self._sealed.pop(0)[0].unlink(missing_ok=True)
            if self._fd is not None and self._size and self._last_seq < oldest_outstanding:
                os.ftruncate(self._fd, 0)
                self._size = 0
                self._torn = False
        except OSError as exc:
            log.error("journal_release_failed", error=str(exc))

    def close(self, oldest_outstanding: float) -> None:
        self.release(oldest_outstanding)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if not self._size:
                self._current().unlink(missing_ok=True)


class CallWriter:
    """Background group-committing writer of call records and updates."""

    def __init__(
        self,
        store: Store,
        spool: Spool,
        *,
        max_batch: int = 500,
        max_delay_s: float = 0.005,
        queue_size: int = 20000,
        retry_initial_s: float = 0.5,
        retry_max_s: float = 5.0,
        on_error: ErrorCallback | None = None,
        on_spool_change: SpoolCallback | None = None,
        journal: Path | None = None,
        stop_timeout_s: float = 10.0,
        on_legs: LegsCallback | None = None,
        on_records: RecordsCallback | None = None,
    ) -> None:
        """``on_error(op)`` is called once per failed store operation (``record_calls``,
        ``update_calls``, ``replay``, ``spool``); ``on_spool_change(pending)`` whenever
        the number of spooled items changes. Both run on the event loop and must not
        raise (exceptions are logged and ignored). ``journal``: path prefix of the
        write-ahead journal segments (None: items wait in memory only, as in tests).
        ``on_legs(changes)``: the leg changes each written batch settled (direct writes
        and spool replays alike), once per change: what the live leg metrics count.
        ``on_records(records, new_flags)`` (also settable as :attr:`on_records`): the
        records each written batch settled, with ``record_calls``' flags (True: this
        record was the call's first; False: the store already had one, a replay), for
        direct writes and spool replays alike; a record put in the spool because the
        store failed is reported once more, at once, with None (not settled: the store
        cannot tell). What counts calls and publishes them (CallRouter) listens here."""
        if max_batch < 1 or queue_size < 1:
            raise ValueError("max_batch and queue_size must be positive")
        self.store = store
        self.spool = spool
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.queue_size = queue_size
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self._on_error = on_error
        self._on_spool_change = on_spool_change
        self._on_legs = on_legs
        self.on_records = on_records
        spool.on_legs = self._legs_settled
        spool.on_records = self._records_settled
        self._queue: deque[tuple[int, Item]] = deque()
        self._seq = 0  # sequence number of the last submitted item
        self._inflight_min: int | None = None  # oldest item being written to the store
        self._wake: asyncio.Event | None = None
        self._progress: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._backoff = retry_initial_s
        self._next_replay = 0.0
        self.stop_timeout_s = stop_timeout_s
        self._hold_until = 0.0  # the spool failed: don't retry before this instant
        self._journal = Journal(journal) if journal is not None else None
        if self._journal is not None:
            self._journal.recover(spool)

    # ------------------------------------------------------------------ public
    @property
    def queued(self) -> int:
        """Items waiting in memory (not yet in the store nor in the spool)."""
        return len(self._queue)

    @property
    def spooled(self) -> int:
        return self.spool.pending

    def submit_record(self, record: CallRecord) -> None:
        """Queue a new call record; returns at once."""
        self._submit(record)

    def submit_update(self, update: CallUpdate) -> None:
        """Queue a later fact about a call; returns at once."""
        self._submit(update)

    def submit_leg(self, event: LegEvent) -> None:
        """Queue a dial-leg event (core/legs.py); returns at once."""
        self._submit(event)

    def submit_answer(self, answer: HookAnswer) -> None:
        """Queue a webhook's first answer (kept for replays); returns at once."""
        self._submit(answer)

    async def start(self) -> None:
        """Start the background task (replays what a previous run left in the spool)."""
        if self._task is not None:
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._next_replay = 0.0
        self._notify_spool()
        self._task = asyncio.create_task(self._run(), name="regulator-call-writer")
        if self._queue or self.spool.pending:
            self._wake.set()

    async def flush(self) -> None:
        """Wait until everything submitted so far is in the store or (fsync'd) in the spool."""
        target = self._seq
        if self._task is None:
            await self._drain_inline(target)
        else:
            assert self._wake is not None
            assert self._progress is not None
            while self._oldest_outstanding() <= target and not self._task.done():
                self._progress.clear()
                self._wake.set()
                await self._progress.wait()
        await self._sync_spool()

    async def stop(self) -> None:
        """Flush, stop the background task and fsync the spool. Idempotent."""
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(self.flush(), self.stop_timeout_s)
            except TimeoutError:
                log.error("call_writer_stop_timeout", unsaved=len(self._queue))
            self._stopping = True
            assert self._wake is not None
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None
        if self._queue:  # submitted while stopping
            await self._drain_inline(self._seq)
        self._close_spool()
        if self._journal is not None:
            self._journal.close(self._oldest_outstanding())

    # ---------------------------------------------------------------- internals
    def _submit(self, item: Item) -> None:
        self._seq += 1
        if self._journal is not None:
            self._journal.append(self._seq, item)
        if len(self._queue) >= self.queue_size:
            # Store too slow or down: the queue and the new item go to the spool, in
            # order, right now. No fsync here (the writer task does it).
            self._queue.append((self._seq, item))
            if time.monotonic() >= self._hold_until:
                batch = list(self._queue)
                self._queue.clear()
                if not self._to_spool([queued for _, queued in batch]):
                    self._hold(batch)
                self._set_progress()
            return
        self._queue.append((self._seq, item))
        # Wake the writer on the first item, and early once a full batch is waiting.
        if self._wake is not None and (len(self._queue) == 1 or len(self._queue) >= self.max_batch):
            self._wake.set()

    def _oldest_outstanding(self) -> float:
        oldest: float = float("inf")
        if self._queue:
            oldest = self._queue[0][0]
        if self._inflight_min is not None:
            oldest = min(oldest, self._inflight_min)
        return oldest

    def _set_progress(self) -> None:
        if self._journal is not None:
            self._journal.release(self._oldest_outstanding())
        if self._progress is not None:
            self._progress.set()

    def _notify_spool(self) -> None:
        if self._on_spool_change is not None:
            try:
                self._on_spool_change(self.spool.pending)
            except Exception:
                log.exception("spool_callback_failed")

    def _legs_settled(self, changes: Sequence[LegChange]) -> None:
        if self._on_legs is None or not changes:
            return
        try:
            self._on_legs(changes)
        except Exception:
            log.exception("leg_changes_callback_failed")

    def _records_settled(self, records: Sequence[CallRecord], flags: Sequence[bool | None]) -> None:
        if self.on_records is None or not records:
            return
        try:
            self.on_records(records, flags)
        except Exception:
            log.exception("records_callback_failed")

    def _error(self, op: str) -> None:
        if self._on_error is not None:
            try:
                self._on_error(op)
            except Exception:
                log.exception("error_callback_failed")

    def _to_spool(self, items: Sequence[Item], *, front: bool = False) -> bool:
        """Append ``items`` to the spool (``front``: before what is already there, for a
        failed in-flight batch older than the spooled items). False if the disk refused:
        the caller then keeps them in memory (see _hold)."""
        try:
            if front:
                self.spool.prepend(items)
            else:
                self.spool.append(items)
        except OSError as exc:
            self._error("spool")
            log.error("spool_write_failed", kept_in_memory=len(items), error=str(exc))
            return False
        finally:
            self._notify_spool()
        records = [item for item in items if isinstance(item, CallRecord)]
        self._records_settled(records, [None] * len(records))
        return True

    def _hold(self, batch: Sequence[tuple[int, Item]]) -> None:
        """Neither the store nor the spool took ``batch``: put it back in front of the
        queue (it is older than everything there) and pause before trying again."""
        self._queue.extendleft(reversed(batch))
        self._backoff = min(self._backoff * 2, self.retry_max_s)
        self._hold_until = time.monotonic() + self._backoff

    async def _sync_spool(self) -> None:
        try:
            await self.spool.sync_async()
        except OSError:
            self._error("spool")
            log.exception("spool_sync_failed")

    def _close_spool(self) -> None:
        try:
            self.spool.close()
        except OSError:
            self._error("spool")
            log.exception("spool_close_failed")

    def _take(self) -> list[tuple[int, Item]]:
        batch: list[tuple[int, Item]] = []
        while self._queue and len(batch) < self.max_batch:
            batch.append(self._queue.popleft())
        return batch

    async def _write(self, batch: list[tuple[int, Item]]) -> None:
        """Write one batch to the store; on failure, put what didn't go in the spool."""
        self._inflight_min = batch[0][0]
        records = [item for _, item in batch if isinstance(item, CallRecord)]
        updates = [item for _, item in batch if isinstance(item, CallUpdate)]
        answers = [item for _, item in batch if isinstance(item, HookAnswer)]
        legs = [item for _, item in batch if isinstance(item, LegEvent)]
        failed: list[tuple[int, Item]] = []
        try:
            if records:
                try:
                    new = await self.store.record_calls(records)
                except StoreError as exc:
                    self._error("record_calls")
                    log.warning("store_write_failed", op="record_calls", error=str(exc))
                    failed = batch
                else:
                    self._records_settled(records, new)
            if updates and not failed:
                try:
                    await self.store.update_calls(updates)
                except StoreError as exc:
                    self._error("update_calls")
                    log.warning("store_write_failed", op="update_calls", error=str(exc))
                    # The answers and leg events of the batch are not written either.
                    failed = [pair for pair in batch if not isinstance(pair[1], CallRecord)]
            if answers and not failed:
                try:
                    await self.store.record_answers(answers)
                except StoreError as exc:
                    self._error("record_answers")
                    log.warning("store_write_failed", op="record_answers", error=str(exc))
                    failed = [pair for pair in batch if isinstance(pair[1], HookAnswer | LegEvent)]
            if legs and not failed:
                try:
                    self._legs_settled(await self.store.record_leg_events(legs))
                except StoreError as exc:
                    self._error("record_leg_events")
                    log.warning("store_write_failed", op="record_leg_events", error=str(exc))
                    failed = [pair for pair in batch if isinstance(pair[1], LegEvent)]
        except Exception:
            # Not a storage outage: a bug or a value the store refuses. Spool the batch
            # (the replay isolates and sets aside what can never be applied).
            self._error("record_calls")
            log.exception("store_write_crashed", items=len(batch))
            failed = batch
        if failed:
            # Newer items may have been spooled while this batch was in flight.
            if not self._to_spool([item for _, item in failed], front=True):
                self._hold(failed)
            self._next_replay = time.monotonic() + self._backoff
        self._inflight_min = None
        self._set_progress()

    async def _replay(self) -> None:
        try:
            applied = await self.spool.replay(self.store, batch_size=self.max_batch)
        except StoreError as exc:
            self._error("replay")
            log.info("spool_replay_failed", pending=self.spool.pending, error=str(exc))
            self._backoff = min(self._backoff * 2, self.retry_max_s)
            self._next_replay = time.monotonic() + self._backoff
        except OSError:
            self._error("spool")
            log.exception("spool_replay_io_failed")
            self._next_replay = time.monotonic() + self.retry_max_s
        else:
            log.info("spool_replayed", applied=applied)
            self._backoff = self.retry_initial_s
        self._notify_spool()
        self._set_progress()

    async def _wait(self, at_most_s: float | None) -> None:
        assert self._wake is not None
        if at_most_s is not None and at_most_s <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(at_most_s):
                await self._wake.wait()
        self._wake.clear()

    async def _window(self) -> None:
        """Group commit: let a few more items join the batch (one commit for all)."""
        if len(self._queue) < self.max_batch and self.max_delay_s > 0 and not self._stopping:
            await asyncio.sleep(self.max_delay_s)

    async def _step(self) -> None:
        """One round: move queued items to the store or the spool, maybe replay."""
        if self.spool.pending:
            if self._queue:
                await self._window()
                batch = self._take()
                if self._to_spool([item for _, item in batch]):
                    await self._sync_spool()
                else:
                    self._hold(batch)
                self._set_progress()
                return
            if time.monotonic() >= self._next_replay:
                await self._replay()
            return
        await self._window()
        batch = self._take()
        if batch:
            await self._write(batch)

    async def _run(self) -> None:
        while True:
            try:
                if self._stopping and not self._queue:
                    return
                pause = self._hold_until - time.monotonic()
                if self._queue and pause > 0:
                    if self._stopping:
                        return  # stop() reports what could not be saved
                    await self._wait(pause)
                    continue
                if not self._queue and not (
                    self.spool.pending and time.monotonic() >= self._next_replay
                ):
                    self._set_progress()
                    timeout = None
                    if self.spool.pending:
                        timeout = max(self._next_replay - time.monotonic(), 0.0)
                    await self._wait(timeout)
                    continue
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("call_writer_failed")
                self._error("writer")
                await asyncio.sleep(0.1)

    async def _drain_inline(self, target: int) -> None:
        """flush()/stop() without a running task (tests, CLI): write directly."""
        while self._queue and self._queue[0][0] <= target:
            if time.monotonic() < self._hold_until:
                log.error("call_writer_unsaved", items=len(self._queue))
                return
            if self.spool.pending:
                batch = self._take()
                if not self._to_spool([item for _, item in batch]):
                    self._hold(batch)
                self._set_progress()
            else:
                await self._write(self._take())


__all__ = ["CallWriter", "Journal"]
