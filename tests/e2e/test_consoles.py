"""The two consoles in a real browser: Debian's Chromium driven by Playwright.

The service runs for real (``create_app`` on a free TCP port, SQLite store, the
protocols of ``protocols/``) with its clock pinned to Tuesday 24 November 2026,
21:00 in Nîmes (open; a pharmacy on duty), so screenshots are reproducible. A
regulator and the Nîmes front desk sign in in two separate browser contexts; a
referral created on one side must appear on the other in under two seconds, and
the desk's "patient arrivé" must show up live in the regulation console.

Screenshots go to ``test-artifacts/consoles/`` and are copied to
``docs/screenshots/`` for the README. Without Chromium (or Playwright) the test is
skipped — except in CI (``CI=true``), where it fails.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
import pytest_asyncio
from aiohttp import ClientSession, web
from pydantic import SecretStr

from regulator.auth import hash_token
from regulator.platforms import generic
from regulator.ports import FixedClock
from regulator.settings import Settings
from regulator.storage.sqlite import SqliteStore
from regulator.web.app import create_app
from tests.support.paths import ROOT

pytestmark = pytest.mark.e2e

ARTIFACTS = ROOT / "test-artifacts" / "consoles"
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = os.environ.get("REGULATOR_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOW = datetime(2026, 11, 24, 21, 0, tzinfo=ZoneInfo("Europe/Paris"))
REGULATOR_TOKEN = "e2e-token-regulateur-samu30"
DESK_TOKEN = "e2e-token-accueil-nimes"
COORDINATOR_TOKEN = "e2e-token-coordination-ars"
GENERIC_SECRET = "e2e-generic-secret"
NIMES = "+33466123456"
METZ = "+33387551234"
LIVE_BUDGET_S = 2.0


def _unavailable(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _chromium() -> str:
    path = shutil.which(CHROMIUM)
    if path is None:
        _unavailable(f"{CHROMIUM} not found (apt-get install chromium)")
    assert path is not None
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    return path


@dataclass(frozen=True)
class Service:
    url: str
    clock: FixedClock
    app: web.Application


@pytest_asyncio.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    """The real application on 127.0.0.1:<free port>, its clock pinned to :data:`NOW`."""
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        f'- {{name: samu30-poste1, sha256: "{hash_token(REGULATOR_TOKEN)}", roles: [regulator]}}\n'
        f'- {{name: accueil-nimes, sha256: "{hash_token(DESK_TOKEN)}", roles: ["desk:nimes"]}}\n'
        f'- {{name: ars-occitanie, sha256: "{hash_token(COORDINATOR_TOKEN)}", '
        "roles: [coordinator]}\n",
        encoding="utf-8",
    )
    settings = Settings(
        protocols_dir=ROOT / "protocols",
        data_dir=tmp_path / "var",
        tokens_file=tokens,
        generic_secret=SecretStr(GENERIC_SECRET),
        public_url=None,
        watch_protocols=False,
        log_format="console",
    )
    clock = FixedClock(NOW)
    app = create_app(settings, SqliteStore(tmp_path / "regulator.sqlite3"), clock)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield Service(f"http://{host}:{port}", clock, app)
    finally:
        await runner.cleanup()


async def _call(session: ClientSession, base: str, **payload: str) -> str:
    """One signed generic-PBX webhook; returns the route decided."""
    body = orjson.dumps(payload)
    signature = generic.sign(
        GENERIC_SECRET, body, int(time.time()), method="POST", path="/hooks/generic/call"
    )
    async with session.post(
        f"{base}/hooks/generic/call",
        data=body,
        headers={"Content-Type": "application/json", "X-Regulator-Signature": signature},
    ) as resp:
        assert resp.status == 200, await resp.text()
        route: str = (await resp.json())["route"]
        return route


async def _seed_month_of_calls(service: Service) -> None:
    """November's calls to Nîmes before tonight, so the report's charts show a month."""
    rng = random.Random(2026)
    evening = [20, 20, 20, 21, 21, 22, 23]
    daytime = [9, 10, 11, 12, 14, 15, 17, 18, 19, 20, 20, 21, 22]
    async with ClientSession() as http:
        for day in range(1, 24):
            midnight = NOW.replace(day=day, hour=0)
            weekend = midnight.weekday() >= 5 or day in (1, 11)  # 1 and 11 Nov: holidays
            for n in range(rng.randint(1, 4) + (2 if weekend else 0)):
                hour = rng.choice(daytime if weekend else evening)
                service.clock.set(midnight + timedelta(hours=hour, minutes=rng.randint(0, 59)))
                call = {
                    "call_id": f"seed-{day}-{n}",
                    "to": NIMES,
                    "from": f"+336110{day:02d}{n:03d}",
                }
                await _call(http, service.url, **call)
                await _call(http, service.url, **call, stage="digits", digits=rng.choice("112"))
    service.clock.set(NOW)


async def test_referral_travels_live_between_the_regulation_and_desk_consoles(
    service: Service,
) -> None:
    executable = _chromium()
    await _seed_month_of_calls(service)
    base = service.url
    from playwright.async_api import ConsoleMessage, Page, async_playwright, expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    def watch(page: Page, name: str) -> None:
        """Collect script errors and CSP violations (a refused inline script shows here)."""

        def on_console(message: ConsoleMessage) -> None:
            # The wrong-token and validation steps below answer 401 and 422 on purpose.
            expected = any(f"status of {code}" in message.text for code in (401, 422))
            if message.type == "error" and not expected:
                problems.append(f"{name}: {message.text}")

        page.on("console", on_console)
        page.on("pageerror", lambda e: problems.append(f"{name}: {e}"))

    async def sign_in(page: Page, token: str, landing: str) -> None:
        await page.goto(f"{base}/console/login")
        await page.get_by_label("Jeton d'accès").fill(token)
        await page.get_by_role("button", name="Se connecter").click()
        await page.wait_for_url(f"{base}{landing}")
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "open")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            regulation_ctx = await browser.new_context(
                viewport={"width": 1360, "height": 1000},
                locale="fr-FR",
                timezone_id="Europe/Paris",
            )
            desk_ctx = await browser.new_context(
                viewport={"width": 1280, "height": 1000},
                locale="fr-FR",
                timezone_id="Europe/Paris",
            )
            reg = await regulation_ctx.new_page()
            desk = await desk_ctx.new_page()
            watch(reg, "régulation")
            watch(desk, "accueil")

            # A wrong token first: the French error, no cookie, still on the form.
            await reg.goto(f"{base}/console/login")
            await reg.get_by_label("Jeton d'accès").fill("pas-le-bon-jeton")
            await reg.get_by_role("button", name="Se connecter").click()
            await expect(reg.locator("#token-error")).to_have_text("Jeton invalide")

            await sign_in(reg, REGULATOR_TOKEN, "/console/regulation")
            await sign_in(desk, DESK_TOKEN, "/console/desk/nimes")
            await desk.get_by_role("button", name="Activer l'alerte sonore").click()
            await expect(desk.locator("#sound-toggle")).to_have_attribute("aria-pressed", "true")

            # Calls routed to regulation, and one overflow, appear live in the regulation console.
            async with ClientSession() as http:
                await _call(http, base, call_id="e2e-1", to=NIMES, **{"from": "+33611000001"})
                routed = await _call(
                    http,
                    base,
                    call_id="e2e-1",
                    to=NIMES,
                    stage="digits",
                    digits="1",
                    **{"from": "+33611000001"},
                )
                assert routed == "regulation"
                await _call(http, base, call_id="e2e-2", to=METZ, **{"from": "+33611000002"})
                await _call(
                    http,
                    base,
                    call_id="e2e-3",
                    to=NIMES,
                    stage="dial_failed",
                    target="regulation",
                    **{"from": "+33611000003"},
                )
            await expect(reg.locator('#calls-body tr[data-call="e2e-1"]')).to_contain_text(
                "Régulation"
            )
            await expect(reg.locator('#calls-body tr[data-call="e2e-3"]')).to_contain_text(
                "Débordement"
            )
            await expect(reg.locator('[data-count="overflow"][data-mmg="nimes"]')).to_have_text("1")

            # The form shows the API's validation errors in French next to the fields.
            form = reg.locator("#referral-form")
            await reg.locator("#f-mmg").select_option("nimes")
            await reg.locator("#f-case_id").fill("DRFR15030000042")
            await reg.locator("#f-callback_number").fill("123")
            await form.get_by_role("button", name="Envoyer l'orientation").click()
            await expect(reg.locator("#f-display_name-error")).to_have_text("Champ obligatoire.")
            await expect(reg.locator("#f-callback_number-error")).to_contain_text(
                "n'est pas un numéro de téléphone"
            )
            await expect(reg.locator("#f-display_name")).to_have_attribute("aria-invalid", "true")

            # A valid referral reaches the desk, with its alert, in under two seconds.
            await reg.locator("#f-display_name").fill("M. D.")
            await reg.locator("#f-age_band").select_option("18-64")
            await reg.locator("#f-callback_number").fill("06 11 22 33 44")
            await reg.locator("#f-reason").fill("fièvre depuis 3 jours")
            await reg.locator("#f-urgency").select_option("P2")
            await reg.locator("#f-expected_at").fill("2026-11-24T21:30")
            # Regulated access: tiers payant is already ticked (the circular's rule).
            await expect(reg.locator("#f-tiers_payant")).to_be_checked()
            started = time.monotonic()
            await form.get_by_role("button", name="Envoyer l'orientation").click()
            card = desk.locator('#incoming li[data-case="DRFR15030000042"]')
            await card.wait_for(timeout=LIVE_BUDGET_S * 1000)
            elapsed = time.monotonic() - started
            assert elapsed < LIVE_BUDGET_S, f"referral reached the desk in {elapsed:.2f} s"
            await expect(desk.locator("#alert")).to_be_visible()
            await expect(desk.locator("#alert")).to_contain_text("Nouvelle orientation régulée")
            await expect(card).to_contain_text("21:30")  # expected time, MMG local time
            await expect(card).to_contain_text(
                "Tiers payantoui (accès régulé par le centre 15 / SAS : tiers payant)"
            )
            assert int(await desk.evaluate("document.body.dataset.beeps || '0'")) >= 2
            await expect(reg.locator("#f-display_name")).to_have_value("")  # form reset

            # The desk marks the patient arrived: the regulation console follows live.
            await card.get_by_role("button", name="Patient arrivé").click()
            row = reg.locator('#referrals-body tr[data-case="DRFR15030000042"]')
            await expect(row).to_have_attribute(
                "data-status", "arrived", timeout=LIVE_BUDGET_S * 1000
            )
            await expect(row).to_contain_text("patient arrivé")
            await expect(desk.locator('[data-counter="via_regulation_today"]')).to_have_text("1")

            # Outcome of the consultation, recorded from the card.
            await card.get_by_role("button", name="Issue").click()
            await card.get_by_label("Retour à domicile").check()
            await card.get_by_role("button", name="Enregistrer l'issue").click()
            await expect(card).to_have_count(0)
            await expect(row).to_have_attribute("data-status", "completed")
            await expect(row).to_contain_text("retour à domicile")

            # A walk-in visit, then a second referral left pending for the screenshots.
            visit = desk.locator("#visit-form")
            await visit.get_by_label("Mode d'accès").select_option("direct")
            await visit.get_by_label("Issue de la consultation").select_option("home")
            await visit.get_by_label("Tranche d'âge").select_option("2-17")
            await visit.get_by_label("Motif de consultation").fill("otite")
            await visit.get_by_role("button", name="Enregistrer le passage").click()
            await expect(desk.locator("#visit-form-status")).to_have_text(
                "Passage enregistré — tiers payant : non "
                "(accès direct (hors régulation préalable) : pas de tiers payant)."
            )
            await expect(desk.locator('[data-counter="visits_today"]')).to_have_text("2")
            # A person sent by centre 15 whose referral is not in this system.
            await visit.get_by_label("Mode d'accès").select_option("regulation")
            await visit.get_by_label("Numéro de dossier de régulation").fill("LRM-2026-0042")
            await visit.get_by_label("Issue de la consultation").select_option("home")
            await visit.get_by_role("button", name="Enregistrer le passage").click()
            await expect(desk.locator("#visit-form-status")).to_have_text(
                "Passage enregistré — tiers payant : oui "
                "(accès régulé par le centre 15 / SAS : tiers payant)."
            )
            await expect(desk.locator('[data-counter="visits_today"]')).to_have_text("3")
            await expect(desk.locator('[data-counter="via_regulation_today"]')).to_have_text("2")
            await expect(desk.locator("#alert")).to_be_hidden()  # nothing left pending

            await reg.locator("#f-case_id").fill("DRFR15030000043")
            await reg.locator("#f-display_name").fill("Mme L.")
            await reg.locator("#f-age_band").select_option("75+")
            await reg.locator("#f-reason").fill("chute sans perte de connaissance")
            await reg.locator("#f-urgency").select_option("P3")
            await reg.locator("#f-expected_at").fill("2026-11-24T21:45")
            await form.get_by_role("button", name="Envoyer l'orientation").click()
            await desk.locator('#incoming li[data-case="DRFR15030000043"]').wait_for(
                timeout=LIVE_BUDGET_S * 1000
            )
            await expect(desk.locator("#alert")).to_be_visible()
            await expect(desk.locator('[data-counter="pending"]')).to_have_text("1")
            await expect(reg.locator("#referral-form-status")).to_contain_text("Mme L.")

            await reg.screenshot(path=ARTIFACTS / "regulation.png", full_page=True)
            await desk.screenshot(path=ARTIFACTS / "desk.png", full_page=True)

            # Keyboard only: acknowledge the second referral with Enter.
            second = desk.locator('#incoming li[data-case="DRFR15030000043"]')
            await second.get_by_role("button", name="Accuser réception").focus()
            await desk.keyboard.press("Enter")
            await expect(second).to_have_attribute("data-status", "acknowledged")
            await expect(second.get_by_role("button", name="Patient arrivé")).to_be_focused()
            await expect(desk.locator("#alert")).to_be_hidden()
            await expect(
                reg.locator('#referrals-body tr[data-case="DRFR15030000043"]')
            ).to_have_attribute("data-status", "acknowledged")

            # The month's indicators, with the server-drawn charts.
            reports = await regulation_ctx.new_page()
            watch(reports, "indicateurs")
            await reports.goto(f"{base}/console/reports/nimes?month=2026-11")
            await expect(reports.locator("h1")).to_contain_text("Indicateurs")
            seen = reports.locator('tr[data-indicator="persons_seen.total"] td')
            await expect(seen).to_have_text("3")
            via = reports.locator('tr[data-indicator="persons_seen.via_regulation"] td')
            await expect(via).to_have_text("2")
            await expect(reports.locator("svg.chart-svg")).to_have_count(4)
            await expect(reports.locator("#chart-visits rect.s-weekday > title")).to_have_text(
                "21 h — jours de semaine : 3 personnes vues"
            )
            await reports.screenshot(path=ARTIFACTS / "reports.png", full_page=True)

            assert problems == [], problems
        finally:
            await browser.close()

    if os.environ.get("REGULATOR_UPDATE_SCREENSHOTS") == "1":  # refresh the README's images
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for name in ("regulation.png", "desk.png", "reports.png"):
            shutil.copyfile(ARTIFACTS / name, SCREENSHOTS / name)


async def test_a_coordinator_enters_the_ed_passages_and_the_report_shows_them(
    service: Service,
) -> None:
    executable = _chromium()
    base = service.url
    from playwright.async_api import async_playwright, expect

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context(locale="fr-FR", timezone_id="Europe/Paris")
            page = await ctx.new_page()
            problems: list[str] = []
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"{base}/console/login")
            await page.get_by_label("Jeton d'accès").fill(COORDINATOR_TOKEN)
            await page.get_by_role("button", name="Se connecter").click()
            await page.goto(f"{base}/console/reports/nimes?month=2026-11")
            before = page.locator(
                '#entered-figures tr[data-indicator="entered.ed_passages.before_midnight"] td'
            )
            await expect(before).to_have_text("non renseigné")
            form = page.locator("#ed-form")
            # The source is required: the API's French message lands next to the field.
            await form.get_by_label("Nombre de passages aux urgences avant minuit").fill("412")
            await form.get_by_label("Nombre de passages aux urgences après minuit").fill("97")
            await form.get_by_role("button", name="Enregistrer les passages").click()
            await expect(page.locator("#ed-source-error")).to_be_visible()
            await form.get_by_label("Source").fill("RPU du CHU de Nîmes")
            await form.get_by_role("button", name="Enregistrer les passages").click()
            await expect(before).to_have_text("412")  # the page reloaded with the entry
            source = page.locator(
                '#entered-figures tr[data-indicator="entered.ed_passages.source"] td'
            )
            await expect(source).to_have_text("RPU du CHU de Nîmes")
            await expect(page.locator("#ed-before_midnight")).to_have_value("412")
            costs = page.locator("#costs-form")
            await costs.get_by_label("Personnel").fill("51000")
            await costs.get_by_role("button", name="Enregistrer les coûts").click()
            await expect(page.locator("#cost-equipment-error")).to_be_visible()  # all six
            assert problems == [], problems
        finally:
            await browser.close()


async def test_protocol_page_shows_the_next_fortnight_and_the_history(service: Service) -> None:
    executable = _chromium()
    base = service.url
    from playwright.async_api import async_playwright, expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # The service records the version in force in the background, just after start.
    async with ClientSession() as http:
        for _ in range(100):
            async with http.get(
                f"{base}/api/v1/protocols/nimes/history",
                headers={"Authorization": f"Bearer {DESK_TOKEN}"},
            ) as resp:
                assert resp.status == 200
                history = await resp.json()
            if history["versions"]:
                break
            await asyncio.sleep(0.05)
    current = history["current"]
    assert history["versions"][0]["version"] == current
    problems: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            ctx = await browser.new_context(
                viewport={"width": 1280, "height": 1000}, locale="fr-FR", timezone_id="Europe/Paris"
            )
            page = await ctx.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            await page.goto(f"{base}/console/login")
            await page.get_by_label("Jeton d'accès").fill(DESK_TOKEN)
            await page.get_by_role("button", name="Se connecter").click()
            await page.wait_for_url(f"{base}/console/desk/nimes")
            await page.goto(f"{base}/console/protocols/nimes")
            await expect(page.locator("h1")).to_have_text(
                "Protocole — Maison médicale de garde de Nîmes"
            )
            await expect(page.locator("li.timeline-day")).to_have_count(14)
            tonight = page.locator('li.timeline-day[data-day="2026-11-24"]')
            await expect(tonight.locator("h3")).to_contain_text("mardi 24/11/2026")
            await expect(tonight.locator("rect.band.open")).to_have_count(1)
            await expect(tonight.locator(".pharmacy")).to_contain_text("Pharmacie")
            saturday = page.locator('li.timeline-day[data-day="2026-11-28"]')
            await expect(saturday.locator(".slots")).to_contain_text("ouvert 12:00-24:00")
            await expect(page.locator('[data-version="current"]')).to_have_text(current)
            row = page.locator(f'table.history tr[data-version="{current}"]')
            await expect(row).to_contain_text("première version enregistrée")
            await expect(row).to_contain_text("(en vigueur)")
            await page.screenshot(path=ARTIFACTS / "protocol.png", full_page=True)
            assert problems == [], problems
        finally:
            await browser.close()


async def _referrals(case_id: str, base: str) -> list[dict[str, object]]:
    async with (
        ClientSession() as http,
        http.get(
            f"{base}/api/v1/referrals?mmg=nimes",
            headers={"Authorization": f"Bearer {REGULATOR_TOKEN}"},
        ) as resp,
    ):
        assert resp.status == 200
        found: list[dict[str, object]] = (await resp.json())["referrals"]
    return [r for r in found if r["case_id"] == case_id]


async def test_overflow_card_live_figures_and_the_p0_confirmation(service: Service) -> None:
    """Issue 17 in the consoles: an overflow shows on the desk as it happens, with its
    card for the receptionist; the regulation line's figures follow the legs live; a P0
    referral leaves only once the regulator confirms the dialog."""
    executable = _chromium()
    base = service.url
    from playwright.async_api import Dialog, Page, async_playwright, expect

    from regulator.core.legs import LegEvent, LegStatus
    from regulator.core.models import Route
    from regulator.web import keys

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []

    async def sign_in(page: Page, token: str, landing: str) -> None:
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        await page.goto(f"{base}/console/login")
        await page.get_by_label("Jeton d'accès").fill(token)
        await page.get_by_role("button", name="Se connecter").click()
        await page.wait_for_url(f"{base}{landing}")
        await expect(page.locator("#live-status")).to_have_attribute("data-state", "open")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            contexts = [
                await browser.new_context(
                    viewport={"width": width, "height": 1000},
                    locale="fr-FR",
                    timezone_id="Europe/Paris",
                )
                for width in (1360, 1280)
            ]
            reg, desk = [await ctx.new_page() for ctx in contexts]
            await sign_in(reg, REGULATOR_TOKEN, "/console/regulation")
            await sign_in(desk, DESK_TOKEN, "/console/desk/nimes")
            await expect(desk.locator("#desk-calls-empty")).to_be_visible()

            # Centre 15 does not answer: the platform reports the failed dial, the
            # service puts the caller through to the desk, whose card shows at once.
            caller = "+33611000009"
            started = time.monotonic()
            async with ClientSession() as http:
                await _call(http, base, call_id="e2e-direct", to=NIMES, **{"from": "+33611000008"})
                routed = await _call(
                    http,
                    base,
                    call_id="e2e-ovf",
                    to=NIMES,
                    stage="dial_failed",
                    target="regulation",
                    **{"from": caller},
                )
            assert routed == "direct_access"
            card = desk.locator('#desk-calls li[data-call="e2e-ovf"]')
            await card.wait_for(timeout=LIVE_BUDGET_S * 1000)
            elapsed = time.monotonic() - started
            assert elapsed < LIVE_BUDGET_S, f"overflow reached the desk in {elapsed:.2f} s"
            await expect(card.locator("h3")).to_have_text(
                "Débordement : la régulation (centre 15) n'a pas répondu en 90 s"
            )
            await expect(card).to_contain_text("appel reçu à 21:00")
            await expect(card.get_by_role("note")).to_contain_text("Appel non régulé")
            await expect(card.get_by_role("note")).to_contain_text(
                "Urgence vitale ou doute : demandez à l'appelant de raccrocher et de "
                "composer le 15 sans attendre."
            )
            await expect(desk.locator("#desk-calls li")).to_have_count(1)  # regulation: none
            assert "0611000009" not in (await card.inner_text()).replace(" ", "")
            assert "11000009" not in await card.inner_text()
            await expect(desk.locator("#desk-calls-empty")).to_be_hidden()
            await desk.screenshot(path=ARTIFACTS / "desk-overflow.png", full_page=True)

            # The regulation line's figures of the day follow the legs, pushed live.
            waiting = reg.locator('[data-quality="waiting"][data-mmg="nimes"]')
            offered = reg.locator('[data-quality="offered"][data-mmg="nimes"]')
            await expect(offered).to_have_text("0")
            await expect(reg.locator('[data-quality="qs60"][data-mmg="nimes"]')).to_have_text("—")
            router = service.app[keys.ROUTER]
            at = NOW.astimezone(ZoneInfo("UTC"))

            async def legs(*events: tuple[str, LegStatus, int]) -> None:
                for call_id, status, seconds in events:
                    when = at + timedelta(seconds=seconds)
                    await router.leg_event(
                        LegEvent(call_id, Route.REGULATION, status, when, mmg="nimes")
                    )
                await service.app[keys.WRITER].flush()

            await legs(("e2e-1", LegStatus.RINGING, -120), ("e2e-1", LegStatus.ANSWERED, -100))
            await legs(("e2e-2", LegStatus.RINGING, -20))
            await expect(waiting).to_have_text("1", timeout=3000)
            # The ringing call waits: in no figure until it settles (the report's rule).
            await expect(offered).to_have_text("1")
            await expect(
                reg.locator('[data-quality="answer_rate"][data-mmg="nimes"]')
            ).to_have_text("100\u00a0%")

            # A P0 referral: the regulator is asked first; dismissed, nothing is sent.
            form = reg.locator("#referral-form")
            await reg.locator("#f-mmg").select_option("nimes")
            await reg.locator("#f-case_id").fill("DRFR15-E2E-P0")
            await reg.locator("#f-display_name").fill("M. R.")
            await reg.locator("#f-urgency").select_option("P0")
            asked: list[str] = []

            async def dismiss(dialog: Dialog) -> None:
                asked.append(dialog.message)
                await dialog.dismiss()

            reg.once("dialog", dismiss)
            await form.get_by_role("button", name="Envoyer l'orientation").click()
            await expect(reg.locator("#referral-form-status")).to_have_text(
                "Orientation non envoyée : urgence P0 non confirmée."
            )
            assert len(asked) == 1
            assert asked[0].startswith("Urgence P0 : une maison médicale de garde n'est pas")
            assert "M. R. vers Maison médicale de garde de Nîmes" in asked[0]
            assert await _referrals("DRFR15-E2E-P0", base) == []
            await expect(reg.locator("#f-case_id")).to_have_value("DRFR15-E2E-P0")  # kept

            # Accepted: sent, and on the desk's board.
            async def accept(dialog: Dialog) -> None:
                asked.append(dialog.message)
                await dialog.accept()

            reg.once("dialog", accept)
            await form.get_by_role("button", name="Envoyer l'orientation").click()
            sent = desk.locator('#incoming li[data-case="DRFR15-E2E-P0"]')
            await sent.wait_for(timeout=LIVE_BUDGET_S * 1000)
            await expect(sent).to_contain_text("P0")
            assert len(asked) == 2
            created = await _referrals("DRFR15-E2E-P0", base)
            assert [r["urgency"] for r in created] == ["P0"]
            await reg.screenshot(path=ARTIFACTS / "regulation-quality.png", full_page=True)
            assert problems == [], problems
        finally:
            await browser.close()
