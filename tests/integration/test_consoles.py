"""The web consoles through aiohttp's test client: sign-in, roles, CSRF, CSP-safe pages."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from regulator.auth import COOKIE
from regulator.core.indicators import INDICATORS
from regulator.ports import FixedClock, Store
from regulator.settings import Settings
from regulator.web.api import csrf_token
from regulator.web.app import create_app
from tests.support.app import (
    TOKENS,
    AppClient,
    ClientFactory,
    Signed,
    bearer,
    make_settings,
    sign_in_all,
)

REFERRAL: dict[str, Any] = {
    "mmg": "nimes",
    "case_id": "DRFR15030000077",
    "patient": {"display_name": "Mme L.", "age_band": "65-74"},
    "reason": "douleur abdominale",
    "urgency": "P2",
}
VISIT: dict[str, Any] = {"mmg": "nimes", "channel": "direct", "outcome": "home", "acts": 1}

PAGES = (
    ("regulator", "/console/regulation"),
    ("desk", "/console/desk/nimes"),
    ("coordinator", "/console/reports/nimes"),
    ("desk", "/console/protocols/nimes"),
    ("regulator", "/console/login"),
)


def console_app(settings: Settings, store: Store, clock: FixedClock) -> web.Application:
    """The service as deployed: consoles registered by ``create_app`` (or here until then)."""
    return create_app(settings, store, clock)


@pytest_asyncio.fixture
async def client(
    aiohttp_client: ClientFactory, settings: Settings, store: Store, clock: FixedClock
) -> AppClient:
    return await aiohttp_client(console_app(settings, store, clock))


def origin(client: AppClient) -> str:
    return str(client.make_url("/")).rstrip("/")


@pytest_asyncio.fixture
async def signed(client: AppClient) -> Signed:
    """A console session of every role (cookie and CSRF headers by role)."""
    return await sign_in_all(client)


async def login(
    client: AppClient, token: str, headers: dict[str, str] | None = None, **form: str
) -> Any:
    return await client.post(
        "/console/login",
        data={"token": token, **form},
        headers={"Origin": origin(client)} if headers is None else headers,
        allow_redirects=False,
    )


def set_cookie(resp: Any) -> str:
    values: Sequence[str] = resp.headers.getall("Set-Cookie", [])
    found = [v for v in values if v.startswith(f"{COOKIE}=")]
    assert len(found) == 1, values
    return found[0]


class PageAudit(HTMLParser):
    """What a strict CSP and the accessibility rules care about in a page."""

    def __init__(self) -> None:
        super().__init__()
        self.inline_scripts = 0
        self.external_scripts: list[str] = []
        self.style_blocks = 0
        self.style_attributes = 0
        self.event_handlers: list[str] = []
        self.javascript_urls = 0
        self.lang: str | None = None
        self.controls: list[tuple[str, str | None, bool]] = []  # (tag, id, has aria-label)
        self.label_targets: set[str] = set()
        self._in_script = False
        self._script_text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if tag == "script":
            if a.get("src"):
                self.external_scripts.append(a["src"] or "")
            self._in_script = True
            self._script_text = ""
        if tag == "style":
            self.style_blocks += 1
        for name, value in attrs:
            if name == "style":
                self.style_attributes += 1
            if name.startswith("on"):
                self.event_handlers.append(f"{tag}[{name}]")
            if name in ("href", "src", "action") and (value or "").strip().startswith(
                "javascript:"
            ):
                self.javascript_urls += 1
        if tag == "label" and a.get("for"):
            self.label_targets.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") not in ("hidden", "submit"):
            self.controls.append((tag, a.get("id"), bool(a.get("aria-label"))))

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self._script_text += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            if self._script_text.strip():
                self.inline_scripts += 1
            self._in_script = False


def audit(text: str) -> PageAudit:
    parser = PageAudit()
    parser.feed(text)
    return parser


# ---------------------------------------------------------------------- sign-in


@pytest.mark.parametrize(
    ("role", "landing"),
    [
        ("regulator", "/console/regulation"),
        ("admin", "/console/regulation"),
        ("desk", "/console/desk/nimes"),
        ("desk_metz", "/console/desk/metz"),
        ("coordinator", "/console/reports/metz"),
    ],
)
async def test_login_sets_an_httponly_samesite_strict_cookie_and_opens_the_role_console(
    client: AppClient, role: str, landing: str
) -> None:
    resp = await login(client, TOKENS[role])
    assert resp.status == 303
    assert resp.headers["Location"] == landing
    header = set_cookie(resp)
    attributes = [a.strip().lower() for a in header.split(";")]
    name, _, value = header.split(";")[0].partition("=")
    assert name == COOKIE
    assert len(value) >= 43 and TOKENS[role] not in value  # a session id, not the token
    assert "httponly" in attributes
    assert "samesite=strict" in attributes
    assert "path=/" in attributes
    assert "secure" in attributes  # public URL is https in these settings


async def test_login_cookie_is_not_secure_on_a_plain_http_deployment(
    aiohttp_client: ClientFactory, tmp_path: Path, store: Store, clock: FixedClock
) -> None:
    client = await aiohttp_client(
        console_app(make_settings(tmp_path, public_url=None), store, clock)
    )
    resp = await login(client, TOKENS["desk"])
    assert resp.status == 303
    attributes = [a.strip().lower() for a in set_cookie(resp).split(";")]
    assert "secure" not in attributes
    assert "httponly" in attributes


async def test_wrong_token_says_jeton_invalide_and_sets_no_cookie(client: AppClient) -> None:
    resp = await login(client, "not-a-token")
    assert resp.status == 401
    text = await resp.text()
    assert "Jeton invalide" in text
    assert 'aria-invalid="true"' in text
    assert not resp.headers.getall("Set-Cookie", [])


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/page"},
        {},
    ],
    ids=["foreign-origin", "opaque-origin", "foreign-referer", "no-origin"],
)
async def test_login_from_another_site_is_refused(
    client: AppClient, headers: dict[str, str]
) -> None:
    resp = await login(client, TOKENS["regulator"], headers=headers)
    assert resp.status == 403
    assert "Requête refusée" in await resp.text()
    assert not resp.headers.getall("Set-Cookie", [])


async def test_login_accepts_a_same_origin_referer_or_the_public_url_origin(
    client: AppClient,
) -> None:
    by_referer = await login(
        client, TOKENS["desk"], headers={"Referer": origin(client) + "/console/login"}
    )
    assert by_referer.status == 303
    by_public = await login(client, TOKENS["desk"], headers={"Origin": "https://regulator.example"})
    assert by_public.status == 303


async def test_login_returns_to_the_requested_console_page_but_never_off_site(
    client: AppClient,
) -> None:
    resp = await login(client, TOKENS["admin"], next="/console/desk/metz")
    assert resp.headers["Location"] == "/console/desk/metz"
    for evil in ("//evil.example/x", "https://evil.example/", "/api/v1/referrals"):
        resp = await login(client, TOKENS["admin"], next=evil)
        assert resp.headers["Location"] == "/console/regulation"


async def test_anonymous_visitor_is_sent_to_the_login_form_with_next(client: AppClient) -> None:
    resp = await client.get("/console/desk/nimes", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/login?next=%2Fconsole%2Fdesk%2Fnimes"
    form = await client.get(resp.headers["Location"])
    text = await form.text()
    assert 'name="next" value="/console/desk/nimes"' in text
    assert "Jeton d'accès" in text


async def test_logout_forgets_the_cookie(client: AppClient, signed: Signed) -> None:
    resp = await client.post(
        "/console/logout",
        headers={"Origin": origin(client)} | signed.cookie("desk"),
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/login"
    header = set_cookie(resp).lower()
    assert header.startswith(f"{COOKIE}=;") or f'{COOKIE}="";' in header
    assert "max-age=0" in header


# ------------------------------------------------------------------------ roles


@pytest.mark.parametrize(
    ("role", "path"),
    [
        ("desk", "/console/regulation"),
        ("coordinator", "/console/regulation"),
        ("regulator", "/console/desk/nimes"),
        ("desk", "/console/desk/metz"),
        ("desk_metz", "/console/reports/nimes"),
    ],
)
async def test_wrong_role_gets_a_french_403_page(
    client: AppClient, signed: Signed, role: str, path: str
) -> None:
    resp = await client.get(path, headers=signed.cookie(role))
    assert resp.status == 403
    assert resp.content_type == "text/html"
    text = await resp.text()
    assert "Accès refusé" in text
    assert "ne donne pas accès" in text
    assert '<html lang="fr">' in text


async def test_unknown_mmg_and_unknown_page_are_french_404_pages(
    client: AppClient, signed: Signed
) -> None:
    resp = await client.get("/console/desk/atlantis", headers=signed.cookie("admin"))
    assert resp.status == 404
    assert "MMG inconnue" in await resp.text()
    resp = await client.get("/console/nowhere", headers=signed.cookie("admin"))
    assert resp.status == 404
    assert "Page introuvable" in await resp.text()


# ------------------------------------------------------------------------- CSRF


async def test_cookie_authenticated_post_without_csrf_header_is_refused(
    client: AppClient, signed: Signed
) -> None:
    resp = await client.post("/api/v1/referrals", json=REFERRAL, headers=signed.cookie("regulator"))
    assert resp.status == 403
    body = await resp.json()
    assert body["error"] == "forbidden"
    assert "X-CSRF-Token" in body["message"]
    resp = await client.post("/api/v1/visits", json=VISIT, headers=signed.cookie("desk"))
    assert resp.status == 403
    listing = await client.get("/api/v1/referrals", headers=bearer("admin"))
    assert (await listing.json())["count"] == 0


async def test_cookie_post_with_another_sessions_csrf_value_is_refused(
    client: AppClient, signed: Signed
) -> None:
    resp = await client.post(
        "/api/v1/referrals",
        json=REFERRAL,
        headers=signed.cookie("regulator") | signed.csrf("admin"),
    )
    assert resp.status == 403


async def test_cookie_post_with_the_csrf_header_and_bearer_post_without_it_succeed(
    client: AppClient,
    signed: Signed,
) -> None:
    resp = await client.post(
        "/api/v1/referrals",
        json=REFERRAL,
        headers=signed.cookie("regulator") | signed.csrf("regulator"),
    )
    assert resp.status == 201, await resp.text()
    ref = await resp.json()
    resp = await client.post(
        f"/api/v1/referrals/{ref['id']}/arrived",
        json={},
        headers=signed.cookie("desk") | signed.csrf("desk"),
    )
    assert resp.status == 200
    resp = await client.post("/api/v1/visits", json=VISIT, headers=bearer("desk"))
    assert resp.status == 201


async def test_cookie_get_needs_no_csrf_header(client: AppClient, signed: Signed) -> None:
    resp = await client.get("/api/v1/referrals", headers=signed.cookie("regulator"))
    assert resp.status == 200


async def test_console_page_carries_the_csrf_value_of_its_session(
    client: AppClient, signed: Signed
) -> None:
    resp = await client.get("/console/regulation", headers=signed.cookie("regulator"))
    text = await resp.text()
    match = re.search(r'<meta name="csrf-token" content="([0-9a-f]*)">', text)
    assert match is not None
    assert match.group(1) == csrf_token(signed.ids["regulator"])


# ------------------------------------------------------------------ CSP and a11y


@pytest.mark.parametrize(("role", "path"), PAGES)
async def test_console_pages_have_no_inline_script_or_style(
    client: AppClient, signed: Signed, role: str, path: str
) -> None:
    resp = await client.get(path, headers=signed.cookie(role))
    assert resp.status == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    page = audit(await resp.text())
    assert page.inline_scripts == 0
    assert page.style_blocks == 0
    assert page.style_attributes == 0
    assert page.event_handlers == []
    assert page.javascript_urls == 0
    assert all(src.startswith("/console/static/") for src in page.external_scripts)


@pytest.mark.parametrize(("role", "path"), PAGES)
async def test_console_pages_are_french_and_every_control_is_labelled(
    client: AppClient, signed: Signed, role: str, path: str
) -> None:
    resp = await client.get(path, headers=signed.cookie(role))
    page = audit(await resp.text())
    assert page.lang == "fr"
    unlabelled = [
        (tag, ident)
        for tag, ident, aria in page.controls
        if not aria and (ident is None or ident not in page.label_targets)
    ]
    assert unlabelled == []


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("console.css", "text/css"),
        ("common.js", "text/javascript"),
        ("regulation.js", "text/javascript"),
        ("desk.js", "text/javascript"),
    ],
)
async def test_static_files_are_served(client: AppClient, name: str, content_type: str) -> None:
    resp = await client.get(f"/console/static/{name}")
    assert resp.status == 200
    assert resp.content_type in (content_type, "application/javascript")
    assert len(await resp.read()) > 500


# --------------------------------------------------------------- page contents


async def test_regulation_console_shows_open_state_and_pharmacy_on_duty(
    client: AppClient,
    signed: Signed,
) -> None:
    # Tuesday 24 November 2026, 21:00 in Nîmes: open; the Fontaine pharmacy is on duty.
    resp = await client.get("/console/regulation", headers=signed.cookie("regulator"))
    text = await resp.text()
    row = re.search(r'<tr data-mmg="nimes".*?</tr>', text, re.S)
    assert row is not None
    assert "Ouverte" in row.group(0)
    assert "Pharmacie du Jardin de la Fontaine" in row.group(0)
    assert "04 66 33 33 33" in row.group(0)
    assert 'id="referral-form"' in text


async def test_state_json_gives_each_visible_mmg_state_and_pharmacy(
    client: AppClient, signed: Signed
) -> None:
    resp = await client.get("/console/state.json", headers=signed.cookie("desk"))
    assert resp.status == 200
    states = (await resp.json())["mmgs"]
    assert [s["mmg"] for s in states] == ["nimes"]
    assert states[0]["open"] is True
    assert states[0]["pharmacy_name"] == "Pharmacie du Jardin de la Fontaine"


async def test_desk_counters_count_waiting_arrived_and_todays_visits(
    client: AppClient,
    signed: Signed,
) -> None:
    first = await client.post("/api/v1/referrals", json=REFERRAL, headers=bearer("regulator"))
    second = await client.post(
        "/api/v1/referrals", json=REFERRAL | {"case_id": "X2"}, headers=bearer("regulator")
    )
    ref_id = (await second.json())["id"]
    assert first.status == second.status == 201
    await client.post(f"/api/v1/referrals/{ref_id}/arrived", json={}, headers=bearer("desk"))
    await client.post("/api/v1/visits", json=VISIT, headers=bearer("desk"))
    resp = await client.get("/console/desk/nimes/summary.json", headers=signed.cookie("desk"))
    assert await resp.json() == {
        "pending": 1,
        "arrived": 1,
        "visits_today": 2,
        "via_regulation_today": 1,
    }
    page = await (await client.get("/console/desk/nimes", headers=signed.cookie("desk"))).text()
    assert '<span class="counter-value" data-counter="visits_today">2</span>' in page
    assert 'data-active="acknowledged arrived pending"' in page  # the board's statuses
    other = await client.get("/console/desk/metz/summary.json", headers=signed.cookie("desk"))
    assert other.status == 403


async def test_reports_page_has_the_circular_indicators_and_three_svg_charts(
    client: AppClient,
    signed: Signed,
) -> None:
    await client.post("/api/v1/visits", json=VISIT, headers=bearer("desk"))
    resp = await client.get(
        "/console/reports/nimes?month=2026-11", headers=signed.cookie("coordinator")
    )
    assert resp.status == 200
    text = await resp.text()
    readable = html.unescape(text)  # the apostrophe may be escaped as &#39; or &#x27;
    for indicator in INDICATORS:
        assert indicator.label in readable
    assert text.count("<svg ") == 3  # calls per hour, persons seen per hour, access modes
    assert text.count('role="img"') == 3
    assert text.count('<details class="chart-data">') == 3  # each chart's figures as a table
    flow = text[text.index('id="chart-visits"') :]
    assert "Personnes vues en consultation par heure d" in flow[: flow.index("</svg>")]
    assert 'href="/api/v1/reports/nimes/2026-11?format=xlsx"' in text
    assert "novembre 2026" in text
    assert 'href="/api/v1/reports/nimes/2026-11?format=csv"' in text
    persons = re.search(r'data-indicator="persons_seen.direct_access">.*?<td[^>]*>(\d+)<', text)
    assert persons is not None
    assert persons.group(1) == "1"


async def test_reports_month_picker_redirects_and_bad_month_is_a_french_400(
    client: AppClient,
    signed: Signed,
) -> None:
    resp = await client.get(
        "/console/reports?mmg=metz&month=2026-10",
        headers=signed.cookie("admin"),
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/console/reports/metz?month=2026-10"
    resp = await client.get("/console/reports/nimes?month=2026-13", headers=signed.cookie("admin"))
    assert resp.status == 400
    assert "Mois invalide" in await resp.text()
