"""Protocol history end to end: calls name the version that decided them, a reload is
recorded with what changed, ``regulator explain`` re-runs a call against its version."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from regulator import cli
from regulator.explain import explain_call
from regulator.ports import FixedClock
from regulator.settings import Settings
from regulator.storage.sqlite import SqliteStore
from regulator.web import keys
from regulator.web.app import create_app
from tests.support.app import (
    NIMES,
    PROTOCOLS,
    AppClient,
    ClientFactory,
    bearer,
    make_settings,
    paris,
    post_twilio,
)

CALLER = "+33611223344"


async def _history(client: AppClient, versions: int) -> dict[str, Any]:
    """The history once the app has recorded ``versions`` versions (it records them in
    the background, after each load)."""
    for _ in range(200):
        resp = await client.get("/api/v1/protocols/nimes/history", headers=bearer("coordinator"))
        assert resp.status == 200, await resp.text()
        data: dict[str, Any] = await resp.json()
        if len(data["versions"]) >= versions:
            return data
        await asyncio.sleep(0.02)
    raise AssertionError(f"history never reached {versions} versions: {data}")


@pytest.fixture
def protocols_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "protocols"
    directory.mkdir()
    for path in PROTOCOLS.glob("*.yaml"):
        shutil.copy(path, directory / path.name)
    return directory


async def test_explain_gives_the_decision_of_the_time_after_a_protocol_change(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    protocols_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = make_settings(tmp_path, protocols_dir=protocols_dir)
    store = SqliteStore(settings.data_dir / "regulator.sqlite3")
    clock = FixedClock(paris("2026-11-24T21:00"))  # a Tuesday: open 20:00-24:00
    client = await aiohttp_client(create_app(settings, store, clock))
    first = await _history(client, 1)
    assert first["versions"][0]["summary"] == ["première version enregistrée"]
    v1 = first["current"]
    assert first["versions"][0]["current"] is True

    # Before the change: open, the menu, then "2" for the pharmacy.
    await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA-v1", "From": CALLER, "To": NIMES}
    )
    await post_twilio(
        client,
        "/hooks/twilio/gather",
        {"CallSid": "CA-v1", "From": CALLER, "To": NIMES, "Digits": "2"},
    )

    # The coordinator moves the weekday opening to 22:00; the reload is accepted.
    path = protocols_dir / "nimes.yaml"
    text = path.read_text(encoding="utf-8")
    assert 'weekdays: ["20:00-24:00"]' in text
    path.write_text(text.replace('weekdays: ["20:00-24:00"]', 'weekdays: ["22:00-24:00"]'), "utf-8")
    assert client.app[keys.PROTOCOLS].reload()
    second = await _history(client, 2)
    v2 = second["current"]
    assert v2 != v1
    assert [v["version"] for v in second["versions"]] == [v2, v1]
    assert second["versions"][0]["summary"] == ["créneaux jours ouvrés : 20:00-24:00 → 22:00-24:00"]
    assert len(second["versions"][0]["file_sha256"]) == 64

    # After the change, 21:00 is closed: straight to centre 15.
    await post_twilio(
        client, "/hooks/twilio/voice", {"CallSid": "CA-v2", "From": CALLER, "To": NIMES}
    )
    await client.app[keys.WRITER].flush()

    before = await explain_call(store, "CA-v1")
    assert before.record.protocol_version == v1
    assert before.version.version == v1
    assert before.matches
    assert before.final.route.value == "pharmacy"
    assert [s.stage.value for s in before.steps] == ["incoming", "digits"]
    after = await explain_call(store, "CA-v2")
    assert after.version.version == v2
    assert after.matches
    assert after.final.route.value == "regulation"
    assert after.final.rule == after.record.rule
    assert not after.final.open

    # The command line, on the same store (SQLite in data_dir).
    monkeypatch.setenv("REGULATOR_DATA_DIR", str(settings.data_dir))
    monkeypatch.delenv("REGULATOR_REDIS_URL", raising=False)
    # (in a thread: the command runs its own event loop, as from a shell)
    assert await asyncio.to_thread(cli.main, ["explain", "--call-id", "CA-v1"]) == 0
    out = capsys.readouterr().out
    assert f"version        : {v1} (enregistrée)" in out
    assert f"règle appliquée : {before.final.rule}" in out
    assert "identique       : oui" in out
    assert await asyncio.to_thread(cli.main, ["explain", "--call-id", "inconnu"]) == 1
    assert "appel inconnu" in capsys.readouterr().err


async def test_history_is_refused_to_another_mmgs_desk_and_unknown_mmgs(
    client: AppClient,
) -> None:
    resp = await client.get("/api/v1/protocols/nimes/history", headers=bearer("desk_metz"))
    assert resp.status == 403
    resp = await client.get("/api/v1/protocols/inconnue/history", headers=bearer("admin"))
    assert resp.status == 404
    resp = await client.get("/api/v1/protocols/nimes/history?limit=²", headers=bearer("admin"))
    assert resp.status == 400
    for role in ("desk", "regulator", "coordinator"):
        resp = await client.get("/api/v1/protocols/nimes/history", headers=bearer(role))
        assert resp.status == 200, role


def test_settings_sqlite_path_is_what_explain_opens(tmp_path: Path) -> None:
    # explain opens the store the settings name, as serve does (storage.open_store).
    from regulator.storage import SQLITE_FILENAME, open_store

    store = open_store(Settings(data_dir=tmp_path))
    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / SQLITE_FILENAME


async def test_protocol_page_is_for_the_mmgs_readers_only(client: AppClient) -> None:
    from tests.support.app import sign_in_all

    cookie = (await sign_in_all(client)).cookie

    for role in ("desk", "regulator", "coordinator"):
        resp = await client.get("/console/protocols/nimes", headers=cookie(role))
        assert resp.status == 200, role
        text = await resp.text()
        assert "Protocole — Maison médicale de garde de Nîmes" in text
        assert text.count('class="timeline-day') == 14
    resp = await client.get("/console/protocols/nimes", headers=cookie("desk_metz"))
    assert resp.status == 403
    assert "au protocole de « Maison médicale de garde de Nîmes »" in await resp.text()
    resp = await client.get("/console/protocols/inconnue", headers=cookie("coordinator"))
    assert resp.status == 404
    resp = await client.get("/console/protocols/nimes", allow_redirects=False)
    assert resp.status == 303
