"""Signed JSON webhooks to regulation software (centre 15 / SAS).

Each event is POSTed as JSON to the target's URL::

    POST /regulator HTTP/1.1
    Content-Type: application/json
    X-Regulator-Event-Id: 0b6c…          (stable: de-duplicate on it)
    X-Regulator-Event-Kind: referral.created
    X-Regulator-Signature: t=1763931600,v1=5f2c…

    {"event_id": "0b6c…", "kind": "referral.created", "mmg": "nimes",
     "occurred_at": "2026-11-23T20:10:00+00:00", "payload": {…}}

``v1`` is the hex HMAC-SHA256 of ``f"{t}.{body}"`` with the shared secret
(``secret_env`` of the target), ``t`` the Unix time of sending. Any 2xx answer
means delivered; anything else (or no answer within ``timeout_s``) is retried
with backoff, so the same event may arrive more than once: de-duplicate on
``event_id``.

Receiving side, copy-paste (standard library only)::

    import hashlib, hmac, time

    def verify_signature(secret: str, header: str, body: bytes,
                         now: float, tolerance_s: float = 300) -> bool:
        try:
            fields = [p.split("=", 1) for p in header.split(",")]
            t = next(v for k, v in fields if k.strip() == "t")
            sigs = [v.strip() for k, v in fields if k.strip() == "v1"]
            ts = int(t)
        except (ValueError, StopIteration):
            return False
        if abs(now - ts) > tolerance_s:
            return False
        expected = hmac.new(secret.encode(), f"{ts}.".encode() + body,
                            hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(expected, s) for s in sigs)

    # e.g. in aiohttp:
    # body = await request.read()
    # if not verify_signature(SECRET, request.headers.get("X-Regulator-Signature", ""),
    #                         body, time.time()):
    #     raise web.HTTPUnauthorized()
    # if seen(request.headers["X-Regulator-Event-Id"]): return web.Response(status=200)

Use the raw body bytes, before any JSON parsing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

import aiohttp
import orjson

from regulator.interconnect.events import OutboxEvent, WebhookTarget
from regulator.interconnect.outbox import Result, SendResult
from regulator.logs import get_logger
from regulator.ports import Clock

log = get_logger("regulator.webhooks")

SIGNATURE_HEADER = "X-Regulator-Signature"
EVENT_ID_HEADER = "X-Regulator-Event-Id"
EVENT_KIND_HEADER = "X-Regulator-Event-Kind"
_USER_AGENT = "regulator-outbox/1"


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Regulator-Signature`` header value for ``body`` sent at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify_signature(
    secret: str | bytes, header: str, body: bytes, now: float, tolerance_s: float = 300
) -> bool:
    """True if ``header`` is a valid signature of ``body`` made within ``tolerance_s``
    of ``now`` (Unix seconds). Several ``v1=`` values are accepted (secret rotation);
    comparison is constant-time."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates or abs(now - timestamp) > tolerance_s:
        return False
    key_bytes = secret.encode() if isinstance(secret, str) else secret
    expected = hmac.new(key_bytes, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    matched = False
    for candidate in candidates:  # no early exit: same time whichever one matches
        matched |= hmac.compare_digest(expected, candidate)
    return matched


class WebhookSender:
    """Sends events of one :class:`WebhookTarget` through a shared aiohttp session."""

    def __init__(
        self,
        target: WebhookTarget,
        secret: str,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> None:
        self.target = target
        self.url = str(target.url)
        self.secret = secret.encode()
        self.session = session
        self.clock = clock
        self.timeout = aiohttp.ClientTimeout(total=target.timeout_s)

    def body(self, event: OutboxEvent) -> bytes:
        return orjson.dumps(self.target.document(event))

    async def send(self, event: OutboxEvent) -> SendResult:
        body = self.body(event)
        timestamp = int(self.clock.now().timestamp())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            SIGNATURE_HEADER: sign(self.secret, timestamp, body),
            EVENT_ID_HEADER: event.event_id,
            EVENT_KIND_HEADER: event.kind,
        }
        try:
            async with self.session.post(
                self.url, data=body, headers=headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                status = response.status
                # Drain a little so the connection can be reused; the content is not used.
                await response.content.read(4096)
        except TimeoutError:
            return SendResult(Result.RETRY, f"timeout after {self.target.timeout_s:g} s")
        except aiohttp.ClientError as exc:
            return SendResult(Result.RETRY, f"{type(exc).__name__}: {exc}")
        if 200 <= status < 300:
            return SendResult(Result.DELIVERED)
        return SendResult(Result.RETRY, f"HTTP {status}")


def build_webhook_senders(
    targets: Mapping[str, WebhookTarget],
    session: aiohttp.ClientSession,
    clock: Clock,
    environ: Mapping[str, str] | None = None,
) -> dict[str, WebhookSender]:
    """One sender per webhook target; secrets read from the environment now."""
    return {
        name: WebhookSender(target, target.secret(environ), session, clock)
        for name, target in targets.items()
    }


__all__ = [
    "EVENT_ID_HEADER",
    "EVENT_KIND_HEADER",
    "SIGNATURE_HEADER",
    "WebhookSender",
    "build_webhook_senders",
    "sign",
    "verify_signature",
]
