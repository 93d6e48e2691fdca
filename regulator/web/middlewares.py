"""Middlewares: request id and log context, one error → HTTP mapping, security headers,
per-client rate limiting of the API and consoles."""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from regulator.errors import RegulatorError
from regulator.logs import get_logger

log = get_logger("regulator.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)


def json_response(
    data: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response serialised with orjson."""
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        content_type="application/json",
        headers=headers,
    )


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id (from ``X-Request-Id`` or fresh) to every log line of the request."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = (
        incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response = await handler(request)
    response.headers["X-Request-Id"] = request_id
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The single place where errors become HTTP answers (JSON, French message, no trace)."""
    try:
        return await handler(request)
    except RegulatorError as exc:
        return json_response(exc.as_json(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status >= 400 and request.path.startswith("/api/"):
            message = {
                404: "Ressource introuvable.",
                405: "Méthode non autorisée.",
                413: "Requête trop volumineuse.",
            }.get(exc.status, exc.reason)
            return json_response(
                {"error": exc.reason.lower().replace(" ", "_"), "message": message},
                status=exc.status,
                headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
            )
        raise
    except Exception:
        log.exception("unhandled_error", path=request.path, method=request.method)
        return json_response(
            {"error": "internal_error", "message": "Erreur interne ; l'incident est journalisé."},
            status=500,
        )


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Headers that keep browsers from sniffing, framing or leaking our pages."""
    response = await handler(request)
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path.startswith(("/console", "/api/")):
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cache-Control", "no-store")
        headers.setdefault("Content-Security-Policy", _CSP)
    return response


#: Never throttled: telephony must always get its answer, and monitoring must see us.
_UNLIMITED_PREFIXES = ("/hooks/",)
_UNLIMITED_PATHS = frozenset({"/metrics", "/healthz", "/readyz"})


class TokenBuckets:
    """One token bucket per client: ``per_minute`` requests a minute on average, bursts
    of up to ``per_minute``. Bounded memory: the least recently seen clients are forgotten
    beyond ``max_clients`` (a forgotten client starts again with a full bucket)."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, stamp

    def take(self, client: str) -> float:
        """Spend one token; 0.0 if allowed, else the seconds until one is available."""
        now = self._clock()
        tokens, stamp = self._buckets.pop(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


def _client_key(request: web.Request) -> str:
    """The token's name when the request carries a valid token, else the remote address."""
    from regulator.auth import COOKIE
    from regulator.web import keys

    tokens = request.app.get(keys.TOKENS)
    if tokens is not None:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        who = tokens.authenticate(token or request.cookies.get(COOKIE))
        if who is not None:
            return f"token:{who.name}"
    return f"ip:{request.remote or '?'}"


def rate_limit(per_minute: int) -> Middleware:
    """Per-client token bucket on everything but the webhooks, metrics and health checks;
    429 with ``Retry-After`` and a French JSON message. ``per_minute <= 0`` disables it."""
    buckets = TokenBuckets(max(per_minute, 1))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if per_minute <= 0 or path in _UNLIMITED_PATHS or path.startswith(_UNLIMITED_PREFIXES):
            return await handler(request)
        wait = buckets.take(_client_key(request))
        if wait > 0:
            retry_after = max(1, math.ceil(wait))
            log.warning("rate_limited", path=path, retry_after_s=retry_after)
            return json_response(
                {
                    "error": "too_many_requests",
                    "message": f"Trop de requêtes : réessayez dans {retry_after} s.",
                },
                status=429,
                headers={"Retry-After": str(retry_after)},
            )
        return await handler(request)

    return middleware
