"""Field readers shared by the adapters: bounded, typed, and never crashing.

Every reader either returns a clean value or raises :class:`BadHookRequest` naming
the field, whatever the platform (or an attacker holding no valid signature, since
parsing runs after :func:`verify`) put in the request.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping

import orjson

from regulator.core.models import Call, Platform, Route, Stage
from regulator.platforms.base import BadHookRequest, SignatureError

#: Webhook bodies are small; anything larger is not a call from a telephony platform.
MAX_BODY_BYTES = 64 * 1024
#: Call ids, numbers, statuses: short strings. SIP Call-IDs are the longest we accept.
MAX_FIELD_CHARS = 256

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9*#]{1,32}")
_DURATION = re.compile(r"[0-9]{1,9}")
_OTHER_STATUS = re.compile(r"[a-z][a-z0-9_:.\-]{0,31}")
# Values the platforms use for "no number" (Kamailio pseudo-variables print <null>).
_NULLS = frozenset({"<null>"})

_STATUS_ALIASES: Mapping[str, str] = {
    "queued": "started",
    "initiated": "started",
    "started": "started",
    "ringing": "ringing",
    "in-progress": "answered",
    "answered": "answered",
    "completed": "completed",
    "busy": "busy",
    "rejected": "busy",
    "no-answer": "no-answer",
    "no_answer": "no-answer",
    "timeout": "no-answer",
    "unanswered": "no-answer",
    "failed": "failed",
    "canceled": "canceled",
    "cancelled": "canceled",
}


def json_object(body: bytes) -> dict[str, object]:
    """The body as a JSON object (UTF-8), or :class:`BadHookRequest` on ``body``."""
    if not body:
        raise BadHookRequest("body", "empty, expected a JSON object")
    if len(body) > MAX_BODY_BYTES:
        raise BadHookRequest("body", f"larger than {MAX_BODY_BYTES} bytes")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadHookRequest("body", "not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise BadHookRequest("body", "expected a JSON object")
    return data


def text(value: object, field: str, *, required: bool = False) -> str | None:
    """A short printable string, stripped; None (or an error if required) when absent."""
    if value is None:
        if required:
            raise BadHookRequest(field, "missing")
        return None
    if not isinstance(value, str):
        raise BadHookRequest(field, "expected a string")
    value = value.strip()
    if not value or value in _NULLS:
        if required:
            raise BadHookRequest(field, "missing")
        return None
    if len(value) > MAX_FIELD_CHARS:
        raise BadHookRequest(field, f"longer than {MAX_FIELD_CHARS} characters")
    if _CONTROL.search(value):
        raise BadHookRequest(field, "contains control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from a lenient decoder upstream
        raise BadHookRequest(field, "not valid UTF-8") from None
    return value


def required(value: object, field: str) -> str:
    result = text(value, field, required=True)
    if result is None:  # unreachable: text(required=True) raises instead
        raise BadHookRequest(field, "missing")
    return result


def digits(value: object, field: str) -> str | None:
    """DTMF keys typed by the caller: None when nothing was typed."""
    raw = text(value, field)
    if raw is None or raw == "hangup":
        return None
    if not _DIGITS.fullmatch(raw):
        raise BadHookRequest(field, "expected DTMF keys (0-9, *, #)")
    return raw


def duration(value: object, field: str) -> int | None:
    """Seconds as a non-negative integer (JSON number or decimal string)."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise BadHookRequest(field, "expected a number of seconds")
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, float) and value.is_integer():
        seconds = int(value)
    elif isinstance(value, str) and _DURATION.fullmatch(value.strip()):
        seconds = int(value.strip())
    else:
        raise BadHookRequest(field, "expected a number of seconds")
    if not 0 <= seconds <= 10**8:
        raise BadHookRequest(field, "out of range")
    return seconds


def status(value: object, field: str) -> str:
    """A call status in the :data:`~regulator.platforms.base.CALL_STATUSES` vocabulary.

    Well-formed statuses outside it pass through lower-cased (informational only).
    """
    raw = required(value, field).lower()
    mapped = _STATUS_ALIASES.get(raw)
    if mapped is not None:
        return mapped
    if _OTHER_STATUS.fullmatch(raw):
        return raw
    raise BadHookRequest(field, "not a call status")


def target(value: object, field: str = "target") -> Route | None:
    """The route of a dial, from our own callback URL (``?target=regulation``)."""
    raw = text(value, field)
    if raw is None:
        return None
    try:
        return Route(raw)
    except ValueError:
        raise BadHookRequest(field, "unknown route") from None


def clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


def json_call(body: bytes, platform: Platform, stage: Stage) -> tuple[Call, dict[str, object]]:
    """``{"call_id", "from", "to", "digits"?}`` as a Call (and the parsed object, for
    platform-specific fields)."""
    data = json_object(body)
    call = Call(
        call_id=required(data.get("call_id"), "call_id"),
        caller=text(data.get("from"), "from") or "",
        called=required(data.get("to"), "to"),
        platform=platform,
        stage=stage,
        digits=digits(data.get("digits"), "digits"),
    )
    return call, data


# ------------------------------------------------------------ signatures

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_HEX_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_MAX_HEADER_PARTS = 16


def check_timestamped_signature(
    header: str | None,
    name: str,
    *,
    now: float,
    tolerance_s: float,
    expected: Callable[[str], str],
    scheme: str = "v1",
) -> None:
    """Check a ``t=<unix seconds>,v1=<hex HMAC-SHA256>`` header (the Stripe scheme that
    jambonz uses; the generic hook's is the same with ``scheme="v2"``, over more than
    the body); raise :class:`SignatureError` unless one ``v1`` (``scheme``) value
    equals ``expected(t)`` (``t`` as sent) and ``t`` is within ``tolerance_s`` of ``now``.

    Several ``v1`` values may be sent (secret rotation); every one is compared in
    constant time, with no early exit.
    """
    if not header:
        raise SignatureError(f"missing {name}")
    parts = header.split(",")
    if len(parts) > _MAX_HEADER_PARTS:
        raise SignatureError(f"malformed {name}")
    timestamps: list[str] = []
    signatures: list[bytes] = []
    for part in parts:
        key, _, value = part.strip().partition("=")
        value = value.strip()
        if key == "t":
            timestamps.append(value)
        elif key == scheme and _HEX_SHA256.fullmatch(value):
            signatures.append(value.lower().encode("ascii"))
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise SignatureError(f"{name} needs one t=<unix seconds>")
    if not signatures:
        raise SignatureError(f"{name} has no {scheme} signature")
    if abs(now - int(timestamps[0])) > tolerance_s:
        raise SignatureError("signature timestamp outside the replay window")
    mac = expected(timestamps[0]).encode("ascii")
    valid = False
    for candidate in signatures:  # no early exit: same work whichever one matches
        valid |= hmac.compare_digest(mac, candidate)
    if not valid:
        raise SignatureError(f"{name} does not match")


def check_shared_secret(given: str | None, name: str, secret: str) -> None:
    """Raise :class:`SignatureError` unless the header ``name`` holds ``secret``
    (constant-time comparison)."""
    if not given:
        raise SignatureError(f"missing {name}")
    try:
        given_bytes = given.strip().encode("utf-8")
    except UnicodeEncodeError:
        raise SignatureError(f"malformed {name}") from None
    if not hmac.compare_digest(given_bytes, secret.encode("utf-8")):
        raise SignatureError(f"{name} does not match")
