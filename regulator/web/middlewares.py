"""Middlewares: request id and log context, security headers, the API's authentication,
and each sub-app's error mapping (JSON for the API, French HTML pages for the consoles).
Rate limits are in :mod:`regulator.web.limits`, sessions in :mod:`regulator.web.sessions`.

Which middleware runs where is decided by the route table (:mod:`regulator.web.routes`),
never by looking at ``request.path`` here.
"""

from __future__ import annotations

import itertools
import os
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


class RequestIds:
    """Fresh request ids: a random prefix per process and a counter, 32 hex digits
    like a uuid4's. Unique, which is all a correlation id needs, without ``uuid4``'s
    ``os.urandom`` system call per request (2 % of a webhook's CPU, py-spy); a forked
    worker draws its own prefix (``os.register_at_fork``)."""

    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self._prefix = os.urandom(10).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"


new_request_id = RequestIds()


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id (from ``X-Request-Id`` or fresh) to every log line of the request."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id = (
        incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else new_request_id()
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    response = await handler(request)
    response.headers["X-Request-Id"] = request_id
    return response


def _internal_error(request: web.Request) -> web.Response:
    log.exception("unhandled_error", path=request.path, method=request.method)
    return json_response(
        {"error": "internal_error", "message": "Erreur interne ; l'incident est journalisé."},
        status=500,
    )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The root app's errors (health, metrics, and whatever a sub-app lets through):
    a :class:`RegulatorError` as its JSON, anything unexpected as a French 500."""
    try:
        return await handler(request)
    except RegulatorError as exc:
        return json_response(exc.as_json(), status=exc.status)
    except web.HTTPException:
        raise
    except Exception:
        return _internal_error(request)


_HTTP_MESSAGES = {
    404: "Ressource introuvable.",
    405: "Méthode non autorisée.",
    413: "Requête trop volumineuse.",
}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The API's errors: every one as JSON with a French message, no trace (aiohttp's
    own 404/405/413 included)."""
    try:
        return await handler(request)
    except RegulatorError as exc:
        return json_response(exc.as_json(), status=exc.status)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_response(
            {
                "error": exc.reason.lower().replace(" ", "_"),
                "message": _HTTP_MESSAGES.get(exc.status, exc.reason),
            },
            status=exc.status,
            headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"},
        )
    except Exception:
        return _internal_error(request)


#: Renders a French HTML error page: (request, status, title, message).
ErrorPage = Callable[[web.Request, int, str, str], web.Response]

_PAGE_TITLES = {
    400: "Requête invalide",
    401: "Connexion requise",
    403: "Accès refusé",
    404: "Page introuvable",
    409: "Action impossible",
    422: "Formulaire invalide",
    429: "Trop de requêtes",
    503: "Service indisponible",
}


def html_errors(page: ErrorPage, json_handlers: frozenset[Handler]) -> Middleware:
    """The consoles' errors: any :class:`RegulatorError` as a French HTML page, except
    on the consoles' JSON endpoints (``json_handlers``), which answer JSON."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except RegulatorError as exc:
            if request.match_info.handler in json_handlers:
                return json_response(exc.as_json(), status=exc.status)
            title = _PAGE_TITLES.get(exc.status, "Erreur")
            return page(request, exc.status, title, exc.message)

    return middleware


def same_origin_writes(page: ErrorPage) -> Middleware:
    """CSRF for the consoles' own form posts (sign-in, sign-out): a write must come
    from one of our pages (Origin, else Referer), or it gets a French 403 page."""
    from regulator.web.access import SAFE_METHODS, same_origin

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method in SAFE_METHODS or same_origin(request):
            return await handler(request)
        return page(
            request,
            403,
            "Requête refusée",
            "L'origine de la requête n'a pas pu être vérifiée : ouvrez la page de connexion "
            "de ce service et réessayez.",
        )

    return middleware


def bearer_auth(public: frozenset[Handler]) -> Middleware:
    """The API's authentication: every route but the ``public`` ones needs a token
    (401 otherwise, before the handler runs); handlers read the caller with
    :func:`regulator.web.access.principal`."""
    from regulator.web.access import PRINCIPAL, authenticate

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if match.http_exception is None and match.handler not in public:
            request[PRINCIPAL] = authenticate(request)
        return await handler(request)

    return middleware


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Headers that keep browsers from sniffing or leaking our pages (every answer)."""
    response = await handler(request)
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    return response


@web.middleware
async def page_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What the API and the consoles add: no framing, no caching, a strict CSP."""
    response = await handler(request)
    headers = response.headers
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Cache-Control", "no-store")
    headers.setdefault("Content-Security-Policy", _CSP)
    return response
