"""The route table is the URL map: every route the app serves (sub-apps included) is
documented if it is API, guarded unless the table says it is public, and signed if it
is a webhook. Walks ``app.router.routes()``, so a route added anywhere is checked."""

from __future__ import annotations

import re
from collections.abc import Iterator

from aiohttp import web

from regulator.web import routes
from regulator.web.hooks import HOOK_ROUTES
from tests.support.app import AppClient, bearer

SAMPLES = {
    "mmg": "nimes",
    "month": "2026-11",
    "year": "2026",
    "period": "2026-11",
    "id": "ref_none",
    "action": "ack",
    "tail": "x",
}


def served(app: web.Application) -> Iterator[tuple[str, str, web.AbstractResource]]:
    """(method, path template, resource) of every route, sub-apps included."""
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        yield route.method, resource.canonical, resource


def sample(template: str) -> str:
    return re.sub(r"\{(\w+)(?::[^}]*)?\}", lambda m: SAMPLES[m.group(1)], template)


def table_path(template: str) -> str:
    """The table's spelling of an aiohttp canonical path ({tail} is {tail:.*} there)."""
    return template.replace("{tail}", "{tail:.*}")


TABLE = (*routes.ROOT, *routes.API, *routes.CONSOLE, routes.CONSOLE_FALLBACK)
PUBLIC = {(e.method, e.path) for e in TABLE if e.public}
JSON = {(e.method, e.path) for e in routes.CONSOLE if e.json}


def test_every_route_is_in_the_table(client: AppClient) -> None:
    table = {(e.method, e.path) for e in TABLE}
    hooks = {(h.method, h.path) for h in HOOK_ROUTES}
    for method, path, resource in served(client.app):
        if isinstance(resource, web.StaticResource):
            assert path == routes.CONSOLE_STATIC
            continue
        assert (method, table_path(path)) in table | hooks, f"{method} {path} not in routes.py"


async def test_every_api_route_is_documented(client: AppClient) -> None:
    doc = await (await client.get("/api/v1/openapi.json")).json()
    documented = [(m.upper(), p) for p, item in doc["paths"].items() for m in item]
    api = [(m, p) for m, p, _ in served(client.app) if p.startswith(routes.API_PREFIX)]
    assert len(api) >= 11
    for method, path in api:
        pattern = re.compile(re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$")
        assert any(m == method and pattern.match(p) for m, p in documented), (method, path)
    # Every documented operation is served (no stale entry).
    for method, path in documented:
        assert any(
            m == method and re.fullmatch(re.sub(r"\{\w+\}", "[^/]+", p), path) for m, p in api
        ), (method, path)


async def test_every_guarded_route_refuses_a_request_without_a_token(client: AppClient) -> None:
    checked = 0
    for method, path, resource in served(client.app):
        if isinstance(resource, web.StaticResource) or (method, table_path(path)) in PUBLIC:
            continue
        if not path.startswith((routes.API_PREFIX, routes.CONSOLE_PREFIX)):
            continue  # the root app's health and metrics, the hooks (signed: below)
        target = sample(path)
        # From a page of ours: a console write is checked for its origin first (403).
        origin = str(client.make_url("/")).rstrip("/")
        resp = await client.request(
            method, target, allow_redirects=False, headers={"Origin": origin}
        )
        checked += 1
        if path.startswith(routes.API_PREFIX) or (method, path) in JSON:
            assert resp.status == 401, f"{method} {target}: {resp.status}"
            body = await resp.json()
            assert body["error"] == "unauthorized"
        else:  # a console page: to the sign-in form
            assert resp.status == 303, f"{method} {target}: {resp.status}"
            assert resp.headers["Location"].startswith("/console/login")
    assert checked >= 15


async def test_every_hook_refuses_an_unsigned_request(client: AppClient) -> None:
    hooks = [(m, p) for m, p, _ in served(client.app) if p.startswith(routes.HOOKS_PREFIX)]
    assert len(hooks) == len(HOOK_ROUTES)
    for method, path in hooks:
        resp = await client.request(
            method, path, data=b'{"call_id": "CAunsigned"}', headers=bearer("admin")
        )
        assert resp.status == 403, f"{method} {path}: {resp.status}"
