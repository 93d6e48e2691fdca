"""``regulator explain``: replaying recorded calls, and the registry's history recording
(on a real SQLite store)."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from regulator.core.decision import decide
from regulator.core.history import protocol_document, version_id
from regulator.core.models import (
    Call,
    CallRecord,
    DayType,
    DecisionContext,
    Platform,
    Route,
    Stage,
    offered_by,
)
from regulator.core.protocol import Protocol
from regulator.explain import ExplainError, explain_call, render_text, replay
from regulator.metrics import Metrics
from regulator.ports import FixedClock
from regulator.reload import ProtocolRegistry
from regulator.storage.sqlite import SqliteStore
from tests.unit.helpers import PARIS, PROTOCOLS_DIR, protocol

CALLER = "+33611223344"
PROFESSIONAL = "+33612345678"  # a professional of the Nîmes protocol
OPEN = datetime(2026, 11, 24, 21, 0, tzinfo=PARIS)  # Tuesday, open 20:00-24:00
CLOSED = datetime(2026, 11, 24, 10, 0, tzinfo=PARIS)


def _record(
    proto: Protocol,
    call_id: str,
    at: datetime,
    route: Route,
    rule: str,
    routes: tuple[Route, ...],
    *,
    platform: str = "twilio",
    caller: str = CALLER,
) -> CallRecord:
    return CallRecord(
        call_id=call_id,
        mmg=proto.id,
        platform=platform,
        caller=caller,
        at=at.astimezone(UTC),
        month=at.strftime("%Y-%m"),
        day_type=DayType.WEEKDAY,
        hour=at.hour,
        route=route,
        ground=None,
        rule=rule,
        routes=routes,
        protocol_version=version_id(protocol_document(proto)),
    )


def test_a_failed_front_desk_is_replayed_as_the_route_to_centre_15() -> None:
    proto = protocol("nimes")
    call = Call("p1", PROFESSIONAL, proto.numbers[0])
    first = decide(proto, call, OPEN)
    assert first.route is Route.DIRECT_ACCESS
    ctx = DecisionContext(
        failed_route=Route.DIRECT_ACCESS, offered=frozenset({Route.DIRECT_ACCESS})
    )
    then = decide(proto, replace(call, stage=Stage.DIAL_FAILED), OPEN, ctx)
    record = _record(
        proto, "p1", OPEN, then.route, then.rule, (Route.DIRECT_ACCESS, then.route),
        caller=PROFESSIONAL,
    )  # fmt: skip
    steps, notes = replay(record, proto)
    assert [s.stage for s in steps] == [Stage.INCOMING, Stage.DIAL_FAILED]
    assert steps[-1].decision.rule == record.rule
    assert steps[-1].decision.route is Route.REGULATION
    assert notes == ("échecs de mise en relation rejoués à l'instant de l'appel",)


def test_a_sip_proxy_call_is_replayed_without_the_menu() -> None:
    proto = protocol("nimes")
    call = Call("k1", CALLER, proto.numbers[0], Platform.KAMAILIO, Stage.DIGITS)
    decision = decide(proto, call, OPEN)
    record = _record(
        proto, "k1", OPEN, decision.route, decision.rule, (decision.route,), platform="kamailio"
    )
    steps, notes = replay(record, proto)
    assert len(steps) == 1
    assert steps[0].decision.rule == decision.rule
    assert notes == ()


def test_a_caller_who_hung_up_in_the_menu_is_one_step() -> None:
    proto = protocol("nimes")
    first = decide(proto, Call("m1", CALLER, proto.numbers[0]), OPEN)
    assert first.route is Route.MENU and offered_by(first) is None
    steps, notes = replay(_record(proto, "m1", OPEN, Route.MENU, first.rule, ()), proto)
    assert [s.decision.rule for s in steps] == [first.rule]
    assert notes == ()


def test_a_record_the_version_cannot_reproduce_says_so() -> None:
    proto = protocol("nimes")
    # Recorded as regulated while open, then sent to the pharmacy: not this protocol's doing.
    record = _record(proto, "x1", CLOSED, Route.PHARMACY, "autre règle", (Route.PHARMACY,))
    steps, notes = replay(record, proto)
    assert steps[-1].decision.route is Route.REGULATION
    assert notes == ("destinations rejouées (regulation) ≠ enregistrées (pharmacy)",)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    sqlite = SqliteStore(tmp_path / "regulator.sqlite3")
    await sqlite.open()
    yield sqlite
    await sqlite.close()


def _registry(tmp_path: Path, clock: FixedClock) -> tuple[ProtocolRegistry, Path]:
    directory = tmp_path / "protocols"
    directory.mkdir(parents=True, exist_ok=True)
    for path in PROTOCOLS_DIR.glob("*.yaml"):
        shutil.copy(path, directory / path.name)
    registry = ProtocolRegistry(directory, Metrics(CollectorRegistry()), clock=clock)
    assert registry.reload()
    return registry, directory / "nimes.yaml"


async def test_history_records_each_version_once_and_a_return_to_an_old_one(
    tmp_path: Path, store: SqliteStore
) -> None:
    clock = FixedClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    registry, path = _registry(tmp_path, clock)
    assert await registry.record_history(store) == 3
    assert await registry.record_history(store) == 0  # nothing new loaded
    original = path.read_text(encoding="utf-8")
    path.write_text(original.replace("Pharmacie Gambetta", "Pharmacie Gambetta II"), "utf-8")
    clock.set(clock.now() + timedelta(days=1))
    assert registry.reload()
    assert await registry.record_history(store) == 1
    path.write_text(original, "utf-8")
    clock.set(clock.now() + timedelta(days=1))
    assert registry.reload()
    assert await registry.record_history(store) == 1
    history = await store.protocol_history("nimes")
    assert [v.loaded_at.day for v in history] == [3, 2]
    assert history[0].version == registry.versions()["nimes"].version
    assert history[0].summary[0].startswith("garde de pharmacie ajoutée : Pharmacie Gambetta (")
    assert history[1].summary[0].startswith("garde de pharmacie ajoutée : Pharmacie Gambetta II")
    # A second replica starting with the same files records nothing.
    other, _ = _registry(tmp_path / "other", clock)
    assert await other.record_history(store) == 0


async def test_explain_names_a_version_no_longer_kept(tmp_path: Path, store: SqliteStore) -> None:
    proto = protocol("nimes")
    decision = decide(proto, Call("c", CALLER, proto.numbers[0]), CLOSED)
    record = _record(proto, "gone", CLOSED, decision.route, decision.rule, (Route.REGULATION,))
    await store.record_calls([record])
    with pytest.raises(ExplainError, match="n'est plus conservée"):
        await explain_call(store, "gone")
    with pytest.raises(ExplainError, match="appel inconnu"):
        await explain_call(store, "never")


async def test_a_record_without_version_uses_the_one_in_force_at_its_time(
    tmp_path: Path, store: SqliteStore
) -> None:
    clock = FixedClock(datetime(2026, 11, 1, 12, 0, tzinfo=UTC))
    registry, _ = _registry(tmp_path, clock)
    await registry.record_history(store)
    proto = protocol("nimes")
    decision = decide(proto, Call("c", CALLER, proto.numbers[0]), CLOSED)
    record = _record(proto, "old", CLOSED, decision.route, decision.rule, (Route.REGULATION,))
    await store.record_calls([replace(record, protocol_version="")])
    expl = await explain_call(store, "old")
    assert expl.matches
    assert expl.found == "déduite (appel enregistré sans version)"
    assert "identique       : oui" in render_text(expl)
