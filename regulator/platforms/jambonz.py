"""jambonz: ``Jambonz-Signature`` HMAC webhooks (JSON), jambonz verb arrays as answers.

Signature (jambonz's own, the Stripe scheme its ``@jambonz/node-client``
``WebhookResponse.verifyJambonzSignature`` checks)::

    Jambonz-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(webhook secret, f"{t}.{body}")>

Several ``v1`` values may be sent (secret rotation); one matching is enough. A
timestamp more than :data:`TOLERANCE_S` away from now is refused (replay window).

Webhooks (POST, JSON; GET puts the same fields in the query): the call hook and every
``actionHook`` carry ``call_sid``, ``from``, ``to``, ``call_status``, … A ``gather``
actionHook adds ``digits`` (or ``reason: "timeout"`` and none), a ``dial`` actionHook
``dial_call_status`` (``completed``, ``busy``, ``no-answer``, ``failed``…), the call
status hook a new ``call_status`` (``trying``, ``ringing``, ``early-media``,
``in-progress``, ``completed``, ``failed``, ``busy``, ``no-answer``…).

Answers are verb arrays (``say``, ``gather``, ``dial``, ``hangup``) in jambonz's
``{"verb": …}`` form, checked in the tests against ``@jambonz/verb-specifications``.
Speech uses the application's default synthesizer: set its language to French in the
jambonz portal (a ``synthesizer`` object would have to name a vendor).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import orjson

from regulator.core.legs import LegEvent
from regulator.core.models import Call, Decision, Platform, Stage
from regulator.platforms import _common as f
from regulator.platforms.base import (
    Answer,
    BadHookRequest,
    CallEvent,
    HookRequest,
    HookUrls,
    RenderContext,
    SignatureError,
)
from regulator.platforms.twilio import caller_id

CONTENT_TYPE = "application/json"

SIGNATURE_HEADER = "jambonz-signature"
#: Seconds a signature stays acceptable either side of its timestamp.
TOLERANCE_S = 300
#: Seconds jambonz rings a dial target when the decision sets no timeout.
DEFAULT_DIAL_TIMEOUT_S = 30

# jambonz call statuses outside Twilio's vocabulary.
_STATUS_ALIASES = {"trying": "started", "early-media": "ringing"}
_HANGUP = orjson.dumps([{"verb": "hangup"}])


def _mac(secret: str, body: bytes, t: str) -> str:
    return hmac.new(
        secret.encode("utf-8"), t.encode("ascii") + b"." + body, hashlib.sha256
    ).hexdigest()


def sign(secret: str, body: bytes, t: int) -> str:
    """The ``Jambonz-Signature`` value jambonz sends for ``body`` at Unix time ``t``."""
    return f"t={t},v1={_mac(secret, body, str(t))}"


def verify(req: HookRequest, secret: str) -> None:
    """Raise :class:`SignatureError` unless ``Jambonz-Signature`` signs ``req.body``
    with ``secret`` at a timestamp within :data:`TOLERANCE_S` of ``req.now``."""
    if not secret:
        raise SignatureError("jambonz webhook secret not configured")
    f.check_timestamped_signature(
        req.headers.get(SIGNATURE_HEADER),
        "Jambonz-Signature",
        now=req.now,
        tolerance_s=TOLERANCE_S,
        # The timestamp as sent: jambonz signs the header's own digits.
        expected=lambda t: _mac(secret, req.body, t),
    )


# ---------------------------------------------------------------------- parsing


def _payload(req: HookRequest) -> Mapping[str, object]:
    """POST hooks carry JSON; hooks configured as GET carry the fields in the query."""
    if req.body:
        return f.json_object(req.body)
    return req.query


def parse_call(req: HookRequest, stage: Stage) -> Call:
    """The call hook (``Stage.INCOMING``) or a gather actionHook (``Stage.DIGITS``)."""
    data = _payload(req)
    return Call(
        call_id=f.required(data.get("call_sid"), "call_sid"),
        caller=f.text(data.get("from"), "from") or "",
        called=f.required(data.get("to"), "to"),
        platform=Platform.JAMBONZ,
        stage=stage,
        digits=f.digits(data.get("digits"), "digits"),
    )


def _status(value: object, field: str) -> str:
    raw = f.required(value, field).lower()
    return f.status(_STATUS_ALIASES.get(raw, raw), field)


def parse_event(req: HookRequest) -> CallEvent:
    """A dial actionHook (``dial_call_status``, ``?target=`` in our URL) or the call
    status hook (``call_status``)."""
    data = _payload(req)
    call_id = f.required(data.get("call_sid"), "call_sid")
    dial_status = data.get("dial_call_status")
    if dial_status is not None:
        status = _status(dial_status, "dial_call_status")
        target = f.target(req.query.get("target"))
    else:
        if data.get("call_status") is None:
            raise BadHookRequest("call_status", "missing (nor dial_call_status)")
        status = _status(data.get("call_status"), "call_status")
        target = None
    return CallEvent(
        call_id=call_id,
        status=status,
        duration_s=f.duration(data.get("duration"), "duration"),
        target=target,
        caller=f.text(data.get("from"), "from"),
        called=f.text(data.get("to"), "to"),
    )


# ---------------------------------------------------------------------- rendering


def _texts(texts: tuple[str, ...]) -> list[str]:
    return [t for t in texts if t and t.strip()]


def render(decision: Decision, ctx: RenderContext) -> Answer:
    """The decision as a jambonz verb array: say each message, then gather, dial or hang up.

    A ``gather`` speaks the messages and the menu (barge-in by key) and calls its
    actionHook with ``digits``, or without them when the caller typed nothing (the
    menu's default). A ``dial`` calls its actionHook, ``?target=<route>``, when the leg
    ends: busy, unanswered or failed, the answer to it (the overflow) replaces the rest.
    ``ctx.caller``/``ctx.own_number`` pick the ``callerId`` as for Twilio.
    """
    urls, caller, own_number = ctx.urls, ctx.caller, ctx.own_number
    says = _texts(decision.say)
    destination = decision.destination
    verbs: list[dict[str, object]] = []
    if decision.menu is not None:
        menu = decision.menu
        prompt = " ".join([*says, *_texts((menu.text,))])
        gather: dict[str, object] = {
            "verb": "gather",
            "input": ["digits"],
            "numDigits": 1,
            "timeout": f.clamp(menu.timeout_s, 1, 60),
            "actionHook": urls.gather,
        }
        if prompt:
            gather["say"] = {"text": prompt}
        verbs.append(gather)
    elif destination is not None and destination.dialable:
        verbs.extend({"verb": "say", "text": t} for t in says)
        if destination.number:
            target: dict[str, object] = {"type": "phone", "number": destination.number}
        else:
            target = {"type": "sip", "sipUri": destination.sip or ""}
        timeout = decision.dial_timeout_s or DEFAULT_DIAL_TIMEOUT_S
        dial: dict[str, object] = {
            "verb": "dial",
            "target": [target],
            "actionHook": HookUrls.with_query(urls.dial_status, target=decision.route.value),
            "timeout": f.clamp(timeout, 5, 600),
            "answerOnBridge": True,
        }
        presented = caller_id(caller, own_number)
        if presented is not None:
            dial["callerId"] = presented
        verbs.append(dial)
    else:
        # Nothing dialable (short codes): the messages say what to do, then the call ends.
        verbs.extend({"verb": "say", "text": t} for t in says)
        verbs.append({"verb": "hangup"})
    return Answer(orjson.dumps(verbs), CONTENT_TYPE)


def render_hangup() -> Answer:
    """A verb array that ends the call."""
    return Answer(_HANGUP, CONTENT_TYPE)


def parse_leg(req: HookRequest) -> LegEvent | None:
    """The dial-leg report of a callback (core/legs.py); None: this one reports none.

    Not reported by this adapter yet (issue 17): no leg figures from this platform."""
    return None
