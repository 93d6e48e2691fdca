"""JSON API (``/api/v1``), health, readiness and metrics endpoints."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from regulator.core.indicators import valid_month
from regulator.errors import BadRequest, Forbidden
from regulator.exports import XLSX_MEDIA_TYPE
from regulator.ports import StoreError
from regulator.reporting import annual_export, export_file, month_report, report_file
from regulator.web import keys

# Re-exported: authentication and CSRF moved to access.py, beside require_mmg.
from regulator.web.access import CSRF_HEADER, Permission, csrf_token, principal, require_mmg
from regulator.web.middlewares import json_response


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: protocols loaded and not shutting down.

    The store is reported but does not make the instance unready: with the store
    down, webhooks are still answered (fail-safe) and calls spooled, whereas taking
    every replica out of the load balancer at once would drop the calls themselves.
    """
    app = request.config_dict
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
    app = request.config_dict
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
    _, proto = require_mmg(request, Permission.REPORT)
    mmg = proto.id
    month = request.match_info["month"]
    if not valid_month(month):
        raise BadRequest(
            f"Paramètre month invalide {month!r} : format attendu AAAA-MM.",
            field="month",
            value=month,
        )
    fmt = _format(request, ("json", "csv", "md", "xlsx"))
    report = await month_report(
        request.config_dict[keys.STORE],
        proto,
        month,
        short_abandon_s=request.config_dict[keys.SETTINGS].short_abandon_s,
    )
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
    if not (re.fullmatch(r"[0-9]{4}", text) and int(text) >= 2000):
        raise BadRequest(
            f"Année invalide {text!r} : format attendu AAAA.", field="year", value=text
        )
    fmt = _format(request, ("json", "csv", "xlsx"))
    export = await annual_export(
        request.config_dict[keys.STORE],
        request.config_dict[keys.PROTOCOLS].current,
        int(text),
        request.config_dict[keys.CLOCK].now(),
        short_abandon_s=request.config_dict[keys.SETTINGS].short_abandon_s,
    )
    if fmt == "json":
        return json_response(export)
    data = await asyncio.to_thread(export_file, export, fmt)
    return _download(data, fmt, f"export-{text}")


__all__ = [
    "CSRF_HEADER",
    "csrf_token",
    "healthz",
    "metrics_endpoint",
    "monthly_report",
    "principal",
    "protocol_history",
    "readyz",
    "yearly_export",
]


async def protocol_history(request: web.Request) -> web.Response:
    """``GET /api/v1/protocols/{mmg}/history`` (``?limit=``): the versions, newest first.

    The same readers as the indicators (coordinator, the MMG's desk, regulators).
    The documents themselves stay out (``regulator explain`` reads them)."""
    _, proto = require_mmg(request, Permission.PROTOCOL)
    raw_limit = request.query.get("limit", "100")
    if not re.fullmatch(r"[0-9]{1,4}", raw_limit) or not 1 <= int(raw_limit) <= 1000:
        raise BadRequest(
            f"Limite invalide {raw_limit!r} : un entier de 1 à 1000.",
            field="limit",
            value=raw_limit,
        )
    store = request.config_dict[keys.STORE]
    versions = await store.protocol_history(proto.id, limit=int(raw_limit))
    in_force = request.config_dict[keys.PROTOCOLS].versions().get(proto.id)
    return json_response(
        {
            "mmg": proto.id,
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
