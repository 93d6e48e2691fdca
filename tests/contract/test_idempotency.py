"""An Idempotency-Key remembers the request it was first used with (both stores)."""

from __future__ import annotations

from pathlib import Path

import pytest

from regulator.ports import IdempotencyMismatch, Store
from tests.support.store import referral, visit


async def test_a_key_reused_with_another_request_is_refused_and_writes_nothing(
    store: Store,
) -> None:
    _, created = await store.create_referral(referral("R1"), "k1", '{"urgency":"a"}')
    assert created
    with pytest.raises(IdempotencyMismatch) as caught:
        await store.create_referral(referral("R2"), "k1", '{"urgency":"b"}')
    print(f"key k1 reused with another fingerprint: {caught.value!r}")
    assert caught.value.existing_id == "R1"
    assert caught.value.fingerprint == '{"urgency":"a"}'
    assert await store.get_referral("R2") is None
    again, created_again = await store.create_referral(referral("R3"), "k1", '{"urgency":"a"}')
    assert (again.id, created_again) == ("R1", False)


async def test_a_key_recorded_without_fingerprint_matches_any_request(store: Store) -> None:
    await store.create_referral(referral("R1"), "k1")
    again, created = await store.create_referral(referral("R2"), "k1", '{"x":"y"}')
    assert (again.id, created) == ("R1", False)
    await store.create_referral(referral("R3"), "k2", '{"x":"y"}')
    again, created = await store.create_referral(referral("R4"), "k2")
    assert (again.id, created) == ("R3", False)


async def test_a_visit_key_reused_with_another_request_is_refused(store: Store) -> None:
    await store.add_visit(visit("V1"), "k1", '{"acts":"1"}')
    with pytest.raises(IdempotencyMismatch) as caught:
        await store.add_visit(visit("V2", acts=3), "k1", '{"acts":"3"}')
    assert caught.value.existing_id == "V1"
    assert await store.visits("nimes", "2026-11") == [visit("V1")]
    same, created = await store.add_visit(visit("V3"), "k1", '{"acts":"1"}')
    assert (same.id, created) == ("V1", False)


async def test_a_database_made_before_fingerprints_gains_the_column_on_open(
    tmp_path: Path,
) -> None:
    import sqlite3

    from regulator.storage.sqlite import SqliteStore

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # the version-1 table
        conn.execute(
            "CREATE TABLE idempotency (scope TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL,"
            " created_us INTEGER NOT NULL, PRIMARY KEY (scope, key)) WITHOUT ROWID"
        )
        conn.execute("INSERT INTO idempotency VALUES ('referral', 'old-key', 'R0', 0)")
    conn.close()
    store = SqliteStore(path)
    await store.open()
    try:
        await store.create_referral(referral("R0"), None)
        again, created = await store.create_referral(referral("R1"), "old-key", '{"a":"b"}')
        assert (again.id, created) == ("R0", False)
        await store.create_referral(referral("R2"), "new-key", '{"a":"b"}')
        with pytest.raises(IdempotencyMismatch):
            await store.create_referral(referral("R3"), "new-key", '{"a":"c"}')
    finally:
        await store.close()
