"""`regulator decide`: the stable JSON shape, local-time --at, and exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from regulator.cli import main
from tests.support.paths import PROTOCOLS_DIR
from tests.unit.helpers import raw_protocol

DESIGN_KEYS = {"mmg", "route", "ground", "destination", "rule", "open", "day_type"}


def _decide(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    code = main(["decide", "--protocols", str(PROTOCOLS_DIR), "--json", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    lines = captured.out.splitlines()
    assert len(lines) == 1  # one JSON object on stdout
    out = json.loads(lines[0])
    assert isinstance(out, dict)
    return out


def test_json_output_has_exactly_the_design_keys(capsys: pytest.CaptureFixture[str]) -> None:
    out = _decide(capsys, "--mmg", "nimes", "--caller", "0612000001", "--at", "2026-11-24T10:00")
    assert DESIGN_KEYS <= set(out) <= DESIGN_KEYS | {"failsafe"}
    assert out == {
        "mmg": "nimes",
        "route": "regulation",
        "ground": None,
        "destination": "sip:sas30@regulation.example",
        "rule": "MMG fermée : appel régulé par le centre 15",
        "open": False,
        "day_type": "weekday",
        "failsafe": False,
    }


def test_trace_only_with_explain(capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--mmg", "nimes", "--caller", "0612000001", "--at", "2026-05-15T10:00")
    plain = _decide(capsys, *args)
    explained = _decide(capsys, *args, "--explain")
    assert "trace" not in plain
    assert set(explained) == set(plain) | {"trace"}
    trace = explained["trace"]
    assert isinstance(trace, list)
    assert all(isinstance(step, str) for step in trace)
    assert any("pont (art. R.6315-1)" in step for step in trace)


@pytest.mark.parametrize(
    ("mmg", "caller", "at", "flags", "expected"),
    [
        # Professional while open → direct access.
        (
            "nimes",
            "06 12 34 56 78",
            "2026-11-24T21:00",
            (),
            {"route": "direct_access", "ground": "professional", "destination": "+33466123400"},
        ),
        # Menu without digits → menu, no destination.
        (
            "nimes",
            "0612000001",
            "2026-11-24T21:00",
            (),
            {"route": "menu", "ground": None, "destination": None, "open": True},
        ),
        # Digit 2 on a Saturday evening → the pharmacy on the roster.
        (
            "nimes",
            "0612000001",
            "2026-11-21T19:30",
            ("--digits", "2"),
            {"route": "pharmacy", "destination": "+33466111111", "day_type": "saturday"},
        ),
        # Digit 2 with nobody on the roster → 3237 announced.
        (
            "nimes",
            "0612000001",
            "2026-12-01T21:00",
            ("--digits", "2"),
            {"route": "pharmacy", "destination": "3237"},
        ),
        # Pending referral while open.
        (
            "metz",
            "0612000001",
            "2026-11-24T21:00",
            ("--pending-referral",),
            {
                "route": "direct_access",
                "ground": "pending_referral",
                "destination": "sip:accueil@mmg-metz.example",
            },
        ),
        # Overflow while open: Nîmes allows it; Metz (null) asks to dial 15 (never a
        # second dial to the regulation line that did not answer).
        (
            "nimes",
            "0612000001",
            "2026-11-24T21:00",
            ("--overflow",),
            {"route": "direct_access", "ground": "regulation_overflow"},
        ),
        (
            "metz",
            "0612000001",
            "2026-11-24T21:00",
            ("--overflow",),
            {"route": "regulation", "ground": None, "destination": "15"},
        ),
        # Good Friday in Moselle.
        (
            "metz",
            "0612000001",
            "2026-04-03T10:00",
            (),
            {"route": "regulation", "open": True, "day_type": "holiday"},
        ),
        # Saint-Denis closed → closed message, 15 announced.
        (
            "saint-denis-reunion",
            "0692000001",
            "2026-11-24T10:00",
            (),
            {"route": "closed", "destination": "15", "open": False},
        ),
    ],
)
def test_decide_json_reports_route_ground_and_destination(
    capsys: pytest.CaptureFixture[str],
    mmg: str,
    caller: str,
    at: str,
    flags: tuple[str, ...],
    expected: dict[str, Any],
) -> None:
    out = _decide(capsys, "--mmg", mmg, "--caller", caller, "--at", at, *flags)
    assert {key: out[key] for key in expected} == expected


@pytest.mark.parametrize(
    ("mmg", "at", "is_open"),
    [
        # 19:30 in Nîmes is closed; read as UTC it would be 20:30 Paris, open.
        ("nimes", "2026-11-24T19:30", False),
        ("nimes", "2026-11-24T19:30+00:00", True),
        ("nimes", "2026-11-24 20:00", True),  # space separator accepted
        # 18:30 in Saint-Denis is closed; read as Paris or UTC it would be open.
        ("saint-denis-reunion", "2026-11-24T18:30", False),
        ("saint-denis-reunion", "2026-11-24T18:30+01:00", True),
        ("saint-denis-reunion", "2026-11-24T16:00Z", True),
        ("saint-denis-reunion", "2026-11-24T15:59Z", False),
    ],
)
def test_at_without_offset_is_mmg_local_time(
    capsys: pytest.CaptureFixture[str], mmg: str, at: str, is_open: bool
) -> None:
    out = _decide(capsys, "--mmg", mmg, "--caller", "0612000001", "--at", at)
    assert out["open"] is is_open


@pytest.mark.parametrize(
    ("at", "day_type"),
    [
        ("2026-03-29T02:30", "sunday"),  # does not exist in Paris
        ("2026-10-25T02:30", "sunday"),  # exists twice in Paris
    ],
)
def test_at_during_dst_change_does_not_crash(
    capsys: pytest.CaptureFixture[str], at: str, day_type: str
) -> None:
    out = _decide(capsys, "--mmg", "nimes", "--caller", "0612000001", "--at", at)
    assert (out["open"], out["day_type"], out["failsafe"]) == (False, day_type, False)


def test_text_output_with_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "decide",
            "--protocols",
            str(PROTOCOLS_DIR),
            "--mmg",
            "nimes",
            "--caller",
            "0612000001",
            "--at",
            "2027-01-14T20:30",
            "--explain",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "route       : direct_access" in out
    assert "motif       : declared_influx" in out
    assert "explication :" in out


def test_unknown_mmg_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["decide", "--protocols", str(PROTOCOLS_DIR), "--mmg", "lyon", "--caller", "15"])
    assert code == 2
    assert "MMG inconnue 'lyon'" in capsys.readouterr().err


def test_bad_at_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            *("decide", "--protocols", str(PROTOCOLS_DIR)),
            *("--mmg", "nimes", "--caller", "15", "--at", "demain soir"),
        ]
    )
    assert code == 2
    assert "--at 'demain soir'" in capsys.readouterr().err


def test_decide_with_invalid_protocols_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["decide", "--protocols", str(tmp_path), "--mmg", "nimes", "--caller", "15"])
    assert code == 1
    assert "no protocol file" in capsys.readouterr().err


# ------------------------------------------------------------------ report / export


def _store_month(tmp_path: Path) -> None:
    """A real SQLite store with three persons seen in Nîmes in November 2026."""
    import asyncio

    from regulator.core.models import Outcome, VisitChannel
    from regulator.core.referrals import make_visit
    from regulator.storage.sqlite import SqliteStore
    from tests.support.clock import paris
    from tests.unit.helpers import protocol

    nimes = protocol("nimes")

    async def fill() -> None:
        store = SqliteStore(tmp_path / "regulator.sqlite3")
        await store.open()
        try:
            for i, (channel, outcome) in enumerate(
                [
                    (VisitChannel.REGULATION, Outcome.HOME),
                    (VisitChannel.REGULATION, None),
                    (VisitChannel.DIRECT, Outcome.HOSPITALISED),
                    (VisitChannel.DIRECT, Outcome.HOME),
                ]
            ):
                at = paris(f"2026-11-24T21:{i:02d}")
                visit = make_visit(nimes, channel=channel, at=at, outcome=outcome, acts=1)
                await store.add_visit(visit, None)
        finally:
            await store.close()

    asyncio.run(fill())


@pytest.fixture
def stored_month(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("REGULATOR_REDIS_URL", raising=False)
    monkeypatch.setenv("REGULATOR_DATA_DIR", str(tmp_path))
    _store_month(tmp_path)
    return tmp_path


def _report(capsys: pytest.CaptureFixture[str], fmt: str) -> str:
    args = ["report", "--protocols", str(PROTOCOLS_DIR), "--mmg", "nimes", "--month", "2026-11"]
    assert main([*args, "--format", fmt]) == 0
    return capsys.readouterr().out


def test_report_json_has_share_regulated_and_outcomes_that_add_up(
    stored_month: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = json.loads(_report(capsys, "json"))
    assert out["persons_seen"]["total"] == 4
    assert out["share_regulated"] == 0.5
    outcome_keys = (
        "returned_home",
        "reoriented_to_emergency",
        "hospitalised",
        "outcome_other",
        "outcome_missing",
    )
    assert [out[k] for k in outcome_keys] == [2, 0, 1, 0, 1]


def test_report_csv_and_markdown_show_the_share_and_the_missing_outcome(
    stored_month: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv_text = _report(capsys, "csv")
    assert csv_text.startswith("\ufeffIndicateur;Valeur;Clé")
    assert (
        "Part des personnes vues venues via la régulation de la PDS (%);50,00;share_regulated"
        in csv_text
    )
    assert "Nombre de consultations dont l'issue n'est pas renseignée;1;outcome_missing" in (
        csv_text
    )
    md = _report(capsys, "md")
    assert "| Part des personnes vues venues via la régulation de la PDS | 50,0\u00a0% |" in md
    assert "## Autres issues de consultation (hors tableau de la circulaire)" in md


def test_export_has_the_years_share_regulated(
    stored_month: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "--protocols", str(PROTOCOLS_DIR), "--year", "2026"]) == 0
    export = json.loads(capsys.readouterr().out)
    nimes = export["mmgs"]["nimes"]
    assert nimes["totals"]["share_regulated"] == 0.5
    assert nimes["months"][10]["share_regulated"] == 0.5
    assert nimes["months"][0]["share_regulated"] is None
    args = ["export", "--protocols", str(PROTOCOLS_DIR), "--year", "2026", "--format", "csv"]
    assert main(args) == 0
    header, *rows = capsys.readouterr().out.lstrip("\ufeff").splitlines()
    column = header.split(";").index(
        "Part des personnes vues venues via la régulation de la PDS (%)"
    )
    by_month = {
        row.split(";")[1]: row.split(";")[column] for row in rows if row.startswith("nimes;")
    }
    assert (by_month["novembre 2026"], by_month["janvier 2026"]) == ("50,00", "")
    assert by_month["Total 2026"] == "50,00"


def test_report_and_export_as_xlsx_need_a_file_and_read_back(
    stored_month: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import openpyxl

    args = ["report", "--protocols", str(PROTOCOLS_DIR), "--mmg", "nimes", "--month", "2026-11"]
    assert main([*args, "--format", "xlsx"]) == 2
    assert "demande un fichier" in capsys.readouterr().err
    out = stored_month / "nimes-2026-11.xlsx"
    assert main([*args, "--format", "xlsx", "-o", str(out)]) == 0
    sheet = openpyxl.load_workbook(out)["Indicateurs"]
    values = {row[2]: row[1] for row in sheet.iter_rows(min_row=4, values_only=True) if row[2]}
    assert (values["persons_seen.total"], values["share_regulated"]) == (4, 0.5)
    out = stored_month / "export-2026.xlsx"
    exp = ["export", "--protocols", str(PROTOCOLS_DIR), "--year", "2026", "--format", "xlsx"]
    assert main([*exp, "-o", str(out)]) == 0
    book = openpyxl.load_workbook(out)
    assert book.sheetnames[0] == "Synthèse"
    nimes = book["nimes"]
    totals = {row[-1]: row[-2] for row in nimes.iter_rows(min_row=4, values_only=True)}
    assert (totals["persons_seen.total"], totals["share_regulated"]) == (4, 0.5)


# ------------------------------------------------- check-protocols and serve: Kamailio
# With Kamailio configured, a destination with neither a SIP URI nor a SIP gateway is
# one Kamailio cannot ring: say so, naming MMG and destination (exit code unchanged).

KAMAILIO_WARNING = "avertissement : MMG {mmg}, destination {name} : ni URI SIP ni passerelle"


def _protocols(directory: Path, **destinations: dict[str, str]) -> Path:
    """The Nîmes example protocol (id ``nimes-kamailio``) with other destinations."""
    directory.mkdir(parents=True, exist_ok=True)
    data = raw_protocol("nimes")
    data["id"] = "nimes-kamailio"
    data["destinations"].update(destinations)
    (directory / "nimes-kamailio.yaml").write_text(
        yaml.safe_dump(data, allow_unicode=True), encoding="utf-8"
    )
    return directory


@pytest.fixture
def kamailio_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("REGULATOR_SIP_GATEWAY", "REGULATOR_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REGULATOR_KAMAILIO_SECRET", "kamailio-shared-secret")
    return monkeypatch


def _check(directory: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check-protocols", str(directory)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_protocols_names_destinations_kamailio_cannot_ring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kamailio_env: pytest.MonkeyPatch
) -> None:
    directory = _protocols(
        tmp_path, regulation={"number": "+33466000015"}, front_desk={"number": "+33466123400"}
    )

    code, out, err = _check(directory, capsys)

    assert code == 0
    assert "ok  nimes-kamailio" in out
    for name in ("regulation", "front_desk"):
        assert KAMAILIO_WARNING.format(mmg="nimes-kamailio", name=name) in err
    assert "REGULATOR_SIP_GATEWAY" in err


def test_check_protocols_names_the_pharmacy_when_it_is_the_menu_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kamailio_env: pytest.MonkeyPatch
) -> None:
    data = raw_protocol("nimes")
    data["routing"]["menu"]["default"] = "pharmacy"
    (tmp_path / "nimes.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")

    code, _, err = _check(tmp_path, capsys)

    assert code == 0
    assert KAMAILIO_WARNING.format(mmg="nimes", name="pharmacy") in err
    assert KAMAILIO_WARNING.format(mmg="nimes", name="front_desk") in err
    assert "destination regulation" not in err  # it has a SIP URI


@pytest.mark.parametrize(
    "setting",
    [
        pytest.param(("REGULATOR_SIP_GATEWAY", "trunk.operator.example"), id="gateway-set"),
        pytest.param(("REGULATOR_KAMAILIO_SECRET", None), id="kamailio-not-configured"),
    ],
)
def test_check_protocols_is_quiet_when_kamailio_can_ring_every_number(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    kamailio_env: pytest.MonkeyPatch,
    setting: tuple[str, str | None],
) -> None:
    name, value = setting
    if value is None:
        kamailio_env.delenv(name)
    else:
        kamailio_env.setenv(name, value)
    directory = _protocols(tmp_path, front_desk={"number": "+33466123400"})

    code, _, err = _check(directory, capsys)

    assert (code, err) == (0, "")


def test_check_protocols_is_quiet_when_every_destination_has_a_sip_uri(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kamailio_env: pytest.MonkeyPatch
) -> None:
    directory = _protocols(
        tmp_path,
        regulation={"number": "+33466000015", "sip": "sip:sas30@regulation.example"},
        front_desk={"sip": "sip:desk@mmg.example"},
    )

    assert _check(directory, capsys)[::2] == (0, "")


def test_invalid_protocols_still_exit_1_with_kamailio_configured(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kamailio_env: pytest.MonkeyPatch
) -> None:
    code, _, err = _check(tmp_path, capsys)
    assert code == 1
    assert "avertissement" not in err


def _serve(tmp_path: Path, **settings: str) -> tuple[subprocess.Popen[bytes], Path]:
    """A real ``regulator serve`` on a free port, JSON logs to ``serve.log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGULATOR_")}
    env.update(
        {
            "REGULATOR_PROTOCOLS_DIR": str(PROTOCOLS_DIR),
            "REGULATOR_DATA_DIR": str(tmp_path / "var"),
            "REGULATOR_HOST": "127.0.0.1",
            "REGULATOR_PORT": "0",
            "REGULATOR_LOG_FORMAT": "json",
            "REGULATOR_WATCH_PROTOCOLS": "0",
            **settings,
        }
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "regulator", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    return process, log_path


def test_serve_logs_the_destinations_kamailio_cannot_ring(tmp_path: Path) -> None:
    directory = _protocols(tmp_path / "protocols", front_desk={"number": "+33466123400"})
    process, log_path = _serve(
        tmp_path,
        REGULATOR_PROTOCOLS_DIR=str(directory),
        REGULATOR_KAMAILIO_SECRET="kamailio-shared-secret",
    )
    try:
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + 30
        while not any(e.get("event") == "serving" for e in events):
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.1)
            events = []
            for line in log_path.read_text(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
    finally:
        process.terminate()
        process.wait(timeout=15)

    warnings = [e for e in events if e.get("event") == "kamailio_destination_unreachable"]
    assert [(e["mmg"], e["destination"]) for e in warnings] == [("nimes-kamailio", "front_desk")]
    assert warnings[0]["level"] == "warning"


def test_serve_stops_on_sigterm_while_the_store_never_answers_at_start_up(
    tmp_path: Path,
) -> None:
    # A Redis that accepts connections and never answers keeps the start-up waiting on
    # the store: SIGTERM must still stop the process, after its cleanup.
    import socket
    import threading

    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    accepted: list[socket.socket] = []

    def accept_and_say_nothing() -> None:
        for _ in range(16):
            accepted.append(silent.accept()[0])

    threading.Thread(target=accept_and_say_nothing, daemon=True).start()
    process, log_path = _serve(
        tmp_path, REGULATOR_REDIS_URL=f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    )
    try:
        deadline = time.monotonic() + 30
        while not accepted:  # the start-up is now waiting on the silent store
            assert process.poll() is None, log_path.read_text(errors="replace")
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")
            time.sleep(0.05)
        time.sleep(0.5)
        process.terminate()
        try:
            code = process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError("serve still running 15 s after SIGTERM") from None
        assert code == 0, log_path.read_text(errors="replace")
        assert '"stopped"' in log_path.read_text(errors="replace")
    finally:
        silent.close()
        for conn in accepted:
            conn.close()
