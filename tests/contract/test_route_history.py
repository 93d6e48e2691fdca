"""Route history: which destinations a call was given, as any replica reads it back.

A failed-dial webhook may reach a replica other than the one that gave the
destination: the store, not a process's memory, says what the call's last route was.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

from regulator.core.models import CallUpdate, Ground, Route
from regulator.ports import RouteHistory, Store
from regulator.storage import codec
from regulator.storage.sqlite import SqliteStore
from tests.support.store import CALLER, MMG, MONTH, call


def _reroute(call_id: str, route: Route, ground: Ground | None = None) -> CallUpdate:
    return CallUpdate(call_id=call_id, mmg=MMG, month=MONTH, route=route, ground=ground)


async def test_unknown_call_has_no_route_history(store: Store) -> None:
    assert await store.route_history("never-seen") is None


async def test_history_starts_with_the_recorded_destination(store: Store) -> None:
    record = call(
        "CA1", route=Route.DIRECT_ACCESS, ground=Ground.PROFESSIONAL, routes=(Route.DIRECT_ACCESS,)
    )
    await store.record_calls([record])
    history = await store.route_history("CA1")
    assert history == RouteHistory(mmg=MMG, routes=(Route.DIRECT_ACCESS,), caller=CALLER)
    assert history.last is Route.DIRECT_ACCESS
    assert await store.get_call("CA1") == record


async def test_every_new_destination_is_appended_once_in_order(store: Store) -> None:
    await store.record_calls([call("CA1", route=Route.MENU)])
    assert await store.route_history("CA1") == RouteHistory(mmg=MMG, routes=(), caller=CALLER)
    pharmacy = _reroute("CA1", Route.PHARMACY)
    regulation = _reroute("CA1", Route.REGULATION)
    overflow = _reroute("CA1", Route.DIRECT_ACCESS, Ground.REGULATION_OVERFLOW)
    await store.update_calls([pharmacy, regulation])
    # Replays (spool, journal) and a second report of the same route change nothing.
    await store.update_calls([regulation, pharmacy, regulation])
    await store.update_calls([overflow])
    history = await store.route_history("CA1")
    assert history is not None
    assert history.routes == (Route.PHARMACY, Route.REGULATION, Route.DIRECT_ACCESS)
    assert history.last is Route.DIRECT_ACCESS
    stored = await store.get_call("CA1")
    assert stored is not None and stored.routes == history.routes
    assert stored.route is Route.DIRECT_ACCESS


async def test_status_and_menu_updates_leave_the_history_alone(store: Store) -> None:
    await store.record_calls([call("CA1", routes=(Route.REGULATION,))])
    await store.update_calls(
        [
            CallUpdate(call_id="CA1", mmg=MMG, month=MONTH, status="completed", duration_s=42),
            _reroute("CA1", Route.MENU),
        ]
    )
    history = await store.route_history("CA1")
    assert history is not None and history.routes == (Route.REGULATION,)


async def test_an_announcement_closes_the_history(store: Store) -> None:
    # "Raccrochez et composez le 15": the route stays regulation, the history says the
    # caller was told to dial (nothing is dialled for this call any more).
    await store.record_calls([call("CA1", routes=(Route.REGULATION,))])
    announce = CallUpdate(
        call_id="CA1", mmg=MMG, month=MONTH, route=Route.REGULATION, offered=Route.CLOSED
    )
    await store.update_calls([announce, announce])
    history = await store.route_history("CA1")
    assert history is not None and history.routes == (Route.REGULATION, Route.CLOSED)
    assert history.last is Route.CLOSED
    stored = await store.get_call("CA1")
    assert stored is not None and stored.route is Route.REGULATION


async def test_record_without_history_reads_its_route_as_history(store: Store) -> None:
    # Records written before route histories existed (or replayed from an old spool).
    await store.record_calls([call("OLD", route=Route.PHARMACY), call("MENU", route=Route.MENU)])
    assert await store.route_history("OLD") == RouteHistory(
        mmg=MMG, routes=(Route.PHARMACY,), caller=CALLER
    )
    assert await store.route_history("MENU") == RouteHistory(mmg=MMG, routes=(), caller=CALLER)


async def test_histories_of_two_calls_are_independent(store: Store) -> None:
    await store.record_calls(
        [call("CA1", routes=(Route.REGULATION,)), call("CA2", routes=(Route.REGULATION,))]
    )
    await store.update_calls([_reroute("CA1", Route.DIRECT_ACCESS, Ground.REGULATION_OVERFLOW)])
    one, two = await store.route_history("CA1"), await store.route_history("CA2")
    assert one is not None and one.routes == (Route.REGULATION, Route.DIRECT_ACCESS)
    assert two is not None and two.routes == (Route.REGULATION,)


def test_spooled_records_keep_their_history_and_old_ones_read_empty() -> None:
    record = call("CA1", routes=(Route.PHARMACY, Route.REGULATION))
    data = codec.record_to_dict(record)
    assert data["routes"] == ["pharmacy", "regulation"]
    assert codec.record_from_dict(data) == record
    del data["routes"]  # a record spooled by the previous version
    assert codec.record_from_dict(data) == replace(record, routes=())
    update = CallUpdate(
        call_id="CA1", mmg=MMG, month=MONTH, route=Route.REGULATION, offered=Route.CLOSED
    )
    assert codec.update_from_dict(codec.update_to_dict(update)) == update
    old = codec.update_to_dict(update)
    del old["offered"]
    assert codec.update_from_dict(old) == replace(update, offered=None)


async def test_sqlite_file_of_the_previous_schema_gains_the_history_column(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:  # schema 1, as the previous version created it
        conn.execute(
            "CREATE TABLE calls (call_id TEXT PRIMARY KEY, mmg TEXT NOT NULL, month TEXT NOT"
            " NULL, platform TEXT NOT NULL, caller TEXT NOT NULL, at_us INTEGER NOT NULL,"
            " day_type TEXT NOT NULL, hour INTEGER NOT NULL, route TEXT NOT NULL, ground TEXT,"
            " rule TEXT NOT NULL, failsafe INTEGER NOT NULL, status TEXT NOT NULL,"
            " duration_s INTEGER)"
        )
        conn.execute(
            "INSERT INTO calls VALUES ('OLD', ?, ?, 'twilio', '+33611223344', 0, 'weekday',"
            " 20, 'direct_access', 'professional', 'r', 0, 'in_progress', NULL)",
            (MMG, MONTH),
        )
    store = SqliteStore(path)
    await store.open()
    try:
        assert await store.route_history("OLD") == RouteHistory(
            mmg=MMG, routes=(Route.DIRECT_ACCESS,), caller="+33611223344"
        )
        await store.update_calls([_reroute("OLD", Route.REGULATION)])
        history = await store.route_history("OLD")
        assert history is not None
        assert history.routes == (Route.DIRECT_ACCESS, Route.REGULATION)
    finally:
        await store.close()
