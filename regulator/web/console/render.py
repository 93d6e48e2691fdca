"""Rendering of the console pages: the Jinja2 environment, the page frame, error pages.

Templates live in ``regulator/web/templates/`` (shipped as package data). The
environment escapes every value (``autoescape``) and refuses undefined names
(``StrictUndefined``), so a typo in a template fails the tests instead of
rendering an empty string in front of a regulator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import phonenumbers
from aiohttp import web

from regulator.auth import DEV_PRINCIPAL, Principal
from regulator.core.phone import is_short_code
from regulator.core.protocol import Protocol
from regulator.errors import Unavailable
from regulator.web import keys
from regulator.web.access import (
    SESSION_UNAVAILABLE,
    Permission,
    caller,
    csrf_token,
    require_mmg,
)
from regulator.web.charts import french_number

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"

TEMPLATES: web.AppKey[jinja2.Environment] = web.AppKey("console_templates", jinja2.Environment)


def environment(directory: Path = TEMPLATES_DIR) -> jinja2.Environment:
    """The consoles' template environment (built once, at start-up)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = french_number
    env.filters["f1"] = lambda value: f"{value:.1f}"
    return env


def display_number(number: str) -> str:
    """``+33466333333`` → ``04 66 33 33 33``; short codes and others unchanged."""
    if is_short_code(number) or not number.startswith("+"):
        return number
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


# -------------------------------------------------------------- who and where


def protocols(request: web.Request) -> list[Protocol]:
    return sorted(request.config_dict[keys.PROTOCOLS].current, key=lambda p: p.name)


def who(request: web.Request) -> Principal | None:
    """The signed-in person, or None: for what a page shows and where it links, never
    to allow a write (no CSRF check here, so it never raises, even on a form post)."""
    if request.config_dict[keys.TOKENS] is None:
        return DEV_PRINCIPAL if request.config_dict[keys.SETTINGS].insecure_dev else None
    return caller(request).principal


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def to_login(request: web.Request) -> web.Response:
    """Send a visitor without a session to the sign-in form (and back here after); a
    session the store could not check is a French 503 page instead (not signed out)."""
    if caller(request).kind == "unavailable":
        raise Unavailable(SESSION_UNAVAILABLE)
    return redirect("/console/login?" + urlencode({"next": request.path_qs}))


def landing(request: web.Request, person: Principal) -> str:
    """The console a role starts on."""
    if person.is_regulator:
        return "/console/regulation"
    ids = [p.id for p in protocols(request)]
    for mmg in ids:
        if person.can_desk(mmg):
            return f"/console/desk/{quote(mmg)}"
    for mmg in ids:
        if person.can_report(mmg):
            return f"/console/reports/{quote(mmg)}"
    return "/console/login"


@dataclass(frozen=True, slots=True)
class NavLink:
    href: str
    label: str
    current: bool


@dataclass(frozen=True, slots=True)
class Nav:
    links: tuple[NavLink, ...]
    who: str


def nav(request: web.Request, person: Principal | None, current: str) -> Nav | None:
    """The consoles this person may open, the current one marked."""
    if person is None:
        return None
    links: list[tuple[str, str, str]] = []
    protos = protocols(request)
    if person.is_regulator:
        links.append(("regulation", "/console/regulation", "Régulation"))
    for proto in protos:
        if person.can_desk(proto.id):
            links.append((f"desk:{proto.id}", f"/console/desk/{quote(proto.id)}", proto.name))
    reportable = [p for p in protos if person.can_report(p.id)]
    if reportable:
        links.append(("reports", f"/console/reports/{quote(reportable[0].id)}", "Indicateurs"))
    return Nav(
        tuple(NavLink(href, label, key == current) for key, href, label in links), person.name
    )


# ------------------------------------------------------------------ pages


def page(
    request: web.Request,
    person: Principal | None,
    template: str,
    *,
    title: str,
    scripts: Sequence[str] = (),
    current: str = "",
    status: int = 200,
    **context: Any,
) -> web.Response:
    """``template`` (which extends ``base.html``) inside the console frame."""
    session_id = caller(request).session_id
    csrf = csrf_token(session_id) if session_id and person is not None else ""
    body = (
        request.config_dict[TEMPLATES]
        .get_template(template)
        .render(
            title=title,
            csrf=csrf,
            scripts=scripts,
            nav=nav(request, person, current),
            status=status,
            **context,
        )
    )
    return web.Response(
        text=body,
        status=status,
        content_type="text/html",
        charset="utf-8",
        # Lets the browser send Origin on our own form posts (the app-wide
        # "no-referrer" would turn it into "null"); other sites still get nothing.
        headers={"Referrer-Policy": "same-origin"},
    )


def error_page(
    request: web.Request, person: Principal | None, status: int, title: str, message: str
) -> web.Response:
    links = [("/console/login", "Se connecter avec un autre jeton")]
    if person is not None:
        home = landing(request, person)
        if home != "/console/login":
            links.insert(0, (home, "Ouvrir ma console"))
    return page(
        request,
        person,
        "error.html",
        title=title,
        status=status,
        message=message,
        links=links,
    )


def denied(request: web.Request, person: Principal, what: str) -> web.Response:
    return error_page(
        request,
        person,
        403,
        "Accès refusé",
        f"Le jeton « {person.name} » ne donne pas accès à {what}.",
    )


def unknown_mmg(request: web.Request, person: Principal, mmg: str) -> web.Response:
    return error_page(
        request, person, 404, "MMG inconnue", f"Aucune maison médicale de garde « {mmg} »."
    )


def mmg_page_access(
    request: web.Request, permission: Permission
) -> tuple[Principal, Protocol] | web.Response:
    """Who may see the ``{mmg}`` page: (principal, protocol), or the sign-in page to
    answer instead; an unknown MMG or a refusal is raised (:func:`require_mmg`), and
    the console's error middleware renders it as a French page."""
    if who(request) is None:
        return to_login(request)
    return require_mmg(request, permission)
