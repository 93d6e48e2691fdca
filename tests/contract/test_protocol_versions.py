"""Protocol versions in the store (history, documents, retention), on SQLite and Redis."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from regulator.core.history import ProtocolVersion
from regulator.ports import Store
from regulator.storage.sqlite import SqliteStore
from tests.support.store import MMG, MONTH, OTHER_MMG, T0, call


def version(
    ver: str, *, mmg: str = MMG, at_offset_h: float = 0.0, summary: tuple[str, ...] = ()
) -> ProtocolVersion:
    return ProtocolVersion(
        mmg=mmg,
        version=ver,
        loaded_at=T0 + timedelta(hours=at_offset_h),
        file=f"/etc/regulator/protocols/{mmg}.yaml",
        file_sha256="ab" * 32,
        summary=summary or ("première version enregistrée",),
        document='{"id":"' + mmg + '","v":"' + ver + '"}',
        roster_file=f"/etc/regulator/protocols/{mmg}-garde.ics",
        roster_sha256="cd" * 32,
    )


async def test_a_version_is_stored_with_its_document_and_read_back(store: Store) -> None:
    v1 = version("0123456789abcdef", summary=("créneaux samedi : fermé → 12:00-24:00",))
    assert await store.add_protocol_version(v1) is True
    assert await store.get_protocol_version(MMG, v1.version) == v1
    assert await store.get_protocol_version(OTHER_MMG, v1.version) is None
    assert await store.get_protocol_version(MMG, "ffffffffffffffff") is None


async def test_the_newest_version_recorded_again_writes_nothing(store: Store) -> None:
    v1 = version("aaaa000000000001")
    assert await store.add_protocol_version(v1)
    # A second replica starting with the same file records its first load too.
    again = replace(v1, loaded_at=T0 + timedelta(hours=1), summary=("autre",))
    assert await store.add_protocol_version(again) is False
    assert await store.protocol_history(MMG) == [v1]


async def test_history_is_newest_first_per_mmg_and_limited(store: Store) -> None:
    v1 = version("aaaa000000000001")
    v2 = version("aaaa000000000002", at_offset_h=1)
    v3 = version("aaaa000000000003", at_offset_h=2)
    other = version("bbbb000000000001", mmg=OTHER_MMG, at_offset_h=3)
    for v in (v1, v2, v3, other):
        assert await store.add_protocol_version(v)
    assert [v.version for v in await store.protocol_history(MMG)] == [
        v3.version,
        v2.version,
        v1.version,
    ]
    assert [v.version for v in await store.protocol_history(MMG, limit=1)] == [v3.version]
    assert await store.protocol_history(OTHER_MMG) == [other]
    assert await store.protocol_history("inconnue") == []


async def test_a_version_back_in_force_moves_to_the_top(store: Store) -> None:
    v1 = version("aaaa000000000001")
    v2 = version("aaaa000000000002", at_offset_h=1)
    await store.add_protocol_version(v1)
    await store.add_protocol_version(v2)
    back = replace(v1, loaded_at=T0 + timedelta(hours=2), summary=("retour à la version 1",))
    assert await store.add_protocol_version(back) is True
    history = await store.protocol_history(MMG)
    assert [v.version for v in history] == [v1.version, v2.version]
    assert history[0] == back


async def test_purge_keeps_versions_named_by_calls_and_those_in_force(store: Store) -> None:
    named = version("aaaa000000000001", at_offset_h=-30 * 24)
    unnamed = version("aaaa000000000002", at_offset_h=-20 * 24)
    current = version("aaaa000000000003", at_offset_h=-10 * 24)
    recent = version("aaaa000000000004", at_offset_h=1)
    for v in (named, unnamed, current, recent):
        await store.add_protocol_version(v)
    await store.record_calls([replace(call("c1", at=T0), protocol_version=named.version)])
    before = T0 - timedelta(days=1)
    deleted = await store.purge_protocol_versions(before, {(MMG, current.version)})
    assert deleted == 1
    left = {v.version for v in await store.protocol_history(MMG)}
    assert left == {named.version, current.version, recent.version}
    assert await store.get_protocol_version(MMG, unnamed.version) is None


async def test_purge_drops_a_version_once_its_calls_are_purged(store: Store) -> None:
    old = version("aaaa000000000001", at_offset_h=-60 * 24)
    await store.add_protocol_version(old)
    old_call = replace(call("c-old", at=T0 - timedelta(days=59)), protocol_version=old.version)
    await store.record_calls([old_call])
    # Within retention (cutoff before the call), the call names it: kept.
    assert await store.purge_protocol_versions(T0 - timedelta(days=59, hours=1), set()) == 0
    before = T0 - timedelta(days=30)  # past retention: the call goes, then its version
    assert await store.purge_calls(before) == 1
    assert await store.purge_protocol_versions(before, set()) == 1
    assert await store.protocol_history(MMG) == []


async def test_a_call_record_keeps_its_protocol_version(store: Store) -> None:
    record = replace(call("c-ver"), protocol_version="0123456789abcdef")
    await store.record_calls([record])
    stored = await store.get_call("c-ver")
    assert stored is not None
    assert stored.protocol_version == "0123456789abcdef"
    await store.record_calls([call("c-none")])
    unnamed = await store.get_call("c-none")
    assert unnamed is not None
    assert unnamed.protocol_version == ""


async def test_sqlite_file_of_schema_2_gains_the_protocol_version_column(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # schema 2, as the previous version created it
        conn.execute(
            "CREATE TABLE calls (call_id TEXT PRIMARY KEY, mmg TEXT NOT NULL, month TEXT NOT"
            " NULL, platform TEXT NOT NULL, caller TEXT NOT NULL, at_us INTEGER NOT NULL,"
            " day_type TEXT NOT NULL, hour INTEGER NOT NULL, route TEXT NOT NULL, ground TEXT,"
            " rule TEXT NOT NULL, failsafe INTEGER NOT NULL, status TEXT NOT NULL,"
            " duration_s INTEGER, routes TEXT NOT NULL DEFAULT '')"
        )
        conn.execute(
            "INSERT INTO calls VALUES ('OLD', ?, ?, 'twilio', '+33611223344', 0, 'weekday',"
            " 20, 'regulation', NULL, 'r', 0, 'in_progress', NULL, 'regulation')",
            (MMG, MONTH),
        )
    store = SqliteStore(path)
    await store.open()
    try:
        old = await store.get_call("OLD")
        assert old is not None
        assert old.protocol_version == ""  # decided before versions existed
        await store.record_calls([replace(call("NEW"), protocol_version="0123456789abcdef")])
        new = await store.get_call("NEW")
        assert new is not None
        assert new.protocol_version == "0123456789abcdef"
    finally:
        await store.close()


async def test_versions_loaded_at_the_same_instant_list_in_descending_id(store: Store) -> None:
    for ver in ("aaaa000000000002", "aaaa000000000009", "aaaa000000000005"):
        await store.add_protocol_version(version(ver))
    listed = [v.version for v in await store.protocol_history(MMG, limit=2)]
    assert listed == ["aaaa000000000009", "aaaa000000000005"]


async def test_redis_version_keys_are_the_documented_ones(
    redis_url: str, redis_prefix: str
) -> None:
    from regulator.storage.redis import RedisStore

    store = RedisStore(redis_url, prefix=f"{redis_prefix}-layout")
    await store.open()
    try:
        client = store._db()
        v1 = version("aaaa000000000001")
        await store.add_protocol_version(v1)
        await store.record_calls([replace(call("c1"), protocol_version=v1.version)])
        found = {k.decode() async for k in client.scan_iter(match=f"{store.keys.prefix}:prot*")}
        assert found == {
            store.keys.protocol_version(MMG, v1.version),
            store.keys.protocol_history(MMG),
            store.keys.protocol_versions_by_at(),
            store.keys.protocol_versions_used(),
        }
        used = await client.zscore(store.keys.protocol_versions_used(), f"{MMG}:{v1.version}")
        assert used is not None
        assert int(used) == int(T0.timestamp() * 1_000_000)
    finally:
        await client.delete(*[k async for k in client.scan_iter(match=f"{store.keys.prefix}:*")])
        await store.close()
