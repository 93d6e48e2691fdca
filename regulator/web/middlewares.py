"""Middlewares: request id and log context, one error → HTTP mapping, security headers."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import orjson
import structlog
from aiohttp import web

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
