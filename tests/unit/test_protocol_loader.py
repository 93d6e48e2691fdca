"""Protocol files: validation at load, and `regulator check-protocols` error messages."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from regulator.cli import main
from regulator.core.protocol import ProtocolLoadError, parse_protocol, pds_hours_warnings
from regulator.protocols import load_protocols
from tests.support.paths import PROTOCOLS_DIR
from tests.unit.helpers import raw_protocol

Mutation = Callable[[dict[str, Any]], None]


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _set(dotted: str, value: Any) -> Mutation:
    def mutate(data: dict[str, Any]) -> None:
        node: Any = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _overlapping_roster(data: dict[str, Any]) -> None:
    roster = data["destinations"]["pharmacy"]["roster"]
    roster[1]["from"] = "2026-11-23T08:00"  # starts before Arènes ends at 09:00


# (id, mutation, field path, value shown, words of the reason)
CASES: list[tuple[str, Mutation, str, str, str]] = [
    (
        "bad-end-time",
        _set("opening.weekdays", ["20:00-25:00"]),
        "opening.weekdays[0]",
        "'20:00-25:00'",
        "invalid end time '25:00'",
    ),
    (
        "bad-start-time",
        _set("opening.saturday", ["25:00-24:00"]),
        "opening.saturday[0]",
        "'25:00-24:00'",
        "invalid start time '25:00'",
    ),
    (
        "slot-over-midnight",
        _set("opening.weekdays", ["20:00-02:00"]),
        "opening.weekdays[0]",
        "'20:00-02:00'",
        "never spans midnight",
    ),
    (
        "overlapping-slots",
        _set("opening.weekdays", ["20:00-22:00", "21:00-24:00"]),
        "opening.weekdays",
        "['20:00-22:00', '21:00-24:00']",
        "slots 20:00-22:00 and 21:00-24:00 overlap",
    ),
    (
        "menu-missing",
        _set("routing.menu", None),
        "routing",
        "'when_open': 'menu'",
        "when_open is 'menu' but no menu is defined",
    ),
    (
        "unknown-route",
        _set("routing.when_open", "doctor"),
        "routing.when_open",
        "'doctor'",
        "'menu' or 'regulation'",
    ),
    (
        "unknown-timezone",
        _set("timezone", "Europe/Nimes"),
        "timezone",
        "'Europe/Nimes'",
        "unknown time zone",
    ),
    (
        "front-desk-not-a-number",
        _set("destinations.front_desk.number", "04 66 12 34"),
        "destinations.front_desk.number",
        "'04 66 12 34'",
        "is not a phone number",
    ),
    (
        "professional-not-a-number",
        _set("routing.direct_access.professionals", ["+33612345678", "SAMU 30"]),
        "routing.direct_access.professionals[1]",
        "'SAMU 30'",
        "is not a phone number",
    ),
    (
        "regulation-short-code",
        _set("destinations.regulation", {"number": "15"}),
        "destinations.regulation.number",
        "'15'",
        "short code",
    ),
    (
        "overlapping-roster",
        _overlapping_roster,
        "destinations.pharmacy.roster",
        "'Pharmacie des Arènes'",
        "(from 2026-11-23T08:00) overlap",
    ),
    (
        "unknown-department",
        _set("calendar", {"country": "FR", "subdiv": "99", "bridges": True}),
        "calendar.subdiv",
        "'99'",
        "unknown department",
    ),
    (
        "unknown-bridge-day",
        _set("calendar.bridges", {"friday": True}),
        "calendar.bridges.friday",
        "True",
        "Extra inputs are not permitted",
    ),
    (
        "bridges-neither-flag-nor-choice",
        _set("calendar.bridges", "sometimes"),
        "calendar.bridges",
        "'sometimes'",
        "expected true, false or a mapping of monday_before, friday_after, saturday_after",
    ),
    (
        "roster-with-offset",
        _set("destinations.pharmacy.roster.0.from", "2026-11-21T19:00+01:00"),
        "destinations.pharmacy.roster[0].from",
        "'2026-11-21T19:00+01:00'",
        "remove the UTC offset",
    ),
    (
        "unknown-key",
        _set("opening.weekends", ["08:00-24:00"]),
        "opening.weekends",
        "['08:00-24:00']",
        "Extra inputs are not permitted",
    ),
    (
        "override-with-offset",
        _set(
            "opening.overrides.0",
            {
                "from": "2026-12-24T18:00+01:00",
                "to": "2026-12-25T00:00",
                "open": True,
                "reason": "Veille de Noël",
            },
        ),
        "opening.overrides[0].from",
        "'2026-12-24T18:00+01:00'",
        "remove the UTC offset",
    ),
]


@pytest.mark.parametrize(
    ("mutation", "field", "value", "reason"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_check_protocols_names_file_field_and_value(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    mutation: Mutation,
    field: str,
    value: str,
    reason: str,
) -> None:
    data = raw_protocol("nimes")
    mutation(data)
    path = _write(tmp_path / "nimes.yaml", data)

    code = main(["check-protocols", str(tmp_path)])

    err = capsys.readouterr().err
    assert code != 0
    line = next(line for line in err.splitlines() if field in line)
    assert str(path) in line
    assert f"{path}: {field}" in line
    assert value in line
    assert reason in line


def test_loader_reports_every_issue_with_file_field_value(tmp_path: Path) -> None:
    data = raw_protocol("nimes")
    data["timezone"] = "Mars/Olympus"
    data["routing"]["when_closed"] = "voicemail"
    path = _write(tmp_path / "nimes.yaml", data)
    with pytest.raises(ProtocolLoadError) as info:
        load_protocols(tmp_path)
    found = {(issue.file, issue.field, issue.value) for issue in info.value.issues}
    assert found == {
        (str(path), "timezone", "'Mars/Olympus'"),
        (str(path), "routing.when_closed", "'voicemail'"),
    }


def test_duplicate_mmg_id_across_two_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "nimes.yaml"
    shutil.copy(PROTOCOLS_DIR / "nimes.yaml", first)
    data = raw_protocol("metz")
    data["id"] = "nimes"
    second = _write(tmp_path / "zz-other.yaml", data)

    assert main(["check-protocols", str(tmp_path)]) == 1

    err = capsys.readouterr().err
    assert f"{second}: id = 'nimes': already used by {first}" in err


def test_duplicate_number_across_two_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "nimes.yaml"
    shutil.copy(PROTOCOLS_DIR / "nimes.yaml", first)
    data = raw_protocol("metz")
    data["numbers"] = ["03 87 55 12 34", "04 66 12 34 57"]  # second one is Nîmes' number
    second = _write(tmp_path / "zz-other.yaml", data)

    assert main(["check-protocols", str(tmp_path)]) == 1

    err = capsys.readouterr().err
    assert f"{second}: numbers[1] = '+33466123457': already used by {first}" in err


def test_same_number_twice_in_one_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = raw_protocol("nimes")
    data["numbers"] = ["+33466123456", "04 66 12 34 56"]
    path = _write(tmp_path / "nimes.yaml", data)
    assert main(["check-protocols", str(tmp_path)]) == 1
    assert f"{path}: numbers" in capsys.readouterr().err


def test_invalid_yaml_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("id: nimes\nopening: [unclosed\n", encoding="utf-8")
    assert main(["check-protocols", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: invalid YAML" in err


def test_empty_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-protocols", str(tmp_path)]) == 1
    assert "no protocol file" in capsys.readouterr().err


def test_missing_directory_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    assert main(["check-protocols", str(missing)]) == 1
    assert f"{missing}: not a directory" in capsys.readouterr().err


def test_real_protocols_directory_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-protocols", str(PROTOCOLS_DIR)]) == 0
    out = capsys.readouterr().out
    for mmg in ("nimes", "metz", "saint-denis-reunion"):
        assert f"ok  {mmg}" in out
    assert "3 protocole(s) valide(s)" in out


def test_loaded_protocols_are_indexed_by_id_and_any_notation_of_their_numbers() -> None:
    protocols = load_protocols(PROTOCOLS_DIR)
    assert len(protocols) == 3
    assert {p.id for p in protocols} == {"nimes", "metz", "saint-denis-reunion"}
    by_called = {
        "+33466123456": "nimes",
        "04 66 12 34 57": "nimes",
        "0033387551234": "metz",
        "262262901234": "saint-denis-reunion",
        "0262 90 12 34": "saint-denis-reunion",
    }
    for called, mmg in by_called.items():
        found = protocols.for_called(called)
        assert found is not None, called
        assert found.id == mmg
    assert protocols.for_called("+33100000000") is None
    assert protocols.for_called(None) is None


def test_numbers_are_stored_e164() -> None:
    protocols = load_protocols(PROTOCOLS_DIR)
    nimes = protocols.get("nimes")
    metz = protocols.get("metz")
    assert nimes is not None
    assert metz is not None
    assert nimes.numbers == ["+33466123456", "+33466123457"]
    assert metz.numbers == ["+33387551234"]
    assert nimes.routing.direct_access.professionals == ["+33612345678", "+33466000016"]


# ------------------------------------------------------------ PDS hours (R.6315-1)


def _out_of_hours_protocol() -> dict[str, Any]:
    """Nîmes with three slots outside the PDS hours and three exempt or inside them."""
    data = raw_protocol("nimes")
    opening = data["opening"]
    opening["weekdays"] = ["09:00-18:00", "20:00-24:00"]  # first one: daytime on working days
    opening["saturday"] = ["08:00-24:00"]  # the morning is not PDS
    opening["sunday"] = ["00:00-24:00"]  # Sundays are PDS all day
    opening["holiday"] = ["00:00-24:00"]
    opening["periods"] = [
        {"name": "Travaux", "from": "2026-03-01", "to": "2026-03-31", "weekdays": ["06:00-24:00"]},
        {
            "name": "Afflux estival",
            "from": "2026-07-01",
            "to": "2026-08-31",
            "influx": True,
            "weekdays": ["10:00-24:00"],
        },
        {
            "name": "Épidémie",
            "from": "2027-01-01",
            "to": "2027-01-31",
            "reason": "Crise sanitaire : épidémie de grippe",
            "saturday": ["08:00-24:00"],
        },
    ]
    return data


def test_pds_warnings_name_each_out_of_hours_slot_and_its_hours() -> None:
    proto = parse_protocol(_out_of_hours_protocol(), "x.yaml")
    issues = pds_hours_warnings(proto, "x.yaml")
    assert [(i.field, i.value) for i in issues] == [
        ("opening.weekdays[0]", "'09:00-18:00'"),
        ("opening.saturday[0]", "'08:00-24:00'"),
        ("opening.periods[0].weekdays[0]", "'06:00-24:00'"),
    ]
    assert "(09:00-18:00 ; jours ouvrés : PDS de 20:00 à 08:00)" in issues[0].reason
    assert "(08:00-12:00 ; samedi : PDS à partir de 12:00" in issues[1].reason
    assert "période « Travaux » sans influx: true ni reason" in issues[2].reason
    assert "(08:00-20:00 ;" in issues[2].reason
    assert all(i.file == "x.yaml" and "R.6315-1" in i.reason for i in issues)


@pytest.mark.parametrize(
    ("weekday_slot", "outside"),
    [
        ("20:00-24:00", None),
        ("00:00-08:00", None),
        ("19:00-24:00", "19:00-20:00"),
        ("07:00-09:00", "08:00-09:00"),
        ("00:00-24:00", "08:00-20:00"),
    ],
)
def test_pds_hours_on_working_days_are_20_to_8(weekday_slot: str, outside: str | None) -> None:
    data = raw_protocol("nimes")
    data["opening"]["weekdays"] = [weekday_slot]
    data["opening"]["periods"] = []
    issues = pds_hours_warnings(parse_protocol(data, "n.yaml"), "n.yaml")
    if outside is None:
        assert issues == []
    else:
        assert len(issues) == 1
        assert f"({outside} ;" in issues[0].reason


def test_check_protocols_warns_once_per_out_of_hours_slot_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(tmp_path / "nimes.yaml", _out_of_hours_protocol())

    code = main(["check-protocols", str(tmp_path)])

    captured = capsys.readouterr()
    assert code == 0
    warnings = [line for line in captured.err.splitlines() if line.startswith("avertissement : ")]
    assert len(warnings) == 3
    assert warnings[0] == (
        f"avertissement : {path}: opening.weekdays[0] = '09:00-18:00': ouverture hors des horaires "
        "de PDS de l'art. R.6315-1 (09:00-18:00 ; jours ouvrés : PDS de 20:00 à 08:00)"
    )
    assert "3 avertissements" in captured.out


def test_check_protocols_strict_fails_on_out_of_hours_slots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "nimes.yaml", _out_of_hours_protocol())
    assert main(["check-protocols", "--strict", str(tmp_path)]) == 1
    assert capsys.readouterr().err.count("avertissement : ") == 3


def test_shipped_protocols_pass_strict_without_warnings(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check-protocols", "--strict", str(PROTOCOLS_DIR)]) == 0
    captured = capsys.readouterr()
    assert "attention" not in captured.err
    assert "avertissement" not in captured.out


@pytest.mark.parametrize("zone", ["Europe", "America", "Indian"])
def test_a_time_zone_that_is_a_zone_directory_is_a_load_error(zone: str) -> None:
    # tzdata stores zones as files under region directories: ZoneInfo("Europe") opens
    # a directory and raises IsADirectoryError (found by tests/faults' text fuzzing).
    data = raw_protocol("nimes")
    data["timezone"] = zone
    with pytest.raises(ProtocolLoadError) as caught:
        parse_protocol(data, "nimes.yaml")
    (issue,) = caught.value.issues
    assert issue.field == "timezone"
    assert f"unknown time zone {zone!r}" in issue.reason
