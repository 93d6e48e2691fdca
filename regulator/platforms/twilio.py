"""Twilio Programmable Voice: ``X-Twilio-Signature`` check, form webhooks, TwiML answers.

Signature (Twilio's published algorithm, the one its ``RequestValidator`` implements):
``base64(HMAC-SHA1(auth_token, url + key1 + value1 + key2 + value2 …))`` over the POST
parameters sorted by name. JSON bodies are not signed parameter by parameter: Twilio
adds ``bodySHA256=<hex sha256 of the body>`` to the URL and signs the URL alone.
Twilio is inconsistent about explicit ports, so, like its validator, we accept the URL
with the scheme's default port added and with the port removed.

Twilio waits 15 s for TwiML, then plays an error: answers are built from pre-formatted
string templates, with no XML parser on the hot path.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit, urlunsplit
from xml.sax.saxutils import escape

from regulator.core import phone
from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import Call, Decision, Platform, Route, Stage, audio_of
from regulator.platforms import _common as f
from regulator.platforms.base import (
    Answer,
    BadHookRequest,
    CallEvent,
    HookRequest,
    RenderContext,
    SignatureError,
    keyed_hmac,
)

CONTENT_TYPE = "application/xml"

SIGNATURE_HEADER = "x-twilio-signature"
# Present when the webhook is signed with a Twilio "SharedKey" instead of the auth
# token: ``key=<id>,algorithm=HMAC_SHA256``. Absent means HMAC-SHA1.
SIGNATURE_SETTINGS_HEADER = "x-twilio-webhooks-signature-settings"
_ALGORITHMS = {"HMAC_SHA1": "sha1", "HMAC_SHA256": "sha256"}
_DEFAULT_PORTS = {"https": "443", "http": "80"}

#: Seconds Twilio rings a <Dial> target when the decision sets no timeout.
DEFAULT_DIAL_TIMEOUT_S = 30

# Characters XML 1.0 forbids even when escaped; protocol texts should never hold them.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_ATTR_ENTITIES = {'"': "&quot;"}

_DOCUMENT = '<?xml version="1.0" encoding="UTF-8"?><Response>{}</Response>'
_SAY = '<Say language="fr-FR">{}</Say>'
# A recorded prompt (an https URL checked at load); its text is the fallback of the
# platforms without audio, Twilio plays the recording.
_PLAY = "<Play>{}</Play>"
_GATHER = (
    '<Gather input="dtmf" numDigits="1" timeout="{timeout}" action="{action}" method="POST">'
    "{prompts}</Gather>"
    '<Redirect method="POST">{action}</Redirect>'
)
_DIAL = (
    '<Dial action="{action}" method="POST" timeout="{timeout}" answerOnBridge="true"{caller_id}>'
    "{target}</Dial>"
)
_CALLER_ID = ' callerId="{}"'
# A caller id Twilio can present: E.164, 7 to 15 digits.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_NUMBER = "<Number{attrs}>{target}</Number>"
_SIP = "<Sip{attrs}>{target}</Sip>"
# A dialled leg reports its own progress (the child call's status callbacks): the
# dial-leg figures (core/legs.py) need ringing and answer times, the <Dial action>
# only gives the end. Same attributes on <Number> and <Sip>.
_LEG_CALLBACK = (
    ' statusCallback="{}" statusCallbackEvent="initiated ringing answered completed"'
    ' statusCallbackMethod="POST"'
)
# TwiML run on the answering line before the caller is connected (the whisper).
_WHISPER_URL = ' url="{}" method="POST"'
_HANGUP = "<Hangup/>"
_HANGUP_DOCUMENT = _DOCUMENT.format(_HANGUP).encode()


# ---------------------------------------------------------------------- signature


def _port_variants(url: str) -> tuple[str, str]:
    """The URL with the default port made explicit, and with any port removed."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if hostport.startswith("["):  # IPv6 literal: [::1]:8443
        end = hostport.find("]") + 1
        host, rest = hostport[:end], hostport[end:]
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = hostport.partition(":")
    prefix = f"{userinfo}{at}"
    without = urlunsplit(parts._replace(netloc=f"{prefix}{host}"))
    if port:
        with_port = urlunsplit(parts)
    else:
        default = _DEFAULT_PORTS.get(parts.scheme.lower(), "80")
        with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))
    return with_port, without


def compute_signature(
    auth_token: str, url: str, params: dict[str, str], algorithm: str = "HMAC_SHA1"
) -> str:
    """Twilio's signature of ``url`` and POST ``params`` (base64 of the HMAC)."""
    digest = _ALGORITHMS[algorithm]
    payload = url + "".join(name + params[name] for name in sorted(params))
    # A copy of the HMAC keyed once with the token: no keying per webhook.
    mac = keyed_hmac(auth_token.encode("utf-8"), digest).copy()
    mac.update(payload.encode("utf-8"))
    return base64.b64encode(mac.digest()).decode("ascii")


def _algorithm(settings: str | None) -> str:
    for part in (settings or "").split(","):
        name, sep, value = part.partition("=")
        if sep and name.strip() == "algorithm" and value.strip():
            algorithm = value.strip().upper()
            if algorithm not in _ALGORITHMS:
                raise SignatureError(f"unsupported signature algorithm {value.strip()!r}")
            return algorithm
    return "HMAC_SHA1"


def verify(req: HookRequest, auth_token: str) -> None:
    """Raise :class:`SignatureError` unless ``X-Twilio-Signature`` matches ``req``."""
    if not auth_token:
        raise SignatureError("Twilio auth token not configured")
    header = req.headers.get(SIGNATURE_HEADER)
    if not header:
        raise SignatureError("missing X-Twilio-Signature")
    try:
        signature = header.strip().encode("ascii")
    except UnicodeEncodeError:
        raise SignatureError("malformed X-Twilio-Signature") from None
    algorithm = _algorithm(req.headers.get(SIGNATURE_SETTINGS_HEADER))

    params: dict[str, str] = dict(req.form)
    # Only a URL with a query can carry bodySHA256 (voice webhooks usually have none).
    body_hash = parse_qs(urlsplit(req.url).query).get("bodySHA256") if "?" in req.url else None
    if body_hash:
        # JSON body: the URL (with its bodySHA256) is signed alone; the hash binds the body.
        actual = hashlib.sha256(req.body).hexdigest().encode("ascii")
        try:
            claimed = body_hash[0].strip().lower().encode("ascii")
        except UnicodeEncodeError:
            raise SignatureError("malformed bodySHA256") from None
        if not hmac.compare_digest(actual, claimed):
            raise SignatureError("body does not match bodySHA256")
        params = {}

    # The URL as received first; the port variants only if it does not match (which
    # variant matched is no secret, so stopping at the first match leaks nothing).
    expected = compute_signature(auth_token, req.url, params, algorithm).encode("ascii")
    if hmac.compare_digest(expected, signature):
        return
    for candidate in _port_variants(req.url):
        if candidate == req.url:
            continue
        expected = compute_signature(auth_token, candidate, params, algorithm).encode("ascii")
        if hmac.compare_digest(expected, signature):
            return
    raise SignatureError("X-Twilio-Signature does not match")


# ---------------------------------------------------------------------- parsing


def _param(req: HookRequest, name: str) -> str | None:
    """A webhook parameter: the form body first, then the query (GET webhooks)."""
    value = req.form.get(name)
    if value is None:
        value = req.query.get(name)
    return value


def parse_call(req: HookRequest, stage: Stage) -> Call:
    """The voice (``Stage.INCOMING``) or gather (``Stage.DIGITS``) webhook as a Call."""
    return Call(
        call_id=f.required(_param(req, "CallSid"), "CallSid"),
        caller=f.text(_param(req, "From"), "From") or "",
        called=f.required(_param(req, "To"), "To"),
        platform=Platform.TWILIO,
        stage=stage,
        digits=f.digits(_param(req, "Digits"), "Digits"),
    )


def parse_event(req: HookRequest) -> CallEvent:
    """A ``<Dial action>`` callback (DialCallStatus, ``?target=`` in our URL) or a
    status callback (CallStatus)."""
    call_id = f.required(_param(req, "CallSid"), "CallSid")
    dial_status = req.form.get("DialCallStatus")
    if dial_status is not None:
        status = f.status(dial_status, "DialCallStatus")
        duration = f.duration(req.form.get("DialCallDuration"), "DialCallDuration")
    else:
        call_status = _param(req, "CallStatus")
        if call_status is None:
            raise BadHookRequest("CallStatus", "missing (nor DialCallStatus)")
        status = f.status(call_status, "CallStatus")
        duration = f.duration(req.form.get("CallDuration"), "CallDuration")
    return CallEvent(
        call_id=call_id,
        status=status,
        duration_s=duration,
        target=f.target(req.query.get("target")),
        caller=f.text(_param(req, "From"), "From"),
        called=f.text(_param(req, "To"), "To"),
    )


# ---------------------------------------------------------------------- rendering


def _text(value: str) -> str:
    return escape(_XML_ILLEGAL.sub("", value))


def _attr(value: str) -> str:
    return escape(_XML_ILLEGAL.sub("", value), _ATTR_ENTITIES)


def _says(texts: tuple[str, ...]) -> str:
    # Keyed on the recordings too: a Prompt equals its text, so two protocols with the
    # same words but different recordings must not share a cache entry.
    return _verbs(texts, tuple(audio_of(t) for t in texts))


# The texts read to callers are the protocols' messages: the same few tuples all day.
@lru_cache(maxsize=1024)
def _verbs(texts: tuple[str, ...], audios: tuple[str | None, ...]) -> str:
    out = []
    for text, audio in zip(texts, audios, strict=True):
        if audio:
            out.append(_PLAY.format(_text(audio)))
        elif text and text.strip():
            out.append(_SAY.format(_text(text)))
    return "".join(out)


def caller_id(caller: str | None, own_number: str | None) -> str | None:
    """The ``callerId`` of a ``<Dial>`` that forwards an inbound call, or None.

    Twilio lets a forwarded call present the inbound request's ``From`` (the caller)
    or ``To`` (the MMG's Twilio number), or a number of the account, to a ``<Number>``
    (PSTN) as to a ``<Sip>`` URI (which would take any string). The caller's own
    number, when it is a real phone number, lets the regulator see who calls. A
    withheld or invalid one (``anonymous``, ``client:…``, a short code, Twilio's
    ``+266696687``) would be passed on as is and some carriers then refuse the call
    (Twilio warning 13214): the MMG's number is presented instead.
    """
    number = phone.try_normalize(caller)
    if number is not None and _E164.fullmatch(number):
        return number
    if own_number is not None and _E164.fullmatch(own_number):
        return own_number
    return None


def render(decision: Decision, ctx: RenderContext, *, max_dial_timeout_s: int = 600) -> Answer:
    """The decision as TwiML: Say each message (Play its recording, if it has one),
    then gather, dial or hang up.

    ``ctx.caller`` is the caller's number as Twilio sent it (``From``) and
    ``ctx.own_number`` the MMG's number (E.164) they dialled; :func:`caller_id` picks
    what a dial presents. ``max_dial_timeout_s`` bounds the ``<Dial timeout>`` (Telnyx's
    TeXML, which reuses this renderer, accepts at most 120).
    """
    urls, caller, own_number = ctx.urls, ctx.caller, ctx.own_number
    says = _says(decision.say)
    destination = decision.destination
    if decision.menu is not None:
        menu = decision.menu
        verbs = _GATHER.format(
            timeout=f.clamp(menu.timeout_s, 1, 60),
            action=_attr(urls.gather),
            prompts=says + _says((menu.text,)),
        )
    elif destination is not None and destination.dialable:
        attrs = ""
        leg = urls.targeted("leg", decision.route.value)  # not urls.leg: signed once
        if leg:
            attrs = _LEG_CALLBACK.format(_attr(leg))
        if urls.whisper and decision.route is Route.REGULATION:
            attrs += _WHISPER_URL.format(_attr(urls.whisper))
        if destination.number:
            target = _NUMBER.format(attrs=attrs, target=_text(destination.number))
        else:
            target = _SIP.format(attrs=attrs, target=_text(destination.sip or ""))
        action = urls.targeted("dial_status", decision.route.value)
        timeout = decision.dial_timeout_s or DEFAULT_DIAL_TIMEOUT_S
        presented = caller_id(caller, own_number)
        verbs = says + _DIAL.format(
            action=_attr(action),
            timeout=f.clamp(timeout, 5, max_dial_timeout_s),
            caller_id=_CALLER_ID.format(presented) if presented else "",
            target=target,
        )
    else:
        # Nothing a platform can dial (short code such as 15 or 3237): the messages
        # tell the caller what to do, then the call ends.
        verbs = says + _HANGUP
    return Answer(_DOCUMENT.format(verbs).encode("utf-8"), CONTENT_TYPE)


def render_hangup() -> Answer:
    """TwiML that ends the call."""
    return Answer(_HANGUP_DOCUMENT, CONTENT_TYPE)


def render_whisper(texts: tuple[str, ...]) -> Answer:
    """The TwiML of ``<Number url>``: the whisper, said to the regulation line before
    the caller is connected (no ``<Dial>`` allowed there; an empty one connects at once)."""
    return Answer(_DOCUMENT.format(_says(texts)).encode("utf-8"), CONTENT_TYPE)


# ---------------------------------------------------------------------- dial legs

#: A leg's ``CallStatus`` (its own status callbacks) → what it reports. ``canceled``:
#: the parent call hung up while the leg rang (the caller gave up first); an answered
#: leg later cancelled stays answered (core/legs.py: an answer outranks everything).
_LEG_STATUS: dict[str, LegStatus] = {
    "queued": LegStatus.OFFERED,
    "initiated": LegStatus.OFFERED,
    "ringing": LegStatus.RINGING,
    "in-progress": LegStatus.ANSWERED,
    "answered": LegStatus.ANSWERED,
    "completed": LegStatus.COMPLETED,
    "busy": LegStatus.BUSY,
    "no-answer": LegStatus.NO_ANSWER,
    "failed": LegStatus.FAILED,
    "canceled": LegStatus.ABANDONED,
}


def _leg_status(value: object, field: str) -> LegStatus:
    raw = f.required(value, field).lower()
    status = _LEG_STATUS.get(raw)
    if status is None:
        raise BadHookRequest(field, f"not a call status Twilio sends ({raw[:32]!r})")
    return status


def _leg_call_id(req: HookRequest) -> str:
    """The parent call, as our own callback URL names it (``call_id``; ``call`` too):
    a leg's status callbacks carry the child's CallSid, the dial action the parent's."""
    named = f.text(req.query.get("call_id"), "call_id") or f.text(req.query.get("call"), "call")
    if named is not None:
        return named
    parent = f.text(req.form.get("ParentCallSid"), "ParentCallSid")
    return parent or f.required(_param(req, "CallSid"), "CallSid")


def parse_leg_as(req: HookRequest, platform: Platform) -> LegEvent | None:
    """:func:`parse_leg` for a platform speaking Twilio's dialect (Telnyx TeXML)."""
    target = f.target(req.query.get("target"))
    if target is None:
        return None  # a whole-call status callback, a menu: no leg named
    mmg = f.text(req.query.get("mmg"), "mmg") or ""
    dial_status = req.form.get("DialCallStatus")
    if dial_status is not None:
        # The <Dial action>: how the dial ended, received when it ended.
        status = _leg_status(dial_status, "DialCallStatus")
        if status is LegStatus.ANSWERED:  # "answered" here: connected, and now over
            status = LegStatus.COMPLETED
        duration = f.duration(req.form.get("DialCallDuration"), "DialCallDuration")
        at = f.received_at(req.now)
    else:
        status = _leg_status(_param(req, "CallStatus"), "CallStatus")
        duration = f.duration(req.form.get("CallDuration"), "CallDuration")
        at = f.platform_instant(req.form.get("Timestamp"), "Timestamp", req.now)
    return LegEvent(
        call_id=_leg_call_id(req),
        target=target,
        status=status,
        at=at,
        mmg=mmg,
        platform=platform.value,
        # Talk time: what dates the answer when its own callback was lost.
        duration_s=duration if status is LegStatus.COMPLETED else None,
    )


def parse_leg(req: HookRequest) -> LegEvent | None:
    """The dial-leg report of a callback (core/legs.py); None: this one reports none.

    Two sources, both naming the leg in our own URL (``target``, ``mmg``, ``call_id``):
    the leg's own status callbacks (``/hooks/twilio/leg``: ``CallStatus`` initiated,
    ringing, in-progress, completed with ``CallDuration``, busy, no-answer, failed,
    canceled, at Twilio's ``Timestamp``, RFC 2822) and the ``<Dial action>`` result
    (``DialCallStatus``, ``DialCallDuration``, at the time received). A callback
    without ``target`` (the whole call's status) reports no leg.
    """
    return parse_leg_as(req, Platform.TWILIO)
