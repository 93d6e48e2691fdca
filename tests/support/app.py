"""The whole application through aiohttp's test client: settings with every secret,
tokens of every role, and requests signed as each platform signs them."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jwt
import orjson
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from regulator.auth import hash_token
from regulator.platforms import generic, twilio
from regulator.settings import Settings
from tests.support.clock import PARIS, paris
from tests.support.paths import PROTOCOLS_DIR, ROOT

PROTOCOLS = PROTOCOLS_DIR
PUBLIC = "https://regulator.example"

TWILIO_TOKEN = "twilio-test-token"
VONAGE_SECRET = "vonage-signature-secret-for-tests-0123456789"
KAMAILIO_SECRET = "kamailio-shared-secret"
GENERIC_SECRET = "generic-shared-secret"
ASTERISK_SECRET = "asterisk-shared-secret"
FREESWITCH_SECRET = "freeswitch-httapi-password"
JAMBONZ_SECRET = "jambonz-webhook-secret"
#: The raw Ed25519 public key of a fixed test key pair (32 bytes), base64 as in the portal.
TELNYX_PUBLIC_KEY = "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="  # private bytes 0..31

TOKENS = {
    "regulator": "tok-regulator-samu30",
    "desk": "tok-desk-nimes",
    "desk_metz": "tok-desk-metz",
    "coordinator": "tok-coordinator-ars",
    "admin": "tok-admin",
}

NIMES = "+33466123456"
METZ = "+33387551234"
REUNION = "+262262901234"
REGULATION_NIMES = "+33466000015"
FRONT_DESK_NIMES = "+33466123400"
PROFESSIONAL_NIMES = "+33612345678"

AppClient = TestClient[web.Request, web.Application]
ClientFactory = Callable[..., Awaitable[AppClient]]


def write_tokens(path: Path) -> Path:
    lines = [
        f'- {{name: samu30, sha256: "{hash_token(TOKENS["regulator"])}", roles: [regulator]}}',
        f'- {{name: accueil-nimes, sha256: "{hash_token(TOKENS["desk"])}", roles: ["desk:nimes"]}}',
        f'- {{name: accueil-metz, sha256: "{hash_token(TOKENS["desk_metz"])}", '
        'roles: ["desk:metz"]}',
        f'- {{name: ars, sha256: "{hash_token(TOKENS["coordinator"])}", roles: [coordinator]}}',
        f'- {{name: admin, sha256: "{hash_token(TOKENS["admin"])}", roles: [admin]}}',
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "protocols_dir": PROTOCOLS,
        "data_dir": tmp_path / "var",
        "public_url": PUBLIC,
        "twilio_auth_token": SecretStr(TWILIO_TOKEN),
        "vonage_signature_secret": SecretStr(VONAGE_SECRET),
        "kamailio_secret": SecretStr(KAMAILIO_SECRET),
        "generic_secret": SecretStr(GENERIC_SECRET),
        "asterisk_secret": SecretStr(ASTERISK_SECRET),
        "freeswitch_secret": SecretStr(FREESWITCH_SECRET),
        "jambonz_secret": SecretStr(JAMBONZ_SECRET),
        "telnyx_public_key": SecretStr(TELNYX_PUBLIC_KEY),
        "telnyx_callback_secret": SecretStr("telnyx-callback-test-secret"),
        "failsafe_number": "+33466000099",
        "tokens_file": write_tokens(tmp_path / "tokens.yaml"),
        "watch_protocols": False,
        "log_format": "console",
    }
    values.update(overrides)
    return Settings(**values)


def bearer(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


# ---------------------------------------------------------------- signed requests


async def post_twilio(
    client: AppClient, path: str, params: dict[str, str], *, token: str = TWILIO_TOKEN
) -> tuple[int, str]:
    """POST a form webhook signed exactly as Twilio signs it (public URL + sorted params)."""
    signature = twilio.compute_signature(token, PUBLIC + path, params)
    resp = await client.post(
        path,
        data=urlencode(params),
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    return resp.status, await resp.text()


def vonage_headers(body: bytes, *, jti: str | None = "") -> dict[str, str]:
    """A fresh Vonage token for ``body`` (a new ``jti`` each time unless given; None:
    a token without one)."""
    import hashlib
    import uuid

    claims: dict[str, Any] = {
        "iat": int(time.time()),
        "jti": jti or str(uuid.uuid4()),
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        "api_key": "abcd1234",
        "application_id": "aaaaaaaa-bbbb-cccc-dddd-0123456789ab",
    }
    if jti is None:
        del claims["jti"]
    token = jwt.encode(claims, VONAGE_SECRET, algorithm="HS256")
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


async def post_vonage(client: AppClient, path: str, payload: dict[str, Any]) -> tuple[int, Any]:
    body = orjson.dumps(payload)
    resp = await client.post(path, data=body, headers=vonage_headers(body))
    text = await resp.text()
    return resp.status, (orjson.loads(text) if text else None)


async def post_generic(
    client: AppClient, path: str, payload: dict[str, Any], *, t: int | None = None
) -> tuple[int, Any]:
    body = orjson.dumps(payload)
    stamp = int(time.time()) if t is None else t
    header = generic.sign(GENERIC_SECRET, body, stamp, method="POST", path=path)
    resp = await client.post(
        path,
        data=body,
        headers={"X-Regulator-Signature": header, "Content-Type": "application/json"},
    )
    text = await resp.text()
    return resp.status, (
        orjson.loads(text) if text and resp.content_type == "application/json" else text
    )


class Signed:
    """Console sessions of every role of :data:`TOKENS`, signed in through the form."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids

    def cookie(self, role: str) -> dict[str, str]:
        """The session cookie as a header (the test jar keeps Secure cookies off HTTP)."""
        from regulator.auth import COOKIE

        return {"Cookie": f"{COOKIE}={self.ids[role]}"}

    def csrf(self, role: str) -> dict[str, str]:
        from regulator.web.access import CSRF_HEADER, csrf_token

        return {CSRF_HEADER: csrf_token(self.ids[role])}


async def sign_in_all(client: AppClient) -> Signed:
    """Sign every role in through ``POST /console/login``; their session ids."""
    from regulator.auth import COOKIE

    ids: dict[str, str] = {}
    origin = str(client.make_url("/")).rstrip("/")
    for role, token in TOKENS.items():
        resp = await client.post(
            "/console/login",
            data={"token": token},
            headers={"Origin": origin},
            allow_redirects=False,
        )
        assert resp.status == 303, await resp.text()
        morsel = resp.cookies.get(COOKIE)
        assert morsel is not None
        ids[role] = morsel.value
    return Signed(ids)


async def report(client: AppClient, mmg: str = "nimes", month: str = "2026-11") -> dict[str, Any]:
    """The month's report, after flushing the group-commit writer."""
    from regulator.web import keys

    await client.app[keys.WRITER].flush()
    resp = await client.get(f"/api/v1/reports/{mmg}/{month}", headers=bearer("coordinator"))
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


__all__ = [
    "FRONT_DESK_NIMES",
    "GENERIC_SECRET",
    "KAMAILIO_SECRET",
    "METZ",
    "NIMES",
    "PARIS",
    "PROFESSIONAL_NIMES",
    "PROTOCOLS",
    "PUBLIC",
    "REGULATION_NIMES",
    "REUNION",
    "ROOT",
    "TOKENS",
    "TWILIO_TOKEN",
    "VONAGE_SECRET",
    "AppClient",
    "ClientFactory",
    "Signed",
    "bearer",
    "make_settings",
    "paris",
    "post_generic",
    "post_twilio",
    "post_vonage",
    "report",
    "sign_in_all",
    "vonage_headers",
    "write_tokens",
]


def callback(path: str) -> str:
    """One of our callback paths (``/hooks/<platform>/…?mmg=…&target=…``) as the service
    signs it: with the query's HMAC (``sig``) the test secrets give."""
    from regulator.core.models import Platform
    from regulator.platforms.base import sign_callback
    from regulator.web.hooks.wire import callback_key

    platform = Platform(path.split("/")[2])
    secrets = {
        Platform.TWILIO: TWILIO_TOKEN,
        Platform.VONAGE: VONAGE_SECRET,
        Platform.FREESWITCH: FREESWITCH_SECRET,
        Platform.JAMBONZ: JAMBONZ_SECRET,
    }
    key = callback_key(platform, secrets[platform])
    return sign_callback(PUBLIC + path, key).removeprefix(PUBLIC)
