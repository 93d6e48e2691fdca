"""JSON API (``/api/v1``), health, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import hmac

from aiohttp import web

from regulator.auth import COOKIE, DEV_PRINCIPAL, Principal
from regulator.core.indicators import valid_month
from regulator.errors import BadRequest, Forbidden, NotFound, Unauthorized
from regulator.exports import XLSX_MEDIA_TYPE
from regulator.ports import StoreError
from regulator.reporting import annual_export, export_file, month_report, report_file
from regulator.web import keys
from regulator.web.middlewares import json_response

#: Header the consoles send with cookie-authenticated writes (see :func:`csrf_token`).
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def csrf_token(token: str) -> str:
    """The anti-CSRF value of a console session: sha256("csrf:" + token).

    Derived from the cookie's token rather than a per-process secret, so every
    replica accepts it; another site can neither read the cookie nor compute it.
    """
    return hashlib.sha256(b"csrf:" + token.encode()).hexdigest()


def principal(request: web.Request) -> Principal:
    """The authenticated caller (Bearer token or console cookie), or 401.

    A write authenticated by the cookie must also carry ``X-CSRF-Token`` (403
    otherwise): browsers attach cookies to cross-site requests, never that header.
    """
    tokens = request.app[keys.TOKENS]
    settings = request.app[keys.SETTINGS]
    if tokens is None:
        if settings.insecure_dev:
            return DEV_PRINCIPAL
        raise Unauthorized(
            "API désactivée : aucun fichier de jetons configuré (REGULATOR_TOKENS_FILE)."
        )
    header = request.headers.get("Authorization", "")
    from_cookie = header[:7].lower() != "bearer "
    token = request.cookies.get(COOKIE) if from_cookie else header[7:].strip()
    who = tokens.authenticate(token)
    if who is None or token is None:
        raise Unauthorized("Jeton d'accès manquant ou invalide.")
    if from_cookie and request.method not in _SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "").encode(errors="replace")
        if not hmac.compare_digest(sent, csrf_token(token).encode()):
            raise Forbidden(
                "Requête refusée : en-tête X-CSRF-Token manquant ou invalide "
                "(rechargez la console et réessayez)."
            )
    return who


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: protocols loaded and not shutting down.

    The store is reported but does not make the instance unready: with the store
    down, webhooks are still answered (fail-safe) and calls spooled, whereas taking
    every replica out of the load balancer at once would drop the calls themselves.
    """
    app = request.app
    lifecycle = app[keys.LIFECYCLE]
    protocols = app[keys.PROTOCOLS]
    checks: dict[str, object] = {
        "store": "ok",
        "protocols": len(protocols.current),
        "shutting_down": lifecycle.shutting_down,
        "spool_pending": app[keys.WRITER].spooled,
    }
    ready = not lifecycle.shutting_down and len(protocols.current) > 0
    try:
        await app[keys.STORE].ping()
    except (StoreError, OSError) as exc:
        checks["store"] = f"erreur : {exc}"
    if protocols.last_error:
        checks["protocols_error"] = "dernier rechargement refusé (voir les journaux)"
    checks["status"] = "ready" if ready else "not_ready"
    return json_response(checks, status=200 if ready else 503)


async def metrics_endpoint(request: web.Request) -> web.Response:
    """Prometheus exposition; refreshes ``regulator_mmg_open`` at scrape time."""
    app = request.app
    metrics = app[keys.METRICS]
    now = app[keys.CLOCK].now()
    for proto in app[keys.PROTOCOLS].current:
        metrics.mmg_open.labels(mmg=proto.id).set(1 if proto.schedule.state(now).open else 0)
    body, content_type = metrics.exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


#: Media type of each downloadable format.
_MEDIA_TYPES = {
    "json": "application/json",
    "csv": "text/csv; charset=utf-8",
    "md": "text/markdown; charset=utf-8",
    "xlsx": XLSX_MEDIA_TYPE,
}


def _format(request: web.Request, allowed: tuple[str, ...]) -> str:
    fmt = request.query.get("format", "json")
    if fmt not in allowed:
        raise BadRequest(
            f"Format inconnu {fmt!r} : {', '.join(allowed[:-1])} ou {allowed[-1]}.",
            field="format",
            value=fmt,
        )
    return fmt


def _download(data: bytes, fmt: str, filename: str) -> web.Response:
    headers = {"Content-Type": _MEDIA_TYPES[fmt]}
    if fmt in ("csv", "xlsx"):
        headers["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    return web.Response(body=data, headers=headers)


async def monthly_report(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/reports/{mmg}/{YYYY-MM}`` (``?format=csv|md|xlsx``)."""
    who = principal(request)
    mmg = request.match_info["mmg"]
    month = request.match_info["month"]
    proto = request.app[keys.PROTOCOLS].current.get(mmg)
    if proto is None:
        raise NotFound(f"MMG inconnue : {mmg!r}.", field="mmg", value=mmg)
    if not who.can_report(mmg):
        raise Forbidden(f"Le jeton « {who.name} » ne donne pas accès aux indicateurs de {mmg}.")
    if not valid_month(month):
        raise BadRequest(
            f"Mois invalide {month!r} : format attendu AAAA-MM.", field="month", value=month
        )
    fmt = _format(request, ("json", "csv", "md", "xlsx"))
    report = await month_report(request.app[keys.STORE], mmg, month)
    if fmt == "json":
        return json_response(report)
    # Off the event loop: building a workbook takes tens of milliseconds, webhooks wait.
    data = await asyncio.to_thread(report_file, report, fmt, proto.name)
    return _download(data, fmt, f"{mmg}-{month}")


async def yearly_export(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/exports/{YYYY}`` (``?format=json|csv|xlsx``): every MMG's year,
    for the ARS; coordinators only (it spans every MMG)."""
    who = principal(request)
    if not who.can_export():
        raise Forbidden(
            f"Le jeton « {who.name} » ne donne pas accès à l'export annuel (rôle coordinator)."
        )
    text = request.match_info["year"]
    if not (len(text) == 4 and text.isdigit() and int(text) >= 2000):
        raise BadRequest(
            f"Année invalide {text!r} : format attendu AAAA.", field="year", value=text
        )
    fmt = _format(request, ("json", "csv", "xlsx"))
    export = await annual_export(
        request.app[keys.STORE],
        request.app[keys.PROTOCOLS].current,
        int(text),
        request.app[keys.CLOCK].now(),
    )
    if fmt == "json":
        return json_response(export)
    data = await asyncio.to_thread(export_file, export, fmt)
    return _download(data, fmt, f"export-{text}")


def setup_api(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/api/v1/reports/{mmg}/{month}", monthly_report)
    app.router.add_get("/api/v1/exports/{year}", yearly_export)
