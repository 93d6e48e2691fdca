"""Any PBX: HMAC-SHA256 signed JSON in, the plain decision as JSON out.

Signature header (the Stripe scheme, bound to the request)::

    X-Regulator-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256(secret, string_to_sign)>
    string_to_sign = f"{t}\n{METHOD}\n{path_and_query}\n".encode() + body

``METHOD`` upper-case as sent; ``path_and_query`` the path of the URL the PBX calls
(with ``REGULATOR_PUBLIC_URL``'s path prefix, if any) and, when there is one, ``?``
and the query string exactly as sent; ``body`` the raw bytes. A signature is thus good
for one method, one path, one query and one body: replayed on another hook, or with
another ``target``, it is refused. Several ``v2`` values may be sent (secret
rotation); one matching is enough. A timestamp more than :data:`TOLERANCE_S` away from
now is refused (replay window). The old body-only scheme (``v1=`` over ``"{t}.{body}"``)
is refused with its own reason in the log. :func:`sign` produces the header, for PBX
integrators' tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
from urllib.parse import urlsplit

import orjson

from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import (
    DESTINATION_ROUTES,
    Call,
    Decision,
    Platform,
    Route,
    Stage,
    audio_of,
)
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

SIGNATURE_HEADER = "x-regulator-signature"
#: Seconds a signature stays acceptable either side of its timestamp.
TOLERANCE_S = 300


_HANGUP = orjson.dumps(
    {
        "action": "hangup",
        "mmg": None,
        "route": None,
        "ground": None,
        "destination": None,
        "say": [],
        "play": [],
        "menu": None,
        "dial_timeout_s": None,
        "rule": None,
        "failsafe": False,
    }
)


def string_to_sign(t: str | int, method: str, path_and_query: str, body: bytes) -> bytes:
    """What ``v2`` signs (module docstring). Newlines separate the parts: a method,
    a timestamp and a URL path can't hold one, so no two requests sign the same bytes."""
    return f"{t}\n{method.upper()}\n{path_and_query}\n".encode() + body


def _mac(secret: str, signed: bytes) -> str:
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, t: int, *, method: str, path: str) -> str:
    """The ``X-Regulator-Signature`` value for a ``method`` request to ``path`` (with
    its query, if any) carrying ``body``, sent at Unix time ``t``."""
    return f"t={t},v2={_mac(secret, string_to_sign(t, method, path, body))}"


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def verify(req: HookRequest, secret: str) -> None:
    """Raise :class:`SignatureError` unless ``X-Regulator-Signature`` signs this
    request's method, path and query, and body with ``secret`` (``v2``, module
    docstring) at a timestamp within :data:`TOLERANCE_S` of ``req.now``."""
    if not secret:
        raise SignatureError("generic secret not configured")
    header = req.headers.get(SIGNATURE_HEADER)
    if header and "v1=" in header and "v2=" not in header:
        raise SignatureError(
            "X-Regulator-Signature v1 (body only) is no longer accepted:"
            " sign method, path and body (v2, see the README)"
        )
    target = _path_and_query(req.url)
    f.check_timestamped_signature(
        header,
        "X-Regulator-Signature",
        now=req.now,
        tolerance_s=TOLERANCE_S,
        expected=lambda t: _mac(secret, string_to_sign(t, req.method, target, req.body)),
        scheme="v2",
    )


def _stage(value: object, default: Stage) -> Stage:
    raw = f.text(value, "stage")
    if raw is None:
        return default
    try:
        return Stage(raw)
    except ValueError:
        raise BadHookRequest("stage", "expected incoming, digits or dial_failed") from None


_TARGETS = {r.value: r for r in DESTINATION_ROUTES}


def _target(value: object) -> Route | None:
    """The destination a failed dial was about: ``regulation``, ``direct_access`` or
    ``pharmacy`` (the ``route`` of the answer that gave it). Anything else reads as
    absent rather than as a bad request: the call is then decided from its route
    history, where a bad request would only get the fail-safe dial to centre 15, and
    could offer it twice."""
    return _TARGETS.get(value) if isinstance(value, str) else None


def parse_call_target(req: HookRequest, stage: Stage) -> tuple[Call, Route | None]:
    """``{"call_id", "from", "to", "digits"?, "stage"?, "target"?}``; the body's stage
    wins. ``target`` (with ``"stage": "dial_failed"``) names the destination that failed;
    a ``dial_failed`` report may leave out ``to`` (``called`` is then empty)."""
    try:
        call, data = f.json_call(req.body, Platform.GENERIC, stage)
    except BadHookRequest as exc:
        # A failure report needs only the call id: the call's record names its MMG.
        # Refusing it would answer with the fail-safe, which may dial centre 15 twice.
        if exc.field != "to":
            raise
        data = f.json_object(req.body)
        if _stage(data.get("stage"), stage) is not Stage.DIAL_FAILED:
            raise
        call = Call(
            call_id=f.required(data.get("call_id"), "call_id"),
            caller=f.text(data.get("from"), "from") or "",
            called="",
            platform=Platform.GENERIC,
            stage=Stage.DIAL_FAILED,
        )
        return call, _target(data.get("target"))
    body_stage = _stage(data.get("stage"), stage)
    if body_stage is not stage:
        call = dataclasses.replace(call, stage=body_stage)
    return call, _target(data.get("target"))


def parse_call(req: HookRequest, stage: Stage) -> Call:
    """``{"call_id", "from", "to", "digits"?, "stage"?}``; the body's stage wins."""
    return parse_call_target(req, stage)[0]


def parse_event(req: HookRequest) -> CallEvent:
    """``{"call_id", "status", "duration_s"?, "target"?, "from"?, "to"?}``.

    A ``busy``, ``no-answer`` or ``failed`` status is a failed dial, of ``target`` when
    given (read as :func:`parse_call_target` reads it), else of the call's last route."""
    data = f.json_object(req.body)
    return CallEvent(
        call_id=f.required(data.get("call_id"), "call_id"),
        status=f.status(data.get("status"), "status"),
        duration_s=f.duration(data.get("duration_s"), "duration_s"),
        target=_target(data.get("target")),
        caller=f.text(data.get("from"), "from"),
        called=f.text(data.get("to"), "to"),
    )


def _action(decision: Decision) -> str:
    if decision.menu is not None:
        return "menu"
    if decision.destination is not None and decision.destination.dialable:
        return "dial"
    return "announce"


def render(decision: Decision, ctx: RenderContext, *, call_id: str | None = None) -> Answer:
    """The decision as one JSON object.

    ``action`` tells the PBX what to do: ``menu`` (play ``say`` then ``menu.text``,
    collect one key, post it back with ``"stage": "digits"``), ``dial`` (play ``say``,
    then dial ``destination``; on failure post ``"stage": "dial_failed"`` with
    ``"target"`` = this answer's ``route``) or ``announce`` (play ``say`` and hang up).
    ``ctx`` is unused (no callbacks, nothing presented).

    ``play`` runs beside ``say``, one entry per message: the https URL of its
    recording, or null (say the text); ``menu.play`` likewise for the menu's text. A
    PBX without audio playback reads ``say`` and ignores ``play``.
    """
    del ctx
    destination = decision.destination
    menu = decision.menu
    document: dict[str, object] = {}
    if call_id is not None:
        document["call_id"] = call_id
    document.update(
        {
            "action": _action(decision),
            "mmg": decision.mmg,
            "route": decision.route.value,
            "ground": decision.ground.value if decision.ground else None,
            "destination": (
                {
                    "number": destination.number,
                    "sip": destination.sip,
                    "announce": destination.announce,
                    "label": destination.label,
                }
                if destination is not None
                else None
            ),
            "say": [str(text) for text in decision.say],
            "play": [audio_of(text) for text in decision.say],
            "menu": (
                {
                    "text": str(menu.text),
                    "play": audio_of(menu.text),
                    "timeout_s": menu.timeout_s,
                    "options": list(menu.options),
                }
                if menu is not None
                else None
            ),
            "dial_timeout_s": decision.dial_timeout_s,
            "rule": decision.rule,
            "failsafe": decision.failsafe,
        }
    )
    return Answer(orjson.dumps(document), CONTENT_TYPE)


def render_hangup() -> Answer:
    """The same shape with ``"action": "hangup"`` and nothing to dial or say."""
    return Answer(_HANGUP, CONTENT_TYPE)


#: The ``status`` values of a leg report on ``/hooks/generic/event`` (with ``target``).
LEG_STATUSES: dict[str, LegStatus] = {
    "offered": LegStatus.OFFERED,
    "ringing": LegStatus.RINGING,
    "answered": LegStatus.ANSWERED,
    "completed": LegStatus.COMPLETED,
    "abandoned": LegStatus.ABANDONED,
    "busy": LegStatus.BUSY,
    "no_answer": LegStatus.NO_ANSWER,
    "no-answer": LegStatus.NO_ANSWER,
    "failed": LegStatus.FAILED,
}


def parse_leg(req: HookRequest) -> LegEvent | None:
    """The dial-leg report of ``/hooks/generic/event``; None without ``target``.

    ``{"call_id", "target", "status", "at"?, "duration_s"?}``: ``target`` is the
    ``route`` of the answer that dialled (``regulation``, ``direct_access``,
    ``pharmacy``), ``status`` one of :data:`LEG_STATUSES` (``abandoned``: the caller
    hung up before the line answered), ``at`` the PBX's time of the event (ISO 8601
    with its offset; the receipt time when absent) and ``duration_s``, with
    ``completed``, the talk time. A report without ``target`` is about the whole call.
    """
    data = f.json_object(req.body)
    raw_target = data.get("target")
    if raw_target is None:
        return None
    target = f.leg_target(raw_target)
    raw = f.required(data.get("status"), "status").lower()
    status = LEG_STATUSES.get(raw)
    if status is None:
        raise BadHookRequest("status", f"not a leg status ({', '.join(LEG_STATUSES)})")
    duration = f.duration(data.get("duration_s"), "duration_s")
    at = f.iso_instant(data.get("at"), "at", req.now)
    return LegEvent(
        call_id=f.required(data.get("call_id"), "call_id"),
        target=target,
        status=status,
        at=at if at is not None else f.received_at(req.now),
        platform=Platform.GENERIC.value,
        duration_s=duration if status is LegStatus.COMPLETED else None,
    )
