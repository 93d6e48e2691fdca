"""Forged and replayed webhooks, secret comparisons, rate limits, security headers.

Every hook needs its platform's signature when a secret is set: no header trick,
method switch or path variant gets a call through without it; signed requests
are only accepted within their replay window.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import time
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient

from regulator.auth import TokenBook, hash_token
from regulator.platforms import generic, jambonz, twilio
from regulator.ports import FixedClock, Store
from regulator.storage.sqlite import SqliteStore
from regulator.web import keys
from regulator.web.app import create_app
from regulator.web.limits import TokenBuckets
from tests.faults.conftest import NIMES
from tests.support.app import (
    ASTERISK_SECRET,
    FREESWITCH_SECRET,
    GENERIC_SECRET,
    JAMBONZ_SECRET,
    KAMAILIO_SECRET,
    PUBLIC,
    TOKENS,
    TWILIO_TOKEN,
    VONAGE_SECRET,
    make_settings,
    paris,
)
from tests.support.paths import ROOT

AppClient = TestClient[web.Request, web.Application]
CALLER = "+33611223344"


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    yield SqliteStore(tmp_path / "regulator.sqlite3")


async def make_client(
    aiohttp_client: Any, tmp_path: Path, store: Store, **overrides: Any
) -> AppClient:
    settings = make_settings(tmp_path, **overrides)
    app = create_app(settings, store, FixedClock(paris("2026-11-24T21:00")))
    client: AppClient = await aiohttp_client(app)
    return client


@pytest_asyncio.fixture
async def client(aiohttp_client: Any, tmp_path: Path, store: Store) -> AppClient:
    return await make_client(aiohttp_client, tmp_path, store)


async def raw_request(
    client: AppClient, method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> int:
    """Send exactly these bytes (no URL normalisation by a client library); the status."""
    assert client.server.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", client.server.port)
    try:
        lines = [f"{method} {target} HTTP/1.1", "Host: regulator.example", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
        return int(status_line.split()[1])
    finally:
        writer.close()
        await writer.wait_closed()


# ------------------------------------------------------------------- forged requests

FORM = {"CallSid": "CAforged", "From": CALLER, "To": NIMES}
FORM_BODY = urlencode(FORM).encode()
JSON_BODY = orjson.dumps(
    {
        "call_id": "CAforged",
        "from": CALLER,
        "to": NIMES,
        "uuid": "CAforged",
        "conversation_uuid": "CAforged",
    }
)


def twilio_sig(path: str, params: dict[str, str] | None = None) -> str:
    return twilio.compute_signature(TWILIO_TOKEN, PUBLIC + path, FORM if params is None else params)


def vonage_jwt(body: bytes, *, secret: str = VONAGE_SECRET, iat: float | None = None) -> str:
    claims = {
        "iat": int(time.time() if iat is None else iat),
        "jti": f"jti-{time.monotonic_ns()}",
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
    }
    return jwt.encode(claims, secret, algorithm="HS256")


# How each platform signs: (content type, body, header name, forged value, valid value
# for a path). The paths themselves come from the app's route table (``hooks``).
Signing = tuple[str, bytes, str, str, Callable[[str], str]]
SIGNING: dict[str, Signing] = {
    "twilio": (
        "application/x-www-form-urlencoded",
        FORM_BODY,
        "X-Twilio-Signature",
        twilio_sig("/hooks/twilio/other"),
        twilio_sig,
    ),
    "vonage": (
        "application/json",
        JSON_BODY,
        "Authorization",
        f"Bearer {vonage_jwt(JSON_BODY, secret='not-the-secret-but-long-enough-0123456789')}",
        lambda path: f"Bearer {vonage_jwt(JSON_BODY)}",
    ),
    "kamailio": (
        "application/json",
        JSON_BODY,
        "X-Regulator-Secret",
        KAMAILIO_SECRET + "x",
        lambda path: KAMAILIO_SECRET,
    ),
    "generic": (
        "application/json",
        JSON_BODY,
        "X-Regulator-Signature",
        generic.sign(
            "wrong-secret", JSON_BODY, int(time.time()), method="POST", path="/hooks/generic/call"
        ),
        lambda path: generic.sign(
            GENERIC_SECRET, JSON_BODY, int(time.time()), method="POST", path=path
        ),
    ),
    "asterisk": (
        "application/x-www-form-urlencoded",
        FORM_BODY,
        "X-Regulator-Secret",
        ASTERISK_SECRET + "x",
        lambda path: ASTERISK_SECRET,
    ),
    "freeswitch": (
        "application/x-www-form-urlencoded",
        FORM_BODY,
        "Authorization",
        "Basic " + base64.b64encode(b"regulator:not-the-password").decode(),
        lambda path: (
            "Basic " + base64.b64encode(f"regulator:{FREESWITCH_SECRET}".encode()).decode()
        ),
    ),
    "jambonz": (
        "application/json",
        JSON_BODY,
        "Jambonz-Signature",
        jambonz.sign("wrong-secret", JSON_BODY, int(time.time())),
        lambda path: jambonz.sign(JAMBONZ_SECRET, JSON_BODY, int(time.time())),
    ),
    # Telnyx also needs Telnyx-Timestamp: a request carrying only the signature is never
    # authentic (the "valid" value is only sent where the hook must not exist or answer).
    "telnyx": (
        "application/x-www-form-urlencoded",
        FORM_BODY,
        "Telnyx-Signature-Ed25519",
        base64.b64encode(b"\0" * 64).decode(),
        lambda path: base64.b64encode(b"\1" * 64).decode(),
    ),
}


def hooks(app: web.Application) -> list[tuple[str, str, str, bytes, str, str, str]]:
    """Every webhook route of the app (its route table, sub-apps included), with the
    platform's signing: (method, path, content type, body, header, forged, valid)."""
    out = []
    for route in app.router.routes():
        path = route.resource.canonical if route.resource is not None else ""
        if not path.startswith("/hooks/") or route.method == "HEAD":
            continue
        content_type, body, header, forged, valid = SIGNING[path.split("/")[2]]
        out.append((route.method, path, content_type, body, header, forged, valid(path)))
    assert len(out) >= 11, out
    return out


def variants(
    method: str, path: str, header: str, forged: str, valid: str
) -> list[tuple[str, str, str, list[tuple[str, str]]]]:
    """(what, method, request target, auth headers): none of them is authentic."""
    other = path.rsplit("/", 1)[0] + "/" + path.rsplit("/", 1)[1].upper()
    head, leaf = path.rsplit("/", 1)
    encoded_leaf = "".join(f"%{ord(c):02X}" for c in leaf)
    out: list[tuple[str, str, str, list[tuple[str, str]]]] = [
        ("no signature", method, path, []),
        ("forged signature", method, path, [(header, forged)]),
        ("lower-case header, forged", method, path, [(header.lower(), forged)]),
        ("upper-case header, forged", method, path, [(header.upper(), forged)]),
        ("empty signature", method, path, [(header, "")]),
        ("two forged headers", method, path, [(header, forged), (header.lower(), forged + "0")]),
        ("header with spaces", method, path, [(header, f"  {forged}  ")]),
        ("signature of another hook", method, path, [(header, forged)]),
    ]
    for verb in ("GET", "PUT", "PATCH", "DELETE", "HEAD"):
        if verb != method:
            out.append((f"{verb} instead of {method}", verb, path, [(header, forged)]))
    for what, target in (
        ("trailing slash", path + "/"),
        ("double slash", "/" + path),
        ("inner double slash", path.replace("/hooks/", "/hooks//")),
        ("encoded path", f"{head}/{encoded_leaf}"),
        ("encoded slashes", path.replace("/", "%2F")),
        ("dot segment", f"{path}/../{leaf}"),
        ("dot", f"{head}/./{leaf}"),
        ("upper-case path", other),
        ("path parameter", f"{path};x=1"),
        ("query tricks", f"{path}?bodySHA256=&x=1"),
    ):
        out.append((what, method, target, [(header, forged)]))
        out.append((f"{what}, signature of the canonical path", method, target, [(header, valid)]))
    return out


async def test_no_hook_accepts_a_request_without_its_platform_signature(
    client: AppClient, store: Store
) -> None:
    tried = 0
    authentic: list[tuple[str, str, str, list[tuple[str, str]], bytes]] = []
    for method, path, content_type, body, header, forged, valid in hooks(client.app):
        for what, verb, target, auth in variants(method, path, header, forged, valid):
            headers = [("Content-Type", content_type), *auth]
            if "canonical path" in what and not path.startswith("/hooks/twilio/"):
                authentic.append((what, verb, target, headers, body))
                continue
            status = await raw_request(client, verb, target, headers, body)
            tried += 1
            assert status in (400, 403, 404, 405), f"{verb} {target} ({what}): {status}"
    assert tried > 250
    # Nothing was recorded.
    await client.app[keys.WRITER].flush()
    assert await store.get_call("CAforged") is None
    # Only Twilio signs the URL: elsewhere an authentic request that reaches the handler
    # by another spelling of its path is still authentic (and answered, or refused).
    for what, verb, target, headers, body in authentic:
        status = await raw_request(client, verb, target, headers, body)
        assert status < 500, f"{verb} {target} ({what}): {status}"


async def test_a_signature_is_bound_to_its_url_and_body(client: AppClient) -> None:
    # Twilio: the query is part of the signed URL.
    status = await raw_request(
        client,
        "POST",
        "/hooks/twilio/voice?target=front_desk",
        [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", twilio_sig("/hooks/twilio/voice")),
        ],
        FORM_BODY,
    )
    assert status == 403
    # Twilio: a changed parameter breaks the signature.
    tampered = urlencode({**FORM, "From": "+33612345678"}).encode()
    status = await raw_request(
        client,
        "POST",
        "/hooks/twilio/voice",
        [
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("X-Twilio-Signature", twilio_sig("/hooks/twilio/voice")),
        ],
        tampered,
    )
    assert status == 403
    # Vonage and generic: the body is signed.
    other = JSON_BODY.replace(b"CAforged", b"CAother00")
    for path, header, value in (
        ("/hooks/vonage/answer", "Authorization", f"Bearer {vonage_jwt(JSON_BODY)}"),
        (
            "/hooks/generic/call",
            "X-Regulator-Signature",
            generic.sign(
                GENERIC_SECRET,
                JSON_BODY,
                int(time.time()),
                method="POST",
                path="/hooks/generic/call",
            ),
        ),
    ):
        status = await raw_request(
            client, "POST", path, [("Content-Type", "application/json"), (header, value)], other
        )
        assert status == 403, path
    # Sanity: the untouched requests are accepted.
    sanity = [
        h
        for h in hooks(client.app)
        if h[:2] in {("POST", "/hooks/twilio/voice"), ("POST", "/hooks/vonage/answer")}
    ]
    assert len(sanity) == 2
    for method, path, content_type, body, header, _forged, valid in sanity:
        status = await raw_request(
            client, method, path, [("Content-Type", content_type), (header, valid)], body
        )
        assert status == 200, path


async def test_unconfigured_platforms_do_not_exist(
    aiohttp_client: Any, tmp_path: Path, store: Store
) -> None:
    client = await make_client(
        aiohttp_client,
        tmp_path,
        store,
        twilio_auth_token=None,
        vonage_signature_secret=None,
        kamailio_secret=None,
        generic_secret=None,
        asterisk_secret=None,
        freeswitch_secret=None,
        jambonz_secret=None,
        telnyx_public_key=None,
    )
    for method, path, content_type, body, header, _forged, valid in hooks(client.app):
        status = await raw_request(
            client, method, path, [("Content-Type", content_type), (header, valid)], body
        )
        assert status == 404, path


# ------------------------------------------------------------------- replay windows


async def post_generic_at(client: AppClient, t: int) -> int:
    body = orjson.dumps({"call_id": f"CAt{t}", "from": CALLER, "to": NIMES})
    resp = await client.post(
        "/hooks/generic/call",
        data=body,
        headers={
            "X-Regulator-Signature": generic.sign(
                GENERIC_SECRET, body, t, method="POST", path="/hooks/generic/call"
            ),
            "Content-Type": "application/json",
        },
    )
    return resp.status


async def test_generic_signatures_expire_after_five_minutes(client: AppClient) -> None:
    now = int(time.time())
    assert await post_generic_at(client, now - 290) == 200
    assert await post_generic_at(client, now - 310) == 403
    assert await post_generic_at(client, now + 310) == 403
    assert await post_generic_at(client, now + 290) == 200


async def post_vonage(client: AppClient, token: str, body: bytes = JSON_BODY) -> int:
    resp = await client.post(
        "/hooks/vonage/answer",
        data=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    return resp.status


async def test_vonage_tokens_expire_and_must_be_hs256_with_our_secret(client: AppClient) -> None:
    now = time.time()
    assert await post_vonage(client, vonage_jwt(JSON_BODY, iat=now - 290)) == 200
    assert await post_vonage(client, vonage_jwt(JSON_BODY, iat=now - 310)) == 403
    assert await post_vonage(client, vonage_jwt(JSON_BODY, iat=now + 120)) == 403
    claims = {
        "iat": int(now),
        "jti": f"jti-{time.monotonic_ns()}",
        "payload_hash": hashlib.sha256(JSON_BODY).hexdigest(),
    }
    unsigned = jwt.encode(claims, "", algorithm="none")  # "" = no key: "none" signs nothing
    assert await post_vonage(client, unsigned) == 403
    with warnings.catch_warnings():  # our test secret is short for HS512: that's the point
        warnings.simplefilter("ignore")
        hs512 = jwt.encode(claims, VONAGE_SECRET, algorithm="HS512")
    assert await post_vonage(client, hs512) == 403
    no_hash = jwt.encode({"iat": int(now), "jti": "jti-no-hash"}, VONAGE_SECRET, algorithm="HS256")
    assert await post_vonage(client, no_hash) == 403


# ----------------------------------------------------------- secrets at rest and in use

SENSITIVE = ("secret", "signature", "token", "digest", "mac", "sha256", "password", "csrf")


def _names(node: ast.AST) -> set[str]:
    """Names of the values in an expression; module constants (``_SECRET_KEYS``: a set of
    field names) are not secret values and are left out."""
    names: set[str] = set()
    for sub in ast.walk(node):
        name = (
            sub.id
            if isinstance(sub, ast.Name)
            else sub.attr
            if isinstance(sub, ast.Attribute)
            else ""
        )
        if name and not name.isupper():
            names.add(name.lower())
    return names


def test_secrets_are_only_compared_in_constant_time() -> None:
    """No ``==``/``!=``/``in`` between values named like secrets, signatures or tokens
    anywhere in the service: those comparisons go through ``hmac.compare_digest``."""
    offenders: list[str] = []
    compare_digest_modules: set[str] = set()
    for path in sorted((ROOT / "regulator").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr == "compare_digest":
                compare_digest_modules.add(path.stem)
            if not isinstance(node, ast.Compare):
                continue
            if not all(isinstance(op, ast.Eq | ast.NotEq | ast.In | ast.NotIn) for op in node.ops):
                continue
            operands = [node.left, *node.comparators]
            if any(isinstance(o, ast.Constant) and o.value is None for o in operands):
                continue
            if all(isinstance(o, ast.Constant) for o in operands[1:]):
                continue  # compared with a literal (a scheme name, a length…), not a secret
            hits = {n for o in operands for n in _names(o) if any(s in n for s in SENSITIVE)}
            if hits:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {sorted(hits)}")
    assert not offenders, offenders
    # The shared-secret and t=…,v1=… checks of Kamailio, Asterisk, the generic PBX and
    # jambonz live in platforms/_common.py.
    assert {
        "twilio",
        "vonage",
        "_common",
        "webhooks",
        "access",
    } <= compare_digest_modules


def test_tokens_are_stored_hashed(tmp_path: Path) -> None:
    tokens_file = make_settings(tmp_path).tokens_file
    assert tokens_file is not None
    text = tokens_file.read_text(encoding="utf-8")
    for token in TOKENS.values():
        assert token not in text
        assert hashlib.sha256(token.encode()).hexdigest() in text
    book = TokenBook.load(tokens_file)
    assert book.authenticate(TOKENS["desk"]) is not None
    assert book.authenticate(hashlib.sha256(TOKENS["desk"].encode()).hexdigest()) is None


# ----------------------------------------------------------------------- rate limits


def test_token_bucket_refills_at_its_rate_and_forgets_old_clients() -> None:
    now = [0.0]
    buckets = TokenBuckets(60, max_clients=3, clock=lambda: now[0])
    assert all(buckets.take("a") == 0 for _ in range(60))
    wait = buckets.take("a")
    assert 0 < wait <= 1.0  # 60 a minute: one more a second later
    now[0] += 1.0
    assert buckets.take("a") == 0
    assert buckets.take("a") > 0
    for client in ("b", "c", "d"):  # "a" is the least recently seen: forgotten
        buckets.take(client)
    assert buckets.take("a") == 0


async def test_api_and_consoles_are_rate_limited_per_client_not_hooks_nor_probes(
    aiohttp_client: Any, tmp_path: Path, store: Store
) -> None:
    client = await make_client(aiohttp_client, tmp_path, store, rate_limit_per_minute=30)
    desk = {"Authorization": f"Bearer {TOKENS['desk']}"}
    statuses = [
        (await client.get("/api/v1/referrals?mmg=nimes", headers=desk)).status for _ in range(30)
    ]
    assert statuses == [200] * 30
    limited = await client.get("/api/v1/referrals?mmg=nimes", headers=desk)
    assert limited.status == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    body = await limited.json()
    assert body["error"] == "too_many_requests"
    assert body["message"].startswith("Trop de requêtes")
    assert limited.headers["X-Content-Type-Options"] == "nosniff"
    # Another token has its own bucket.
    other = {"Authorization": f"Bearer {TOKENS['regulator']}"}
    assert (await client.get("/api/v1/referrals", headers=other)).status == 200
    # Without a valid token, the client is its address: bad tokens (API and consoles
    # alike) share one budget, anonymous requests another (issue 18: separate budgets).
    bogus = [
        (await client.get("/api/v1/referrals", headers={"Authorization": f"Bearer x{n}"})).status
        for n in range(40)
    ]
    assert 401 in bogus and bogus[-1] == 429
    page = await client.get("/console/regulation", headers={"Cookie": "regulator_token=stale"})
    assert page.status == 429 and page.content_type == "text/html"  # a French page
    assert "Trop de requêtes" in await page.text() and page.headers["Retry-After"]
    anonymous = [
        (await client.get("/console/regulation", allow_redirects=False)).status for _ in range(31)
    ]
    assert anonymous[0] == 303 and anonymous[-1] == 429
    # The sign-in form is never refused (its post is charged once the token is read).
    assert (await client.get("/console/login")).status == 200
    # Webhooks, metrics and probes are never throttled.
    for n in range(60):
        params = {"CallSid": f"CArate{n}", "From": CALLER, "To": NIMES}
        resp = await client.post(
            "/hooks/twilio/voice",
            data=urlencode(params),
            headers={
                "X-Twilio-Signature": twilio_sig("/hooks/twilio/voice", params),
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        assert resp.status == 200
    for path in ("/metrics", "/healthz", "/readyz"):
        for _ in range(40):
            assert (await client.get(path)).status != 429, path


# -------------------------------------------------------------------- security headers


@pytest.mark.parametrize(
    "path", ["/console/login", "/console/regulation", "/console/desk/nimes", "/api/v1/openapi.json"]
)
async def test_consoles_and_api_send_security_headers(client: AppClient, path: str) -> None:
    resp = await client.get(path, allow_redirects=False)
    assert resp.status < 500
    headers = resp.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] in ("no-referrer", "same-origin")
    assert headers["X-Frame-Options"] == "DENY"
    assert "no-store" in headers["Cache-Control"]
    csp = headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "script-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp


# ------------------------------------------------------------ tokens reload (issue 18)


async def test_a_token_removed_from_the_file_stops_working_within_a_second(
    aiohttp_client: Any, tmp_path: Path, store: Store
) -> None:
    client = await make_client(aiohttp_client, tmp_path, store)
    tokens_file = client.app[keys.SETTINGS].tokens_file
    assert tokens_file is not None
    desk = {"Authorization": f"Bearer {TOKENS['desk']}"}
    assert (await client.get("/api/v1/referrals", headers=desk)).status == 200
    kept = [ln for ln in tokens_file.read_text().splitlines() if "accueil-nimes" not in ln]
    tokens_file.write_text("\n".join(kept) + "\n")
    started = time.monotonic()
    status = 200
    while status == 200 and time.monotonic() - started < 3:
        await asyncio.sleep(0.05)
        status = (await client.get("/api/v1/referrals", headers=desk)).status
    elapsed = time.monotonic() - started
    print(f"desk token removed from the tokens file: {status} after {elapsed:.2f} s")
    assert status == 401
    assert elapsed < 1.0
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    assert (await client.get("/api/v1/referrals", headers=admin)).status == 200


async def test_sighup_reloads_the_tokens_file_and_a_broken_one_keeps_the_tokens_in_force(
    aiohttp_client: Any, tmp_path: Path, store: Store
) -> None:
    import os
    import signal

    client = await make_client(aiohttp_client, tmp_path, store)
    assert signal.getsignal(signal.SIGHUP) is not signal.SIG_DFL  # the app's handler is set
    tokens_file = client.app[keys.SETTINGS].tokens_file
    assert tokens_file is not None
    desk = {"Authorization": f"Bearer {TOKENS['desk']}"}
    admin = {"Authorization": f"Bearer {TOKENS['admin']}"}
    original = tokens_file.read_text()
    stat = tokens_file.stat()

    def rewrite(text: str) -> None:
        # Same size and mtime as before: only SIGHUP, not the file watcher, can notice.
        assert len(text.encode()) == stat.st_size
        tokens_file.write_text(text)
        os.utime(tokens_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    rewrite(original.replace(hash_token(TOKENS["desk"]), "0" * 64))
    await asyncio.sleep(0.7)  # the watcher saw no change
    assert (await client.get("/api/v1/referrals", headers=desk)).status == 200
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.1)
    after_hup = (await client.get("/api/v1/referrals", headers=desk)).status
    broken = original.replace("roles: [admin]", "roles: [admin")
    tokens_file.write_text(broken)
    os.kill(os.getpid(), signal.SIGHUP)
    await asyncio.sleep(0.1)
    after_broken = (await client.get("/api/v1/referrals", headers=admin)).status
    print(
        f"desk token revoked then SIGHUP: {after_hup}; broken file then SIGHUP, "
        f"admin token: {after_broken}"
    )
    assert after_hup == 401
    assert after_broken == 200
    book = client.app[keys.TOKENS]
    assert book is not None
    assert book.last_error is not None
