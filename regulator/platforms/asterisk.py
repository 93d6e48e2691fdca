"""Asterisk (FreePBX, Wazo, XiVO, Issabel): ``CURL()`` from the dialplan, ``key=value`` answers.

The dialplan (``deploy/asterisk/extensions_regulator.conf``) posts form fields with
``CURL(url,post-data)``: ``call_id`` (``${UNIQUEID}``), ``from`` (``${CALLERID(num)}``),
``to`` (``${EXTEN}``), ``digits`` (after ``Read()``), ``dialstatus``, ``target`` and
the leg's stamps ``dial_at``/``answered_at``/``ended_at`` (after ``Dial()``), ``status``
and ``duration`` (from the hangup handler, with ``leg_status``/``leg_target`` and the
stamps when the caller hung up during ``Dial()``: :func:`parse_leg`), with
``X-Regulator-Secret`` set through ``CURLOPT(httpheader)`` (Asterisk 16+).

The answer is one line of ``key=value`` pairs joined by ``&``, values percent-encoded,
which Asterisk itself splits: with ``CURLOPT(hashcompat)=yes``,
``Set(HASH(reg)=${CURL(…)})`` fills ``${HASH(reg,action)}`` and the others — no parser
in the dialplan. Every answer carries every key, in this order::

    action=dial|menu|announce|hangup  route=<route>  number=<E.164>  sip=<SIP URI>
    timeout=<ring seconds>  say=<text>  menu=<menu text>  menu_timeout=<seconds>
    failsafe=0|1

``number``/``sip`` are checked here (nothing Asterisk's ``Dial()`` would read as a
second channel, an option or a variable); the dialplan dials ``number`` through its
own trunk (``PJSIP/<number>@${REGULATOR_TRUNK}``) or ``sip`` through the trunk's
endpoint. Texts are for the site's text-to-speech application (``Exec()``): characters
that would end or split its argument are removed. ``announce`` with ``failsafe=1``
(nothing of ours to dial) makes the dialplan ring its own regulation trunk.

Authenticity: the shared secret (:func:`verify`) plus, optionally, the source address
(:func:`source_allowed` with :func:`parse_allowlist` of
``REGULATOR_ASTERISK_ALLOWED_SOURCES``), checked by the web layer, which knows the
peer address.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from functools import lru_cache
from urllib.parse import parse_qsl, quote

from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import Call, Decision, Platform, Route, Stage
from regulator.platforms import _common as f
from regulator.platforms.base import (
    Answer,
    BadHookRequest,
    CallEvent,
    HookRequest,
    LegReport,
    RenderContext,
    SignatureError,
)

CONTENT_TYPE = "text/plain; charset=utf-8"

SECRET_HEADER = "x-regulator-secret"  # noqa: S105 (a header name, not a secret)
#: Seconds Asterisk rings a destination when the decision sets no timeout.
DEFAULT_DIAL_TIMEOUT_S = 30
#: The keys of every answer, in order (the dialplan reads them by name).
KEYS = (
    "action",
    "route",
    "number",
    "sip",
    "timeout",
    "say",
    "menu",
    "menu_timeout",
    "failsafe",
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: ``${DIALSTATUS}`` after ``Dial()`` (shared with FreeSWITCH, which sets the same
#: variable): ``ANSWER`` means the leg was answered and has ended.
DIALSTATUS: Mapping[str, str] = {
    "ANSWER": "completed",
    "SUCCESS": "completed",
    "BUSY": "busy",
    "NOANSWER": "no-answer",
    "CHANUNAVAIL": "failed",
    "CONGESTION": "failed",
    "INVALIDARGS": "failed",
    "CANCEL": "canceled",
    # Privacy manager refusals: the callee declined the call.
    "DONTCALL": "busy",
    "TORTURE": "busy",
}

# What a Dial() string may hold: no '&' (a second channel), ',' (options), '$', '(', …
_NUMBER = re.compile(r"\+?[0-9]{3,15}")
_SIP = re.compile(
    r"sips?:[A-Za-z0-9._~+\-]+(?:@[A-Za-z0-9.\-]+|@\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
# Texts for Exec(<tts>(<text>)): letters, digits, spaces and sentence punctuation only.
_UNSAFE_TEXT = re.compile(r"[^\w\s.'’?!:;«»\-]")
_SPACES = re.compile(r"\s+")
_HANGUP_ANSWER = "action=hangup&route=&number=&sip=&timeout=&say=&menu=&menu_timeout=&failsafe=0\n"


# ---------------------------------------------------------------------- authenticity


def verify(req: HookRequest, secret: str) -> None:
    """Raise :class:`SignatureError` unless ``X-Regulator-Secret`` is the shared secret."""
    if not secret:
        raise SignatureError("Asterisk secret not configured")
    f.check_shared_secret(req.headers.get(SECRET_HEADER), "X-Regulator-Secret", secret)


@lru_cache(maxsize=8)
def parse_allowlist(text: str | None) -> tuple[Network, ...]:
    """``REGULATOR_ASTERISK_ALLOWED_SOURCES`` (comma-separated addresses or CIDRs) as
    networks; empty when unset. ValueError names an entry that is neither. Cached: the
    web layer may call it per request."""
    networks: list[Network] = []
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"not an IP address or CIDR: {entry!r}") from None
    return tuple(networks)


def source_allowed(allowlist: Iterable[Network], remote: str | None) -> bool:
    """Whether a request from ``remote`` (the peer address) may reach the Asterisk hooks.

    An empty allowlist admits every source (the secret still applies); otherwise an
    unknown or unparsable address is refused.
    """
    networks = tuple(allowlist)
    if not networks:
        return True
    if not remote:
        return False
    try:
        address = ipaddress.ip_address(remote.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:192.0.2.1 from a dual-stack listener
    return any(address.version == net.version and address in net for net in networks)


# ---------------------------------------------------------------------- parsing


def _fields(req: HookRequest) -> Mapping[str, str]:
    """The posted fields. ``CURLOPT(httpheader)`` drops CURL's default form content
    type unless the dialplan sets it again, so an unparsed body is read here."""
    if req.form:
        return req.form
    if req.body:
        if len(req.body) > f.MAX_BODY_BYTES:
            raise BadHookRequest("body", f"larger than {f.MAX_BODY_BYTES} bytes")
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadHookRequest("body", "not valid UTF-8") from None
        return dict(parse_qsl(text, keep_blank_values=True))
    return req.query


def parse_call(req: HookRequest, stage: Stage) -> Call:
    """The entry (``Stage.INCOMING``) or menu (``Stage.DIGITS``) request as a Call."""
    data = _fields(req)
    return Call(
        call_id=f.required(data.get("call_id"), "call_id"),
        caller=f.text(data.get("from"), "from") or "",
        called=f.required(data.get("to"), "to"),
        platform=Platform.ASTERISK,
        stage=stage,
        digits=f.digits(data.get("digits"), "digits"),
    )


def dial_status(value: object, field: str) -> str:
    """``${DIALSTATUS}`` in the :data:`~regulator.platforms.base.CALL_STATUSES` vocabulary."""
    raw = f.required(value, field)
    mapped = DIALSTATUS.get(raw.upper())
    if mapped is None:
        raise BadHookRequest(field, "not a DIALSTATUS")
    return mapped


def parse_event(req: HookRequest) -> CallEvent:
    """After ``Dial()`` (``dialstatus``, ``target``) or from the hangup handler
    (``status``, ``duration``)."""
    data = _fields(req)
    call_id = f.required(data.get("call_id"), "call_id")
    target: Route | None = None
    if data.get("dialstatus") is not None:
        status = dial_status(data.get("dialstatus"), "dialstatus")
        target = f.target(data.get("target") or req.query.get("target"))
    elif data.get("status") is not None:
        status = f.status(data.get("status"), "status")
    else:
        raise BadHookRequest("dialstatus", "missing (nor status)")
    return CallEvent(
        call_id=call_id,
        status=status,
        duration_s=f.duration(data.get("duration"), "duration"),
        target=target,
        caller=f.text(data.get("from"), "from"),
        called=f.text(data.get("to"), "to"),
    )


# ---------------------------------------------------------------------- rendering


def _speech(texts: Iterable[str]) -> str:
    joined = " ".join(t for t in texts if t and t.strip())
    return _SPACES.sub(" ", _UNSAFE_TEXT.sub(" ", joined)).strip()


def _encode(values: Mapping[str, str]) -> bytes:
    # quote(safe=""): '%20' for spaces, never '+', which hashcompat=yes keeps as is.
    line = "&".join(f"{key}={quote(values.get(key, ''), safe='')}" for key in KEYS)
    return (line + "\n").encode("ascii")


def render(decision: Decision, ctx: RenderContext) -> Answer:
    """The decision as the ``key=value`` line the dialplan reads with ``HASH()``.

    ``ctx`` is unused: the dialplan knows the service's paths.
    """
    del ctx
    values: dict[str, str] = {
        "route": decision.route.value,
        "say": _speech(decision.say),
        "failsafe": "1" if decision.failsafe else "0",
    }
    destination = decision.destination
    number = destination.number if destination is not None else None
    sip = destination.sip if destination is not None else None
    number = number if number and _NUMBER.fullmatch(number) else None
    sip = sip if sip and _SIP.fullmatch(sip) else None
    if decision.menu is not None:
        values["action"] = "menu"
        values["menu"] = _speech((decision.menu.text,))
        values["menu_timeout"] = str(f.clamp(decision.menu.timeout_s, 1, 60))
    elif destination is not None and destination.dialable and (number or sip):
        values["action"] = "dial"
        values["number"] = number or ""
        values["sip"] = sip or ""
        timeout = decision.dial_timeout_s or DEFAULT_DIAL_TIMEOUT_S
        values["timeout"] = str(f.clamp(timeout, 5, 600))
    else:
        # Short codes are announced; a destination we cannot hand to Dial() safely is
        # treated like the fail-safe, which the dialplan sends to its own trunk.
        values["action"] = "announce"
        if destination is not None and destination.dialable:
            values["failsafe"] = "1"
    return Answer(_encode(values), CONTENT_TYPE)


def render_hangup() -> Answer:
    """``action=hangup``: the dialplan hangs up."""
    return Answer(_HANGUP_ANSWER.encode("ascii"), CONTENT_TYPE)


#: ``${DIALSTATUS}`` as a leg's end (core/legs.py). ``ANSWER``: answered, then ended
#: (``Dial()`` returned, or the caller hung up while talking); ``CANCEL``: the caller
#: hung up while it rang.
LEG_STATUS: Mapping[str, LegStatus] = {
    "ANSWER": LegStatus.COMPLETED,
    "SUCCESS": LegStatus.COMPLETED,
    "CANCEL": LegStatus.ABANDONED,
    "BUSY": LegStatus.BUSY,
    "DONTCALL": LegStatus.BUSY,
    "TORTURE": LegStatus.BUSY,
    "NOANSWER": LegStatus.NO_ANSWER,
    "CHANUNAVAIL": LegStatus.FAILED,
    "CONGESTION": LegStatus.FAILED,
    "INVALIDARGS": LegStatus.FAILED,
}


def parse_leg(req: HookRequest) -> LegReport:
    """The leg a ``Dial()`` report carries, with Asterisk's own ``${EPOCH}`` stamps.

    After ``Dial()`` the dialplan posts ``dialstatus``, ``target`` and the stamps
    ``dial_at`` (just before ``Dial()``), ``answered_at`` (set on the called channel
    by the ``U()`` subroutine when it answers, read back with ``SHARED()``) and
    ``ended_at`` (just after). When the caller hangs up during ``Dial()`` the
    dialplan never gets there: the hangup handler posts the same as ``leg_status``,
    ``leg_target``… (it leaves them empty when ``Dial()`` had returned: already
    reported).

    Why not ``${DIALEDTIME} - ${ANSWEREDTIME}``: since Asterisk 13 both count from the
    *calling* channel (its creation, its answer), which this dialplan answers before
    the menu, so their difference is the time before ``Answer()``, not the ringing.

    None when there is no dial to report (no status, or a dialplan without stamps).
    """
    data = _fields(req)
    if data.get("dialstatus") is not None:
        status_field, target_field = "dialstatus", "target"
        target_value = data.get("target") or req.query.get("target")
    elif f.text(data.get("leg_status"), "leg_status") is not None:
        status_field, target_field = "leg_status", "leg_target"
        target_value = data.get("leg_target")
    else:
        return None
    offered = f.epoch(data.get("dial_at"), "dial_at")
    if offered is None:
        return None  # a dialplan from before the stamps: no figures rather than wrong ones
    raw = f.required(data.get(status_field), status_field).upper()
    status = LEG_STATUS.get(raw)
    if status is None:
        raise BadHookRequest(status_field, "not a DIALSTATUS")
    call_id = f.required(data.get("call_id"), "call_id")
    target = f.leg_target(target_value, target_field)
    answered = f.epoch(data.get("answered_at"), "answered_at")
    ended = f.epoch(data.get("ended_at"), "ended_at") or f.received(req)

    def event(leg_status: LegStatus, at: datetime) -> LegEvent:
        return LegEvent(call_id, target, leg_status, at, platform=Platform.ASTERISK.value)

    events = [event(LegStatus.OFFERED, offered)]
    if answered is not None and answered >= offered:  # older: a stale stamp
        events.append(event(LegStatus.ANSWERED, answered))
    events.append(event(status, max(ended, offered)))
    return tuple(events)
