"""``GET /api/v1/openapi.json``: the API described from the same pydantic models it validates."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from regulator import __version__
from regulator.web.middlewares import json_response
from regulator.web.schemas import OutcomeIn, ReferralIn, VisitIn

_ERROR = {"$ref": "#/components/schemas/Error"}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
        },
    }


def _responses(ok: str, *codes: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        ok: {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}
    }
    texts = {
        400: "Paramètre invalide",
        401: "Jeton manquant ou invalide",
        403: "Rôle insuffisant",
        404: "Introuvable",
        409: "Transition impossible",
        422: "Corps invalide (champ nommé)",
    }
    for code in codes:
        out[str(code)] = {
            "description": texts[code],
            "content": {"application/json": {"schema": _ERROR}},
        }
    return out


_IDEM = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": "^[\\x20-\\x7e]+$"},
}
_MMG = {
    "name": "mmg",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,62}$"},
}
_PERIOD = {
    "name": "period",
    "in": "path",
    "required": True,
    "description": "AAAA-MM : passages aux urgences du mois ; AAAA : coûts de l'année",
    "schema": {"type": "string", "pattern": "^[0-9]{4}(-(0[1-9]|1[0-2]))?$"},
}
_MONTH = {
    "name": "month",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"},
}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}


def build_openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``/api/v1``."""
    schemas: dict[str, Any] = {}
    for model in (ReferralIn, OutcomeIn, VisitIn):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        for name, sub in schema.pop("$defs", {}).items():
            schemas[name] = sub
        schemas[model.__name__] = schema
    schemas["Error"] = {
        "type": "object",
        "required": ["error", "message"],
        "properties": {"error": {"type": "string"}, "message": {"type": "string"}},
    }
    transitions = {}
    for action in ("ack", "arrived", "cancel", "no_show"):
        transitions[f"/api/v1/referrals/{{id}}/{action}"] = {
            "post": {
                "summary": f"Transition « {action} » d'une orientation",
                "parameters": [_ID, _IDEM],
                "responses": _responses("200", 401, 403, 404, 409),
            }
        }
    paths: dict[str, Any] = {
        "/api/v1/referrals": {
            "post": {
                "summary": "Créer une orientation régulée",
                "parameters": [_IDEM],
                "requestBody": _body(ReferralIn),
                "responses": {
                    **_responses("201", 401, 403, 422),
                    "200": {"description": "Déjà créée (même Idempotency-Key)"},
                },
            },
            "get": {
                "summary": "Lister les orientations",
                "parameters": [
                    {"name": "mmg", "in": "query", "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": _responses("200", 400, 401, 403),
            },
        },
        "/api/v1/referrals/{id}": {
            "get": {
                "summary": "Lire une orientation",
                "parameters": [_ID],
                "responses": _responses("200", 401, 403, 404),
            }
        },
        **transitions,
        "/api/v1/referrals/{id}/outcome": {
            "post": {
                "summary": "Issue de la consultation",
                "parameters": [_ID, _IDEM],
                "requestBody": _body(OutcomeIn),
                "responses": _responses("200", 401, 403, 404, 409, 422),
            }
        },
        "/api/v1/visits": {
            "post": {
                "summary": "Enregistrer un passage sans orientation",
                "parameters": [_IDEM],
                "requestBody": _body(VisitIn),
                "responses": {
                    **_responses("201", 401, 403, 422),
                    "200": {"description": "Déjà enregistré"},
                },
            },
            "get": {
                "summary": "Passages d'un mois",
                "parameters": [
                    {"name": "mmg", "in": "query", "required": True, "schema": {"type": "string"}},
                    {
                        "name": "month",
                        "in": "query",
                        "schema": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"},
                    },
                ],
                "responses": _responses("200", 400, 401, 403, 404),
            },
        },
        "/api/v1/reports/{mmg}/{month}": {
            "get": {
                "summary": "Indicateurs mensuels",
                "parameters": [
                    _MMG,
                    _MONTH,
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["json", "csv", "md", "xlsx"]},
                    },
                ],
                "responses": _responses("200", 400, 401, 403, 404),
            }
        },
        "/api/v1/figures/{mmg}/{period}": {
            "get": {
                "summary": "Données saisies (passages aux urgences, coûts) et leur historique",
                "parameters": [_MMG, _PERIOD],
                "responses": _responses("200", 400, 401, 403, 404),
            },
            "put": {
                "summary": "Saisir ou corriger les données déclarées (rôle coordinator)",
                "parameters": [_MMG, _PERIOD],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"type": "object"}}},
                },
                "responses": _responses("201", 400, 401, 403, 404, 422),
            },
        },
        "/api/v1/exports/{year}": {
            "get": {
                "summary": "Export annuel pour l'ARS (toutes les MMG, rôle coordinator)",
                "parameters": [
                    {
                        "name": "year",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "pattern": "^[0-9]{4}$"},
                    },
                    {
                        "name": "format",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["json", "csv", "xlsx"]},
                    },
                ],
                "responses": _responses("200", 400, 401, 403),
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "regulator",
            "version": __version__,
            "description": (
                "API des orientations, passages et indicateurs des maisons médicales de garde."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi")


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


def setup_openapi(app: web.Application) -> None:
    app[OPENAPI] = build_openapi()
    app.router.add_get("/api/v1/openapi.json", openapi)
