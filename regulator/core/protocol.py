"""The usage protocol of an MMG: pydantic models of the YAML file and its loader.

One YAML file per MMG (DESIGN.md §5). Models are frozen and strict about unknown
keys so a typo is an error, not a silently ignored setting. Loading a directory
returns a :class:`ProtocolSet` or raises :class:`ProtocolLoadError` listing every
problem with its file, field path, value and reason.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from regulator.core import phone
from regulator.core.calendar import (
    DEPARTMENTS,
    PDS_HOURS,
    BridgeDays,
    Schedule,
    format_local,
    outside_pds,
)
from regulator.core.models import DayType, Prompt

_SLOT = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")
_SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class Slot(_Frozen):
    """An opening slot within one local day, ``"20:00-24:00"``; never spans midnight."""

    start: int  # minutes since midnight
    end: int

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, str):
            match = _SLOT.match(value.strip())
            if not match:
                raise ValueError(f"expected a slot like '20:00-24:00', got {value!r}")
            h1, m1, h2, m2 = (int(g) for g in match.groups())
            if h1 > 23 or m1 > 59:
                raise ValueError(f"invalid start time {value.split('-')[0]!r} in {value!r}")
            if (h2, m2) != (24, 0) and (h2 > 23 or m2 > 59):
                raise ValueError(
                    f"invalid end time {value.split('-')[1]!r} in {value!r} "
                    "(hours 00–23, or 24:00 for the end of the day)"
                )
            start, end = h1 * 60 + m1, h2 * 60 + m2
            if end <= start:
                raise ValueError(
                    f"slot {value!r} ends before it starts; a slot never spans midnight: "
                    "split it into '…-24:00' and the next day's '00:00-…'"
                )
            return {"start": start, "end": end}
        return value

    def __str__(self) -> str:
        return (
            f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"
        )


def _normalize_number(value: Any) -> str:
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a phone number as text, got {value!r}")
    try:
        return phone.normalize(value)
    except phone.InvalidNumber:
        raise ValueError(f"{value!r} is not a phone number") from None


PhoneNumber = Annotated[str, BeforeValidator(_normalize_number)]


def _long_number(value: Any) -> str:
    number = _normalize_number(value)
    if phone.is_short_code(number):
        raise ValueError(
            f"{value!r} is a short code: telephony platforms cannot dial it; "
            "use the long number agreed with the SAMU"
        )
    return number


LongNumber = Annotated[str, BeforeValidator(_long_number)]


class BridgeChoice(_Frozen):
    """The bridge days of R.6315-1 the departmental cahier des charges covers.

    A key left out is a bridge day not covered: ``{friday_after: true}`` alone
    means only the Friday after a Thursday holiday.
    """

    monday_before: bool = False
    friday_after: bool = False
    saturday_after: bool = False


class CalendarConfig(_Frozen):
    country: Literal["FR"] = "FR"
    subdiv: str | None = None
    # true/false in the file: all three bridge days or none; a mapping chooses each one.
    bridges: BridgeChoice = Field(
        default_factory=lambda: BridgeChoice(
            monday_before=True, friday_after=True, saturday_after=True
        )
    )

    @field_validator("bridges", mode="before")
    @classmethod
    def _bridges(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"monday_before": value, "friday_after": value, "saturday_after": value}
        if not isinstance(value, dict | BridgeChoice):
            raise ValueError(
                "expected true, false or a mapping of monday_before, friday_after, "
                "saturday_after (each true or false)"
            )
        return value

    @property
    def bridge_days(self) -> BridgeDays:
        b = self.bridges
        return BridgeDays(b.monday_before, b.friday_after, b.saturday_after)

    @field_validator("subdiv", mode="before")
    @classmethod
    def _subdiv(cls, value: Any) -> Any:
        if value is None:
            return None
        text = str(value)
        if text not in DEPARTMENTS:
            known = ", ".join(DEPARTMENTS)
            raise ValueError(f"unknown department {value!r}; known: {known} or null")
        return text


def _no_overlap(slots: list[Slot], where: str) -> list[Slot]:
    ordered = sorted(slots, key=lambda s: s.start)
    for before, after in itertools.pairwise(ordered):
        if after.start < before.end:
            raise ValueError(f"{where}: slots {before} and {after} overlap")
    return ordered


class Period(_Frozen):
    """Dated replacement of some weekly slots (summer influx, winter epidemic).

    ``influx: true`` or a ``reason`` records the circular's grounds (seasonal
    influx, health crisis) for opening outside the PDS hours of R.6315-1.
    """

    name: str
    from_: date = Field(alias="from")
    to: date
    influx: bool = False
    reason: str | None = Field(default=None, min_length=1)
    weekdays: list[Slot] | None = None
    saturday: list[Slot] | None = None
    sunday: list[Slot] | None = None

    @model_validator(mode="after")
    def _check(self) -> Period:
        if self.to < self.from_:
            raise ValueError(
                f"period {self.name!r} ends ({self.to}) before it starts ({self.from_})"
            )
        return self

    def slots_for(self, kind: DayType) -> list[Slot] | None:
        if kind is DayType.SATURDAY:
            return self.saturday
        if kind is DayType.SUNDAY:
            return self.sunday
        return self.weekdays


class Override(_Frozen):
    """An absolute window (local time) that forces the MMG open or closed."""

    from_: datetime = Field(alias="from")
    to: datetime
    open: bool
    direct_access: bool = False
    reason: str = Field(min_length=1)

    @field_validator("from_", "to")
    @classmethod
    def _local(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError("override times are local wall-clock times: remove the UTC offset")
        return value

    @model_validator(mode="after")
    def _check(self) -> Override:
        if self.to <= self.from_:
            raise ValueError(f"override {self.reason!r} ends before it starts")
        if self.direct_access and not self.open:
            raise ValueError("an override with direct_access must also be open: true")
        return self


class Opening(_Frozen):
    weekdays: list[Slot] = Field(default_factory=list)
    saturday: list[Slot] = Field(default_factory=list)
    sunday: list[Slot] = Field(default_factory=list)
    holiday: list[Slot] | None = None
    bridge: list[Slot] | None = None
    periods: list[Period] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)

    @field_validator("weekdays", "saturday", "sunday", "holiday", "bridge")
    @classmethod
    def _sorted(cls, value: list[Slot] | None) -> list[Slot] | None:
        return None if value is None else _no_overlap(value, "opening")

    def slots_for(self, kind: DayType) -> list[Slot]:
        if kind is DayType.SATURDAY:
            return self.saturday
        if kind is DayType.SUNDAY:
            return self.sunday
        return self.weekdays


class Destination(_Frozen):
    """A phone number and/or a SIP URI."""

    number: PhoneNumber | None = None
    sip: str | None = Field(default=None, pattern=r"^sips?:[^\s@]+@[^\s]+$")

    @model_validator(mode="after")
    def _one(self) -> Destination:
        if self.number is None and self.sip is None:
            raise ValueError("a destination needs a number or a sip URI")
        return self


class RegulationLine(Destination):
    """Centre 15 / SAS: must be dialable, so never a short code."""

    number: LongNumber | None = None


class RosterEntry(_Frozen):
    from_: datetime = Field(alias="from")
    to: datetime
    name: str = Field(min_length=1)
    number: PhoneNumber
    # Where a stretch read from a roster file comes from ("garde.ics, événement …"),
    # set by regulator.rosters; empty for the YAML roster, where it is not a key.
    source: str = Field(default="", exclude=True, repr=False)

    @field_validator("from_", "to")
    @classmethod
    def _local(cls, value: datetime) -> datetime:
        # Compared with the naive local time of the call: an offset would make every
        # look-up raise (and mixed entries would crash the overlap check at load).
        if value.tzinfo is not None:
            raise ValueError("roster times are local wall-clock times: remove the UTC offset")
        return value

    @field_validator("source")
    @classmethod
    def _from_file_only(cls, value: str, info: ValidationInfo) -> str:
        if value and not (info.context or {}).get("roster_file"):
            raise ValueError("source is set by the roster file loader, not in the protocol")
        return value

    @model_validator(mode="after")
    def _check(self) -> RosterEntry:
        if self.to <= self.from_:
            raise ValueError(f"roster entry {self.name!r} ends before it starts")
        return self


def roster_overlaps(entries: Sequence[RosterEntry]) -> list[str]:
    """Every pair of overlapping stretches, named by pharmacy, times and origin
    (``roster[i]`` for the YAML roster, the file and line or event for a file)."""
    labelled = [(e, e.source or f"roster[{i}]") for i, e in enumerate(entries)]
    labelled.sort(key=lambda pair: (pair[0].from_, pair[0].to))
    problems = []
    latest: tuple[RosterEntry, str] | None = None  # the stretch that ends last so far
    for entry, label in labelled:
        if latest is not None and entry.from_ < latest[0].to:
            before, where = latest
            problems.append(
                f"roster entries {before.name!r} (until {before.to:%Y-%m-%dT%H:%M}) and "
                f"{entry.name!r} (from {entry.from_:%Y-%m-%dT%H:%M}) overlap: "
                f"{where} ; {label}"
            )
        if latest is None or entry.to > latest[0].to:
            latest = (entry, label)
    return problems


class Pharmacy(_Frozen):
    """The pharmacy on duty: a dated roster (YAML ``roster`` and/or ``roster_file``),
    the national line (``fallback``) when nobody is on it."""

    fallback: PhoneNumber = "3237"
    roster: list[RosterEntry] = Field(default_factory=list)
    # An iCalendar or CSV file, relative to the protocol file (regulator.rosters); its
    # stretches join ``roster`` at load.
    roster_file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _with_file(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, dict) or not isinstance(value.get("roster_file"), str):
            return value  # none, or not a path: the field's own validation names it
        if not value["roster_file"].strip():
            raise ValueError("roster_file is empty: name an .ics or .csv file, or remove it")
        entries = (info.context or {}).get("roster_file_entries")
        if entries is None:
            raise ValueError(
                "roster_file is read when the protocol is loaded from its file "
                "(load_protocol_file), not from a bare document"
            )
        yaml_roster = value.get("roster") or []
        if not isinstance(yaml_roster, list):
            return value  # the field's own validation names the error
        return {**value, "roster": [*yaml_roster, *entries]}

    @field_validator("roster")
    @classmethod
    def _no_overlap(cls, value: list[RosterEntry]) -> list[RosterEntry]:
        problems = roster_overlaps(value)
        if problems:
            raise ValueError(" | ".join(problems))
        return sorted(value, key=lambda r: r.from_)

    def on_duty(self, local: datetime) -> RosterEntry | None:
        """The roster entry covering a local naive time ([from, to)), or None."""
        for entry in self.roster:
            if entry.from_ <= local < entry.to:
                return entry
        return None


class Destinations(_Frozen):
    regulation: RegulationLine
    front_desk: Destination
    pharmacy: Pharmacy = Field(default_factory=Pharmacy)


MenuChoice = Literal["regulation", "pharmacy"]


class Menu(_Frozen):
    timeout_s: int = Field(default=6, ge=1, le=60)
    options: dict[str, MenuChoice]
    default: MenuChoice = "regulation"

    @field_validator("options", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            out = {str(k): v for k, v in value.items()}
            for key in out:
                if not re.fullmatch(r"[0-9*#]", key):
                    raise ValueError(f"menu key {key!r} must be one phone key (0-9, * or #)")
            return out
        return value


class Overflow(_Frozen):
    after_s: int = Field(ge=5, le=600)


class DirectAccess(_Frozen):
    pending_referral: bool = True
    professionals: list[PhoneNumber] = Field(default_factory=list)
    regulation_overflow: Overflow | None = None


class Routing(_Frozen):
    when_open: Literal["menu", "regulation"] = "regulation"
    when_closed: Literal["regulation", "closed_message"] = "regulation"
    menu: Menu | None = None
    direct_access: DirectAccess = Field(default_factory=DirectAccess)

    @model_validator(mode="after")
    def _menu(self) -> Routing:
        if self.when_open == "menu" and self.menu is None:
            raise ValueError("when_open is 'menu' but no menu is defined")
        return self


def _prompt(value: Any, info: ValidationInfo) -> Prompt:
    """A message: plain text, or ``{audio: "https://…", text: "…"}`` (a recording and
    its text, read where the platform plays no audio and if the recording fails)."""
    field = f"messages.{info.field_name}"
    if isinstance(value, Prompt):
        return value
    if isinstance(value, str):
        return Prompt(value)
    if not isinstance(value, dict):
        raise ValueError(
            f'{field} : attendu un texte ou {{audio: "https://…", text: "…"}}, '
            f"reçu {type(value).__name__}"
        )
    unknown = sorted(str(k) for k in value if k not in ("audio", "text"))
    if unknown:
        raise ValueError(
            f"{field} : clé(s) inconnue(s) {', '.join(unknown)} (audio et text seules)"
        )
    text = value.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(
            f"{field}.text : le texte est obligatoire à côté de l'enregistrement "
            "(il est lu par les plateformes sans audio et si l'enregistrement échoue)"
        )
    audio = value.get("audio")
    if audio is None:
        return Prompt(text)
    if not isinstance(audio, str) or not _https_url(audio):
        raise ValueError(
            f"{field}.audio : {audio!r} n'est pas une adresse https:// valide ; seuls les "
            "enregistrements servis en https sont acceptés (les plateformes vont les chercher)"
        )
    return Prompt(text, audio.strip())


def _https_url(value: str) -> bool:
    text = value.strip()
    if not text or len(text) > 2048 or re.search(r"[\s\x00-\x1f\x7f<>\"']", text):
        return False
    try:
        parts = urlsplit(text)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname)


def _prompt_dump(value: Prompt) -> str | dict[str, str]:
    return {"audio": value.audio, "text": str(value)} if value.audio else str(value)


#: A message of the protocol: plain text or a recording with its text (DESIGN.md §5).
PromptText = Annotated[Prompt, PlainValidator(_prompt), PlainSerializer(_prompt_dump)]


class Messages(_Frozen):
    """French text read to callers. Placeholders: {name}, {number}.

    Each may also be ``{audio: "https://…", text: "…"}``: platforms that play audio
    play the recording, the others (and a failed recording) read the text.
    """

    welcome: PromptText = Prompt("Vous êtes en relation avec la maison médicale de garde.")
    menu: PromptText = Prompt("Pour un médecin, tapez 1. Pour la pharmacie de garde, tapez 2.")
    closed: PromptText = Prompt(
        "La maison médicale de garde est fermée. En cas d'urgence vitale, composez le 15."
    )
    regulation: PromptText = Prompt("Nous vous mettons en relation avec le médecin régulateur.")
    direct_access: PromptText = Prompt(
        "Nous vous mettons en relation avec l'accueil de la maison médicale."
    )
    pharmacy: PromptText = Prompt(
        "La pharmacie de garde est la {name}. Nous vous mettons en relation."
    )
    pharmacy_fallback: PromptText = Prompt(
        "Pour connaître la pharmacie de garde, raccrochez et composez le {number}."
    )
    overflow_retry: PromptText = Prompt(
        "Toutes les lignes de régulation sont occupées. Merci de patienter, "
        "nous renouvelons votre appel."
    )
    failsafe: PromptText = Prompt("Nous vous mettons en relation avec le centre 15.")
    #: Played to the regulation line when it answers, before the caller is put through
    #: (the regulator hears where the call comes from). ``null`` or "" plays nothing.
    #: Placeholders: {name}, the MMG's name as written (``name:``); {place}, what
    #: follows "Maison médicale de garde" in it ("de Metz"), so that the default reads
    #: "… de garde de Metz" and not "… de garde de Maison médicale de garde de Metz".
    regulation_whisper: PromptText | None = Prompt(
        "Appel transmis par la maison médicale de garde {place}."
    )
    #: Whether the whisper also speaks the caller's number ("06 12 34 56 78"): off
    #: unless the MMG's data protection notice tells callers their number is passed on.
    whisper_caller: StrictBool = False

    @field_validator("regulation_whisper")
    @classmethod
    def _whisper_placeholders(cls, value: Prompt | None) -> Prompt | None:
        if value is None:
            return None
        try:
            value.format(name="", place="")
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                "messages.regulation_whisper : seuls les espaces réservés {name} (le nom de "
                "la maison médicale) et {place} (ce qui suit « Maison médicale de garde » "
                "dans ce nom) sont permis ; doublez les accolades pour les écrire ({{ et }})"
            ) from None
        return value


class Protocol(_Frozen):
    """The usage protocol of one MMG (one YAML file)."""

    id: str = Field(pattern=_SLUG)
    name: str = Field(min_length=1)
    timezone: str
    calendar: CalendarConfig = Field(default_factory=CalendarConfig)
    numbers: list[PhoneNumber] = Field(min_length=1)
    opening: Opening
    destinations: Destinations
    routing: Routing = Field(default_factory=Routing)
    messages: Messages = Field(default_factory=Messages)

    _schedule: Schedule | None = PrivateAttr(default=None)
    _professionals: frozenset[str] = PrivateAttr(default=frozenset())

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe": a tzdata directory
            raise ValueError(
                f"unknown time zone {value!r} (IANA name such as Europe/Paris)"
            ) from None
        return value

    @field_validator("numbers")
    @classmethod
    def _long_numbers(cls, value: list[str]) -> list[str]:
        for number in value:
            if phone.is_short_code(number):
                raise ValueError(f"{number!r} is a short code, not an MMG number")
        if len(set(value)) != len(value):
            raise ValueError("the same number is listed twice")
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._schedule = Schedule(self.timezone, self.calendar, self.opening)
        self._professionals = frozenset(self.routing.direct_access.professionals)

    # The two accessors below run several times per call: they read the private
    # attributes from ``__pydantic_private__`` directly, since pydantic's generic
    # ``__getattr__`` path costs microseconds per access.

    @property
    def schedule(self) -> Schedule:
        schedule: Schedule | None = self.__pydantic_private__["_schedule"]  # type: ignore[index]
        assert schedule is not None  # set in model_post_init
        return schedule

    @property
    def tz(self) -> ZoneInfo:
        return self.schedule.tz

    def is_professional(self, e164: str | None) -> bool:
        professionals: frozenset[str] = self.__pydantic_private__["_professionals"]  # type: ignore[index]
        return e164 is not None and e164 in professionals


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True, slots=True)
class ProtocolIssue:
    """One problem in one protocol file."""

    file: str
    field: str
    value: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.field}" if self.field else self.file
        value = f" = {self.value}" if self.value else ""
        return f"{where}{value}: {self.reason}"


class ProtocolLoadError(Exception):
    """Raised when a protocol directory or file does not validate."""

    def __init__(self, issues: list[ProtocolIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


def _loc(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            name = "from" if item == "from_" else item
            parts.append(("." if parts else "") + name)
    return "".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "…"


def parse_protocol(
    data: Any, file: str, roster_file_entries: Sequence[RosterEntry] | None = None
) -> Protocol:
    """Validate one parsed YAML document; raise :class:`ProtocolLoadError` on error.

    ``roster_file_entries`` are the stretches read from the document's
    ``destinations.pharmacy.roster_file`` (:func:`regulator.protocols.load_protocol_file`
    reads them: file I/O stays out of the pure core).
    """
    if not isinstance(data, dict):
        raise ProtocolLoadError([ProtocolIssue(file, "", "", "expected a YAML mapping")])
    context = {"roster_file_entries": roster_file_entries}
    try:
        return Protocol.model_validate(data, context=context)
    except ValidationError as exc:
        issues = []
        for err in exc.errors(include_url=False):
            reason = err["msg"].removeprefix("Value error, ")
            issues.append(ProtocolIssue(file, _loc(err["loc"]), _short(err.get("input")), reason))
        raise ProtocolLoadError(issues) from None


#: The phonenumbers region of each overseas department, for numbers in roster files.
_REGIONS = {"971": "GP", "972": "MQ", "973": "GF", "974": "RE", "975": "PM", "976": "YT"}


def phone_region(subdiv: object) -> str:
    """The region national-notation numbers of a department are read in (FR default)."""
    return _REGIONS.get(str(subdiv), "FR") if subdiv is not None else "FR"


# ------------------------------------------------------------ PDS hours check

_PDS_HOURS_TEXT: dict[DayType, str] = {
    DayType.WEEKDAY: "jours ouvrés : PDS de 20:00 à 08:00",
    DayType.SATURDAY: "samedi : PDS à partir de 12:00 (et la nuit jusqu'à 08:00)",
}


def _fmt_parts(parts: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(f"{s // 60:02d}:{s % 60:02d}-{e // 60:02d}:{e % 60:02d}" for s, e in parts)


def _slot_warnings(
    file: str, where: str, kind: DayType, slots: list[Slot], prefix: str = ""
) -> list[ProtocolIssue]:
    issues = []
    for i, slot in enumerate(slots):
        parts = outside_pds(kind, slot.start, slot.end)
        if parts:
            issues.append(
                ProtocolIssue(
                    file,
                    f"{where}[{i}]",
                    repr(str(slot)),
                    f"{prefix}ouverture hors des horaires de PDS de l'art. R.6315-1 "
                    f"({_fmt_parts(parts)} ; {_PDS_HOURS_TEXT[kind]})",
                )
            )
    return issues


def pds_hours_warnings(protocol: Protocol, file: str) -> list[ProtocolIssue]:
    """One warning per slot of ``protocol`` that opens outside the R.6315-1 PDS hours.

    PDS hours: every night 20:00-08:00, Saturdays from 12:00, Sundays, public
    holidays and the bridge days the calendar chooses (``calendar.PDS_HOURS``).
    Sunday, holiday and bridge slots are therefore always inside them; weekday
    and Saturday slots, weekly or of a period, are checked. A period carrying
    ``influx: true`` or a ``reason`` is exempt: seasonal influx and health crisis
    are the circular's own grounds for other hours. Overrides always carry a
    ``reason`` (the schema requires one), so they are never flagged.
    """
    opening = protocol.opening
    issues = _slot_warnings(file, "opening.weekdays", DayType.WEEKDAY, opening.weekdays)
    issues += _slot_warnings(file, "opening.saturday", DayType.SATURDAY, opening.saturday)
    for p, period in enumerate(opening.periods):
        if period.influx or period.reason:
            continue
        prefix = f"période « {period.name} » sans influx: true ni reason : "
        where = f"opening.periods[{p}]"
        issues += _slot_warnings(
            file, f"{where}.weekdays", DayType.WEEKDAY, period.weekdays or [], prefix
        )
        issues += _slot_warnings(
            file, f"{where}.saturday", DayType.SATURDAY, period.saturday or [], prefix
        )
    return issues


def roster_gaps(
    roster: Sequence[RosterEntry], schedule: Schedule
) -> list[tuple[datetime, datetime]]:
    """Holes in a pharmacy roster (between its first and last stretch) that overlap
    the PDS hours of R.6315-1 in ``schedule``'s calendar: nobody on duty then, callers
    get the national line. Daytime holes (pharmacies are open) are not gaps.
    Local wall-clock times.
    """
    gaps = []
    covered_until: datetime | None = None
    for entry in sorted(roster, key=lambda e: e.from_):
        if (
            covered_until is not None
            and entry.from_ > covered_until
            and _overlaps_pds(schedule, covered_until, entry.from_)
        ):
            gaps.append((covered_until, entry.from_))
        if covered_until is None or entry.to > covered_until:
            covered_until = entry.to
    return gaps


def _overlaps_pds(schedule: Schedule, start: datetime, end: datetime) -> bool:
    # Every day has PDS hours and no day is without PDS for 12 h or more (weekdays
    # 08:00-20:00 at most): a longer hole always overlaps them.
    if end - start >= timedelta(hours=12):
        return True
    day = start.date()
    while day <= end.date():
        midnight = datetime(day.year, day.month, day.day)
        for pds_start, pds_end in PDS_HOURS[schedule.day_type(day)]:
            window_start = midnight + timedelta(minutes=pds_start)
            window_end = midnight + timedelta(minutes=pds_end)
            if window_start < end and start < window_end:
                return True
        day += timedelta(days=1)
    return False


def roster_gap_warnings(protocol: Protocol, file: str) -> list[ProtocolIssue]:
    """One warning per roster gap (:func:`roster_gaps`), with its dates, in French."""
    fallback = protocol.destinations.pharmacy.fallback
    return [
        ProtocolIssue(
            file,
            "destinations.pharmacy.roster",
            "",
            f"aucune pharmacie de garde du {format_local(start)} au {format_local(end)} "
            f"pendant des heures de PDS (les appelants sont renvoyés vers le {fallback})",
        )
        for start, end in roster_gaps(protocol.destinations.pharmacy.roster, protocol.schedule)
    ]


class ProtocolSet:
    """All loaded protocols, indexed by MMG id and by called number (E.164)."""

    def __init__(self, protocols: Iterable[Protocol], files: dict[str, str] | None = None) -> None:
        self.by_id: dict[str, Protocol] = {}
        self.by_number: dict[str, Protocol] = {}
        #: MMG id → the file it was loaded from (for messages naming the file).
        self.files: dict[str, str] = dict(files or {})
        for proto in protocols:
            self.by_id[proto.id] = proto
            for number in proto.numbers:
                self.by_number[number] = proto

    def __iter__(self) -> Iterator[Protocol]:
        return iter(self.by_id.values())

    def __len__(self) -> int:
        return len(self.by_id)

    def get(self, mmg_id: str) -> Protocol | None:
        return self.by_id.get(mmg_id)

    def for_called(self, called: str | None) -> Protocol | None:
        """The protocol whose MMG number was called (any notation), or None."""
        number = phone.try_normalize(called)
        return self.by_number.get(number) if number else None
