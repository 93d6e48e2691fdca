"""Pharmacy duty rosters read from files: iCalendar (``.ics``) or CSV (``.csv``).

``destinations.pharmacy.roster_file`` names one, relative to the protocol file. The
stretches it holds join the YAML ``roster`` (both may be used) and are validated
with it at load (:mod:`regulator.core.protocol`): overlaps are errors naming both
entries, numbers are normalised, gaps during the PDS hours are warnings of
``check-protocols``. The registry (:mod:`regulator.reload`) watches these files
with the protocols.

- **iCalendar**, as pharmacy unions and the ARS publish them: one event per duty
  stretch; the pharmacy's name in ``SUMMARY``; its number the first phone number
  found in ``LOCATION``, then in ``DESCRIPTION``; ``RRULE``/``RDATE`` expanded and
  ``EXDATE`` honoured (``recurring-ical-events``); cancelled events skipped. Times
  with a zone (``TZID`` or UTC) become the MMG's wall-clock time; floating times are
  taken as they are; an all-day event covers its days from midnight. An ``RRULE``
  without an end is expanded up to :data:`OPEN_ENDED_DAYS` days after the file's last
  date.
- **CSV** as a French spreadsheet saves it: ``from;to;name;number``, ``;`` separator,
  UTF-8 with or without BOM (Windows-1252 accepted: Excel's "CSV (séparateur :
  point-virgule)"), dates as ``21/11/2026 19:00`` or ISO ``2026-11-21T19:00``, an
  optional header line (``début;fin;pharmacie;téléphone`` or the English names, in
  any order), blank lines ignored.

This module does the file I/O and the parsing; the validation rules (what a stretch
is, what an overlap is) stay in the core.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from pydantic import ValidationError

from regulator.core import phone
from regulator.core.calendar import format_local
from regulator.core.protocol import RosterEntry

#: Roster files are a few hundred stretches; anything larger is not a roster.
MAX_BYTES = 5 * 1024 * 1024
#: Stretches one file may hold: years of nightly duties, far from a runaway RRULE.
MAX_STRETCHES = 5000
#: How far past the file's last date an RRULE without UNTIL or COUNT is expanded.
OPEN_ENDED_DAYS = 400

SUFFIXES = (".ics", ".csv")


class RosterFileError(Exception):
    """A roster file that cannot be used; ``problems`` are French, one per stretch."""

    def __init__(self, file: str, problems: Sequence[str]) -> None:
        self.file = file
        self.problems = list(problems)
        super().__init__("\n".join(f"{file} : {p}" for p in self.problems))


def read_roster(
    path: Path, *, timezone: str = "Europe/Paris", region: str = "FR"
) -> list[RosterEntry]:
    """The stretches of one roster file, in file order; :class:`RosterFileError` if any
    stretch (or the file) is unusable. Overlaps are checked by the caller (the
    protocol, with its YAML roster; ``regulator roster check``)."""
    name = str(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise RosterFileError(name, ["format inconnu : attendu un fichier .ics ou .csv"])
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise RosterFileError(name, [f"fichier trop gros ({size} octets, {MAX_BYTES} au plus)"])
        data = path.read_bytes()
    except OSError as exc:
        raise RosterFileError(name, [f"lecture impossible : {exc.strerror or exc}"]) from None
    except ValueError:  # a NUL in the path: not a file name at all
        raise RosterFileError(name, ["lecture impossible : nom de fichier invalide"]) from None
    if suffix == ".ics":
        return parse_ics(data, path.name, ZoneInfo(timezone), region)
    return parse_csv(data, path.name, region)


def _entry(
    start: datetime, end: datetime, name: str, number: str, source: str
) -> RosterEntry | str:
    """A validated stretch, or the French reason it is not one."""
    if not name.strip():
        return "nom de la pharmacie manquant"
    if end <= start:
        return f"finit ({format_local(end)}) avant de commencer ({format_local(start)})"
    try:
        return RosterEntry.model_validate(
            {"from": start, "to": end, "name": name.strip(), "number": number, "source": source},
            context={"roster_file": True},
        )
    except ValidationError as exc:  # the core's own checks, should the ones above pass
        return "; ".join(e["msg"].removeprefix("Value error, ") for e in exc.errors())


# --------------------------------------------------------------------------- iCalendar


def _local(value: date | datetime, tz: ZoneInfo) -> datetime:
    """An iCalendar DATE or DATE-TIME as the MMG's wall-clock time (naive)."""
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    if value.tzinfo is None:
        return value
    return value.astimezone(tz).replace(tzinfo=None)


def _naive(value: date | datetime) -> datetime:
    if not isinstance(value, datetime):
        return datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=None)


def first_number(texts: Iterable[str], region: str) -> str | None:
    """The first phone number written in ``texts`` (E.164), or None."""
    for text in texts:
        for match in phonenumbers.PhoneNumberMatcher(text, region):
            e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            number = phone.try_normalize(e164, region)
            if number is not None:
                return number
    return None


def _window(events: Sequence[Any]) -> tuple[datetime, datetime]:
    """The span to expand recurrences over: the file's dates, plus a margin for
    open-ended RRULEs."""
    dates: list[datetime] = []
    for event in events:
        for prop in ("DTSTART", "DTEND"):
            value = event.get(prop)
            if value is not None and hasattr(value, "dt"):
                dates.append(_naive(value.dt))
        for rule in event.get("RRULE", {}).get("UNTIL", []) if "RRULE" in event else []:
            dates.append(_naive(rule))
    if not dates:
        return datetime(1970, 1, 1), datetime(1970, 1, 2)
    return min(dates) - timedelta(days=1), max(dates) + timedelta(days=OPEN_ENDED_DAYS)


def _label(name: str, begin: datetime) -> str:
    return f"événement « {name or '(sans SUMMARY)'} » du {format_local(begin)}"


def _end(event: Any, tz: ZoneInfo) -> datetime | None:
    """The local end of an event: DTEND, DTSTART + DURATION, or the end of an all-day
    event's day; None when a timed event has neither."""
    begin = _local(event["DTSTART"].dt, tz)
    if "DTEND" in event:
        return _local(event["DTEND"].dt, tz)
    if "DURATION" in event:
        duration: timedelta = event["DURATION"].dt
        return begin + duration
    if not isinstance(event["DTSTART"].dt, datetime):
        return begin + timedelta(days=1)
    return None


def _written_problem(event: Any, tz: ZoneInfo) -> str | None:
    if "DTSTART" not in event:
        return f"événement « {event.get('SUMMARY', '')} » sans DTSTART"
    if str(event.get("STATUS", "")).upper() == "CANCELLED":
        return None
    begin = _local(event["DTSTART"].dt, tz)
    label = _label(str(event.get("SUMMARY", "")).strip(), begin)
    finish = _end(event, tz)
    if finish is None:
        return f"{label} : ni DTEND ni DURATION, sa fin est inconnue"
    if finish <= begin:
        return (
            f"{label} : finit ({format_local(finish)}) avant de commencer ({format_local(begin)})"
        )
    return None


def parse_ics(data: bytes, file: str, tz: ZoneInfo, region: str = "FR") -> list[RosterEntry]:
    """The duty stretches of an iCalendar file (see the module docstring)."""
    import icalendar
    import recurring_ical_events

    try:
        calendar = icalendar.Calendar.from_ical(data)
    except (ValueError, IndexError, KeyError) as exc:
        raise RosterFileError(file, [f"iCalendar illisible : {exc}"]) from None
    events = list(calendar.walk("VEVENT"))
    if not events:
        raise RosterFileError(file, ["aucun événement (VEVENT) : rien à lire"])
    # The library gives an event without DTEND a zero length and drops one ending
    # before it starts: both are errors in a roster, found on the events as written.
    problems = [p for p in (_written_problem(e, tz) for e in events) if p is not None]
    if problems:
        raise RosterFileError(file, problems)
    start, end = _window(events)
    occurrences = []
    try:
        # Lazily, in start order, so a rule every minute for years stops at the cap
        # instead of expanding in memory first.
        for occurrence in recurring_ical_events.of(calendar).after(start):
            if _naive(occurrence["DTSTART"].dt) > end:
                break
            occurrences.append(occurrence)
            if len(occurrences) > MAX_STRETCHES:
                raise RosterFileError(
                    file, [f"plus de {MAX_STRETCHES} périodes de garde : récurrence trop dense ?"]
                )
    except RosterFileError:
        raise
    except Exception as exc:  # the library raises its own errors for broken RRULEs
        raise RosterFileError(file, [f"récurrence illisible : {exc}"]) from None
    occurrences.sort(key=lambda e: _local(e["DTSTART"].dt, tz))
    entries: list[RosterEntry] = []
    for event in occurrences:
        if str(event.get("STATUS", "")).upper() == "CANCELLED":
            continue
        name = str(event.get("SUMMARY", "")).strip()
        begin = _local(event["DTSTART"].dt, tz)
        label = _label(name, begin)
        finish = _end(event, tz)
        assert finish is not None  # checked on the written events
        texts = [str(event.get(p, "")) for p in ("LOCATION", "DESCRIPTION")]
        number = first_number(texts, region)
        if number is None:
            problems.append(f"{label} : aucun numéro de téléphone dans LOCATION ni DESCRIPTION")
            continue
        entry = _entry(begin, finish, name, number, f"{file}, {label}")
        if isinstance(entry, str):
            problems.append(f"{label} : {entry}")
        else:
            entries.append(entry)
    if problems:
        raise RosterFileError(file, problems)
    return entries


# --------------------------------------------------------------------------- CSV

_FR_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})(?:[ T]+(\d{1,2})[:hH](\d{2})(?::(\d{2}))?)?")
_COLUMNS = {
    "from": ("from", "début", "debut", "du", "de", "start"),
    "to": ("to", "fin", "au", "à", "a", "jusqu'à", "end"),
    "name": ("name", "nom", "pharmacie", "officine"),
    "number": ("number", "numéro", "numero", "téléphone", "telephone", "tél", "tel", "tél."),
}


def parse_datetime(text: str) -> datetime | None:
    """``21/11/2026 19:00`` (French), ``21/11/2026`` (midnight) or ISO 8601 without an
    offset; None if it is none of these."""
    value = text.strip()
    match = _FR_DATE.fullmatch(value)
    try:
        if match:
            day, month, year, hour, minute, second = match.groups()
            return datetime(
                int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
            )
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is None else None


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Excel's "CSV (séparateur : point-virgule)" is saved in Windows-1252.
        return data.decode("cp1252", errors="replace")


def _header(row: list[str]) -> dict[str, int] | None:
    """Column positions when ``row`` is a header line, else None."""
    if parse_datetime(row[0]) is not None:
        return None
    cells = [c.strip().lower() for c in row]
    found: dict[str, int] = {}
    for key, aliases in _COLUMNS.items():
        for i, cell in enumerate(cells):
            if cell in aliases:
                found[key] = i
                break
    return found if len(found) == 4 else {"from": 0, "to": 1, "name": 2, "number": 3}


def parse_csv(data: bytes, file: str, region: str = "FR") -> list[RosterEntry]:
    """The duty stretches of a ``from;to;name;number`` CSV (see the module docstring)."""
    lines = _decode(data).splitlines()
    rows = list(csv.reader(lines, delimiter=";"))
    entries: list[RosterEntry] = []
    problems: list[str] = []
    columns = {"from": 0, "to": 1, "name": 2, "number": 3}
    first = True
    for line, row in enumerate(rows, start=1):
        if not any(cell.strip() for cell in row):
            continue
        if first:
            first = False
            header = _header(row)
            if header is not None:
                columns = header
                continue
        where = f"ligne {line}"
        if len(row) < 4:
            hint = " (séparateur « ; » attendu)" if len(row) == 1 and "," in row[0] else ""
            problems.append(f"{where} : 4 colonnes attendues (début;fin;nom;numéro){hint}")
            continue
        cells = {key: row[i].strip() for key, i in columns.items()}
        start, end = parse_datetime(cells["from"]), parse_datetime(cells["to"])
        bad = [
            f"date {what} « {cells[key]} » illisible (ex. 21/11/2026 19:00 ou 2026-11-21T19:00)"
            for key, what, value in (("from", "de début", start), ("to", "de fin", end))
            if value is None
        ]
        try:
            number = phone.normalize(cells["number"], region)
        except phone.InvalidNumber:
            bad.append(f"numéro « {cells['number']} » illisible")
            number = ""
        if bad:
            problems.append(f"{where} : " + " ; ".join(bad))
            continue
        assert start is not None
        assert end is not None
        entry = _entry(start, end, cells["name"], number, f"{file}, {where}")
        if isinstance(entry, str):
            problems.append(f"{where} : {entry}")
        else:
            entries.append(entry)
    if problems:
        raise RosterFileError(file, problems)
    if not entries:
        raise RosterFileError(file, ["aucune période de garde"])
    return entries
