"""Vonage Voice API: signed-webhook JWT, JSON/query webhooks, NCCO answers.

Signed webhooks carry ``Authorization: Bearer <JWT>``, HS256-signed with the account's
signature secret. PyJWT checks the signature; the claims are checked here against
``req.now`` (``iat`` no older than 5 minutes, ``exp``/``nbf`` when present), and so is
``payload_hash`` — the hex SHA-256 of the payload, which PyJWT knows nothing about.

Call ids: Vonage gives each leg a ``uuid`` and the whole call a ``conversation_uuid``.
The answer, input and connect-leg event webhooks all share the conversation, so
``conversation_uuid`` (falling back to ``uuid``) is the call id everywhere. Numbers come
without a leading ``+`` (``33466123456``); :func:`regulator.core.phone.normalize`
accepts that. A connect leg's events carry that leg's numbers: ``from`` is the MMG
number we presented, ``to`` the dialled line.

Vonage wants the NCCO within 5 s and retries twice; the NCCO is built from plain
dicts and serialised by orjson.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping
from functools import cache
from urllib.parse import parse_qsl, urlsplit

import jwt
import orjson
from jwt.algorithms import HMACAlgorithm

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
)

CONTENT_TYPE = "application/json"

#: Tokens older than this are refused (replays of captured webhooks).
MAX_TOKEN_AGE_S = 300
#: Clock skew tolerated between Vonage and us for ``iat`` in the future, ``exp``, ``nbf``.
CLOCK_LEEWAY_S = 30
#: Seconds Vonage rings a connect endpoint when the decision sets no timeout.
DEFAULT_DIAL_TIMEOUT_S = 30

# What Vonage (and its SDK) accepts as a number: 7 to 15 digits, no leading 0 or +.
_MSISDN = re.compile(r"[1-9][0-9]{6,14}")
_LANGUAGE = "fr-FR"
_GOODBYE: dict[str, object] = {"action": "talk", "text": "Au revoir.", "language": _LANGUAGE}


class _HS256(HMACAlgorithm):
    """HS256 without PyJWT's short-key warning: Vonage sets the signature secret's
    length, not us, and a warning per webhook would only flood the logs."""

    def __init__(self) -> None:
        super().__init__(HMACAlgorithm.SHA256)

    def check_key_length(self, key: bytes) -> str | None:
        return None


@cache
def _jws() -> jwt.PyJWS:
    jws = jwt.PyJWS(algorithms=["HS256"])
    jws.unregister_algorithm("HS256")
    jws.register_algorithm("HS256", _HS256())
    return jws


# ---------------------------------------------------------------------- signature


def _time_claim(claims: Mapping[str, object], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SignatureError(f"JWT {name} is not a number")
    return float(value)


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).hexdigest().encode("ascii")


def _payload_hashes(req: HookRequest) -> Iterator[bytes]:
    """The hashes Vonage may have signed for this payload, most likely first."""
    yield _sha256(req.body)
    if req.body:
        # Vonage hashes the compact JSON it sends; tolerate a proxy that re-spaced it.
        try:
            data = orjson.loads(req.body)
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict):
            yield _sha256(orjson.dumps(data))
    else:
        # GET answer webhook: Vonage documents the hash of the query parameters as a
        # compact JSON object, in their order.
        pairs = parse_qsl(urlsplit(req.url).query, keep_blank_values=True)
        if pairs:
            yield _sha256(orjson.dumps(dict(pairs)))


def decode_claims(req: HookRequest, signature_secret: str) -> dict[str, object]:
    """The verified JWT claims of a signed webhook, or :class:`SignatureError`.

    The caller may use ``jti`` to refuse a token seen twice within
    :data:`MAX_TOKEN_AGE_S` (replay); this pure function keeps no state.
    """
    if not signature_secret:
        raise SignatureError("Vonage signature secret not configured")
    header = req.headers.get("authorization", "")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise SignatureError("missing Authorization: Bearer token")
    try:
        decoded = _jws().decode_complete(
            token, signature_secret.encode("utf-8"), algorithms=["HS256"]
        )
        claims = orjson.loads(decoded["payload"])
    except (jwt.PyJWTError, orjson.JSONDecodeError, ValueError, TypeError, KeyError):
        raise SignatureError("invalid webhook JWT") from None
    if not isinstance(claims, dict):
        raise SignatureError("JWT claims are not an object")

    now = req.now
    iat = _time_claim(claims, "iat")
    if iat is None:
        raise SignatureError("JWT without iat")
    if now - iat > MAX_TOKEN_AGE_S:
        raise SignatureError("JWT too old (iat)")
    if iat - now > CLOCK_LEEWAY_S:
        raise SignatureError("JWT issued in the future (iat)")
    exp = _time_claim(claims, "exp")
    if exp is not None and now > exp + CLOCK_LEEWAY_S:
        raise SignatureError("JWT expired (exp)")
    nbf = _time_claim(claims, "nbf")
    if nbf is not None and now + CLOCK_LEEWAY_S < nbf:
        raise SignatureError("JWT not yet valid (nbf)")

    claimed = claims.get("payload_hash")
    if not isinstance(claimed, str):
        raise SignatureError("JWT without payload_hash")
    try:
        claimed_bytes = claimed.strip().lower().encode("ascii")
    except UnicodeEncodeError:
        raise SignatureError("malformed payload_hash") from None
    if not any(hmac.compare_digest(h, claimed_bytes) for h in _payload_hashes(req)):
        raise SignatureError("payload does not match payload_hash")
    return claims


def verify(req: HookRequest, signature_secret: str) -> None:
    """Raise :class:`SignatureError` unless the webhook is signed by Vonage, fresh, and
    its payload is the one signed."""
    decode_claims(req, signature_secret)


def token_id(claims: Mapping[str, object]) -> tuple[str, float]:
    """The verified token's ``jti`` and the Unix time until which :func:`decode_claims`
    would accept it (``iat`` + :data:`MAX_TOKEN_AGE_S`, sooner if ``exp`` says so): how
    long the caller must remember the ``jti`` to refuse the token a second time.
    :class:`SignatureError` for a token without ``jti``: it could not be refused twice."""
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti.strip() or len(jti) > 256:
        raise SignatureError("JWT without jti")
    iat = _time_claim(claims, "iat")
    until = (iat if iat is not None else 0.0) + MAX_TOKEN_AGE_S
    exp = _time_claim(claims, "exp")
    if exp is not None:
        until = min(until, exp + CLOCK_LEEWAY_S)
    return jti, until + CLOCK_LEEWAY_S


# ---------------------------------------------------------------------- parsing


def _payload(req: HookRequest) -> Mapping[str, object]:
    """POST webhooks carry JSON; GET answer webhooks carry the same fields as a query."""
    if req.body:
        return f.json_object(req.body)
    return req.query


def _call_id(data: Mapping[str, object]) -> str:
    conversation = f.text(data.get("conversation_uuid"), "conversation_uuid")
    return conversation or f.required(data.get("uuid"), "uuid")


def _dtmf(data: Mapping[str, object]) -> str | None:
    dtmf = data.get("dtmf")
    if isinstance(dtmf, dict):  # input webhook: {"digits": "1", "timed_out": false}
        return f.digits(dtmf.get("digits"), "dtmf.digits")
    return f.digits(dtmf, "dtmf")  # older input format: "dtmf": "1"


def parse_call(req: HookRequest, stage: Stage) -> Call:
    """The answer (``Stage.INCOMING``) or input (``Stage.DIGITS``) webhook as a Call."""
    data = _payload(req)
    caller = f.text(data.get("from"), "from") or f.text(data.get("from_user"), "from_user")
    return Call(
        call_id=_call_id(data),
        caller=caller or "",
        called=f.required(data.get("to"), "to"),
        platform=Platform.VONAGE,
        stage=stage,
        digits=_dtmf(data),
    )


def parse_event(req: HookRequest) -> CallEvent:
    """An event webhook; ``target`` (and optionally ``call_id``) come from our own
    connect ``eventUrl``."""
    data = _payload(req)
    call_id = f.text(req.query.get("call_id"), "call_id") or _call_id(data)
    if "status" not in data:
        raise BadHookRequest("status", "missing (not a call status event)")
    target = f.target(req.query.get("target"))
    caller = f.text(data.get("from"), "from")
    return CallEvent(
        call_id=call_id,
        status=f.status(data.get("status"), "status"),
        duration_s=f.duration(data.get("duration"), "duration"),
        target=target,
        # A connect leg's ``from`` is the MMG number we presented, not the caller.
        caller=caller if target is None else None,
        called=f.text(data.get("to"), "to"),
    )


# ---------------------------------------------------------------------- rendering


def _talk(text: str, *, barge_in: bool = False) -> dict[str, object]:
    """A message: ``stream`` its recording if it has one (an https URL checked at load),
    else ``talk`` its text."""
    audio = audio_of(text)
    action: dict[str, object]
    if audio:
        action = {"action": "stream", "streamUrl": [audio]}
    else:
        action = {"action": "talk", "text": str(text), "language": _LANGUAGE}
    if barge_in:
        action["bargeIn"] = True
    return action


def _msisdn(number: str | None) -> str | None:
    """``number`` as Vonage writes numbers (E.164 without ``+``), or None if it is not one."""
    if not number or not number.startswith("+"):
        return None
    digits = number[1:]
    return digits if _MSISDN.fullmatch(digits) else None


def render(decision: Decision, ctx: RenderContext) -> Answer:
    """The decision as an NCCO: talk each message (stream its recording, if it has
    one), then input, connect or end.

    ``ctx.own_number`` is the MMG's own number (E.164), the one the caller dialled: a
    number of this Vonage application. A connect's ``from`` must be one of the
    account's virtual numbers ("another value will result in the caller ID being
    unknown"), so the caller's own number is never presented; centre 15 gets it
    through the outbox event instead. Without the MMG's number (a webhook too broken
    to read), ``randomFromNumber`` lets Vonage pick one of the application's numbers:
    a connect always has one or the other, as Vonage's SDK requires.
    """
    urls, from_number = ctx.urls, ctx.own_number
    ncco: list[dict[str, object]] = [
        _talk(t) for t in decision.say if (t and t.strip()) or audio_of(t)
    ]
    destination = decision.destination
    if decision.menu is not None:
        menu = decision.menu
        ncco.append(_talk(menu.text, barge_in=True))
        action: dict[str, object] = {
            "action": "input",
            "type": ["dtmf"],
            "dtmf": {"maxDigits": 1, "timeOut": f.clamp(menu.timeout_s, 1, 10)},
        }
        if urls.input:
            action["eventUrl"] = [urls.input]
        ncco.append(action)
    elif destination is not None and destination.dialable:
        endpoint: dict[str, object]
        if destination.number:
            endpoint = {"type": "phone", "number": destination.number.lstrip("+")}
            if urls.whisper and decision.route is Route.REGULATION:
                # An NCCO run on the answering line before it joins the caller.
                endpoint["onAnswer"] = {"url": urls.whisper}
        else:
            endpoint = {"type": "sip", "uri": destination.sip or ""}
        timeout = decision.dial_timeout_s or DEFAULT_DIAL_TIMEOUT_S
        connect: dict[str, object] = {
            "action": "connect",
            "endpoint": [endpoint],
            "timeout": f.clamp(timeout, 5, 600),
            # Synchronous: a busy/unanswered/failed leg calls eventUrl, whose answer
            # (a new NCCO) replaces the rest of this one: that is the overflow path.
            "eventType": "synchronous",
        }
        event_url = urls.targeted("event", decision.route.value)  # not urls.event: signed once
        if event_url:
            connect["eventUrl"] = [event_url]
        own = _msisdn(from_number)
        if own is not None:
            connect["from"] = own
        else:
            connect["randomFromNumber"] = True
        ncco.append(connect)
    if not ncco:  # an empty NCCO is an error at Vonage; end the call politely instead
        ncco.append(_GOODBYE)
    return Answer(orjson.dumps(ncco), CONTENT_TYPE)


def render_hangup() -> Answer:
    """An NCCO that says goodbye; the call ends when the NCCO is exhausted."""
    return Answer(orjson.dumps([_GOODBYE]), CONTENT_TYPE)


def render_whisper(texts: tuple[str, ...]) -> Answer:
    """The NCCO of a phone endpoint's ``onAnswer``: the whisper, played to the
    regulation line before it joins the caller."""
    ncco = [_talk(t) for t in texts if (t and t.strip()) or audio_of(t)]
    # An empty NCCO is refused: the shortest pause joins the line just the same.
    return Answer(orjson.dumps(ncco or [{"action": "wait", "timeout": 0.1}]), CONTENT_TYPE)


# ---------------------------------------------------------------------- dial legs

#: A connect leg's event ``status`` → what it reports (others — machine, human,
#: transfer… — say nothing of the leg's progress). ``cancelled``: the caller hung up
#: while the leg rang; ``rejected``: refused by the line, as a busy one.
_LEG_STATUS: dict[str, LegStatus] = {
    "started": LegStatus.OFFERED,
    "ringing": LegStatus.RINGING,
    "answered": LegStatus.ANSWERED,
    "completed": LegStatus.COMPLETED,
    "busy": LegStatus.BUSY,
    "rejected": LegStatus.BUSY,
    "timeout": LegStatus.NO_ANSWER,
    "unanswered": LegStatus.NO_ANSWER,
    "failed": LegStatus.FAILED,
    "cancelled": LegStatus.ABANDONED,
}


def parse_leg(req: HookRequest) -> LegEvent | None:
    """The dial-leg report of a callback (core/legs.py); None: this one reports none.

    A connect action's ``eventUrl`` events (our URL names ``target``, ``mmg`` and the
    call) at Vonage's ``timestamp`` (ISO 8601), the receipt time when absent. Events
    without ``target`` (the application's whole-call events) are not legs. A
    ``completed`` counts as an answer only with a talk time (``duration`` > 0): one
    without (which may close a leg already reported ``timeout`` or ``unanswered``)
    reports nothing, rather than an answer that never happened.
    """
    target = f.target(req.query.get("target"))
    if target is None:
        return None
    data = _payload(req)
    raw = f.text(data.get("status"), "status")
    status = _LEG_STATUS.get(raw.lower()) if raw is not None else None
    if status is None:
        return None
    duration = f.duration(data.get("duration"), "duration")
    if status is LegStatus.COMPLETED and not duration:
        return None
    return LegEvent(
        call_id=f.text(req.query.get("call_id"), "call_id") or _call_id(data),
        target=target,
        status=status,
        at=f.platform_instant(data.get("timestamp"), "timestamp", req.now),
        mmg=f.text(req.query.get("mmg"), "mmg") or "",
        platform=Platform.VONAGE.value,
        duration_s=duration if status is LegStatus.COMPLETED else None,
    )
