"""``regulator calendar``: the plan of an MMG, against plans computed by hand from the
example protocols (protocols/*.yaml) over Christmas–New Year, Ascension and the two
daylight-saving nights of 2026 (29 March, 25 October)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import icalendar
import orjson
import pytest
import recurring_ical_events

from regulator.cli import main
from regulator.core.plan import PlanDay, build_plan, fmt_minutes, to_ics, to_json, to_text
from regulator.core.protocol import Protocol
from tests.unit.helpers import PARIS, PROTOCOLS_DIR, REUNION, protocol, variant


def row(day: PlanDay) -> str:
    """One day as the tables below write it: date, type (holiday), hours if not 24,
    then each slot (source), and each closure (×)."""
    kind = day.day_type.value + (f" {day.holiday}" if day.holiday else "")
    parts = [f"{day.day:%d/%m} {kind}" + ("" if day.hours == 24 else f" {day.hours}h")]
    parts += [f"{fmt_minutes(s.start)}-{fmt_minutes(s.end)} {s.source}" for s in day.slots]
    parts += [f"× {fmt_minutes(c.start)}-{fmt_minutes(c.end)}" for c in day.closures]
    return " | ".join(parts)


def rows(mmg: str, start: date, days: int) -> list[str]:
    return [row(d) for d in build_plan(protocol(mmg), start, days).days]


# ------------------------------------------------------------------- Nîmes (metropole)
# Weekdays 20-24, Saturday 12-24, Sunday/holiday/bridge 08-24; all three bridges;
# override 24/12 18:00-24:00 open (Veille de Noël).

NIMES_CHRISTMAS = [
    "21/12 weekday | 20:00-24:00 weekly",
    "22/12 weekday | 20:00-24:00 weekly",
    "23/12 weekday | 20:00-24:00 weekly",
    "24/12 weekday | 18:00-24:00 override",  # Veille de Noël covers the weekly slot
    "25/12 holiday Noël | 08:00-24:00 holiday",
    "26/12 bridge | 08:00-24:00 bridge",  # Saturday after a Friday holiday
    "27/12 sunday | 08:00-24:00 weekly",
    "28/12 weekday | 20:00-24:00 weekly",
    "29/12 weekday | 20:00-24:00 weekly",
    "30/12 weekday | 20:00-24:00 weekly",
    "31/12 weekday | 20:00-24:00 weekly",
    "01/01 holiday Jour de l'an | 08:00-24:00 holiday",
    "02/01 bridge | 08:00-24:00 bridge",
    "03/01 sunday | 08:00-24:00 weekly",
]

NIMES_ASCENSION = [
    "11/05 weekday | 20:00-24:00 weekly",
    "12/05 weekday | 20:00-24:00 weekly",
    "13/05 weekday | 20:00-24:00 weekly",
    "14/05 holiday Ascension | 08:00-24:00 holiday",
    "15/05 bridge | 08:00-24:00 bridge",  # Friday after a Thursday holiday
    "16/05 bridge | 08:00-24:00 bridge",  # Saturday closing the long weekend
    "17/05 sunday | 08:00-24:00 weekly",
]

NIMES_DST = [
    "28/03 saturday | 12:00-24:00 weekly",
    "29/03 sunday 23h | 08:00-24:00 weekly",  # 02:00 → 03:00 while closed
    "30/03 weekday | 20:00-24:00 weekly",
]

NIMES_DST_AUTUMN = [
    "24/10 saturday | 12:00-24:00 weekly",
    "25/10 sunday 25h | 08:00-24:00 weekly",  # 03:00 → 02:00 while closed
    "26/10 weekday | 20:00-24:00 weekly",
]

# ------------------------------------------------------------------- Metz (Moselle)
# Weekdays 20-24, Saturday 14-24, Sunday/holiday/bridge 09-13 + 15-22; winter period
# 15/12-28/02: weekdays 19-24, Saturday 12-24; override 31/12 20:00-24:00 closed.
# Moselle: Good Friday and 26 December are holidays.

METZ_CHRISTMAS = [
    "21/12 weekday | 19:00-24:00 period",
    "22/12 weekday | 19:00-24:00 period",
    "23/12 weekday | 19:00-24:00 period",
    "24/12 weekday | 19:00-24:00 period",
    "25/12 holiday Noël | 09:00-13:00 holiday | 15:00-22:00 holiday",
    "26/12 holiday Saint-Étienne | 09:00-13:00 holiday | 15:00-22:00 holiday",
    "27/12 sunday | 09:00-13:00 weekly | 15:00-22:00 weekly",  # the period has no Sunday
    "28/12 weekday | 19:00-24:00 period",
    "29/12 weekday | 19:00-24:00 period",
    "30/12 weekday | 19:00-24:00 period",
    "31/12 weekday | 19:00-20:00 period | × 20:00-24:00",  # works from 20:00
    "01/01 holiday Jour de l'an | 09:00-13:00 holiday | 15:00-22:00 holiday",
    "02/01 bridge | 09:00-13:00 bridge | 15:00-22:00 bridge",
    "03/01 sunday | 09:00-13:00 weekly | 15:00-22:00 weekly",
]

METZ_ASCENSION = [
    "11/05 weekday | 20:00-24:00 weekly",
    "12/05 weekday | 20:00-24:00 weekly",
    "13/05 weekday | 20:00-24:00 weekly",
    "14/05 holiday Ascension | 09:00-13:00 holiday | 15:00-22:00 holiday",
    "15/05 bridge | 09:00-13:00 bridge | 15:00-22:00 bridge",
    "16/05 bridge | 09:00-13:00 bridge | 15:00-22:00 bridge",
    "17/05 sunday | 09:00-13:00 weekly | 15:00-22:00 weekly",
]

METZ_DST_AND_EASTER = [
    "28/03 saturday | 14:00-24:00 weekly",
    "29/03 sunday 23h | 09:00-13:00 weekly | 15:00-22:00 weekly",
    "30/03 weekday | 20:00-24:00 weekly",
    "31/03 weekday | 20:00-24:00 weekly",
    "01/04 weekday | 20:00-24:00 weekly",
    "02/04 weekday | 20:00-24:00 weekly",  # Thursday: no Friday-after bridge, Friday is one
    "03/04 holiday Vendredi saint | 09:00-13:00 holiday | 15:00-22:00 holiday",
    "04/04 bridge | 09:00-13:00 bridge | 15:00-22:00 bridge",  # Saturday after Good Friday
    "05/04 sunday | 09:00-13:00 weekly | 15:00-22:00 weekly",
    "06/04 holiday Lundi de Pâques | 09:00-13:00 holiday | 15:00-22:00 holiday",
]

# ------------------------------------------------------------------- Saint-Denis (974)
# Indian/Reunion (UTC+4, no DST). Weekdays 20-23, Saturday 12-23, Sunday/holiday/
# bridge 08-23; 20 December (abolition of slavery) is a holiday there.

REUNION_CHRISTMAS = [
    "18/12 weekday | 20:00-23:00 weekly",
    "19/12 saturday | 12:00-23:00 weekly",
    "20/12 holiday Abolition de l'esclavage | 08:00-23:00 holiday",  # a Sunday in 2026
    "21/12 weekday | 20:00-23:00 weekly",
    "22/12 weekday | 20:00-23:00 weekly",
    "23/12 weekday | 20:00-23:00 weekly",
    "24/12 weekday | 20:00-23:00 weekly",  # Nîmes' Christmas Eve override is not here
    "25/12 holiday Noël | 08:00-23:00 holiday",
    "26/12 bridge | 08:00-23:00 bridge",
    "27/12 sunday | 08:00-23:00 weekly",
    "28/12 weekday | 20:00-23:00 weekly",
    "29/12 weekday | 20:00-23:00 weekly",
    "30/12 weekday | 20:00-23:00 weekly",
    "31/12 weekday | 20:00-23:00 weekly",
    "01/01 holiday Jour de l'an | 08:00-23:00 holiday",
    "02/01 bridge | 08:00-23:00 bridge",
    "03/01 sunday | 08:00-23:00 weekly",
]

REUNION_ASCENSION = [
    "14/05 holiday Ascension | 08:00-23:00 holiday",
    "15/05 bridge | 08:00-23:00 bridge",
    "16/05 bridge | 08:00-23:00 bridge",
    "17/05 sunday | 08:00-23:00 weekly",
]

REUNION_NO_DST = [
    "28/03 saturday | 12:00-23:00 weekly",
    "29/03 sunday | 08:00-23:00 weekly",  # 24 h: no daylight saving in La Réunion
    "24/10 saturday | 12:00-23:00 weekly",
    "25/10 sunday | 08:00-23:00 weekly",
]


@pytest.mark.parametrize(
    ("mmg", "start", "expected"),
    [
        ("nimes", date(2026, 12, 21), NIMES_CHRISTMAS),
        ("nimes", date(2026, 5, 11), NIMES_ASCENSION),
        ("nimes", date(2026, 3, 28), NIMES_DST),
        ("nimes", date(2026, 10, 24), NIMES_DST_AUTUMN),
        ("metz", date(2026, 12, 21), METZ_CHRISTMAS),
        ("metz", date(2026, 5, 11), METZ_ASCENSION),
        ("metz", date(2026, 3, 28), METZ_DST_AND_EASTER),
        ("saint-denis-reunion", date(2026, 12, 18), REUNION_CHRISTMAS),
        ("saint-denis-reunion", date(2026, 5, 14), REUNION_ASCENSION),
        ("saint-denis-reunion", date(2026, 3, 28), REUNION_NO_DST[:2]),
        ("saint-denis-reunion", date(2026, 10, 24), REUNION_NO_DST[2:]),
    ],
    ids=lambda v: v if isinstance(v, str) else str(v) if isinstance(v, date) else "",
)
def test_plan_matches_the_hand_computed_plan(mmg: str, start: date, expected: list[str]) -> None:
    assert rows(mmg, start, len(expected)) == expected


def test_slot_labels_and_reasons_say_where_each_slot_comes_from() -> None:
    nimes = build_plan(protocol("nimes"), date(2026, 12, 24), 3).days
    (eve,) = nimes[0].slots
    assert (eve.label, eve.reason, eve.direct_access) == (
        "dérogation « Veille de Noël »",
        "Veille de Noël",
        False,
    )
    assert nimes[1].slots[0].label == "horaires des jours fériés"
    assert nimes[2].slots[0].label == "horaires des ponts (art. R.6315-1)"
    metz = build_plan(protocol("metz"), date(2026, 12, 31), 1).days[0]
    assert metz.slots[0].label == "période « Épidémie hivernale » (jour de semaine)"
    assert metz.slots[0].reason == "Épidémie hivernale"
    assert [c.reason for c in metz.closures] == ["Fermeture exceptionnelle (travaux)"]
    assert metz.open_minutes == 60


def test_declared_influx_override_is_open_with_direct_access() -> None:
    # Nîmes, 14 January 2027 20:00-24:00: Épidémie de grippe, direct access.
    (slot,) = build_plan(protocol("nimes"), date(2027, 1, 14), 1).days[0].slots
    assert (fmt_minutes(slot.start), fmt_minutes(slot.end), slot.source) == (
        "20:00",
        "24:00",
        "override",
    )
    assert slot.direct_access
    # La Réunion: the dengue override, 1 February 08:00 to 28 February 23:00, open
    # round the clock in between, covering the weekly slots.
    february = rows("saint-denis-reunion", date(2027, 2, 1), 28)
    assert february[0] == "01/02 weekday | 08:00-24:00 override"
    assert february[1] == "02/02 weekday | 00:00-24:00 override"
    assert february[5] == "06/02 saturday | 00:00-24:00 override"
    assert february[-1] == "28/02 sunday | 00:00-23:00 override"
    assert rows("saint-denis-reunion", date(2027, 3, 1), 1) == [
        "01/03 weekday | 20:00-23:00 weekly"
    ]


# ------------------------------------------------------------------- DST, real hours


def _night_variant(mmg: str) -> Protocol:
    """The example with a night slot over the clock change and a pharmacy stretch
    over the DST night."""
    return variant(
        mmg,
        **{
            "opening.sunday": ["00:00-08:00", "08:00-24:00"],
            "destinations.pharmacy.roster": [
                {
                    "from": "2026-03-28T19:00",
                    "to": "2026-03-30T09:00",
                    "name": "Pharmacie de nuit",
                    "number": "+33466111111",
                },
                {
                    "from": "2026-10-24T19:00",
                    "to": "2026-10-26T09:00",
                    "name": "Pharmacie d'automne",
                    "number": "+33466222222",
                },
            ],
        },
    )


def test_daylight_saving_nights_shorten_and_lengthen_the_open_time() -> None:
    proto = _night_variant("nimes")
    spring = build_plan(proto, date(2026, 3, 29), 1).days[0]
    autumn = build_plan(proto, date(2026, 10, 25), 1).days[0]
    # Same wall-clock slots 00:00-24:00 (merged), 23 and 25 hours of real time.
    assert [(s.start, s.end) for s in spring.slots] == [(0, 24 * 60)]
    assert (spring.hours, spring.open_minutes) == (23, 23 * 60)
    assert (autumn.hours, autumn.open_minutes) == (25, 25 * 60)
    assert [(p.start, p.end, p.name) for p in spring.pharmacy] == [
        (0, 24 * 60, "Pharmacie de nuit")
    ]
    monday = build_plan(proto, date(2026, 3, 30), 1).days[0]
    assert [(fmt_minutes(p.start), fmt_minutes(p.end), p.name) for p in monday.pharmacy] == [
        ("00:00", "09:00", "Pharmacie de nuit"),
        ("09:00", "24:00", None),
    ]


@pytest.mark.parametrize("mmg", ["nimes", "metz", "saint-denis-reunion"])
@pytest.mark.parametrize(
    "start", [date(2026, 3, 27), date(2026, 10, 23), date(2026, 12, 20), date(2026, 5, 12)]
)
def test_plan_agrees_with_the_decisions_at_every_quarter_hour(mmg: str, start: date) -> None:
    """The plan and Schedule.state (what decides calls) never disagree, DST included."""
    proto = protocol(mmg) if mmg != "nimes" else _night_variant("nimes")
    plan = {d.day: d for d in build_plan(proto, start, 5).days}
    first = datetime.combine(start, datetime.min.time(), proto.tz).astimezone(UTC)
    instant = first
    while instant < first + timedelta(days=4):
        local = instant.astimezone(proto.tz)
        minute = local.hour * 60 + local.minute
        day = plan[local.date()]
        planned = any(s.start <= minute < s.end for s in day.slots)
        assert planned == proto.schedule.state(instant).open, local.isoformat()
        instant += timedelta(minutes=15)


# ------------------------------------------------------------------- pharmacy, routing


def test_pharmacy_on_duty_for_each_stretch_of_the_day() -> None:
    days = build_plan(protocol("saint-denis-reunion"), date(2026, 12, 18), 4).days
    stretches = [
        [(fmt_minutes(p.start), fmt_minutes(p.end), p.name or p.number) for p in d.pharmacy]
        for d in days
    ]
    assert stretches == [
        [("00:00", "19:00", "3237"), ("19:00", "24:00", "Pharmacie du Barachois")],
        [
            ("00:00", "19:00", "Pharmacie du Barachois"),
            ("19:00", "24:00", "Pharmacie de la Rivière"),
        ],
        [("00:00", "24:00", "Pharmacie de la Rivière")],
        [("00:00", "08:00", "Pharmacie de la Rivière"), ("08:00", "24:00", "3237")],
    ]


def test_routing_is_described_in_french_for_open_and_closed() -> None:
    nimes = build_plan(protocol("nimes"), date(2026, 12, 21), 1)
    assert nimes.when_open.startswith(
        "menu vocal : touche 1 → médecin régulateur (centre 15 / SAS, +33466000015 ou "
        "sip:sas30@regulation.example), touche 2 → pharmacie de garde (tableau de garde, "
        "sinon le 3237) ; sans choix après 6 s : médecin régulateur"
    )
    assert "2 professionnels de santé référencés" in nimes.when_open
    assert "Régulation sans réponse après 90 s : débordement vers l'accueil" in nimes.when_open
    assert nimes.when_closed == (
        "médecin régulateur (centre 15 / SAS, +33466000015 ou sip:sas30@regulation.example), "
        "pour tous les appelants."
    )
    reunion = build_plan(protocol("saint-denis-reunion"), date(2026, 12, 21), 1)
    assert reunion.when_closed.startswith("message de fermeture « La maison médicale de garde")
    metz = build_plan(protocol("metz"), date(2026, 12, 21), 1)
    assert metz.when_open.startswith("médecin régulateur (centre 15 / SAS, +33387000015).")
    assert "débordement" not in metz.when_open


# ------------------------------------------------------------------- outputs and CLI


def test_text_output_names_days_holidays_sources_and_dst(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["calendar", "--protocols", str(PROTOCOLS_DIR), "--mmg", "metz"]
    assert main([*args, "--from", "2026-03-29", "--days", "7"]) == 0
    out = capsys.readouterr().out
    assert "dimanche 29/03/2026 — dimanche (passage à l'heure d'été : journée de 23 h)" in out
    assert "vendredi 03/04/2026 — jour férié : Vendredi saint" in out
    assert "samedi 04/04/2026 — pont (art. R.6315-1)" in out
    assert "  ouverte   09:00-13:00  horaires des jours fériés" in out
    assert "  pharmacie 00:00-24:00  aucune au tableau de garde : 3237" in out
    assert main([*args, "--from", "2026-12-31", "--days", "1"]) == 0
    out = capsys.readouterr().out
    assert "  ouverte   19:00-20:00  période « Épidémie hivernale » (jour de semaine)" in out
    assert "  fermée    20:00-24:00  dérogation « Fermeture exceptionnelle (travaux) »" in out
    assert out.startswith("Maison médicale de garde de Metz (metz), fuseau Europe/Paris\n")


def test_json_output_has_every_day_with_its_slots_and_pharmacy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["calendar", "--protocols", str(PROTOCOLS_DIR), "--mmg", "nimes", "--format", "json"]
    assert main([*args, "--from", "2026-11-21", "--days", "14"]) == 0
    document = orjson.loads(capsys.readouterr().out)
    assert (document["mmg"], document["from"], document["to"]) == (
        "nimes",
        "2026-11-21",
        "2026-12-04",
    )
    assert len(document["days"]) == 14
    saturday = document["days"][0]
    assert saturday["weekday"] == "samedi"
    assert saturday["slots"] == [
        {
            "start": "12:00",
            "end": "24:00",
            "source": "weekly",
            "label": "horaires hebdomadaires (samedi)",
            "reason": None,
            "direct_access": False,
        }
    ]
    assert saturday["pharmacy"][1] == {
        "start": "19:00",
        "end": "24:00",
        "name": "Pharmacie des Arènes",
        "number": "+33466111111",
    }
    assert document["routing"]["closed"].startswith("médecin régulateur")
    assert document == to_json(build_plan(protocol("nimes"), date(2026, 11, 21), 14))


def test_cli_refuses_unknown_mmg_bad_dates_and_ranges(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["calendar", "--protocols", str(PROTOCOLS_DIR)]
    assert main([*args, "--mmg", "lyon"]) == 2
    assert main([*args, "--mmg", "nimes", "--from", "21/12/2026"]) == 2
    assert main([*args, "--mmg", "nimes", "--days", "0"]) == 2
    assert main([*args, "--mmg", "nimes", "--days", "367"]) == 2
    err = capsys.readouterr().err
    assert "MMG inconnue 'lyon'" in err
    assert "n'est pas une date" in err
    assert "--days doit être entre 1 et 366" in err
    assert main([*args, "--mmg", "nimes", "--days", "1"]) == 0  # today, by default
    assert "fuseau Europe/Paris" in capsys.readouterr().out


def _events(ics: bytes) -> list[tuple[datetime, datetime, str, str]]:
    calendar = icalendar.Calendar.from_ical(ics)
    events = recurring_ical_events.of(calendar).between(datetime(2000, 1, 1), datetime(2100, 1, 1))
    return sorted(
        (
            e["DTSTART"].dt.astimezone(UTC),
            e["DTEND"].dt.astimezone(UTC),
            str(e["SUMMARY"]),
            str(e["DESCRIPTION"]),
        )
        for e in events
    )


def test_ics_parses_back_with_the_opening_hours_in_real_time() -> None:
    proto = _night_variant("nimes")
    plan = build_plan(proto, date(2026, 3, 27), 4)  # Friday 27 to Monday 30 March
    generated = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    ics = to_ics(proto, plan, generated)
    calendar = icalendar.Calendar.from_ical(ics)
    assert [str(tz["TZID"]) for tz in calendar.walk("VTIMEZONE")] == ["Europe/Paris"]
    name = "Maison médicale de garde de Nîmes : ouverte"
    utc = UTC
    assert _events(ics) == [
        # Friday 20:00-24:00 CET.
        (datetime(2026, 3, 27, 19, tzinfo=utc), datetime(2026, 3, 27, 23, tzinfo=utc), name,
         "horaires hebdomadaires (jour de semaine)"),
        # Saturday 12:00 CET to Monday 00:00 CEST: one opening over the clock change
        # (Saturday 12-24, Sunday 00-08 and 08-24), 35 hours of real time.
        (datetime(2026, 3, 28, 11, tzinfo=utc), datetime(2026, 3, 29, 22, tzinfo=utc), name,
         "horaires hebdomadaires (samedi) ; horaires hebdomadaires (dimanche)"),
        # Monday 20:00-24:00 CEST.
        (datetime(2026, 3, 30, 18, tzinfo=utc), datetime(2026, 3, 30, 22, tzinfo=utc), name,
         "horaires hebdomadaires (jour de semaine)"),
    ]  # fmt: skip
    for event in calendar.walk("VEVENT"):
        assert event["DTSTART"].params["TZID"] == "Europe/Paris"
        assert event.decoded("DTSTAMP") == generated
        assert str(event["UID"]).endswith("@regulator")


@pytest.mark.parametrize(
    ("mmg", "start", "days", "zone"),
    [
        ("metz", "2026-12-21", 14, PARIS),
        ("saint-denis-reunion", "2026-12-18", 17, REUNION),
        ("nimes", "2027-01-14", 1, PARIS),
    ],
)
def test_ics_from_the_cli_parses_back_to_the_plans_slots(
    capsysbinary: pytest.CaptureFixture[bytes], mmg: str, start: str, days: int, zone: Any
) -> None:
    args = ["calendar", "--protocols", str(PROTOCOLS_DIR), "--mmg", mmg, "--format", "ics"]
    assert main([*args, "--from", start, "--days", str(days)]) == 0
    events = _events(capsysbinary.readouterr().out)
    plan = build_plan(protocol(mmg), date.fromisoformat(start), days)
    expected: list[tuple[datetime, datetime]] = []
    for day in plan.days:
        for slot in day.slots:
            midnight = datetime.combine(day.day, datetime.min.time(), zone)
            a = (midnight + timedelta(minutes=slot.start)).astimezone(UTC)
            b = (midnight + timedelta(minutes=slot.end)).astimezone(UTC)
            if expected and expected[-1][1] == a:  # an opening over midnight is one event
                expected[-1] = (expected[-1][0], b)
            else:
                expected.append((a, b))
    assert [(a, b) for a, b, _, _ in events] == expected
    if mmg == "nimes":
        assert events[0][2].endswith("(accès direct, afflux déclaré)")
    text = to_text(plan)
    assert text.count("\n\n") == days
