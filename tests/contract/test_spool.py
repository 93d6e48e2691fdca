"""The local spool: durable across restarts, replayed idempotently and in order."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from regulator.core.models import CallRecord, CallUpdate, Ground, HookAnswer, Route
from regulator.ports import Store, StoreError
from regulator.storage.spool import Spool, decode, encode
from tests.support.disk import HalfWriteThenFull
from tests.support.store import MMG, MONTH, T0, call, expected_counters


class FailingAfter:
    """A real store that starts failing after ``ok_calls`` writes (an outage mid-replay)."""

    def __init__(self, store: Store, ok_calls: int) -> None:
        self.store = store
        self.ok_calls = ok_calls

    def _tick(self) -> None:
        if self.ok_calls <= 0:
            raise StoreError("connection lost")
        self.ok_calls -= 1

    async def record_calls(self, records: Sequence[CallRecord]) -> list[bool]:
        self._tick()
        return await self.store.record_calls(records)

    async def update_calls(self, updates: Sequence[CallUpdate]) -> None:
        self._tick()
        await self.store.update_calls(updates)


def reroute(call_id: str, route: Route, ground: Ground | None = None) -> CallUpdate:
    return CallUpdate(call_id=call_id, mmg=MMG, month=MONTH, route=route, ground=ground)


async def test_spool_survives_a_reopen(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "spool.jsonl"
    spool = Spool(path)
    assert spool.pending == 0
    spool.append([call("CA1"), call("CA2")])
    spool.append([reroute("CA1", Route.PHARMACY)])
    spool.close()

    reopened = Spool(path)
    assert reopened.pending == 3
    assert await reopened.replay(store) == 3
    assert reopened.pending == 0
    assert path.read_bytes() == b""
    assert await store.call_counters(MMG, MONTH) == expected_counters(
        [call("CA1", route=Route.PHARMACY), call("CA2")]
    )
    reopened.close()
    assert Spool(path).pending == 0


async def test_replay_is_idempotent(tmp_path: Path, store: Store) -> None:
    items: list[CallRecord | CallUpdate] = [
        call("CA1", route=Route.MENU),
        call("CA2"),
        reroute("CA1", Route.DIRECT_ACCESS, Ground.REGULATION_OVERFLOW),
    ]
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append(items)
    await spool.replay(store)
    # The same items again (a crash after applying but before truncating the file).
    spool.append(items)
    assert spool.pending == 3
    await spool.replay(store)
    spool.close()
    final = [call("CA1", route=Route.DIRECT_ACCESS, ground=Ground.REGULATION_OVERFLOW), call("CA2")]
    assert await store.call_counters(MMG, MONTH) == expected_counters(final)


async def test_replay_applies_items_in_file_order(tmp_path: Path, store: Store) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([call("CA1", route=Route.MENU)])
    spool.append([reroute("CA1", Route.REGULATION)])
    spool.append([reroute("CA1", Route.PHARMACY)])
    spool.append([CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, status="completed")])
    await spool.replay(store, batch_size=1)
    spool.close()
    stored = await store.get_call("CA1")
    assert stored is not None
    assert (stored.route, stored.status) == (Route.PHARMACY, "completed")
    assert await store.call_counters(MMG, MONTH) == expected_counters(
        [call("CA1", route=Route.PHARMACY)]
    )


async def test_failed_replay_keeps_exactly_the_unapplied_tail(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "spool.jsonl"
    spool = Spool(path)
    spool.append([call(f"CA{i}") for i in range(10)])
    with pytest.raises(StoreError):
        await spool.replay(FailingAfter(store, ok_calls=2), batch_size=3)  # type: ignore[arg-type]
    assert spool.pending == 4
    assert Spool(path).pending == 4
    assert (await store.call_counters(MMG, MONTH))["calls"] == 6

    # Appends after a rewrite of the file still land in it.
    spool.append([call("CA10")])
    assert await spool.replay(store) == 5
    spool.close()
    assert (await store.call_counters(MMG, MONTH))["calls"] == 11


async def test_replay_into_an_unreachable_store_changes_nothing(tmp_path: Path) -> None:
    from regulator.storage.redis import RedisStore

    dead = RedisStore(f"unix://{tmp_path}/nobody.sock", prefix="x")
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([call("CA1"), call("CA2")])
    before = spool.path.read_bytes()
    with pytest.raises(StoreError):
        await _replay_dead(spool, dead)
    assert spool.pending == 2
    assert spool.path.read_bytes() == before
    spool.close()


async def _replay_dead(spool: Spool, dead: Store) -> None:
    with contextlib.suppress(StoreError):
        await dead.open()
    try:
        await spool.replay(dead)
    finally:
        await dead.close()


async def test_prepend_puts_items_before_what_is_spooled(tmp_path: Path, store: Store) -> None:
    spool = Spool(tmp_path / "spool.jsonl")
    spool.append([reroute("CA1", Route.PHARMACY)])
    spool.prepend([call("CA1", route=Route.MENU)])  # the older, in-flight record
    assert spool.pending == 2
    await spool.replay(store, batch_size=1)
    spool.close()
    stored = await store.get_call("CA1")
    assert stored is not None
    assert stored.route is Route.PHARMACY


async def test_a_torn_last_line_is_set_aside_on_open(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "spool.jsonl"
    path.write_bytes(encode(call("CA1")) + encode(call("CA2"))[:25])
    spool = Spool(path)
    assert spool.pending == 1
    assert spool.rejected_path.exists()
    spool.append([call("CA3")])
    assert await spool.replay(store) == 2
    spool.close()
    assert await store.get_call("CA1") is not None
    assert await store.get_call("CA3") is not None


async def test_an_undecodable_line_does_not_block_the_spool(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "spool.jsonl"
    path.write_bytes(encode(call("CA1")) + b'{"x": 1}\n' + b"not json\n" + encode(call("CA2")))
    spool = Spool(path)
    assert spool.pending == 4
    assert await spool.replay(store) == 2
    assert spool.pending == 0
    spool.close()
    assert spool.rejected_path.read_bytes().count(b"\n") == 2
    assert (await store.call_counters(MMG, MONTH))["calls"] == 2


async def test_a_half_written_append_does_not_swallow_the_next_item(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "spool.jsonl"
    spool = Spool(path)
    full = HalfWriteThenFull(path)
    monkeypatch.setattr(os, "write", full)
    spool.append([call("CA1")])
    full.armed = True
    with pytest.raises(OSError, match="No space left"):
        spool.append([call("CA2")])
    assert not path.read_bytes().endswith(b"\n"), "the fault left half a line"
    # The call writer keeps the refused items and appends them again once there is room.
    spool.append([call("CA2")])
    spool.append([call("CA3")])
    applied = await spool.replay(store)
    spool.close()
    assert [c for c in ("CA1", "CA2", "CA3") if await store.get_call(c) is None] == []
    assert applied == 3
    assert spool.rejected == 1  # only the torn fragment is set aside
    assert spool.rejected_path.read_bytes().count(b"\n") == 1
    assert (await store.call_counters(MMG, MONTH))["calls"] == 3


async def test_a_torn_fragment_left_by_a_failed_append_survives_a_reopen(
    tmp_path: Path, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "spool.jsonl"
    spool = Spool(path)
    full = HalfWriteThenFull(path)
    monkeypatch.setattr(os, "write", full)
    spool.append([call("CA1")])
    full.armed = True
    batch = [call("CA2"), call("CA3"), call("CA4")]
    with pytest.raises(OSError, match="No space left"):
        spool.append(batch)  # CA2 whole, CA3 torn
    spool.append(batch)
    spool.close()
    reopened = Spool(path)
    assert reopened.pending == 6  # CA1, CA2, the fragment, CA2 again, CA3, CA4
    await reopened.replay(store)
    reopened.close()
    assert [c for c in ("CA1", "CA2", "CA3", "CA4") if await store.get_call(c) is None] == []
    assert reopened.rejected_path.read_bytes().count(b"\n") == 1
    assert (await store.call_counters(MMG, MONTH))["calls"] == 4


async def test_answers_round_trip_and_replays_report_which_records_were_new(
    tmp_path: Path, store: Store
) -> None:
    answer = HookAnswer("twilio", "CAsp1", "digits", "2", b"<Response/>\xff", "text/xml", T0)
    assert decode(encode(answer)) == answer
    await store.record_calls([call("CAsp0")])  # another replica had this call first
    spool = Spool(tmp_path / "spool.jsonl")
    settled: list[tuple[str, bool]] = []
    spool.on_records = lambda records, new: settled.extend(
        (r.call_id, n) for r, n in zip(records, new, strict=True)
    )
    spool.append([call("CAsp0"), call("CAsp1"), answer])
    assert await spool.replay(store) == 3
    print(f"replayed records settled: {settled}")
    assert settled == [("CAsp0", False), ("CAsp1", True)]
    got = await store.hook_answer("twilio", "CAsp1", "digits", "2")
    assert got is not None and got.body == answer.body
