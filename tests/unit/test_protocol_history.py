"""Protocol versions: canonical documents, version ids, and the French change summary."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from regulator.core.decision import decide
from regulator.core.history import (
    VERSION_LENGTH,
    diff_protocols,
    protocol_document,
    protocol_from_document,
    version_id,
)
from regulator.core.models import Call
from regulator.protocols import load_protocol_file, load_protocols
from tests.unit.helpers import PROTOCOLS_DIR, protocol, raw_protocol, variant

ROSTER_ICS = Path(__file__).resolve().parents[1] / "data" / "rosters" / "nimes-weekends.ics"


@pytest.mark.parametrize("mmg", ["nimes", "metz", "saint-denis-reunion"])
def test_a_document_loads_back_to_the_same_protocol(mmg: str) -> None:
    proto = protocol(mmg)
    document = protocol_document(proto)
    again = protocol_from_document(document, "stored")
    assert protocol_document(again) == document
    assert again.model_dump() == proto.model_dump()
    at = datetime(2026, 11, 28, 21, 0, tzinfo=UTC)
    call = Call("c", "+33612000001", proto.numbers[0], digits="2")
    assert decide(again, call, at) == decide(proto, call, at)


def test_the_version_is_a_short_sha256_that_ignores_yaml_layout() -> None:
    proto = protocol("nimes")
    ver = version_id(protocol_document(proto))
    assert len(ver) == VERSION_LENGTH
    assert int(ver, 16) >= 0
    # Same content written differently (number notation): same version.
    same = variant("nimes", numbers=["04 66 12 34 56", "+33466123457"])
    assert version_id(protocol_document(same)) == ver
    changed = variant("nimes", **{"opening.saturday": ["14:00-24:00"]})
    assert version_id(protocol_document(changed)) != ver


def test_a_roster_file_is_merged_into_the_document(tmp_path: Path) -> None:
    data = raw_protocol("nimes")
    (tmp_path / "gardes.ics").write_bytes(ROSTER_ICS.read_bytes())
    data["destinations"]["pharmacy"] = {"fallback": "3237", "roster_file": "gardes.ics"}
    (tmp_path / "nimes.yaml").write_text(yaml.safe_dump(data, allow_unicode=True), "utf-8")
    proto = load_protocol_file(tmp_path / "nimes.yaml")
    document = protocol_document(proto)
    assert "roster_file" not in document
    again = protocol_from_document(document, "stored")  # the file is not needed any more
    # The same stretches (their source, "gardes.ics, événement …", is not content).
    assert [e.model_dump() for e in again.destinations.pharmacy.roster] == [
        e.model_dump() for e in proto.destinations.pharmacy.roster
    ]
    assert len(again.destinations.pharmacy.roster) == 7


def _stretch(name: str, start: str, end: str, number: str = "+33466999999") -> dict[str, Any]:
    return {"from": start, "to": end, "name": name, "number": number}


NIMES_ROSTER = raw_protocol("nimes")["destinations"]["pharmacy"]["roster"]

DIFFS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("nothing", {}, ["aucun changement de contenu"]),
    (
        "saturday slots",
        {"opening.saturday": ["14:00-24:00"]},
        ["créneaux samedi : 12:00-24:00 → 14:00-24:00"],
    ),
    (
        "holiday slots back to an ordinary day",
        {"opening.holiday": None},
        ["créneaux jours fériés : 08:00-24:00 → comme un jour ordinaire"],
    ),
    (
        "an override added",
        {
            "opening.overrides": [
                *raw_protocol("nimes")["opening"]["overrides"],
                {
                    "from": "2026-12-31T18:00",
                    "to": "2027-01-01T00:00",
                    "open": False,
                    "reason": "Travaux",
                },
            ]
        },
        ["exception ajoutée : fermeture du 31/12/2026 18:00 au 01/01/2027 00:00 (Travaux)"],
    ),
    (
        "an override removed",
        {"opening.overrides": raw_protocol("nimes")["opening"]["overrides"][1:]},
        ["exception retirée : ouverture du 24/12/2026 18:00 au 25/12/2026 00:00 (Veille de Noël)"],
    ),
    (
        "a period removed",
        {"opening.periods": []},
        ["période retirée : « Afflux estival »"],
    ),
    (
        "a roster stretch replaced",
        {
            "destinations.pharmacy.roster": [
                *NIMES_ROSTER[:-1],
                _stretch("Pharmacie Nouvelle", "2026-11-28T12:00", "2026-11-30T09:00"),
            ]
        },
        [
            "garde de pharmacie ajoutée : Pharmacie Nouvelle (+33466999999) "
            "du 28/11/2026 12:00 au 30/11/2026 09:00",
            "garde de pharmacie retirée : Pharmacie des Arènes (+33466111111) "
            "du 28/11/2026 12:00 au 30/11/2026 09:00",
        ],
    ),
    (
        "a number added",
        {"numbers": ["+33466123456", "04 66 12 34 57", "04 66 12 34 58"]},
        ["numéro ajouté : +33466123458"],
    ),
    (
        "regulation number",
        {"destinations.regulation": {"number": "+33466000099"}},
        [
            "centre 15 / SAS : +33466000015 / sip:sas30@regulation.example → +33466000099",
        ],
    ),
    (
        "routing when closed",
        {"routing.when_closed": "closed_message"},
        ["orientation à la fermeture : regulation → closed_message"],
    ),
    (
        "a professional removed",
        {"routing.direct_access.professionals": ["+33612345678"]},
        ["professionnel retiré : +33466000016"],
    ),
    (
        "a message",
        {"messages.closed": "La maison médicale est fermée ce soir. Composez le 15."},
        ["message « closed » modifié"],
    ),
]


@pytest.mark.parametrize(("changes", "expected"), [d[1:] for d in DIFFS], ids=[d[0] for d in DIFFS])
def test_diff_names_each_change_in_french(changes: dict[str, Any], expected: list[str]) -> None:
    assert diff_protocols(protocol("nimes"), variant("nimes", **changes)) == expected


def test_the_first_version_has_no_previous_one() -> None:
    assert diff_protocols(None, protocol("nimes")) == ["première version enregistrée"]


def test_a_new_year_of_roster_is_summarised_not_listed() -> None:
    stretches = [
        _stretch(f"Pharmacie {i}", f"2027-01-{i:02d}T19:00", f"2027-01-{i + 1:02d}T09:00")
        for i in range(1, 26)
    ]
    changes = {"destinations.pharmacy.roster": [*NIMES_ROSTER, *stretches]}
    lines = diff_protocols(protocol("nimes"), variant("nimes", **changes))
    assert len(lines) == 11
    assert lines[-1] == "… et 15 autre(s) garde(s) ajoutée(s)"


def test_every_example_directory_protocol_has_a_distinct_version() -> None:
    versions = {version_id(protocol_document(p)) for p in load_protocols(PROTOCOLS_DIR)}
    assert len(versions) == 3


def test_whisper_changes_are_listed_switches_and_nulls_included() -> None:
    # Messages holds a switch (whisper_caller) and a text that may be null: the diff
    # compares them as values (it read ``.audio`` of each field: AttributeError).
    changes = {"messages.whisper_caller": True, "messages.regulation_whisper": None}
    assert diff_protocols(protocol("metz"), variant("metz", **changes)) == [
        "message « regulation_whisper » modifié",
        "message « whisper_caller » modifié",
    ]
    assert diff_protocols(protocol("metz"), protocol("metz")) == ["aucun changement de contenu"]
