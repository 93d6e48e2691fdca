"""JSON API (``/api/v1``), health, readiness and metrics endpoints."""

from __future__ import annotations

import re

from aiohttp import web

from regulator.core.indicators import build_report, report_csv, report_markdown, valid_month
from regulator.errors import BadRequest
from regulator.ports import StoreError
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


async def monthly_report(request: web.Request) -> web.StreamResponse:
    """``GET /api/v1/reports/{mmg}/{YYYY-MM}`` (``?format=csv|md``)."""
    _, proto = require_mmg(request, Permission.REPORT)
    mmg = proto.id
    month = request.match_info["month"]
    if not valid_month(month):
        raise BadRequest(
            f"Paramètre month invalide {month!r} : format attendu AAAA-MM.",
            field="month",
            value=month,
        )
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "csv", "md"):
        raise BadRequest(f"Format inconnu {fmt!r} : json, csv ou md.", field="format", value=fmt)
    store = request.config_dict[keys.STORE]
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


__all__ = [
    "CSRF_HEADER",
    "csrf_token",
    "healthz",
    "metrics_endpoint",
    "monthly_report",
    "principal",
    "protocol_history",
    "readyz",
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
