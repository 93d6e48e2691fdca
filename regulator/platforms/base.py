"""What every telephony adapter shares: the request it reads and the answer it writes.

An adapter module (``twilio``, ``vonage``, ``kamailio``, ``generic``) is a set of
pure functions, no aiohttp:

* ``verify(req, secret)`` — raise :class:`SignatureError` unless the request is
  authentic (constant-time comparisons, replay windows). Called first.
* ``parse_call(req, stage)`` — the request as a :class:`~regulator.core.models.Call`
  (raise :class:`BadHookRequest` naming the field).
* ``parse_event(req)`` — a status/dial callback as a :class:`CallEvent`.
* ``parse_leg(req)`` — the dial-leg report a callback carries, as a
  :class:`~regulator.core.legs.LegEvent`, or None when it reports no leg (a whole-call
  status, a menu). Called on every authenticated callback that is not a call to decide.
  A PBX that reports a leg once, at its end, with its own timestamps of the dial's
  start and answer (Asterisk, FreeSWITCH) returns those as a tuple of events
  (:data:`LegReport`): one event cannot name three instants.
* ``render(decision, ctx)`` — the platform's answer (:class:`Answer`); ``ctx`` (a
  :class:`RenderContext`) carries what some platforms need beyond the decision.
* ``render_hangup()`` — the answer that ends the call politely.

:class:`PlatformAdapter` types that shape, so mypy checks every adapter module
against it (``regulator.web.hooks`` holds them as ``PlatformAdapter``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlencode

# Re-exported: a status callback is a domain fact (core.models), adapters produce it.
from regulator.core.legs import LegEvent
from regulator.core.models import CALL_STATUSES, Call, CallEvent, Decision, Destination, Stage

#: What ``parse_leg`` returns: no leg, one event, or several events about one leg.
LegReport = LegEvent | tuple[LegEvent, ...] | None


class SignatureError(Exception):
    """The request is not authentic (missing, forged or replayed signature)."""


class BadHookRequest(Exception):
    """The request is authentic but unusable; names the field and why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True, slots=True)
class HookRequest:
    """A webhook as adapters see it.

    ``url`` is the full URL the platform called (scheme, host, port as sent, path
    and query), rebuilt from ``REGULATOR_PUBLIC_URL`` when behind a proxy.
    ``headers`` keys are lower-case. ``form`` holds the parsed
    ``application/x-www-form-urlencoded`` body (empty for JSON bodies).
    ``now`` is the current Unix time, for replay windows.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    form: Mapping[str, str]
    now: float


@dataclass(frozen=True, slots=True)
class Answer:
    """The body and media type returned to the platform (always HTTP 200)."""

    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class HookUrls:
    """Absolute public URLs of our own callbacks for one platform."""

    gather: str = ""
    dial_status: str = ""
    status: str = ""
    event: str = ""
    input: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    #: A dialled leg's own progress callbacks (Twilio ``<Number statusCallback>``),
    #: naming the MMG and the call; the renderer adds ``target``.
    leg: str = ""
    #: What the regulation line hears when it answers (Twilio ``<Number url>``, Vonage
    #: ``onAnswer``); empty: no whisper (the protocol plays none).
    whisper: str = ""

    @staticmethod
    def with_query(url: str, **params: str) -> str:
        """Append query parameters (e.g. ``target=regulation``) to a callback URL."""
        if not params:
            return url
        sep = "&" if "?" in url else "?"
        return f"{url}{sep}{urlencode(params)}"


@dataclass(frozen=True, slots=True)
class RenderContext:
    """Everything an answer may need besides the decision, the same for every platform.

    ``urls``: our own callbacks; ``caller``: the caller's number as the platform sent
    it; ``own_number``: the MMG's own number (E.164) to present on a dialled leg, None
    if unknown; ``regulation``: the MMG's regulation line (centre 15 / SAS), the
    failover of platforms that route in one answer (Kamailio); ``sip_gateway``: where
    numbers are dialled over SIP; ``mmg_name``: the MMG's name from its protocol, for
    the regulation line to know where a call comes from (Kamailio's
    ``X-Regulator-Origin``). An adapter reads what it needs and ignores the rest.
    """

    urls: HookUrls
    caller: str | None = None
    own_number: str | None = None
    regulation: Destination | None = None
    sip_gateway: str | None = None
    mmg_name: str | None = None


class PlatformAdapter(Protocol):
    """One telephony platform: verify → parse → render (a module of pure functions)."""

    def verify(self, req: HookRequest, secret: str, /) -> None: ...

    def parse_call(self, req: HookRequest, stage: Stage, /) -> Call: ...

    def parse_event(self, req: HookRequest, /) -> CallEvent: ...

    def parse_leg(self, req: HookRequest, /) -> LegReport: ...

    def render(self, decision: Decision, ctx: RenderContext, /) -> Answer: ...

    def render_hangup(self) -> Answer: ...


__all__ = [
    "CALL_STATUSES",
    "Answer",
    "BadHookRequest",
    "CallEvent",
    "HookRequest",
    "HookUrls",
    "LegEvent",
    "LegReport",
    "PlatformAdapter",
    "RenderContext",
    "SignatureError",
]
