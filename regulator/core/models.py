"""Domain values shared by the decision engine, the adapters and the stores.

Plain frozen dataclasses and string enums: cheap to build on the hot path, easy to
serialise, and free of any I/O library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Route(StrEnum):
    """Where a call goes."""

    REGULATION = "regulation"
    DIRECT_ACCESS = "direct_access"
    PHARMACY = "pharmacy"
    MENU = "menu"
    CLOSED = "closed"


#: Routes that give the caller a destination to dial: the ones a dial can fail on.
DESTINATION_ROUTES: frozenset[Route] = frozenset(
    {Route.REGULATION, Route.DIRECT_ACCESS, Route.PHARMACY}
)
#: What a call's route history holds: the destinations dialled, and ``CLOSED`` once the
#: caller was told to hang up and dial a number themselves (nothing is dialled after).
HISTORY_ROUTES: frozenset[Route] = DESTINATION_ROUTES | {Route.CLOSED}


class Ground(StrEnum):
    """The only reasons a caller may reach the front desk without regulation."""

    PENDING_REFERRAL = "pending_referral"
    PROFESSIONAL = "professional"
    REGULATION_OVERFLOW = "regulation_overflow"
    DECLARED_INFLUX = "declared_influx"


class DayType(StrEnum):
    """Kind of day in the MMG's calendar; drives slots and indicator breakdowns."""

    WEEKDAY = "weekday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"
    HOLIDAY = "holiday"
    BRIDGE = "bridge"


class Platform(StrEnum):
    """Telephony platforms that call our webhooks."""

    TWILIO = "twilio"
    VONAGE = "vonage"
    KAMAILIO = "kamailio"
    GENERIC = "generic"
    ASTERISK = "asterisk"
    FREESWITCH = "freeswitch"
    JAMBONZ = "jambonz"
    TELNYX = "telnyx"
    CLI = "cli"


class Stage(StrEnum):
    """Which step of the call flow a webhook is about."""

    INCOMING = "incoming"  # first webhook of a call: welcome / route
    DIGITS = "digits"  # the caller typed (or did not type) a menu choice
    DIAL_FAILED = "dial_failed"  # the destination given last was busy, unanswered or failed


@dataclass(frozen=True, slots=True)
class Call:
    """One inbound call as the platforms describe it, before any decision.

    ``caller`` and ``called`` are the raw strings from the platform; the engine
    normalises them. ``digits`` is the menu choice already typed, if any.
    """

    call_id: str
    caller: str
    called: str
    platform: Platform = Platform.GENERIC
    stage: Stage = Stage.INCOMING
    digits: str | None = None


@dataclass(frozen=True, slots=True)
class DecisionContext:
    """Facts from outside the protocol that a decision depends on.

    They are looked up by the service (storage) before calling the pure engine.
    """

    pending_referral: bool = False
    regulation_failed: bool = False  # the regulation line was busy/unanswered (= failed_route)
    # With Stage.DIAL_FAILED: which destination's dial failed; None = not known (the
    # platform did not say and the store could not tell).
    failed_route: Route | None = None
    # Destinations already offered to this call (the failed one included), and CLOSED
    # once it was told to dial 15 itself: none is offered twice, whatever is posted.
    offered: frozenset[Route] = frozenset()


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send the caller.

    ``dial`` destinations have a long E.164 number and/or a SIP URI. Short codes
    (15, 3237, …) can't be dialled by telephony platforms: they are ``announce``
    destinations, read to the caller ("raccrochez et composez le 3237").
    """

    number: str | None = None
    sip: str | None = None
    announce: str | None = None
    label: str = ""

    @property
    def dialable(self) -> bool:
        return self.announce is None and (self.number is not None or self.sip is not None)

    def display(self) -> str | None:
        """The single value the CLI and logs show: SIP URI first, then number, then code."""
        return self.sip or self.number or self.announce


class Prompt(str):
    """A message read to callers: its text, and optionally a recording (``https`` URL).

    A ``str`` so that every user of a decision's texts keeps working unchanged; the
    platforms that can play audio (Twilio ``<Play>``, Vonage ``stream``, the generic
    ``play`` field) read :attr:`audio` through :func:`audio_of`, the others read the
    text, which stays the fallback. ``format`` keeps the recording: a message with
    ``{name}`` is recorded without the name, and its text fills it in.
    """

    audio: str | None

    def __new__(cls, text: str, audio: str | None = None) -> Prompt:
        self = super().__new__(cls, text)
        self.audio = audio
        return self

    def format(self, *args: object, **kwargs: object) -> Prompt:
        return Prompt(str.format(self, *args, **kwargs), self.audio)

    def __repr__(self) -> str:
        text = str.__repr__(self)
        return f"Prompt({text}, audio={self.audio!r})" if self.audio else text

    def __reduce__(self) -> tuple[type[Prompt], tuple[str, str | None]]:
        return (Prompt, (str(self), self.audio))


def audio_of(text: str) -> str | None:
    """The recording to play for a message (a :class:`Prompt`'s), or None: say its text."""
    return text.audio if isinstance(text, Prompt) else None


@dataclass(frozen=True, slots=True)
class MenuPrompt:
    """What a platform needs to collect a menu choice."""

    text: str
    timeout_s: int
    options: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`regulator.core.decision.decide`: one route, explained."""

    mmg: str | None
    route: Route
    rule: str
    destination: Destination | None
    ground: Ground | None = None
    open: bool = False
    day_type: DayType | None = None
    failsafe: bool = False
    failsafe_reason: str | None = None
    say: tuple[str, ...] = ()
    menu: MenuPrompt | None = None
    # Seconds to ring the regulation line before the overflow callback; None = platform default.
    dial_timeout_s: int | None = None
    trace: tuple[str, ...] = field(default=(), compare=False)

    @property
    def prompts(self) -> tuple[tuple[str, str | None], ...]:
        """Each message of :attr:`say` as (text, recording URL or None), in order."""
        return tuple((str(text), audio_of(text)) for text in self.say)

    def as_json(self) -> dict[str, object]:
        """The stable JSON shape of ``regulator decide --json`` (DESIGN.md §5)."""
        return {
            "mmg": self.mmg,
            "route": self.route.value,
            "ground": self.ground.value if self.ground else None,
            "destination": self.destination.display() if self.destination else None,
            "rule": self.rule,
            "open": self.open,
            "day_type": self.day_type.value if self.day_type else None,
            "failsafe": self.failsafe,
        }


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One row of the call log: what the monthly "calls received" counts."""

    call_id: str
    mmg: str
    platform: str
    caller: str  # E.164 when parseable, else the raw string (never logged unmasked)
    at: datetime  # aware, UTC
    month: str  # YYYY-MM in the MMG's time zone
    day_type: DayType
    hour: int  # local hour of day 0–23
    route: Route
    ground: Ground | None
    rule: str
    failsafe: bool = False
    status: str = "in_progress"  # final platform status once the call ended
    duration_s: int | None = None
    # Route history (HISTORY_ROUTES): the destinations dialled for the call in the order
    # first offered, then CLOSED if it was told to hang up and dial. The stores append
    # each later update's ``offered`` to it.
    routes: tuple[Route, ...] = ()
    # The protocol version that decided the call (core/history.version_id), "" for
    # records written before versions existed: what ``regulator explain`` re-runs.
    protocol_version: str = ""


@dataclass(frozen=True, slots=True)
class CallUpdate:
    """A later fact about a recorded call: a new route (menu choice, overflow) or its end.

    ``offered`` joins the record's route history (see :func:`offered_by`); without it
    (updates spooled by an older version) a ``route`` that is a destination does."""

    call_id: str
    mmg: str
    month: str
    route: Route | None = None
    ground: Ground | None = None
    rule: str | None = None
    status: str | None = None
    duration_s: int | None = None
    offered: Route | None = None


def offered_by(decision: Decision) -> Route | None:
    """The route history entry of a decision: the route of a destination it dials,
    ``CLOSED`` when it asks the caller to hang up and dial (15, 3237…), None for a menu."""
    destination = decision.destination
    if destination is None:
        return None
    if not destination.dialable:
        return Route.CLOSED
    return decision.route if decision.route in DESTINATION_ROUTES else None


class ReferralStatus(StrEnum):
    """Life of a regulated referral (see core/referrals.py for the transitions)."""

    PENDING = "pending"
    ACKNOWLEDGED = "acknowledged"
    ARRIVED = "arrived"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    NO_SHOW = "no_show"


class VisitChannel(StrEnum):
    """How a person seen at the MMG came (circular, Partie 3).

    ``regulation``: sent by centre 15 / SAS — an arrived referral of this system, or
    a person the desk records as regulated whose referral is not here (the regulator
    used their own software).
    """

    REGULATION = "regulation"
    DIRECT = "direct"
    EMERGENCY_REORIENTATION = "emergency_reorientation"
    OTHER = "other"


class Outcome(StrEnum):
    HOME = "home"
    EMERGENCY = "emergency"
    HOSPITALISED = "hospitalised"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class Visit:
    """A person seen at the MMG; a referral that arrived is a visit with a referral_id.

    ``case_id`` is the regulation's case number (an arrived referral's, or the one
    the desk was given): two regulated visits of one case count as one person.
    ``tiers_payant`` is the value in force (see ``referrals.tiers_payant_rule``).
    """

    id: str
    mmg: str
    channel: VisitChannel
    at: datetime  # aware, UTC
    month: str  # YYYY-MM, MMG time zone
    day_type: DayType
    hour: int
    outcome: Outcome | None = None
    acts: int = 0
    age_band: str | None = None
    reason: str | None = None
    referral_id: str | None = None
    case_id: str | None = None
    tiers_payant: bool = False


@dataclass(frozen=True, slots=True)
class ReferralEvent:
    """One step of a referral's history."""

    status: ReferralStatus
    at: datetime
    by: str


@dataclass(frozen=True, slots=True)
class Referral:
    """A patient sent to the MMG by a regulating doctor."""

    id: str
    mmg: str
    case_id: str
    patient_display_name: str
    status: ReferralStatus
    created_at: datetime
    updated_at: datetime
    created_by: str
    version: int = 1
    patient_age_band: str | None = None
    callback_number: str | None = None  # E.164
    reason: str | None = None
    urgency: str | None = None
    expected_at: datetime | None = None
    # Regulated access: tiers payant unless set otherwise (circular; referrals.tiers_payant_rule).
    tiers_payant: bool = True
    note: str = ""
    outcome: Outcome | None = None
    acts: int | None = None
    visit_id: str | None = None
    history: tuple[ReferralEvent, ...] = ()


#: The normalised call statuses of :class:`CallEvent` (see its docstring).
CALL_STATUSES: frozenset[str] = frozenset(
    {"started", "ringing", "answered", "completed", "busy", "no-answer", "failed", "canceled"}
)


@dataclass(frozen=True, slots=True)
class CallEvent:
    """A status or dial-status callback, normalised across platforms.

    ``status`` uses Twilio's vocabulary spelled the Vonage-neutral way
    (:data:`CALL_STATUSES`): ``started``, ``ringing``, ``answered``, ``completed``,
    ``busy``, ``no-answer``, ``failed``, ``canceled`` (Twilio's ``queued``/``initiated``
    are ``started`` and ``in-progress`` is ``answered``; Vonage's ``cancelled`` is
    mapped to ``canceled``; its ``timeout``/``unanswered``/``rejected`` to
    ``no-answer``/``busy``). Other well-formed platform statuses (Vonage's
    ``machine``, ``human``…) pass through unchanged, lower-cased: informational only.
    ``target`` is the route of the dial this event is about (from our own
    callback URL), None for whole-call status events.
    """

    call_id: str
    status: str
    duration_s: int | None = None
    target: Route | None = None
    caller: str | None = None
    called: str | None = None

    @property
    def dial_failed(self) -> bool:
        return self.status in ("busy", "no-answer", "failed")


#: How long a later-stage answer is kept for replays (s): the platforms retry a
#: webhook for minutes, and a replayed request is refused by its signature's own
#: window or, failing that, answered the same for this long.
HOOK_ANSWER_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """The first answer given to one webhook of a call: ``(platform, call_id, stage,
    digits)`` is the webhook, ``body``/``content_type`` what it was answered, ``at`` when.

    Kept for :data:`HOOK_ANSWER_TTL_S` (first record wins), so a retry or replay of a
    later-stage webhook (menu digits) on any replica gets that answer back instead of
    a new decision that could route the call again."""

    platform: str
    call_id: str
    stage: str
    digits: str
    body: bytes
    content_type: str
    at: datetime

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.platform, self.call_id, self.stage, self.digits)
