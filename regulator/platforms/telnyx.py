"""Telnyx TeXML: Ed25519-signed form webhooks, TwiML-compatible answers.

Telnyx signs every webhook with the account's Ed25519 key (Telnyx's published scheme,
the one its SDKs' ``webhooks.unwrap`` verify)::

    telnyx-timestamp: <unix seconds>
    telnyx-signature-ed25519: base64(Ed25519_sign(f"{timestamp}|{raw body}"))

checked against the account's public key (base64, Mission Control → Keys &
Credentials → Public Key). A timestamp more than :data:`TOLERANCE_S` away from now is
refused (replay window, both ways: Telnyx's SDK only refuses old ones).

TeXML webhooks carry Twilio's field names (``CallSid``, ``From``, ``To``, ``Digits``,
``CallStatus``, ``CallDuration``, ``DialCallStatus``), form-encoded, and TeXML is
TwiML's vocabulary: parsing and rendering are Twilio's, with the platform set to
Telnyx and ``<Dial timeout>`` bounded by Telnyx's maximum (120 s).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from regulator.core.legs import LegEvent
from regulator.core.models import Call, Decision, Platform, Stage
from regulator.platforms import twilio
from regulator.platforms.base import (
    Answer,
    CallEvent,
    HookRequest,
    RenderContext,
    SignatureError,
)

CONTENT_TYPE = twilio.CONTENT_TYPE

SIGNATURE_HEADER = "telnyx-signature-ed25519"
TIMESTAMP_HEADER = "telnyx-timestamp"
#: Seconds a signature stays acceptable either side of its timestamp.
TOLERANCE_S = 300
#: TeXML ``<Dial timeout>`` range is 5 to 120 seconds.
MAX_DIAL_TIMEOUT_S = 120

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_ED25519_KEY_BYTES = 32


@lru_cache(maxsize=8)
def load_public_key(public_key: str) -> Ed25519PublicKey:
    """The portal's base64 public key as an Ed25519 key; ValueError when it is not one."""
    try:
        raw = base64.b64decode(public_key.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("REGULATOR_TELNYX_PUBLIC_KEY is not base64") from None
    if len(raw) != _ED25519_KEY_BYTES:
        raise ValueError("REGULATOR_TELNYX_PUBLIC_KEY is not a 32-byte Ed25519 public key")
    return Ed25519PublicKey.from_public_bytes(raw)


def verify(req: HookRequest, public_key: str) -> None:
    """Raise :class:`SignatureError` unless Telnyx signed ``timestamp|body`` recently."""
    if not public_key:
        raise SignatureError("Telnyx public key not configured")
    try:
        key = load_public_key(public_key)
    except ValueError as exc:
        raise SignatureError(str(exc)) from None
    header = req.headers.get(SIGNATURE_HEADER)
    timestamp = req.headers.get(TIMESTAMP_HEADER)
    if not header:
        raise SignatureError("missing telnyx-signature-ed25519")
    if not timestamp:
        raise SignatureError("missing telnyx-timestamp")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureError("malformed telnyx-timestamp")
    if abs(req.now - int(timestamp)) > TOLERANCE_S:
        raise SignatureError("signature timestamp outside the replay window")
    try:
        signature = base64.b64decode(header.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed telnyx-signature-ed25519") from None
    try:  # a signature of the wrong length is refused by verify() too
        key.verify(signature, timestamp.encode("ascii") + b"|" + req.body)
    except InvalidSignature:
        raise SignatureError("telnyx-signature-ed25519 does not match") from None


def parse_call(req: HookRequest, stage: Stage) -> Call:
    """The voice (``Stage.INCOMING``) or gather (``Stage.DIGITS``) webhook as a Call."""
    return dataclasses.replace(twilio.parse_call(req, stage), platform=Platform.TELNYX)


def parse_event(req: HookRequest) -> CallEvent:
    """A ``<Dial action>`` callback (``DialCallStatus``, ``?target=`` in our URL) or a
    status callback (``CallStatus``)."""
    return twilio.parse_event(req)


def render(decision: Decision, ctx: RenderContext) -> Answer:
    """The decision as TeXML (see :func:`regulator.platforms.twilio.render`)."""
    return twilio.render(decision, ctx, max_dial_timeout_s=MAX_DIAL_TIMEOUT_S)


def render_hangup() -> Answer:
    """TeXML that ends the call."""
    return twilio.render_hangup()


def render_whisper(texts: tuple[str, ...]) -> Answer:
    """The TeXML of ``<Number url>``: the whisper (see :func:`twilio.render_whisper`)."""
    return twilio.render_whisper(texts)


def parse_leg(req: HookRequest) -> LegEvent | None:
    """The dial-leg report of a callback (core/legs.py); None: this one reports none.

    Twilio's fields (:func:`regulator.platforms.twilio.parse_leg`): the leg's own
    call-progress callbacks on ``/hooks/telnyx/leg`` (``CallStatus``, ``CallDuration``,
    ``ParentCallSid``, ``Timestamp`` — ISO 8601 in Telnyx's examples, RFC 2822 in its
    text: both are read) and the ``<Dial action>`` result.
    """
    return twilio.parse_leg_as(req, Platform.TELNYX)
