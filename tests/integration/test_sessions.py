"""Console sessions (issue 18, points 1, 2 and 7): the cookie is a random server-side
session id, never the API token; idle and absolute timeouts; logout and token
revocation end a session at once; sign-in survives a flood of junk from the same
address; signing in again over an existing cookie answers a page, never raw JSON."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from regulator.auth import COOKIE, hash_token
from regulator.core.sessions import session_key
from regulator.ports import FixedClock, Store
from regulator.web import keys
from regulator.web.app import create_app
from tests.support.app import TOKENS, AppClient, ClientFactory, make_settings


def origin(client: AppClient) -> dict[str, str]:
    return {"Origin": str(client.make_url("/")).rstrip("/")}


async def sign_in(
    client: AppClient, role: str, *, cookie: str | None = None, token: str | None = None
) -> Any:
    headers = origin(client)
    if cookie is not None:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    return await client.post(
        "/console/login",
        data={"token": TOKENS[role] if token is None else token},
        headers=headers,
        allow_redirects=False,
    )


def cookie_of(resp: Any) -> str:
    """The value of the console cookie a response sets."""
    morsel = resp.cookies.get(COOKIE)
    assert morsel is not None, resp.headers.getall("Set-Cookie", [])
    return str(morsel.value)


async def page_status(client: AppClient, cookie: str, path: str = "/console/desk/nimes") -> int:
    resp = await client.get(path, headers={"Cookie": f"{COOKIE}={cookie}"}, allow_redirects=False)
    return resp.status


# --------------------------------------------------------------------- point 2


async def test_the_console_cookie_is_a_session_id_not_the_api_token(client: AppClient) -> None:
    first = cookie_of(await sign_in(client, "desk"))
    second = cookie_of(await sign_in(client, "desk"))
    print(f"cookie after sign-in: {len(first)} chars, token in it: {TOKENS['desk'] in first}")
    assert TOKENS["desk"] not in first and hash_token(TOKENS["desk"]) not in first
    assert first != second  # a fresh id at every sign-in
    assert len(first) >= 43  # secrets.token_urlsafe(32)
    assert await page_status(client, first) == 200
    # The cookie is not an API token: it opens no API with Bearer.
    api = await client.get(
        "/api/v1/referrals?mmg=nimes", headers={"Authorization": f"Bearer {first}"}
    )
    assert api.status == 401
    # And the raw token put in the cookie (what the old cookie held) opens nothing.
    assert await page_status(client, TOKENS["desk"]) == 303
    form = await (await client.get("/console/login")).text()
    assert "Il n'est pas conservé" in form and "30 minutes sans activité" in form


async def test_logout_ends_the_session_on_the_server(client: AppClient) -> None:
    session = cookie_of(await sign_in(client, "desk"))
    assert await page_status(client, session) == 200
    out = await client.post(
        "/console/logout",
        headers=origin(client) | {"Cookie": f"{COOKIE}={session}"},
        allow_redirects=False,
    )
    assert out.status == 303
    replayed = await page_status(client, session)
    print(f"cookie replayed after logout: {replayed}")
    assert replayed == 303


async def test_idle_and_absolute_timeouts_end_a_session(
    client: AppClient, clock: FixedClock
) -> None:
    settings = client.app[keys.SETTINGS]
    idle = timedelta(minutes=settings.session_idle_minutes)
    start = clock.now()
    session = cookie_of(await sign_in(client, "desk"))
    clock.set(start + idle - timedelta(minutes=1))
    assert await page_status(client, session) == 200  # activity: the idle clock restarts
    clock.set(start + 2 * idle - timedelta(minutes=3))
    assert await page_status(client, session) == 200
    clock.set(start + 3 * idle)  # idle for more than the idle timeout
    idle_status = await page_status(client, session)
    # Active every 20 minutes, still cut at the absolute timeout.
    clock.set(start)
    busy = cookie_of(await sign_in(client, "desk"))
    maximum = timedelta(hours=settings.session_max_hours)
    at = start
    statuses = []
    while at < start + maximum + timedelta(minutes=20):
        at += timedelta(minutes=20)
        clock.set(at)
        statuses.append((at - start, await page_status(client, busy)))
    cut = next(elapsed for elapsed, status in statuses if status != 200)
    print(f"idle {3 * idle}: {idle_status}; active every 20 min: cut after {cut}")
    assert idle_status == 303
    assert maximum <= cut < maximum + timedelta(minutes=20)


async def test_a_token_removed_from_the_file_ends_its_sessions_within_a_second(
    client: AppClient,
) -> None:
    session = cookie_of(await sign_in(client, "desk"))
    other = cookie_of(await sign_in(client, "admin"))
    tokens_file = client.app[keys.SETTINGS].tokens_file
    assert tokens_file is not None
    kept = [ln for ln in tokens_file.read_text().splitlines() if "accueil-nimes" not in ln]
    tokens_file.write_text("\n".join(kept) + "\n")
    started = time.monotonic()
    status = 200
    while status == 200 and time.monotonic() - started < 3:
        await asyncio.sleep(0.05)
        status = await page_status(client, session)
    elapsed = time.monotonic() - started
    print(f"desk token removed: its console session answers {status} after {elapsed:.2f} s")
    assert status == 303
    assert elapsed < 1.0
    assert await page_status(client, other, "/console/regulation") == 200
    # Refused by fingerprint at once; its stored row is deleted too (housekeeping).
    store, now = client.app[keys.STORE], client.app[keys.CLOCK].now()
    for _ in range(40):
        if await store.get_session(session_key(session), now, touch=False) is None:
            break
        await asyncio.sleep(0.05)
    assert await store.get_session(session_key(session), now, touch=False) is None
    assert await store.get_session(session_key(other), now, touch=False) is not None


async def test_two_replicas_on_one_redis_share_sessions(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    clock: FixedClock,
    redis_url: str,
    redis_prefix: str,
) -> None:
    from regulator.storage.redis import RedisStore

    settings = make_settings(tmp_path)
    a = await aiohttp_client(create_app(settings, RedisStore(redis_url, redis_prefix), clock))
    b = await aiohttp_client(create_app(settings, RedisStore(redis_url, redis_prefix), clock))
    session = cookie_of(await sign_in(a, "desk"))
    on_b = await page_status(b, session)
    out = await b.post(
        "/console/logout",
        headers=origin(b) | {"Cookie": f"{COOKIE}={session}"},
        allow_redirects=False,
    )
    after_logout_on_b = await page_status(a, session)
    again = cookie_of(await sign_in(b, "desk"))
    before_removal = await page_status(a, again)
    tokens_file = settings.tokens_file
    assert tokens_file is not None
    kept = [ln for ln in tokens_file.read_text().splitlines() if "accueil-nimes" not in ln]
    tokens_file.write_text("\n".join(kept) + "\n")
    await asyncio.sleep(0.8)  # each replica's watcher polls every 0.5 s
    after_removal = await page_status(a, again), await page_status(b, again)
    print(
        f"signed in on A, page on B: {on_b}; logout on B, page on A: {after_logout_on_b}; "
        f"new session from B on A: {before_removal}; token removed, A and B: {after_removal}"
    )
    await a.close()
    await b.close()
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        found = [key async for key in client.scan_iter(match=f"{redis_prefix}:*")]
        if found:
            await client.delete(*found)
    finally:
        await client.aclose()
    assert (on_b, out.status, after_logout_on_b, before_removal) == (200, 303, 303, 200)
    assert after_removal == (303, 303)


async def test_a_session_the_store_cannot_check_is_a_french_503_not_a_500(
    client: AppClient,
) -> None:
    session = cookie_of(await sign_in(client, "desk"))
    await client.app[keys.STORE].close()  # the store is gone (Redis down, disk failed)
    page = await client.get(
        "/console/desk/nimes", headers={"Cookie": f"{COOKIE}={session}"}, allow_redirects=False
    )
    api = await client.get("/api/v1/referrals?mmg=nimes", headers={"Cookie": f"{COOKIE}={session}"})
    text, body = await page.text(), await api.json()
    print(f"store closed: console page {page.status} {page.content_type}, API {api.status} {body}")
    assert page.status == 503 and page.content_type == "text/html"
    assert "stockage indisponible" in text and "Traceback" not in text
    assert api.status == 503 and body["error"] == "unavailable"


# --------------------------------------------------------------------- point 7


async def test_signing_in_again_over_an_existing_cookie_answers_a_page_not_json(
    client: AppClient,
) -> None:
    session = cookie_of(await sign_in(client, "desk"))
    seen, answers = [], []
    for role, token in (("desk", "not-a-token"), ("desk", None), ("coordinator", None)):
        resp = await sign_in(client, role, cookie=session, token=token)
        seen.append(f"{role}{'(wrong token)' if token else ''}: {resp.status} {resp.content_type}")
        answers.append((resp, await resp.text()))
    print("sign-in over an existing cookie: " + "; ".join(seen))
    wrong, again, other = answers
    assert wrong[0].status == 401 and wrong[0].content_type == "text/html"
    assert "Jeton invalide" in wrong[1]
    for resp, _ in (again, other):
        assert resp.status == 303
        assert cookie_of(resp) != session  # the session id rotates at sign-in
    # The session signed in over is over: rotation, not a second live session.
    assert await page_status(client, session) == 303


# --------------------------------------------------------------------- point 1


async def test_a_flood_of_junk_from_the_same_address_cannot_deny_sign_in(
    aiohttp_client: ClientFactory, tmp_path: Path, store: Store, clock: FixedClock
) -> None:
    settings = make_settings(tmp_path, rate_limit_per_minute=60, trusted_proxies="127.0.0.1/32")
    app: web.Application = create_app(settings, store, clock)
    client = await aiohttp_client(app)
    here = {"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}  # proxy-added hop: 203.0.113.7
    junk: dict[int, int] = {}
    logins: list[int] = []

    async def one_junk(n: int) -> None:
        if n % 2:
            resp = await client.get(
                "/api/v1/referrals", headers=here | {"Authorization": f"Bearer bogus{n}"}
            )
        else:
            resp = await client.post(
                "/console/login",
                data={"token": f"wrong{n}"},
                headers=here | origin(client),
                allow_redirects=False,
            )
        junk[resp.status] = junk.get(resp.status, 0) + 1

    started = time.monotonic()
    n = 0
    while time.monotonic() - started < 3.0:
        tick = time.monotonic()
        await asyncio.gather(*(one_junk(n + i) for i in range(5)))  # 50 a second
        n += 5
        if n % 50 == 25:
            resp = await client.post(
                "/console/login",
                data={"token": TOKENS["regulator"]},
                headers=here | origin(client),
                allow_redirects=False,
            )
            logins.append(resp.status)
        await asyncio.sleep(max(0.0, 0.1 - (time.monotonic() - tick)))
    elapsed = time.monotonic() - started
    # Another client behind the same proxy has a budget of its own.
    neighbour = await client.get(
        "/api/v1/referrals", headers={"X-Forwarded-For": "203.0.113.8", "Authorization": "Bearer x"}
    )
    print(
        f"{n} junk requests in {elapsed:.1f} s ({n / elapsed:.0f} req/s) from 203.0.113.7: "
        f"{dict(sorted(junk.items()))}; valid sign-ins meanwhile: {logins}; "
        f"neighbour 203.0.113.8: {neighbour.status}"
    )
    assert junk.get(429, 0) > 0  # the junk is limited…
    assert logins and all(status == 303 for status in logins)  # …sign-in is not
    assert neighbour.status == 401
