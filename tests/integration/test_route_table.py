"""The route table is the URL map: every route the app serves (sub-apps included) is
documented if it is API, guarded unless the table says it is public, and signed if it
is a webhook. Walks ``app.router.routes()``, so a route added anywhere is checked."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from datetime import timedelta

from aiohttp import web

from regulator.auth import COOKIE, hash_token
from regulator.core.sessions import ConsoleSession, session_key
from regulator.ports import FixedClock
from regulator.web import keys, routes
from regulator.web.hooks import HOOK_ROUTES
from tests.support.app import TOKENS, AppClient, bearer

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


def origin(client: AppClient) -> dict[str, str]:
    return {"Origin": str(client.make_url("/")).rstrip("/")}


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


async def test_no_console_page_without_a_live_session_and_no_api_call_with_a_revoked_token(
    client: AppClient, clock: FixedClock
) -> None:
    """Issue 18: every console route and API route, walked with sessions that ended each
    way (idle, absolute timeout, signed out, token removed, token changed) and with a
    removed token; a live session and a kept token are let through."""
    book = client.app[keys.TOKENS]
    settings = client.app[keys.SETTINGS]
    assert book is not None and settings.tokens_file is not None
    extra = {"removed": "tok-admin-removed", "changed": "tok-admin-changed"}
    original = settings.tokens_file.read_text()
    settings.tokens_file.write_text(
        original
        + "".join(
            f'- {{name: admin-{k}, sha256: "{hash_token(v)}", roles: [admin]}}\n'
            for k, v in extra.items()
        )
    )
    assert book.reload()

    async def sign_in(token: str) -> str:
        resp = await client.post(
            "/console/login", data={"token": token}, headers=origin(client), allow_redirects=False
        )
        assert resp.status == 303
        morsel = resp.cookies.get(COOKIE)
        assert morsel is not None
        return morsel.value

    async def stored(created_ago: timedelta, seen_ago: timedelta) -> str:
        found = book.fingerprint(TOKENS["admin"])
        assert found is not None
        session_id, now = secrets.token_urlsafe(32), clock.now()
        await client.app[keys.STORE].create_session(
            ConsoleSession(
                key=session_key(session_id),
                token_name="admin",
                token_fingerprint=found[1],
                created_at=now - created_ago,
                seen_at=now - seen_ago,
                idle=timedelta(minutes=settings.session_idle_minutes),
                max_age=timedelta(hours=settings.session_max_hours),
            )
        )
        return session_id

    idle, most = (
        timedelta(minutes=settings.session_idle_minutes),
        timedelta(hours=settings.session_max_hours),
    )
    dead = {
        "idle": await stored(2 * idle, idle + timedelta(minutes=1)),
        "absolute": await stored(most + timedelta(minutes=1), timedelta(minutes=1)),
        "logged out": await sign_in(TOKENS["admin"]),
        "token removed": await sign_in(extra["removed"]),
        "token changed": await sign_in(extra["changed"]),
    }
    live = await stored(most - timedelta(minutes=5), timedelta(minutes=5))
    out = await client.post(
        "/console/logout",
        headers=origin(client) | {"Cookie": f"{COOKIE}={dead['logged out']}"},
        allow_redirects=False,
    )
    assert out.status == 303
    settings.tokens_file.write_text(
        original + f'- {{name: admin-changed, sha256: "{hash_token("tok-new")}", roles: [admin]}}\n'
    )
    assert book.reload()

    checked = 0
    for method, path, resource in served(client.app):
        if isinstance(resource, web.StaticResource) or (method, table_path(path)) in PUBLIC:
            continue
        if not path.startswith((routes.API_PREFIX, routes.CONSOLE_PREFIX)):
            continue
        target = sample(path)
        page = path.startswith(routes.CONSOLE_PREFIX) and (method, path) not in JSON
        for why, session_id in dead.items():
            # Our own origin: a console write is refused before auth by the origin check
            # otherwise, and it is the session rule this walk is about.
            resp = await client.request(
                method,
                target,
                headers=origin(client) | {"Cookie": f"{COOKIE}={session_id}"},
                allow_redirects=False,
            )
            checked += 1
            if page:
                assert resp.status == 303, f"{why}: {method} {target}: {resp.status}"
                assert resp.headers["Location"].startswith("/console/login"), (why, target)
            else:
                assert resp.status == 401, f"{why}: {method} {target}: {resp.status}"
        if path.startswith(routes.API_PREFIX):
            resp = await client.request(
                method, target, headers={"Authorization": f"Bearer {extra['removed']}"}
            )
            checked += 1
            assert resp.status == 401, f"removed token: {method} {target}: {resp.status}"
        if method == "GET":  # the live session opens the same routes
            resp = await client.get(
                target, headers={"Cookie": f"{COOKIE}={live}"}, allow_redirects=False
            )
            location = resp.headers.get("Location", "")
            assert resp.status not in (401, 429), f"live: {target}: {resp.status}"
            assert not location.startswith("/console/login"), f"live: {target}: {location}"
    print(f"{checked} requests with ended sessions or a removed token: none let through")
    assert checked >= 80
