"""JSON API (``/api/v1``), health, readiness and metrics endpoints."""

from __future__ import annotations

import hashlib
import hmac
import re

from aiohttp import web

from regulator.auth import COOKIE, DEV_PRINCIPAL, Principal
from regulator.core.indicators import build_report, report_csv, report_markdown, valid_month
from regulator.errors import BadRequest, Forbidden, NotFound, Unauthorized
from regulator.ports import StoreError
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


async def monthly_report(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/reports/{mmg}/{YYYY-MM}`` (``?format=csv|md``)."""
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
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv", "md"):
        raise BadRequest(f"Format inconnu {fmt!r} : json, csv ou md.", field="format", value=fmt)
    store = request.app[keys.STORE]
    counters = await store.call_counters(mmg, month)
    visits = await store.visits(mmg, month)
    report = build_report(mmg, month, counters, visits)
    if fmt == "csv":
        return web.Response(
            text=report_csv(report),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{mmg}-{month}.csv"'},
        )
    if fmt == "md":
        return web.Response(
            text=report_markdown(report, proto.name), content_type="text/markdown", charset="utf-8"
        )
    return json_response(report)


async def protocol_history(request: web.Request) -> web.Response:
    """``GET /api/v1/protocols/{mmg}/history`` (``?limit=``): the versions, newest first.

    The same readers as the indicators (coordinator, the MMG's desk, regulators).
    The documents themselves stay out (``regulator explain`` reads them)."""
    who = principal(request)
    mmg = request.match_info["mmg"]
    registry = request.app[keys.PROTOCOLS]
    if registry.current.get(mmg) is None:
        raise NotFound(f"MMG inconnue : {mmg!r}.", field="mmg", value=mmg)
    if not who.can_report(mmg):
        raise Forbidden(f"Le jeton « {who.name} » ne donne pas accès au protocole de {mmg}.")
    raw_limit = request.query.get("limit", "100")
    if not re.fullmatch(r"[0-9]{1,4}", raw_limit) or not 1 <= int(raw_limit) <= 1000:
        raise BadRequest(
            f"Limite invalide {raw_limit!r} : un entier de 1 à 1000.",
            field="limit",
            value=raw_limit,
        )
    versions = await request.app[keys.STORE].protocol_history(mmg, limit=int(raw_limit))
    in_force = registry.versions().get(mmg)
    return json_response(
        {
            "mmg": mmg,
            "current": in_force.version if in_force is not None else None,
            "versions": [
                {
                    "version": v.version,
                    "loaded_at": v.loaded_at.isoformat(),
                    "file": v.file,
                    "file_sha256": v.file_sha256,
                    "roster_file": v.roster_file or None,
                    "roster_sha256": v.roster_sha256 or None,
                    "summary": list(v.summary),
                    "current": in_force is not None and v.version == in_force.version,
                }
                for v in versions
            ],
        }
    )


def setup_api(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/api/v1/reports/{mmg}/{month}", monthly_report)
    app.router.add_get("/api/v1/protocols/{mmg}/history", protocol_history)
