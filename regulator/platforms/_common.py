"""Field readers shared by the adapters: bounded, typed, and never crashing.

Every reader either returns a clean value or raises :class:`BadHookRequest` naming
the field, whatever the platform (or an attacker holding no valid signature, since
parsing runs after :func:`verify`) put in the request.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime

import orjson

from regulator.core.models import DESTINATION_ROUTES, Call, Platform, Route, Stage
from regulator.platforms.base import BadHookRequest, HookRequest, SignatureError

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


#: A platform's timestamp further than this from the time we received it is refused
#: (a clock gone wrong would otherwise move a leg by hours in the figures).
MAX_CLOCK_SKEW = timedelta(hours=24)
_ISO_INSTANT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.,]+(Z|[+-][0-9]{2}(:?[0-9]{2})?)")


def received_at(now: float) -> datetime:
    """The receipt time of a webhook (``HookRequest.now``) as an aware UTC datetime."""
    return datetime.fromtimestamp(now, UTC)


def _near(at: datetime, field: str, now: float) -> datetime:
    at = at.astimezone(UTC)
    if abs(at - received_at(now)) > MAX_CLOCK_SKEW:
        raise BadHookRequest(field, "more than 24 h away from the time it was received")
    return at


def iso_instant(value: object, field: str, now: float) -> datetime | None:
    """An ISO 8601 instant with its offset (``2026-11-24T21:00:25+01:00``, ``…Z``) as
    UTC; None when absent. A time without an offset (whose zone would be a guess) or
    with other than ASCII digits is a :class:`BadHookRequest` naming ``field``."""
    raw = text(value, field)
    if raw is None:
        return None
    # fromisoformat reads other scripts' digits too ("٢٠٢٦"): ASCII only, offset required.
    if not raw.isascii() or not _ISO_INSTANT.fullmatch(raw):
        raise BadHookRequest(field, "expected an ISO 8601 time with its offset (…+01:00 or …Z)")
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        raise BadHookRequest(field, "not a valid ISO 8601 time") from None
    if at.tzinfo is None:  # unreachable: the pattern requires an offset
        raise BadHookRequest(field, "time without an offset")
    return _near(at, field, now)


def rfc2822_instant(value: object, field: str, now: float) -> datetime | None:
    """An RFC 2822 date (``Tue, 24 Nov 2026 20:00:25 +0000``, Twilio's ``Timestamp``)
    as UTC; None when absent. ``-0000`` (UTC, says RFC 2822) is read as UTC."""
    raw = text(value, field)
    if raw is None:
        return None
    if not raw.isascii():
        raise BadHookRequest(field, "expected an RFC 2822 date")
    try:
        at = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise BadHookRequest(field, "expected an RFC 2822 date") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return _near(at, field, now)


def platform_instant(value: object, field: str, now: float) -> datetime:
    """The platform's own timestamp, RFC 2822 or ISO 8601, else the receipt time."""
    raw = text(value, field)
    if raw is None:
        return received_at(now)
    at = iso_instant(raw, field, now) if raw[:1].isdigit() else rfc2822_instant(raw, field, now)
    return at if at is not None else received_at(now)


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


# ------------------------------------------------------------ timestamps

_EPOCH_DIGITS = re.compile(r"[0-9]{1,19}")
#: Instants a PBX may report (Unix seconds): anything outside is a broken clock or
#: an unset variable's zero, never a call.
_EPOCH_MIN_S = 946_684_800  # 2000-01-01
_EPOCH_MAX_S = 4_102_444_800  # 2100-01-01


def epoch(value: object, field: str, *, per_second: int = 1) -> datetime | None:
    """A PBX's own timestamp (``${EPOCH}``, FreeSWITCH's ``*_uepoch``) as an aware UTC
    datetime; None when absent or empty, or zero (FreeSWITCH's "never happened").

    ASCII digits only (``str.isdigit`` would take ``"²"`` or Arabic-Indic digits);
    ``per_second``: 1 for seconds, 1_000_000 for microseconds.
    """
    raw = text(value, field)
    if raw is None:
        return None
    if not _EPOCH_DIGITS.fullmatch(raw):
        raise BadHookRequest(field, "expected a Unix time (ASCII digits)")
    count = int(raw)
    if count == 0:
        return None
    seconds = count / per_second
    if not _EPOCH_MIN_S <= seconds < _EPOCH_MAX_S:
        raise BadHookRequest(field, "Unix time out of range")
    whole, fraction = divmod(count, per_second)
    return datetime.fromtimestamp(whole, UTC).replace(
        microsecond=fraction * 1_000_000 // per_second
    )


def received(req: HookRequest) -> datetime:
    """When the request arrived (``req.now``): a leg's instant when the platform sends
    none of its own."""
    return received_at(req.now)


#: The dialled lines by their wire name, in the order error messages list them.
_DIALLED: dict[str, Route] = {r.value: r for r in sorted(DESTINATION_ROUTES, key=lambda r: r.value)}


def leg_target(value: object, field: str = "target") -> Route:
    """The line a leg report is about (our own ``target=``): a destination route."""
    raw = text(value, field)
    if raw is None:
        raise BadHookRequest(field, "missing (the line the leg is on)")
    route = _DIALLED.get(raw)
    if route is None:
        raise BadHookRequest(field, f"expected one of {', '.join(_DIALLED)} (a dialled line)")
    return route
