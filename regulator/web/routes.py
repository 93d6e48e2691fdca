"""The whole URL map: every path, method and handler of the service, in one table.

Paths are a contract (DESIGN.md §3). The table decides which app serves a path (the
root or a sub-app), and so which middlewares apply, never the middlewares looking at
``request.path``:

- the root app: ``/healthz``, ``/readyz``, ``/metrics`` (never throttled);
- ``/hooks``: signatures, no rate limit, always a valid platform answer (fail-safe);
- ``/api/v1``: bearer auth (but the ``public`` routes), JSON errors in French, rate limit;
- ``/console``: server-side sessions (web/sessions.py), same-origin form posts, rate
  limit (but sign-in: ``limited=False``), French HTML error pages (JSON on the
  consoles' own ``.json`` endpoints).

The OpenAPI document of ``/api/v1`` is generated from the same table
(:mod:`regulator.web.openapi`).
"""

from __future__ import annotations

from typing import Final

from aiohttp import web
from pydantic import BaseModel

from regulator.web import api, consoles, figures, interconnect, keys, referrals, sse
from regulator.web.endpoints import Doc, Endpoint, Param
from regulator.web.hooks import HOOK_ROUTES, Hooks
from regulator.web.limits import LIMITER, Limiter, rate_limit
from regulator.web.middlewares import (
    bearer_auth,
    html_errors,
    json_errors,
    page_headers,
    same_origin_writes,
)
from regulator.web.openapi import openapi
from regulator.web.responses import (
    DeadLettersOut,
    RedriveIn,
    RedrivenOut,
    ReferralListOut,
    ReferralOut,
    ReportOut,
    VisitListOut,
    VisitOut,
)
from regulator.web.schemas import OutcomeIn, ReferralIn, VisitIn
from regulator.web.sessions import identify_caller

HOOKS_PREFIX: Final = "/hooks"
API_PREFIX: Final = "/api/v1"
CONSOLE_PREFIX: Final = "/console"


# ----------------------------------------------------------------- parameters
_IDEM = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x20-\\x7e]+$"},
)
_MONTH_SCHEMA = {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"}
_MMG = Param("mmg", "path", {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"}, True)
_MONTH = Param("month", "path", _MONTH_SCHEMA, True)
_ID = Param("id", "path", {"type": "string", "maxLength": 64}, True)
_TARGET = Param("target", "query", {"type": "string"})
_PERIOD = Param(
    "period", "path", {"type": "string", "pattern": "^[0-9]{4}(-(0[1-9]|1[0-2]))?$"}, True
)


def _transition(action: str, summary: str, body: type[BaseModel] | None = None) -> Doc:
    return Doc(
        summary,
        response=ReferralOut,
        body=body,
        params=(_ID, _IDEM),
        errors=(401, 403, 404, 409, 422) if body else (401, 403, 404, 409),
        path=f"{API_PREFIX}/referrals/{{id}}/{action}",
    )


ROOT: Final[tuple[Endpoint, ...]] = (
    Endpoint("GET", "/healthz", api.healthz),
    Endpoint("GET", "/readyz", api.readyz),
    Endpoint("GET", "/metrics", api.metrics_endpoint),
)

API: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        "GET",
        "/api/v1/openapi.json",
        openapi,
        public=True,
        docs=(Doc("Ce document (OpenAPI 3.1)", public=True),),
    ),
    Endpoint(
        "GET",
        "/api/v1/reports/{mmg}/{month}",
        api.monthly_report,
        docs=(
            Doc(
                "Indicateurs mensuels",
                response=ReportOut,
                params=(
                    _MMG,
                    _MONTH,
                    Param(
                        "format", "query", {"type": "string", "enum": ["json", "csv", "md", "xlsx"]}
                    ),
                ),
                errors=(400, 401, 403, 404),
                also={200: "text/csv (format=csv) ou text/markdown (format=md)"},
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/exports/{year}",
        api.yearly_export,
        docs=(
            Doc(
                "Export annuel pour l'ARS (toutes les MMG : 12 mois, total, part régulée)",
                params=(
                    Param("year", "path", {"type": "string", "pattern": "^[0-9]{4}$"}, True),
                    Param("format", "query", {"type": "string", "enum": ["json", "csv", "xlsx"]}),
                ),
                errors=(400, 401, 403),
                also={200: "text/csv (format=csv) ou classeur XLSX (format=xlsx)"},
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/figures/{mmg}/{period}",
        figures.get_figures,
        docs=(
            Doc(
                "Données déclarées (passages aux urgences d'un mois, coûts d'une année)",
                params=(_MMG, _PERIOD),
                errors=(400, 401, 403, 404),
            ),
        ),
    ),
    Endpoint(
        "PUT",
        "/api/v1/figures/{mmg}/{period}",
        figures.put_figures,
        docs=(
            Doc(
                "Saisir ou corriger des données déclarées (auditées : qui, quand, valeur "
                "précédente)",
                params=(_MMG, _PERIOD),
                errors=(400, 401, 403, 404, 422),
                also={201: "première saisie"},
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/protocols/{mmg}/history",
        api.protocol_history,
        docs=(
            Doc(
                "Historique des versions du protocole d'usage (la plus récente d'abord)",
                params=(
                    _MMG,
                    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ),
                errors=(400, 401, 403, 404),
            ),
        ),
    ),
    Endpoint(
        "POST",
        "/api/v1/referrals",
        referrals.create_referral,
        docs=(
            Doc(
                "Créer une orientation régulée",
                ok=201,
                response=ReferralOut,
                body=ReferralIn,
                params=(_IDEM,),
                errors=(401, 403, 409, 422),
                also={200: "Déjà créée (même Idempotency-Key)"},
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/referrals",
        referrals.list_referrals,
        docs=(
            Doc(
                "Lister les orientations",
                response=ReferralListOut,
                params=(
                    Param("mmg", "query", {"type": "string"}),
                    Param("status", "query", {"type": "string"}),
                    Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000}),
                ),
                errors=(400, 401, 403),
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/referrals/{id}",
        referrals.get_referral,
        docs=(
            Doc(
                "Lire une orientation",
                response=ReferralOut,
                params=(_ID,),
                errors=(401, 403, 404),
            ),
        ),
    ),
    Endpoint(
        "POST",
        "/api/v1/referrals/{id}/{action}",
        referrals.transition,
        docs=(
            _transition("ack", "Transition « ack » d'une orientation"),
            _transition("arrived", "Transition « arrived » d'une orientation"),
            _transition("cancel", "Transition « cancel » d'une orientation"),
            _transition("no_show", "Transition « no_show » d'une orientation"),
            _transition("outcome", "Issue de la consultation", OutcomeIn),
        ),
    ),
    Endpoint(
        "POST",
        "/api/v1/visits",
        referrals.create_visit,
        docs=(
            Doc(
                "Enregistrer un passage sans orientation",
                ok=201,
                response=VisitOut,
                body=VisitIn,
                params=(_IDEM,),
                errors=(401, 403, 409, 422),
                also={200: "Déjà enregistré"},
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/visits",
        referrals.list_visits,
        docs=(
            Doc(
                "Passages d'un mois",
                response=VisitListOut,
                params=(
                    Param("mmg", "query", {"type": "string"}, required=True),
                    Param("month", "query", _MONTH_SCHEMA),
                ),
                errors=(400, 401, 403, 404),
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/events",
        sse.events,
        docs=(
            Doc(
                "Appels, orientations, passages et décroché du jour en direct (Server-Sent Events)",
                content="text/event-stream",
                params=(
                    Param("mmg", "query", {"type": "string"}),
                    Param("last_event_id", "query", {"type": "string"}),
                    Param("Last-Event-ID", "header", {"type": "string"}),
                ),
                errors=(401, 403),
            ),
        ),
    ),
    Endpoint(
        "GET",
        "/api/v1/outbox/dead",
        interconnect.dead_letters,
        docs=(
            Doc(
                "Envois abandonnés vers les centres 15 (administrateurs)",
                response=DeadLettersOut,
                params=(_TARGET,),
                errors=(401, 403, 503),
            ),
        ),
    ),
    Endpoint(
        "POST",
        "/api/v1/outbox/redrive",
        interconnect.redrive,
        docs=(
            Doc(
                "Renvoyer des envois abandonnés (administrateurs)",
                response=RedrivenOut,
                body=RedriveIn,
                errors=(400, 401, 403, 503),
            ),
        ),
    ),
)

CONSOLE: Final[tuple[Endpoint, ...]] = (
    Endpoint("GET", "/console", consoles.console_home),
    Endpoint("GET", "/console/", consoles.console_home),
    Endpoint("GET", "/console/login", consoles.login_form, public=True, limited=False),
    Endpoint("POST", "/console/login", consoles.login, public=True, limited=False),
    Endpoint("POST", "/console/logout", consoles.logout, public=True),
    Endpoint("GET", "/console/regulation", consoles.regulation_page),
    Endpoint("GET", "/console/state.json", consoles.state_json, json=True),
    Endpoint("GET", "/console/regulation/quality.json", consoles.quality_json, json=True),
    Endpoint("POST", "/console/regulation/referrals", consoles.referral_form, json=True),
    Endpoint("GET", "/console/desk/{mmg}", consoles.desk_page),
    Endpoint("GET", "/console/desk/{mmg}/summary.json", consoles.desk_summary, json=True),
    Endpoint("GET", "/console/reports", consoles.reports_redirect),
    Endpoint("GET", "/console/reports/{mmg}", consoles.reports_page),
    Endpoint("GET", "/console/protocols/{mmg}", consoles.protocol_page),
)
#: Served before the catch-all below, which answers any other path with a French 404.
CONSOLE_STATIC: Final = "/console/static"
CONSOLE_FALLBACK: Final = Endpoint("GET", "/console/{tail:.*}", consoles.not_found, public=True)


def hook_endpoints(hooks: Hooks) -> list[Endpoint]:
    """The webhook routes: one per row of the hook table."""
    return [Endpoint(row.method, row.path, hooks.handler(row)) for row in HOOK_ROUTES]


def _add(
    app: web.Application, prefix: str, endpoints: tuple[Endpoint, ...] | list[Endpoint]
) -> None:
    for endpoint in endpoints:
        assert endpoint.path.startswith(prefix), endpoint.path
        app.router.add_route(endpoint.method, endpoint.path.removeprefix(prefix), endpoint.handler)


def mount(root: web.Application) -> None:
    """Register every route of the table: the root's and the webhooks on ``root``, the
    API's and the consoles' on a sub-app each (their own middlewares)."""
    settings = root[keys.SETTINGS]
    _add(root, "", ROOT)

    hooks = Hooks(root[keys.ROUTER], settings, root[keys.METRICS])
    root[keys.HOOKS] = hooks
    # On the root itself, not a sub-app as the API and the consoles (the webhooks have
    # no middleware of their own): one route look-up per call instead of two, and no
    # sub-app wrapping of the root's middlewares (about 4 % of a webhook's CPU).
    _add(root, "", hook_endpoints(hooks))

    # One set of budgets across the API and the consoles (web/limits.py); the caller
    # (token, console session or nobody) is found first, for the limiter and the auth.
    root[LIMITER] = Limiter(settings.rate_limit_per_minute, settings.trusted_networks())
    api_app = web.Application(
        middlewares=[
            page_headers,
            identify_caller,
            rate_limit(frozenset(e.handler for e in API if not e.limited)),
            json_errors,
            bearer_auth(frozenset(e.handler for e in API if e.public)),
        ]
    )
    _add(api_app, API_PREFIX, API)
    root.add_subapp(API_PREFIX, api_app)

    page = consoles.error_response
    console_app = web.Application(
        middlewares=[
            page_headers,
            identify_caller,
            rate_limit(frozenset(e.handler for e in CONSOLE if not e.limited), page),
            html_errors(page, frozenset(e.handler for e in CONSOLE if e.json)),
            same_origin_writes(page),
        ]
    )
    consoles.setup_consoles(console_app)
    _add(console_app, CONSOLE_PREFIX, CONSOLE)
    console_app.router.add_static(CONSOLE_STATIC.removeprefix(CONSOLE_PREFIX), consoles.STATIC_DIR)
    _add(console_app, CONSOLE_PREFIX, (CONSOLE_FALLBACK,))
    root.add_subapp(CONSOLE_PREFIX, console_app)
