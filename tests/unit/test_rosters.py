"""Pharmacy rosters from files (``destinations.pharmacy.roster_file``): iCalendar and
CSV as pharmacy unions, calendar apps and French spreadsheets write them
(tests/data/rosters/), validated with the YAML roster, reloaded on change."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from regulator import rosters
from regulator.cli import main
from regulator.core.decision import decide
from regulator.core.models import Call, Route
from regulator.core.protocol import ProtocolLoadError, parse_protocol
from regulator.metrics import Metrics
from regulator.protocols import load_protocol_file, load_protocols
from regulator.reload import ProtocolRegistry
from tests.unit.helpers import PARIS, PROTOCOLS_DIR, raw_protocol

DATA = Path(__file__).resolve().parents[1] / "data" / "rosters"


def stretches(path: Path, **kwargs: Any) -> list[tuple[str, str, str, str]]:
    return [
        (f"{e.from_:%d/%m/%Y %H:%M}", f"{e.to:%d/%m/%Y %H:%M}", e.name, e.number)
        for e in sorted(rosters.read_roster(path, **kwargs), key=lambda e: e.from_)
    ]


ARENES = ("Pharmacie des Arènes", "+33466111111")


# ----------------------------------------------------------------------- iCalendar


def test_weekly_rrule_is_expanded_without_its_exdates_and_with_its_replacements() -> None:
    # Google Calendar export: Arènes every weekend from 7 Nov (RRULE, UNTIL 27 Dec),
    # minus three weekends in one EXDATE line; two replaced by single events, the third
    # replacement CANCELLED (so the weekend of 19 Dec has nobody).
    assert stretches(DATA / "nimes-weekends.ics") == [
        ("07/11/2026 19:00", "09/11/2026 09:00", *ARENES),
        ("14/11/2026 19:00", "16/11/2026 09:00", *ARENES),
        # Number in DESCRIPTION (LOCATION has none), written 04.66.22.22.22.
        ("21/11/2026 19:00", "23/11/2026 09:00", "Pharmacie de la Maison Carrée", "+33466222222"),
        ("28/11/2026 19:00", "30/11/2026 09:00", *ARENES),
        (
            "05/12/2026 19:00",
            "07/12/2026 09:00",
            "Pharmacie du Jardin de la Fontaine",
            "+33466333333",
        ),
        ("12/12/2026 19:00", "14/12/2026 09:00", *ARENES),
        ("26/12/2026 19:00", "28/12/2026 09:00", *ARENES),
    ]


def test_stretches_over_daylight_saving_changes_keep_their_wall_clock_times() -> None:
    # Outlook export: Windows zone "Romance Standard Time" over the March change; the
    # October stretch is written in UTC (17:00Z is 19:00 CEST, 08:00Z is 09:00 CET).
    assert stretches(DATA / "metz-dst.ics") == [
        ("28/03/2026 19:00", "30/03/2026 09:00", "Pharmacie de l'Esplanade", "+33387121212"),
        ("24/10/2026 19:00", "26/10/2026 09:00", "Pharmacie du Pontiffroy", "+33387131313"),
    ]
    # The same UTC instants are other wall-clock times in La Réunion (UTC+4).
    reunion = stretches(DATA / "metz-dst.ics", timezone="Indian/Reunion")
    assert reunion[1][:2] == ("24/10/2026 21:00", "26/10/2026 12:00")


def _ics(tmp_path: Path, *events: str) -> Path:
    body = "\r\n".join(
        ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//FR", *events, "END:VCALENDAR"]
    )
    path = tmp_path / "garde.ics"
    path.write_text(body + "\r\n", encoding="utf-8")
    return path


def _event(summary: str, start: str, end: str, **props: str) -> str:
    lines = ["BEGIN:VEVENT", f"UID:{summary}-{start}@t", "DTSTAMP:20260101T000000Z"]
    lines += [f"SUMMARY:{summary}", f"DTSTART;TZID=Europe/Paris:{start}"]
    lines += [f"DTEND;TZID=Europe/Paris:{end}"] if end else []
    lines += [f"{k}:{v}" for k, v in props.items()]
    return "\r\n".join([*lines, "END:VEVENT"])


def test_unusable_events_are_each_named_in_french(tmp_path: Path) -> None:
    path = _ics(
        tmp_path,
        _event("Pharmacie B", "20261123T190000", "", LOCATION="04 66 11 11 11"),
        _event("Pharmacie C", "20261124T190000", "20261124T090000", LOCATION="04 66 11 11 11"),
    )
    with pytest.raises(rosters.RosterFileError) as caught:
        rosters.read_roster(path)
    assert caught.value.problems == [
        "événement « Pharmacie B » du lundi 23/11/2026 19:00 : ni DTEND ni DURATION, "
        "sa fin est inconnue",
        "événement « Pharmacie C » du mardi 24/11/2026 19:00 : finit (mardi 24/11/2026 09:00) "
        "avant de commencer (mardi 24/11/2026 19:00)",
    ]
    path = _ics(
        tmp_path,
        _event("Pharmacie A", "20261121T190000", "20261123T090000", LOCATION="Place du marché"),
        _event("Pharmacie D", "20261123T190000", "20261124T090000", DESCRIPTION="Tél 0466"),
    )
    with pytest.raises(rosters.RosterFileError) as caught:
        rosters.read_roster(path)
    assert caught.value.problems == [
        f"événement « Pharmacie {letter} » du {when} : aucun numéro de téléphone "
        "dans LOCATION ni DESCRIPTION"
        for letter, when in (("A", "samedi 21/11/2026 19:00"), ("D", "lundi 23/11/2026 19:00"))
    ]


def test_overseas_numbers_are_read_in_the_protocols_region(tmp_path: Path) -> None:
    path = _ics(
        tmp_path,
        _event(
            "Pharmacie du Barachois", "20261219T190000", "20261221T080000", LOCATION="0262 11 11 11"
        ),
    )
    ((*_, number),) = stretches(path, region="RE")
    assert number == "+262262111111"


def test_a_file_that_is_not_a_roster_is_refused(tmp_path: Path) -> None:
    text = tmp_path / "garde.txt"
    text.write_text("x")
    with pytest.raises(rosters.RosterFileError, match=r"attendu un fichier \.ics ou \.csv"):
        rosters.read_roster(text)
    broken = tmp_path / "broken.ics"
    broken.write_bytes(b"BEGIN:VCALENDAR\r\nthis is not ical\r\n")
    with pytest.raises(rosters.RosterFileError, match=r"iCalendar illisible|aucun événement"):
        rosters.read_roster(broken)
    with pytest.raises(rosters.RosterFileError, match="lecture impossible"):
        rosters.read_roster(tmp_path / "absent.csv")


# ----------------------------------------------------------------------- CSV

EXCEL_STRETCHES = [
    ("21/11/2026 19:00", "23/11/2026 09:00", *ARENES),
    ("23/11/2026 19:00", "24/11/2026 09:00", "Pharmacie de la Maison Carrée", "+33466222222"),
    (
        "24/11/2026 19:00",
        "25/11/2026 09:00",
        "Pharmacie du Jardin de la Fontaine; Nîmes",
        "+33466333333",
    ),
    # ISO dates, and a number whose leading 0 the spreadsheet dropped.
    ("28/11/2026 12:00", "30/11/2026 09:00", "Pharmacie Gambetta", "+33466444444"),
]


@pytest.mark.parametrize("name", ["nimes-excel.csv", "nimes-excel-cp1252.csv"])
def test_csv_saved_by_a_french_spreadsheet_is_read(name: str) -> None:
    # BOM (or Windows-1252), ';', CRLF, a header line, ';;;' blank lines, a quoted ';'.
    raw = (DATA / name).read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") == (name == "nimes-excel.csv")
    assert b"\r\n" in raw
    assert stretches(DATA / name) == EXCEL_STRETCHES


def test_csv_without_header_in_iso_and_its_errors_by_line(tmp_path: Path) -> None:
    path = tmp_path / "garde.csv"
    path.write_text(
        "2026-11-21T19:00;2026-11-23T09:00;Pharmacie des Arènes;04 66 11 11 11\n"
        "31/02/2026 19:00;01/03/2026 09:00;Pharmacie X;04 66 11 11 11\n"
        "21/11/2026 19:00,23/11/2026 09:00,Pharmacie Y,0466111111\n"
        "21/11/2026 19:00;23/11/2026 09:00;Pharmacie Z;12\n"
        "21/11/2026 19:00;23/11/2026 09:00;;0466111111\n",
        encoding="utf-8",
    )
    with pytest.raises(rosters.RosterFileError) as caught:
        rosters.read_roster(path)
    assert caught.value.problems == [
        "ligne 2 : date de début « 31/02/2026 19:00 » illisible "
        "(ex. 21/11/2026 19:00 ou 2026-11-21T19:00)",
        "ligne 3 : 4 colonnes attendues (début;fin;nom;numéro) (séparateur « ; » attendu)",
        "ligne 4 : numéro « 12 » illisible",
        "ligne 5 : nom de la pharmacie manquant",
    ]


def test_csv_header_columns_may_come_in_any_order(tmp_path: Path) -> None:
    path = tmp_path / "garde.csv"
    path.write_text(
        "Pharmacie;Téléphone;Début;Fin\nPharmacie des Arènes;04 66 11 11 11;"
        "21/11/2026 19h00;23/11/2026 09h00\n",
        encoding="utf-8",
    )
    assert stretches(path) == [("21/11/2026 19:00", "23/11/2026 09:00", *ARENES)]


# ----------------------------------------------------------------------- in a protocol


def _protocol_dir(tmp_path: Path, roster_file: str, **pharmacy: Any) -> Path:
    data = raw_protocol("nimes")
    data["destinations"]["pharmacy"] = {"fallback": "3237", "roster_file": roster_file, **pharmacy}
    (tmp_path / "nimes.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    return tmp_path


def _copy(name: str, directory: Path, as_name: str | None = None) -> Path:
    target = directory / (as_name or name)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / name, target)
    return target


def test_roster_file_is_relative_to_the_protocol_and_routes_calls(tmp_path: Path) -> None:
    _copy("nimes-weekends.ics", tmp_path, "rosters/gardes.ics")
    proto = load_protocol_file(_protocol_dir(tmp_path, "rosters/gardes.ics") / "nimes.yaml")
    assert proto.destinations.pharmacy.roster_file == "rosters/gardes.ics"
    assert len(proto.destinations.pharmacy.roster) == 7
    at = datetime(2026, 12, 5, 21, 0, tzinfo=PARIS)
    decision = decide(proto, Call("c", "+33612000001", proto.numbers[0], digits="2"), at)
    assert decision.route is Route.PHARMACY
    assert decision.destination is not None
    assert decision.destination.number == "+33466333333"


def test_yaml_and_file_rosters_are_used_together(tmp_path: Path) -> None:
    _copy("nimes-weekends.ics", tmp_path)
    weekday = {"from": "2026-11-24T19:00", "to": "2026-11-25T09:00", "name": "Pharmacie Y",
               "number": "04 66 55 55 55"}  # fmt: skip
    directory = _protocol_dir(tmp_path, "nimes-weekends.ics", roster=[weekday])
    roster = load_protocols(directory).by_id["nimes"].destinations.pharmacy.roster
    assert [e.name for e in roster][2:4] == ["Pharmacie de la Maison Carrée", "Pharmacie Y"]
    assert roster[3].number == "+33466555555"  # normalised like the file's


def test_overlap_between_yaml_and_file_rosters_is_an_error_naming_both(tmp_path: Path) -> None:
    _copy("nimes-excel.csv", tmp_path)
    clash = {"from": "2026-11-22T20:00", "to": "2026-11-23T08:00", "name": "Pharmacie Y",
             "number": "0466555555"}  # fmt: skip
    directory = _protocol_dir(tmp_path, "nimes-excel.csv", roster=[clash])
    with pytest.raises(ProtocolLoadError) as caught:
        load_protocols(directory)
    (issue,) = caught.value.issues
    assert issue.field == "destinations.pharmacy.roster"
    assert issue.reason == (
        "roster entries 'Pharmacie des Arènes' (until 2026-11-23T09:00) and 'Pharmacie Y' "
        "(from 2026-11-22T20:00) overlap: nimes-excel.csv, ligne 2 ; roster[0]"
    )


def test_overlapping_entries_of_one_file_are_an_error_naming_both(tmp_path: Path) -> None:
    _copy("nimes-overlap.ics", tmp_path)
    with pytest.raises(ProtocolLoadError) as caught:
        load_protocols(_protocol_dir(tmp_path, "nimes-overlap.ics"))
    (issue,) = caught.value.issues
    assert "'Pharmacie des Arènes' (until 2026-12-14T09:00)" in issue.reason
    assert "'Pharmacie Gambetta' (from 2026-12-13T12:00) overlap" in issue.reason
    assert "événement « Pharmacie des Arènes » du samedi 12/12/2026 19:00" in issue.reason
    assert "événement « Pharmacie Gambetta » du dimanche 13/12/2026 12:00" in issue.reason


def test_unreadable_roster_file_names_the_field_and_each_problem(tmp_path: Path) -> None:
    (tmp_path / "garde.csv").write_text(
        "21/11/2026 19:00;23/11/2026 09:00;Pharmacie A;0466111111\nx;y;Pharmacie B;0466111111\n",
        encoding="utf-8",
    )
    with pytest.raises(ProtocolLoadError) as caught:
        load_protocols(_protocol_dir(tmp_path, "garde.csv"))
    (issue,) = caught.value.issues
    assert issue.field == "destinations.pharmacy.roster_file"
    assert issue.value == "'garde.csv'"
    assert issue.reason.startswith("ligne 2 : date de début « x » illisible")
    with pytest.raises(ProtocolLoadError, match="lecture impossible"):
        load_protocols(_protocol_dir(tmp_path, "absent.ics"))


def test_roster_file_in_a_bare_document_and_source_in_yaml_are_refused() -> None:
    data = raw_protocol("nimes")
    data["destinations"]["pharmacy"]["roster_file"] = "garde.ics"
    with pytest.raises(ProtocolLoadError, match="read when the protocol is loaded from its file"):
        parse_protocol(data, "nimes.yaml")
    data = raw_protocol("nimes")
    data["destinations"]["pharmacy"]["roster"][0]["source"] = "made up"
    with pytest.raises(ProtocolLoadError, match="set by the roster file loader"):
        parse_protocol(data, "nimes.yaml")


# ----------------------------------------------------------------------- check-protocols


def test_check_protocols_warns_of_roster_gaps_with_their_dates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _copy("nimes-excel.csv", tmp_path)
    directory = _protocol_dir(tmp_path, "nimes-excel.csv")
    assert main(["check-protocols", str(directory)]) == 0
    err = capsys.readouterr().err
    gaps = [line for line in err.splitlines() if "aucune pharmacie de garde" in line]
    # 09:00-19:00 on weekdays is no gap (pharmacies are open); 25 to 28 Nov is.
    assert gaps == [
        f"avertissement : {directory / 'nimes.yaml'}: destinations.pharmacy.roster: aucune "
        "pharmacie de garde du mercredi 25/11/2026 09:00 au samedi 28/11/2026 12:00 pendant "
        "des heures de PDS (les appelants sont renvoyés vers le 3237)"
    ]
    assert main(["check-protocols", "--strict", str(directory)]) == 1


def test_a_short_daytime_hole_on_a_holiday_is_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "garde.csv"
    path.write_text(
        "24/12/2026 19:00;25/12/2026 09:00;Pharmacie A;0466111111\n"
        "25/12/2026 12:00;26/12/2026 09:00;Pharmacie B;0466222222\n"  # Christmas morning
        "28/12/2026 19:00;29/12/2026 09:00;Pharmacie A;0466111111\n"
        "29/12/2026 12:00;29/12/2026 19:00;Pharmacie B;0466222222\n",  # a weekday: open
        encoding="utf-8",
    )
    directory = _protocol_dir(tmp_path, "garde.csv")
    proto = load_protocols(directory).by_id["nimes"]
    from regulator.core.protocol import roster_gaps

    assert roster_gaps(proto.destinations.pharmacy.roster, proto.schedule) == [
        (datetime(2026, 12, 25, 9), datetime(2026, 12, 25, 12)),
        (datetime(2026, 12, 26, 9), datetime(2026, 12, 28, 19)),
    ]


# ----------------------------------------------------------------------- roster check


def test_roster_check_prints_each_stretch_in_french(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["roster", "check", str(DATA / "metz-dst.ics")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        "du samedi 28/03/2026 19:00 au lundi 30/03/2026 09:00 : Pharmacie de l'Esplanade "
        "(+33387121212)",
        "du samedi 24/10/2026 19:00 au lundi 26/10/2026 09:00 : Pharmacie du Pontiffroy "
        "(+33387131313)",
        f"2 périodes de garde dans {DATA / 'metz-dst.ics'}",
    ]


def test_roster_check_fails_on_overlaps_and_unreadable_files(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["roster", "check", str(DATA / "nimes-overlap.ics")]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("\n") == 3  # both stretches are still listed
    assert "erreur :" in captured.err
    assert "overlap" in captured.err
    bad = tmp_path / "garde.csv"
    bad.write_text("21/11/2026 19:00;23/11/2026;Pharmacie A;0466\n", encoding="utf-8")
    assert main(["roster", "check", str(bad)]) == 1
    assert "ligne 1 : numéro « 0466 » illisible" in capsys.readouterr().err
    assert main(["roster", "check", str(bad), "--timezone", "Mars/Olympus"]) == 2


# ----------------------------------------------------------------------- reload


def _registry(directory: Path) -> ProtocolRegistry:
    registry = ProtocolRegistry(directory, Metrics(CollectorRegistry()))
    assert registry.reload()
    return registry


def _touch(path: Path, text: str) -> None:
    before = path.stat().st_mtime if path.exists() else 0.0
    path.write_text(text, encoding="utf-8")
    os.utime(path, (before + 10, before + 10))  # a distinct mtime on coarse filesystems


def test_editing_a_roster_file_reloads_its_protocol(tmp_path: Path) -> None:
    for name in ("metz.yaml", "saint-denis-reunion.yaml"):
        shutil.copy(PROTOCOLS_DIR / name, tmp_path / name)
    csv_file = _copy("nimes-excel.csv", tmp_path, "gardes/nimes.csv")
    registry = _registry(_protocol_dir(tmp_path, "gardes/nimes.csv"))
    assert not registry.changed()
    text = csv_file.read_text(encoding="utf-8-sig").replace("Gambetta", "Gambetta-Courbet")
    _touch(csv_file, text)
    assert registry.changed()
    assert registry.reload()
    roster = registry.current.by_id["nimes"].destinations.pharmacy.roster
    assert roster[-1].name == "Pharmacie Gambetta-Courbet"
    # A broken roster keeps the protocols in force; fixing it reloads them.
    _touch(csv_file, text + "32/11/2026 19:00;01/12/2026 09:00;Pharmacie X;0466111111\n")
    assert registry.changed()
    assert not registry.reload()
    assert registry.last_error is not None
    assert "ligne 8 : date de début « 32/11/2026 19:00 » illisible" in registry.last_error
    assert registry.current.by_id["nimes"].destinations.pharmacy.roster[-1].name.endswith("Courbet")
    assert not registry.changed()
    _touch(csv_file, text.replace("Courbet", "Jaurès"))
    assert registry.changed()
    assert registry.reload()
    assert registry.current.by_id["nimes"].destinations.pharmacy.roster[-1].name.endswith("Jaurès")


def test_a_roster_file_that_appears_is_noticed(tmp_path: Path) -> None:
    registry = ProtocolRegistry(_protocol_dir(tmp_path, "later.ics"), Metrics(CollectorRegistry()))
    assert not registry.reload()  # named but absent: the load fails
    assert not registry.changed()
    _copy("nimes-weekends.ics", tmp_path, "later.ics")
    assert registry.changed()
    assert registry.reload()


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (5, "Input should be a valid string"),
        ("  ", "roster_file is empty"),
        ("bad\x00name.ics", "nom de fichier invalide"),
        ("garde.xlsx", "attendu un fichier .ics ou .csv"),
    ],
)
def test_bad_roster_file_values_are_load_errors(tmp_path: Path, value: Any, reason: str) -> None:
    with pytest.raises(ProtocolLoadError) as caught:
        load_protocols(_protocol_dir(tmp_path, value))
    assert any(reason in issue.reason for issue in caught.value.issues), caught.value.issues


def test_a_runaway_recurrence_stops_at_the_cap(tmp_path: Path) -> None:
    path = _ics(
        tmp_path,
        _event(
            "Pharmacie A",
            "20261121T190000",
            "20261121T190100",
            LOCATION="04 66 11 11 11",
            RRULE="FREQ=MINUTELY;INTERVAL=2",
        ),
    )
    with pytest.raises(rosters.RosterFileError, match="plus de 5000 périodes de garde"):
        rosters.read_roster(path)
