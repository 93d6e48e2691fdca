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
A ``dial`` carries ``tag`` (the line, as the dialled call's ``customerData``) and, on
the regulation line, a target ``confirmHook`` (``/hooks/jambonz/confirm``): the whisper
(:func:`render_whisper`) and the leg's answer. Dial legs: :func:`parse_leg`.
Speech uses the application's default synthesizer: set its language to French in the
jambonz portal (a ``synthesizer`` object would have to name a vendor).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import orjson

from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import Call, Decision, Platform, Route, Stage
from regulator.platforms import _common as f
from regulator.platforms.base import (
    Answer,
    BadHookRequest,
    CallEvent,
    HookRequest,
    HookUrls,
    LegReport,
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
        route = decision.route.value
        confirm = urls.extra.get("confirm")
        if confirm and urls.whisper and decision.route is Route.REGULATION:
            # Runs on the regulation line when it answers, before the caller is
            # connected: the whisper (and the leg's answer). Only with a whisper to
            # say: jambonz hangs up on the answering line if this hook fails, a risk
            # the protocol takes by asking for a whisper (messages.regulation_whisper).
            target["confirmHook"] = HookUrls.with_query(confirm, target=route)
        timeout = decision.dial_timeout_s or DEFAULT_DIAL_TIMEOUT_S
        dial: dict[str, object] = {
            "verb": "dial",
            "target": [target],
            "actionHook": urls.targeted("dial_status", route),
            "timeout": f.clamp(timeout, 5, 600),
            "answerOnBridge": True,
            # The dialled (child) call's customerData: its call status webhooks
            # (trying, ringing, in-progress, completed…) then name the line.
            "tag": {TAG_TARGET: route},
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


#: ``customerData`` key naming the line of a dialled (child) call (the dial's ``tag``).
TAG_TARGET = "regulator_target"

#: A dialled (child) call's ``call_status`` as a leg event.
CHILD_STATUS: Mapping[str, LegStatus | None] = {
    "queued": LegStatus.OFFERED,
    "trying": LegStatus.OFFERED,
    "ringing": LegStatus.RINGING,
    "early-media": LegStatus.RINGING,
    "in-progress": LegStatus.ANSWERED,
    "completed": LegStatus.COMPLETED,
    "busy": LegStatus.BUSY,
    "failed": LegStatus.FAILED,
    # "no-answer" is no leg event: jambonz cancels the outdial (487 → no-answer) both
    # when it rang out and when the caller hung up; the actionHook tells them apart.
    "no-answer": None,
}

#: The dial actionHook's ``dial_call_status`` when the caller is still there.
DIAL_RESULT: Mapping[str, LegStatus] = {
    "completed": LegStatus.COMPLETED,
    "busy": LegStatus.BUSY,
    "no-answer": LegStatus.NO_ANSWER,
    "failed": LegStatus.FAILED,
    "canceled": LegStatus.ABANDONED,
}


def _leg_event(
    call_id: str, target: Route, status: LegStatus, req: HookRequest, duration_s: int | None = None
) -> LegEvent:
    platform = Platform.JAMBONZ.value
    return LegEvent(
        call_id, target, status, f.received(req), platform=platform, duration_s=duration_s
    )


def parse_leg(req: HookRequest) -> LegReport:
    """The leg a jambonz webhook reports, at its receipt (jambonz sends no timestamps).

    * the dialled call's own call status webhooks (``parent_call_sid`` set, the line
      in ``customerData`` from the dial's ``tag``): ``trying`` (offered), ``ringing``,
      ``in-progress`` (answered), ``completed`` (with its ``duration``), ``busy``…;
    * the regulation target's ``confirmHook`` (``?target=``): the line answered;
    * the dial ``actionHook`` (``dial_call_status``, ``?target=``): the leg's end. A
      dial that did not connect while the caller's own call is over
      (``call_status: completed``: jambonz ends the caller's call, then the dial,
      whose outdials it cancels, 487 → ``no-answer``) is the caller hanging up first.
    """
    data = _payload(req)
    parent = data.get("parent_call_sid")
    if parent is not None:
        customer = data.get("customerData")
        tagged = customer.get(TAG_TARGET) if isinstance(customer, dict) else None
        value = req.query.get("target") or tagged
        if value is None:
            return None  # a dial of ours from before the tag: nothing names its line
        target = f.leg_target(value)
        call_id = f.text(req.query.get("call_id"), "call_id") or f.required(
            parent, "parent_call_sid"
        )
        raw = f.required(data.get("call_status"), "call_status").lower()
        if raw not in CHILD_STATUS:
            raise BadHookRequest("call_status", "not a jambonz call status")
        status = CHILD_STATUS[raw]
        if status is None:
            return None
        duration = f.duration(data.get("duration"), "duration")
        if status is not LegStatus.COMPLETED:
            duration = None
        return _leg_event(call_id, target, status, req, duration_s=duration)
    dial_status = data.get("dial_call_status")
    if dial_status is None or req.query.get("target") is None:
        return None
    target = f.leg_target(req.query.get("target"))
    call_id = f.required(data.get("call_sid"), "call_sid")
    raw = f.required(dial_status, "dial_call_status").lower()
    caller_gone = (f.text(data.get("call_status"), "call_status") or "").lower() == "completed"
    if raw == "completed":
        status = LegStatus.COMPLETED
    elif caller_gone:
        status = LegStatus.ABANDONED
    elif raw in DIAL_RESULT:
        status = DIAL_RESULT[raw]
    elif raw in CHILD_STATUS:
        status = LegStatus.FAILED  # the dial ended while still ringing: not connected
    else:
        raise BadHookRequest("dial_call_status", "not a jambonz call status")
    return _leg_event(call_id, target, status, req)


def render_whisper(texts: tuple[str, ...]) -> Answer:
    """The confirmHook's answer: say ``texts`` to the called party (then jambonz
    connects the caller); ``[]`` connects at once."""
    text = " ".join(t.strip() for t in texts if t and t.strip())
    if not text:
        return Answer(b"[]", CONTENT_TYPE)
    return Answer(orjson.dumps([{"verb": "say", "text": text}]), CONTENT_TYPE)
