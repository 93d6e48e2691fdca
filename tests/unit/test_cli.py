"""`regulator decide`: the stable JSON shape, local-time --at, and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from regulator.cli import main
from tests.unit.helpers import PROTOCOLS_DIR

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
        ("saint-denis-reunion", "2026-11-24T15:00Z", True),
        ("saint-denis-reunion", "2026-11-24T14:59Z", False),
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
