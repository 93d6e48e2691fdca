"""FreeSWITCH ``mod_httapi``: HTTP Basic credentials, form posts, httapi XML documents.

The dialplan (``deploy/freeswitch/dialplan/regulator.xml``) runs
``httapi {httapi_profile=regulator,url=…/hooks/freeswitch/voice,…}``; httapi posts the
session's parameters form-encoded: ``session_id`` (the channel UUID), ``hostname``,
``url``, the caller profile as ``Caller-Caller-ID-Number``,
``Caller-Destination-Number``, ``Caller-Unique-ID``…, with the profile's
``extended-data`` permission the channel variables as ``variable_<name>``, the digits
of a bound ``<speak>`` under its ``name`` (``digits``), and ``exiting=true`` on the
last post, when the call has hung up (sent to whatever URL the session was at:
:func:`is_exiting` tells the web layer so on every path).

Authenticity: httapi sends no custom header; it sends HTTP credentials
(``gateway-credentials`` with ``auth-scheme`` ``basic``, libcurl's ``CURLOPT_USERPWD``):
:func:`verify` checks the password of ``Authorization: Basic`` against the secret.

Answers are ``<document type="xml/freeswitch-httapi">`` documents with a ``<work>``
(httapi wants ``text/xml``): ``<speak>`` for each message; the menu as a ``<speak>``
bound to one key whose ``action`` is our gather URL (httapi posts there next, with
``digits`` when a key was typed); a destination as ``<dial action="…">`` (a bridge,
the dialplan having set ``continue_on_fail=true`` and ``hangup_after_bridge=false``)
followed by ``<continue action="…/dial-status?target=<route>">``, so the bridge's
outcome (``variable_originate_disposition``, ``variable_DIALSTATUS``) comes back to
us, and to the same URL httapi's last post if the caller hangs up during the bridge
(the dial leg, with the dialplan's stamps: :func:`parse_leg`). The
dialplan bridges its regulation gateway whenever httapi returns: the service did not
answer within the profile's timeout, answered something httapi refused, or said
``<break/>`` (the fail-safe with nothing of ours to dial).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from datetime import datetime
from xml.sax.saxutils import escape

from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import Call, Decision, Platform, Route, Stage
from regulator.platforms import _common as f
from regulator.platforms.asterisk import DIALSTATUS, LEG_STATUS
from regulator.platforms.base import (
    Answer,
    BadHookRequest,
    CallEvent,
    HookRequest,
    LegReport,
    RenderContext,
    SignatureError,
)

CONTENT_TYPE = "text/xml"

#: Text-to-speech module and voice of the ``<speak>`` tags (mod_tts_commandline driving
#: a French voice such as pico2wave's fr-FR; see deploy/freeswitch/README.md).
TTS_ENGINE = "tts_commandline"
TTS_VOICE = "fr-FR"
#: Name of the Sofia gateway (the regulation trunk) numbers are dialled through.
GATEWAY = "regulator"
#: Sofia profile SIP URIs are dialled from.
SIP_PROFILE = "external"
#: Seconds FreeSWITCH rings a destination when the decision sets no timeout.
DEFAULT_DIAL_TIMEOUT_S = 30
#: The posted parameter that holds the menu key (the ``name`` of the bound speak).
DIGITS_PARAM = "digits"

_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_ATTR_ENTITIES = {'"': "&quot;"}
_DOCUMENT = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<document type="xml/freeswitch-httapi"><params/><work>{}</work></document>'
)
_SPEAK = '<speak engine="{engine}" voice="{voice}" text="{text}"/>'
_MENU = (
    '<speak engine="{engine}" voice="{voice}" text="{text}" name="' + DIGITS_PARAM + '" '
    'action="{action}" input-timeout="{timeout_ms}" digit-timeout="2000">'
    '<bind strip="#">~\\d</bind></speak>'
)
# ``action``: httapi takes it as the session's URL before bridging (parse_common), so
# the last post (``exiting=true``) of a caller who hangs up during the bridge names the
# leg too; ``<continue>`` posts there when the bridge returns.
_DIAL = '<dial action="{action}">{target}</dial>'
_CONTINUE = '<continue action="{action}"/>'
_HANGUP_DOCUMENT = _DOCUMENT.format("<hangup/>").encode()
# What a bridge string may hold: no ',' '|' ':' ';' '[' '{' '$' (other legs, variables).
_NUMBER = re.compile(r"\+?[0-9]{3,15}")
_SIP_TARGET = re.compile(r"[A-Za-z0-9._~+\-]+@[A-Za-z0-9.\-]+")

#: ``variable_originate_disposition`` after a bridge: ``call accepted`` when the peer
#: answered (switch_ivr_originate.c), a hangup cause otherwise.
DISPOSITIONS: Mapping[str, str] = {
    "CALL ACCEPTED": "completed",
    "SUCCESS": "completed",
    "USER_BUSY": "busy",
    "CALL_REJECTED": "busy",
    "NO_ANSWER": "no-answer",
    "NO_USER_RESPONSE": "no-answer",
    "ALLOTTED_TIMEOUT": "no-answer",
    "ORIGINATOR_CANCEL": "canceled",
    "LOSE_RACE": "canceled",
}


# ---------------------------------------------------------------------- authenticity


def verify(req: HookRequest, secret: str) -> None:
    """Raise :class:`SignatureError` unless the Basic credentials' password is ``secret``."""
    if not secret:
        raise SignatureError("FreeSWITCH secret not configured")
    header = req.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise SignatureError("missing Authorization: Basic credentials")
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed Basic credentials") from None
    _, colon, password = decoded.partition(b":")
    if not colon:
        raise SignatureError("malformed Basic credentials")
    if not hmac.compare_digest(password, secret.encode("utf-8")):
        raise SignatureError("Basic credentials do not match")


# ---------------------------------------------------------------------- parsing


def _param(req: HookRequest, name: str) -> str | None:
    """A posted parameter: the form first, then the query (a GET profile)."""
    value = req.form.get(name)
    if value is None:
        value = req.query.get(name)
    return value


def is_exiting(req: HookRequest) -> bool:
    """httapi's last post (``exiting=true``): the call is over, whatever the path."""
    return (_param(req, "exiting") or "").strip().lower() == "true"


def _call_id(req: HookRequest) -> str:
    session = f.text(_param(req, "session_id"), "session_id")
    return session or f.required(_param(req, "Caller-Unique-ID"), "Caller-Unique-ID")


def parse_call(req: HookRequest, stage: Stage) -> Call:
    """The first post (``Stage.INCOMING``) or the bound speak's post (``Stage.DIGITS``).

    httapi's last post (``exiting=true``) is no call to decide, whatever the path it
    reached: refused here (:func:`is_exiting` lets the web layer take it to
    :func:`parse_event` first), so it can never record a menu choice nobody made.
    """
    if is_exiting(req):
        raise BadHookRequest("exiting", "the call has ended (an event, not a call)")
    digits = _param(req, DIGITS_PARAM)
    if digits is not None and digits.strip() == "invalid":  # httapi's "no match" marker
        digits = None
    return Call(
        call_id=_call_id(req),
        caller=f.text(_param(req, "Caller-Caller-ID-Number"), "Caller-Caller-ID-Number") or "",
        called=f.required(_param(req, "Caller-Destination-Number"), "Caller-Destination-Number"),
        platform=Platform.FREESWITCH,
        stage=stage,
        digits=f.digits(digits, DIGITS_PARAM),
    )


def _bridge_status(req: HookRequest) -> str:
    """The outcome of the bridge that preceded our ``<continue>``: a failure unless
    FreeSWITCH says otherwise (we are only posted to after the bridge returned)."""
    disposition = f.text(
        _param(req, "variable_originate_disposition"), "variable_originate_disposition"
    )
    if disposition is not None:
        return DISPOSITIONS.get(disposition.upper(), "failed")
    dialstatus = f.text(_param(req, "variable_DIALSTATUS"), "variable_DIALSTATUS")
    if dialstatus is not None:
        # FreeSWITCH's emulation sets EARLY when the peer *answered* (ANSWER when it
        # only sent early media): both are a connected bridge.
        if dialstatus.upper() == "EARLY":
            return "completed"
        return DIALSTATUS.get(dialstatus.upper(), "failed")
    return "failed"


def parse_event(req: HookRequest) -> CallEvent:
    """The post after a bridge (``?target=`` in our URL) or the last one (``exiting``)."""
    call_id = _call_id(req)
    caller = f.text(_param(req, "Caller-Caller-ID-Number"), "Caller-Caller-ID-Number")
    called = f.text(_param(req, "Caller-Destination-Number"), "Caller-Destination-Number")
    if is_exiting(req):
        return CallEvent(
            call_id=call_id,
            status="completed",
            duration_s=f.duration(_param(req, "variable_duration"), "variable_duration"),
            caller=caller,
            called=called,
        )
    target: Route | None = f.target(req.query.get("target"))
    if target is None:
        raise BadHookRequest("target", "missing (not a post after a bridge)")
    return CallEvent(
        call_id=call_id,
        status=_bridge_status(req),
        duration_s=f.duration(_param(req, "variable_billsec"), "variable_billsec"),
        target=target,
        caller=caller,
        called=called,
    )


# ---------------------------------------------------------------------- rendering


def _attr(value: str) -> str:
    return escape(_XML_ILLEGAL.sub("", value), _ATTR_ENTITIES)


def _text(value: str) -> str:
    return escape(_XML_ILLEGAL.sub("", value))


def _bridge_target(number: str | None, sip: str | None, timeout: int, gateway: str) -> str | None:
    """The bridge string of a destination (its SIP URI first), or None if neither is safe."""
    leg = f"[leg_timeout={timeout}]"
    if sip:
        user_host = sip.split(":", 1)[1] if sip.lower().startswith(("sip:", "sips:")) else ""
        if _SIP_TARGET.fullmatch(user_host):
            return f"{leg}sofia/{SIP_PROFILE}/{user_host}"
    if number and _NUMBER.fullmatch(number):
        return f"{leg}sofia/gateway/{gateway}/{number}"
    return None


def render(
    decision: Decision,
    ctx: RenderContext,
    *,
    tts_engine: str = TTS_ENGINE,
    tts_voice: str = TTS_VOICE,
    gateway: str = GATEWAY,
) -> Answer:
    """The decision as an httapi document: speak, then the menu, a bridge, or hang up."""
    urls = ctx.urls
    engine, voice = _attr(tts_engine), _attr(tts_voice)
    tags = [
        _SPEAK.format(engine=engine, voice=voice, text=_attr(t))
        for t in decision.say
        if t and t.strip()
    ]
    destination = decision.destination
    if decision.menu is not None:
        menu = decision.menu
        tags.append(
            _MENU.format(
                engine=engine,
                voice=voice,
                text=_attr(menu.text),
                action=_attr(urls.gather),
                timeout_ms=f.clamp(menu.timeout_s, 1, 60) * 1000,
            )
        )
        # No key within the timeout: httapi goes on to the bound speak's action anyway
        # (the url it set), without digits: the menu's default.
    elif destination is not None and destination.dialable:
        timeout = f.clamp(decision.dial_timeout_s or DEFAULT_DIAL_TIMEOUT_S, 5, 600)
        target = _bridge_target(destination.number, destination.sip, timeout, gateway)
        if target is None:
            tags.append("<break/>")  # nothing safe to bridge: the dialplan's fallback
        else:
            action = urls.targeted("dial_status", decision.route.value)
            tags.append(_DIAL.format(action=_attr(action), target=_text(target)))
            tags.append(_CONTINUE.format(action=_attr(action)))
    elif decision.failsafe:
        # Fail-safe with nothing of ours to dial: leave httapi, the dialplan bridges
        # its own regulation gateway.
        tags.append("<break/>")
    else:
        tags.append("<hangup/>")
    return Answer(_DOCUMENT.format("".join(tags)).encode("utf-8"), CONTENT_TYPE)


def render_hangup() -> Answer:
    """An httapi document that hangs up."""
    return Answer(_HANGUP_DOCUMENT, CONTENT_TYPE)


#: ``variable_originate_disposition`` as a leg's end (core/legs.py).
LEG_DISPOSITIONS: Mapping[str, LegStatus] = {
    "CALL ACCEPTED": LegStatus.COMPLETED,
    "SUCCESS": LegStatus.COMPLETED,
    "ORIGINATOR_CANCEL": LegStatus.ABANDONED,
    "USER_BUSY": LegStatus.BUSY,
    "CALL_REJECTED": LegStatus.BUSY,
    "NO_ANSWER": LegStatus.NO_ANSWER,
    "NO_USER_RESPONSE": LegStatus.NO_ANSWER,
    "ALLOTTED_TIMEOUT": LegStatus.NO_ANSWER,
    "RECOVERY_ON_TIMER_EXPIRE": LegStatus.NO_ANSWER,
}

#: The A-leg's stamps the dialplan (deploy/freeswitch/dialplan/regulator.xml) sets with
#: ``execute_on_*`` hooks (``${strmicroepoch()}``, FreeSWITCH's clock, microseconds).
STAMP_DIAL = "variable_regulator_dial_uepoch"  # execute_on_pre_originate: the dial starts
STAMP_DIAL_END = "variable_regulator_originate_end_uepoch"  # execute_on_post_originate
STAMP_ANSWER = "variable_regulator_answer_uepoch"  # execute_on_pre_bridge: the peer answered
STAMP_BRIDGE_END = "variable_regulator_bridge_end_uepoch"  # execute_on_post_bridge
#: The A-leg's own hang-up (set by the core at hang-up: the ``exiting`` post has it).
STAMP_HANGUP = "variable_end_uepoch"


def _stamp(req: HookRequest, name: str, not_before: datetime | None = None) -> datetime | None:
    """One of the A-leg's ``*_uepoch`` stamps; None when unset, zero, or older than
    ``not_before`` (left over from an earlier dial of the same call)."""
    at = f.epoch(_param(req, name), name, per_second=1_000_000)
    if at is None or (not_before is not None and at < not_before):
        return None
    return at


def _leg_status(req: HookRequest) -> LegStatus | None:
    disposition = f.text(
        _param(req, "variable_originate_disposition"), "variable_originate_disposition"
    )
    if disposition is not None:
        return LEG_DISPOSITIONS.get(disposition.upper(), LegStatus.FAILED)
    dialstatus = f.text(_param(req, "variable_DIALSTATUS"), "variable_DIALSTATUS")
    if dialstatus is None:
        return None
    if dialstatus.upper() == "EARLY":  # FreeSWITCH's emulation: the peer answered
        return LegStatus.COMPLETED
    return LEG_STATUS.get(dialstatus.upper(), LegStatus.FAILED)


def parse_leg(req: HookRequest) -> LegReport:
    """The leg of the bridge a post is about (our ``?target=``), with FreeSWITCH's own
    stamps of the dial's start, its answer and its end.

    Posted when the bridge returns (``<continue>``) or, if the caller hung up during
    it, by httapi's last post (``exiting=true``) to the ``<dial action>`` URL. The
    outcome is ``variable_originate_disposition`` (``call accepted`` when answered,
    ``ORIGINATOR_CANCEL`` when the caller hung up first, else the hangup cause). None
    when the post is about no bridge, or carries no stamps (a dialplan without them,
    or without ``verbose_events``: httapi then posts no ``variable_*`` at all).
    """
    if f.text(req.query.get("target"), "target") is None:
        return None
    offered = _stamp(req, STAMP_DIAL)
    if offered is None:
        return None
    status = _leg_status(req)
    if status is None:
        return None
    target = f.leg_target(req.query.get("target"))
    call_id = _call_id(req)
    answered = _stamp(req, STAMP_ANSWER, offered)
    hangup = _stamp(req, STAMP_HANGUP, offered) if is_exiting(req) else None
    if status is LegStatus.COMPLETED:
        ended = _stamp(req, STAMP_BRIDGE_END, answered or offered)
    else:
        ended = _stamp(req, STAMP_DIAL_END, offered)
    ended = ended or hangup or max(f.received(req), offered)

    def event(leg_status: LegStatus, at: datetime) -> LegEvent:
        return LegEvent(call_id, target, leg_status, at, platform=Platform.FREESWITCH.value)

    events = [event(LegStatus.OFFERED, offered)]
    if answered is not None:
        events.append(event(LegStatus.ANSWERED, answered))
    events.append(event(status, ended))
    return tuple(events)
