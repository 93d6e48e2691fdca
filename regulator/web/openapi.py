"""``GET /api/v1/openapi.json``: the API described from its route table
(:data:`regulator.web.routes.API`) and the same pydantic models it validates and answers.

Every ``/api/v1`` route carries its documentation in the table, so a route cannot be
added without appearing here (``tests/integration/test_route_table.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel

from regulator import __version__
from regulator.web.middlewares import json_response
from regulator.web.responses import ErrorOut

if TYPE_CHECKING:
    from regulator.web.endpoints import Doc, Endpoint

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_TEXTS = {
    400: "Paramètre invalide",
    401: "Jeton manquant ou invalide",
    403: "Rôle insuffisant",
    404: "Introuvable",
    409: "Conflit (transition impossible, clé d'idempotence réutilisée)",
    413: "Requête trop volumineuse",
    422: "Corps invalide (champ nommé)",
    429: "Trop de requêtes",
    503: "Indisponible",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _add_schema(schemas: dict[str, Any], model: type[BaseModel]) -> None:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, sub in schema.pop("$defs", {}).items():
        schemas[name] = sub
    schemas[model.__name__] = schema


def _operation(doc: Doc, schemas: dict[str, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if doc.response is not None:
        _add_schema(schemas, doc.response)
        ok["content"] = {doc.content: {"schema": _ref(doc.response)}}
    else:
        ok["content"] = {doc.content: {"schema": {"type": "object"}}}
    responses: dict[str, Any] = {str(doc.ok): ok}
    for status, text in doc.also.items():
        responses.setdefault(str(status), {"description": text})
    for code in doc.errors:
        responses[str(code)] = {
            "description": _ERROR_TEXTS[code],
            "content": {"application/json": {"schema": _ERROR}},
        }
    operation: dict[str, Any] = {"summary": doc.summary, "responses": responses}
    if doc.params:
        operation["parameters"] = [
            {"name": p.name, "in": p.where, "required": p.required, "schema": dict(p.schema)}
            for p in doc.params
        ]
    if doc.body is not None:
        _add_schema(schemas, doc.body)
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(doc.body)}},
        }
    if doc.public:
        operation["security"] = []
    return operation


def build_openapi(endpoints: Iterable[Endpoint]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints`` (the ``/api/v1`` route table)."""
    schemas: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        for doc in endpoint.docs:
            path = doc.path or endpoint.path
            paths.setdefault(path, {})[endpoint.method.lower()] = _operation(doc, schemas)
    schemas["Error"] = ErrorOut.model_json_schema()
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
    return json_response(request.config_dict[OPENAPI])
