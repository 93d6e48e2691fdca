"""The French web consoles: regulation, front desk, and the monthly indicators page.

Pages are rendered here from small ``string.Template`` files in ``templates/``
(every value escaped with :func:`html.escape`) and brought to life by plain
JavaScript in ``static/`` — the CSP forbids inline scripts and styles. The
scripts subscribe to ``/api/v1/events`` with ``EventSource`` (which resumes with
``Last-Event-ID`` by itself) and write through the JSON API with the session
cookie plus ``X-CSRF-Token`` (checked in :func:`regulator.web.api.principal`).
The report charts are SVG drawn on the server: no CDN, no chart library.

Sign-in stores the API token in the ``regulator_token`` cookie (HttpOnly,
SameSite=Strict, Secure over HTTPS); the login and logout forms are plain HTML
posts, protected by an Origin/Referer same-origin check.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import quote, urlencode

import phonenumbers
from aiohttp import web

from regulator.auth import COOKIE, DEV_PRINCIPAL, Principal
from regulator.core.indicators import (
    DAY_TYPE_LABELS,
    INDICATORS,
    ROUTE_LABELS,
    build_report,
    report_rows,
    valid_month,
)
from regulator.core.models import DayType, ReferralStatus, VisitChannel
from regulator.core.phone import is_short_code
from regulator.core.protocol import Protocol
from regulator.errors import Unauthorized, Unavailable
from regulator.logs import get_logger
from regulator.ports import StoreError
from regulator.web import keys
from regulator.web.access import Permission, csrf_token, principal, require_mmg
from regulator.web.access import same_origin as _same_origin
from regulator.web.middlewares import json_response

log = get_logger("regulator.consoles")

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"

#: Lifetime of the console cookie: one long night shift, not forever.
SESSION_MAX_AGE_S = 14 * 3600

_ACTIVE = frozenset({ReferralStatus.PENDING, ReferralStatus.ACKNOWLEDGED, ReferralStatus.ARRIVED})
_WAITING = frozenset({ReferralStatus.PENDING, ReferralStatus.ACKNOWLEDGED})

AGE_BANDS: tuple[tuple[str, str], ...] = (
    ("0-1", "moins de 2 ans"),
    ("2-17", "2 à 17 ans"),
    ("18-64", "18 à 64 ans"),
    ("65-74", "65 à 74 ans"),
    ("75+", "75 ans et plus"),
)
URGENCIES: tuple[tuple[str, str], ...] = (
    ("P0", "P0"),
    ("P1", "P1"),
    ("P2", "P2"),
    ("P3", "P3"),
)
OUTCOME_LABELS: dict[str, str] = {
    "home": "Retour à domicile",
    "emergency": "Réorientation vers une structure d'urgence",
    "hospitalised": "Hospitalisation",
    "other": "Autre",
}
CHANNEL_LABELS: dict[str, str] = {
    "direct": "Accès direct (sans régulation préalable)",
    "emergency_reorientation": "Réorientation par un service d'urgences",
    "other": "Autre",
}
#: Persons-seen chart: (report key, channel class, label).
SEEN_SERIES: tuple[tuple[str, str, str], ...] = (
    ("via_regulation", VisitChannel.REGULATION.value, "Via la régulation de la PDS"),
    ("direct_access", VisitChannel.DIRECT.value, "Accès direct (hors régulation préalable)"),
    (
        "emergency_reorientation",
        VisitChannel.EMERGENCY_REORIENTATION.value,
        "Après réorientation par un service d'urgences",
    ),
    ("other", VisitChannel.OTHER.value, "Autres cas"),
)
DAY_TYPE_NAMES: dict[str, str] = {
    "weekday": "jour de semaine",
    "saturday": "samedi",
    "sunday": "dimanche",
    "holiday": "jour férié",
    "bridge": "pont",
}
MONTHS_FR = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


# ------------------------------------------------------------------ templating


class Html(str):
    """Markup that is already safe: inserted as is by :meth:`Templates.render`."""

    __slots__ = ()


def esc(value: object) -> str:
    """Escape anything that is not already :class:`Html`."""
    if isinstance(value, Html):
        return value
    return html.escape(str(value), quote=True)


def join(parts: Iterable[str]) -> Html:
    """Concatenate fragments built with :func:`esc` (the caller escapes each value)."""
    return Html("".join(parts))


@dataclass(frozen=True, slots=True)
class Templates:
    """The page templates, read once at start-up."""

    pages: Mapping[str, Template]

    @classmethod
    def load(cls, directory: Path) -> Templates:
        return cls(
            {p.stem: Template(p.read_text(encoding="utf-8")) for p in directory.glob("*.html")}
        )

    def render(self, template: str, /, **values: object) -> Html:
        """Fill ``template``; every value is escaped unless it is :class:`Html`."""
        return Html(self.pages[template].substitute({k: esc(v) for k, v in values.items()}))


TEMPLATES: web.AppKey[Templates] = web.AppKey("console_templates", Templates)


# --------------------------------------------------------------- small helpers


def _num(value: int) -> str:
    """French grouping of thousands (narrow no-break space)."""
    return f"{value:,}".replace(",", "\u202f")


def _display_number(number: str) -> str:
    """``+33466333333`` → ``04 66 33 33 33``; short codes and others unchanged."""
    if is_short_code(number) or not number.startswith("+"):
        return number
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)


def _protocols(request: web.Request) -> list[Protocol]:
    return sorted(request.config_dict[keys.PROTOCOLS].current, key=lambda p: p.name)


def _who(request: web.Request) -> Principal | None:
    """The signed-in person, or None (GET requests: no CSRF check involved)."""
    try:
        return principal(request)
    except Unauthorized:
        return None


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _safe_next(value: object) -> str | None:
    """A local console path to return to after sign-in (never an open redirect)."""
    if not isinstance(value, str) or not value.isprintable() or "\\" in value:
        return None
    if not value.startswith("/console/") or value.startswith("/console/login"):
        return None
    return value


def _landing(request: web.Request, who: Principal) -> str:
    """The console a role starts on."""
    if who.is_regulator:
        return "/console/regulation"
    ids = [p.id for p in _protocols(request)]
    for mmg in ids:
        if who.can_desk(mmg):
            return f"/console/desk/{quote(mmg)}"
    for mmg in ids:
        if who.can_report(mmg):
            return f"/console/reports/{quote(mmg)}"
    return "/console/login"


def _nav(request: web.Request, who: Principal | None, current: str) -> Html:
    if who is None:
        return Html("")
    links: list[tuple[str, str, str]] = []
    protos = _protocols(request)
    if who.is_regulator:
        links.append(("regulation", "/console/regulation", "Régulation"))
    for proto in protos:
        if who.can_desk(proto.id):
            links.append((f"desk:{proto.id}", f"/console/desk/{quote(proto.id)}", proto.name))
    reportable = [p for p in protos if who.can_report(p.id)]
    if reportable:
        links.append(("reports", f"/console/reports/{quote(reportable[0].id)}", "Indicateurs"))
    items = join(
        f'<li><a href="{esc(href)}"'
        + (' aria-current="page"' if key == current else "")
        + f">{esc(label)}</a></li>"
        for key, href, label in links
    )
    return Html(
        f'<nav class="site-nav" aria-label="Consoles"><ul>{items}</ul></nav>'
        f'<div class="who"><span>Connecté : <strong>{esc(who.name)}</strong></span>'
        '<form method="post" action="/console/logout">'
        '<button type="submit" class="link-button">Se déconnecter</button></form></div>'
    )


def _page(
    request: web.Request,
    who: Principal | None,
    *,
    title: str,
    main: Html,
    scripts: Sequence[str] = (),
    current: str = "",
    status: int = 200,
) -> web.Response:
    token = request.cookies.get(COOKIE)
    csrf = csrf_token(token) if token and who is not None else ""
    tags = join(f'<script src="/console/static/{esc(s)}" defer></script>' for s in scripts)
    body = request.config_dict[TEMPLATES].render(
        "base",
        title=title,
        csrf=csrf,
        scripts=tags,
        nav=_nav(request, who, current),
        main=main,
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


def _error_page(
    request: web.Request, who: Principal | None, status: int, title: str, message: str
) -> web.Response:
    links = [("/console/login", "Se connecter avec un autre jeton")]
    if who is not None:
        landing = _landing(request, who)
        if landing != "/console/login":
            links.insert(0, (landing, "Ouvrir ma console"))
    main = request.config_dict[TEMPLATES].render(
        "error",
        title=title,
        message=message,
        status=status,
        links=join(f'<li><a href="{esc(h)}">{esc(t)}</a></li>' for h, t in links),
    )
    return _page(request, who, title=title, main=main, status=status)


def error_response(request: web.Request, status: int, title: str, message: str) -> web.Response:
    """The French error page of the console sub-app's error middleware."""
    return _error_page(request, _who(request), status, title, message)


def _denied(request: web.Request, who: Principal, what: str) -> web.Response:
    return _error_page(
        request,
        who,
        403,
        "Accès refusé",
        f"Le jeton « {who.name} » ne donne pas accès à {what}.",
    )


def _mmg_page_access(
    request: web.Request, permission: Permission
) -> tuple[Principal, Protocol] | web.Response:
    """Who may see the ``{mmg}`` page: (principal, protocol), or the sign-in page to
    answer instead; an unknown MMG or a refusal is raised (a French error page)."""
    if _who(request) is None:
        return _to_login(request)
    return require_mmg(request, permission)


def _to_login(request: web.Request) -> web.Response:
    return _redirect("/console/login?" + urlencode({"next": request.path_qs}))


def _options(pairs: Iterable[tuple[str, str]], empty: str | None = None) -> Html:
    head = f'<option value="">{esc(empty)}</option>' if empty is not None else ""
    return Html(head + "".join(f'<option value="{esc(v)}">{esc(t)}</option>' for v, t in pairs))


# ----------------------------------------------------------- MMG state "now"


def _french_reason(reason: str) -> str:
    """The calendar's reason without the English day-type tag (shown apart, in French)."""
    for day_type in DAY_TYPE_NAMES:
        reason = reason.replace(f" ({day_type})", "")
    return reason


def mmg_state(proto: Protocol, now: datetime) -> dict[str, Any]:
    """Open/closed now and the pharmacy on duty now, for the consoles (JSON-ready)."""
    state = proto.schedule.state(now)
    pharmacy = proto.destinations.pharmacy
    entry = pharmacy.on_duty(state.local.replace(tzinfo=None))
    if entry is not None:
        number = entry.number
        name: str | None = entry.name
    else:
        number = pharmacy.fallback
        name = None
    return {
        "mmg": proto.id,
        "name": proto.name,
        "timezone": proto.timezone,
        "open": state.open,
        "state_label": "Ouverte" if state.open else "Fermée",
        "reason": _french_reason(state.reason),
        "day_type": state.day_type.value,
        "day_type_label": DAY_TYPE_NAMES[state.day_type.value],
        "local_time": state.local.strftime("%H:%M"),
        "direct_access": state.direct_access,
        "pharmacy_name": name,
        "pharmacy_number": number,
        "pharmacy_display": _display_number(number),
        "pharmacy_short_code": is_short_code(number),
    }


def _state_html(state: Mapping[str, Any]) -> Html:
    cls = "open" if state["open"] else "closed"
    return Html(
        f'<span class="badge badge-{cls}" data-role="state-label">'
        f"{esc(state['state_label'])}</span>"
        f' <span class="muted" data-role="state-reason">{esc(state["day_type_label"])} — '
        f"{esc(state['reason'])}</span>"
    )


def _pharmacy_html(state: Mapping[str, Any]) -> Html:
    number = esc(state["pharmacy_display"])
    if state["pharmacy_name"] is None:
        return Html(
            f'<span data-role="pharmacy-name">Aucune pharmacie au tableau de garde</span> : '
            f'composer le <strong data-role="pharmacy-number">{number}</strong>'
        )
    href = esc("tel:" + state["pharmacy_number"])
    return Html(
        f'<span data-role="pharmacy-name">{esc(state["pharmacy_name"])}</span> — '
        f'<a data-role="pharmacy-number" href="{href}">{number}</a>'
    )


# ------------------------------------------------------------------ sign-in


def _login_page(
    request: web.Request,
    *,
    error: str | None = None,
    next_path: str | None = None,
    status: int = 200,
) -> web.Response:
    who = _who(request)
    notice = ""
    if who is not None:
        notice = (
            f'<p class="notice">Vous êtes connecté en tant que « {esc(who.name)} ». '
            f'<a href="{esc(_landing(request, who))}">Ouvrir ma console</a></p>'
        )
    elif (
        request.config_dict[keys.TOKENS] is None
        and not request.config_dict[keys.SETTINGS].insecure_dev
    ):
        notice = (
            '<p class="notice notice-warning">Aucun fichier de jetons n\'est configuré '
            "(REGULATOR_TOKENS_FILE) : la connexion est impossible.</p>"
        )
    main = request.config_dict[TEMPLATES].render(
        "login",
        notice=Html(notice),
        next=next_path or "",
        invalid=Html(' aria-invalid="true"' if error else ""),
        described=" token-error" if error else "",
        error=Html(
            f'<p id="token-error" class="field-error" role="alert">{esc(error)}</p>'
            if error
            else ""
        ),
    )
    return _page(request, who, title="Connexion", main=main, status=status)


async def login_form(request: web.Request) -> web.Response:
    """``GET /console/login``."""
    return _login_page(request, next_path=_safe_next(request.query.get("next")))


async def login(request: web.Request) -> web.Response:
    """``POST /console/login``: check the token, set the cookie, go to the role's console."""
    if not _same_origin(request):
        return _error_page(
            request,
            None,
            403,
            "Requête refusée",
            "L'origine de la requête n'a pas pu être vérifiée : ouvrez la page de connexion "
            "de ce service et réessayez.",
        )
    form = await request.post()
    raw = form.get("token")
    token = raw.strip() if isinstance(raw, str) else ""
    next_path = _safe_next(form.get("next"))
    tokens = request.config_dict[keys.TOKENS]
    settings = request.config_dict[keys.SETTINGS]
    if tokens is None:
        if settings.insecure_dev:  # no tokens in development: everyone is admin
            return _redirect(next_path or _landing(request, DEV_PRINCIPAL))
        return _login_page(
            request,
            error="Connexion impossible : aucun fichier de jetons n'est configuré.",
            status=503,
        )
    who = tokens.authenticate(token)
    if who is None:
        log.info("console_login_failed")
        return _login_page(request, error="Jeton invalide", next_path=next_path, status=401)
    log.info("console_login", name=who.name)
    response = _redirect(next_path or _landing(request, who))
    response.set_cookie(
        COOKIE,
        token,
        max_age=SESSION_MAX_AGE_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure or (settings.public_url or "").startswith("https"),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """``POST /console/logout``: forget the cookie."""
    if not _same_origin(request):
        return _error_page(
            request, None, 403, "Requête refusée", "L'origine de la requête n'a pas été vérifiée."
        )
    response = _redirect("/console/login")
    response.del_cookie(COOKIE, path="/")
    return response


async def console_home(request: web.Request) -> web.Response:
    """``GET /console``: the console of the signed-in role, or the sign-in form."""
    who = _who(request)
    if who is None:
        return _redirect("/console/login")
    return _redirect(_landing(request, who))


# --------------------------------------------------------------- regulation


async def regulation_page(request: web.Request) -> web.Response:
    """``GET /console/regulation``: calls, MMG states, referral form and list."""
    who = _who(request)
    if who is None:
        return _to_login(request)
    if not who.is_regulator:
        return _denied(request, who, "la console de régulation (rôle « regulator »)")
    now = request.config_dict[keys.CLOCK].now()
    protos = [p for p in _protocols(request) if who.can_regulate(p.id)]
    rows = []
    for proto in protos:
        state = mmg_state(proto, now)
        rows.append(
            f'<tr data-mmg="{esc(proto.id)}" data-tz="{esc(proto.timezone)}" '
            f'data-name="{esc(proto.name)}">'
            f'<th scope="row">{esc(proto.name)}</th>'
            f'<td data-state-for="{esc(proto.id)}">{_state_html(state)}</td>'
            f'<td data-pharmacy-for="{esc(proto.id)}">{_pharmacy_html(state)}</td>'
            f'<td class="num" data-count="regulation" data-mmg="{esc(proto.id)}">0</td>'
            f'<td class="num" data-count="overflow" data-mmg="{esc(proto.id)}">0</td></tr>'
        )
    mmg_options = join(
        f'<option value="{esc(p.id)}" data-tz="{esc(p.timezone)}">{esc(p.name)}</option>'
        for p in protos
    )
    main = request.config_dict[TEMPLATES].render(
        "regulation",
        mmg_rows=join(rows),
        mmg_options=mmg_options,
        age_options=_options(AGE_BANDS, "Non précisée"),
        urgency_options=_options(URGENCIES, "Non précisée"),
        no_mmg=Html(
            ""
            if protos
            else '<p class="notice notice-warning">Aucune MMG n\'est ouverte à votre jeton.</p>'
        ),
    )
    return _page(
        request,
        who,
        title="Console de régulation",
        main=main,
        scripts=("common.js", "regulation.js"),
        current="regulation",
    )


# --------------------------------------------------------------- front desk


async def _desk_summary(request: web.Request, proto: Protocol) -> dict[str, int]:
    """Today's counters of one front desk (MMG's local day)."""
    store = request.config_dict[keys.STORE]
    local = request.config_dict[keys.CLOCK].now().astimezone(proto.tz)
    refs = await store.list_referrals(mmg=proto.id, statuses=_ACTIVE, limit=1000)
    today: date = local.date()
    visits = [
        v
        for v in await store.visits(proto.id, local.strftime("%Y-%m"))
        if v.at.astimezone(proto.tz).date() == today
    ]
    return {
        "pending": sum(1 for r in refs if r.status in _WAITING),
        "arrived": sum(1 for r in refs if r.status is ReferralStatus.ARRIVED),
        "visits_today": len(visits),
        "via_regulation_today": sum(1 for v in visits if v.channel is VisitChannel.REGULATION),
    }


def _desk_access(request: web.Request) -> tuple[Principal, Protocol]:
    """For the desk's JSON endpoints: errors are JSON (the route table says so)."""
    return require_mmg(request, Permission.DESK)


async def desk_page(request: web.Request) -> web.Response:
    """``GET /console/desk/{mmg}``: incoming referrals, walk-in visits, today's counters."""
    access = _mmg_page_access(request, Permission.DESK)
    if isinstance(access, web.Response):
        return access
    who, proto = access
    mmg = proto.id
    try:
        summary: Mapping[str, object] = await _desk_summary(request, proto)
    except (StoreError, OSError) as exc:
        log.warning("desk_summary_failed", mmg=mmg, error=str(exc))
        summary = dict.fromkeys(("pending", "arrived", "visits_today", "via_regulation_today"), "—")
    state = mmg_state(proto, request.config_dict[keys.CLOCK].now())
    main = request.config_dict[TEMPLATES].render(
        "desk",
        mmg=proto.id,
        name=proto.name,
        tz=proto.timezone,
        state=_state_html(state),
        pharmacy=_pharmacy_html(state),
        pending=summary["pending"],
        arrived=summary["arrived"],
        visits_today=summary["visits_today"],
        via_regulation_today=summary["via_regulation_today"],
        channel_options=_options(CHANNEL_LABELS.items()),
        outcome_options=_options(OUTCOME_LABELS.items(), "— choisir —"),
        age_options=_options(AGE_BANDS, "Non précisée"),
    )
    return _page(
        request,
        who,
        title=f"Accueil — {proto.name}",
        main=main,
        scripts=("common.js", "desk.js"),
        current=f"desk:{proto.id}",
    )


async def desk_summary(request: web.Request) -> web.Response:
    """``GET /console/desk/{mmg}/summary.json``: the counters, refreshed by the page."""
    _, proto = _desk_access(request)
    try:
        return json_response(await _desk_summary(request, proto))
    except (StoreError, OSError) as exc:
        raise Unavailable("Stockage indisponible ; nouvel essai dans un instant.") from exc


async def state_json(request: web.Request) -> web.Response:
    """``GET /console/state.json``: open/closed and pharmacy now, for the visible MMGs."""
    who = principal(request)
    now = request.config_dict[keys.CLOCK].now()
    states = [mmg_state(p, now) for p in _protocols(request) if who.can_see(p.id)]
    return json_response({"at": now.isoformat(), "mmgs": states})


# ------------------------------------------------------------------ reports


def _shift_month(month: str, delta: int) -> str:
    year, mon = int(month[:4]), int(month[5:])
    index = year * 12 + (mon - 1) + delta
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def _month_label(month: str) -> str:
    return f"{MONTHS_FR[int(month[5:]) - 1]} {month[:4]}"


def _nice_scale(peak: int) -> tuple[int, int]:
    """(top of the axis, step between grid lines) for a maximum value ``peak``."""
    if peak <= 0:
        return 4, 1
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    step = next((f * magnitude for f in (1, 2, 5) if f * magnitude >= raw), 10 * magnitude)
    return math.ceil(peak / step) * step, step


def hours_chart(peaks: Mapping[str, Sequence[int]], unit: str = "appel") -> Html:
    """Stacked bars: calls per local hour of day, one colour per day type (inline SVG)."""
    width, height = 760, 320
    left, right, top, bottom = 48, 12, 16, 84
    plot_w, plot_h = width - left - right, height - top - bottom
    order = [d.value for d in DayType]
    totals = [sum(peaks[d][h] for d in order) for h in range(24)]
    axis_top, step = _nice_scale(max(totals))
    slot = plot_w / 24
    bar = slot * 0.72
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="chart-hours-title chart-hours-desc" class="chart-svg">',
        f'<title id="chart-hours-title">{esc(unit.capitalize())}s reçus par heure de la journée '
        "et par type de jour</title>",
        f'<desc id="chart-hours-desc">Barres empilées, heure locale de la MMG de 0 h à 23 h ; '
        f"total du mois : {_num(sum(totals))}. Les valeurs figurent dans le tableau "
        "qui suit le graphique.</desc>",
    ]
    for value in range(0, axis_top + 1, step):
        y = top + plot_h - value / axis_top * plot_h
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{value}</text>'
        )
    for hour in range(24):
        x = left + hour * slot + (slot - bar) / 2
        base = float(top + plot_h)
        for day_type in order:
            count = peaks[day_type][hour]
            if count <= 0:
                continue
            h = count / axis_top * plot_h
            base -= h
            label = f"{hour:02d} h — {DAY_TYPE_LABELS[day_type]} : {_num(count)} {unit}" + (
                "s" if count > 1 else ""
            )
            parts.append(
                f'<rect class="s-{day_type}" x="{x:.1f}" y="{base:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}"><title>{esc(label)}</title></rect>'
            )
        parts.append(
            f'<text class="axis" x="{x + bar / 2:.1f}" y="{top + plot_h + 16}" '
            f'text-anchor="middle">{hour}</text>'
        )
    parts.append(
        f'<line class="axis-line" x1="{left}" x2="{width - right}" '
        f'y1="{top + plot_h}" y2="{top + plot_h}"/>'
        f'<text class="axis" x="{left + plot_w / 2:.1f}" y="{top + plot_h + 36}" '
        'text-anchor="middle">Heure de la journée (heure locale)</text>'
    )
    if sum(totals) == 0:
        parts.append(
            f'<text class="empty" x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}" '
            f'text-anchor="middle">Aucun {esc(unit)} ce mois-ci</text>'
        )
    legend_y = height - 18
    x = float(left)
    for day_type in order:
        label = DAY_TYPE_LABELS[day_type]
        parts.append(
            f'<rect class="s-{day_type}" x="{x:.1f}" y="{legend_y - 10}" width="12" height="12"/>'
            f'<text class="legend" x="{x + 17:.1f}" y="{legend_y}">{esc(label)}</text>'
        )
        x += 30 + 7.2 * len(label)
    parts.append("</svg>")
    head = "".join(f'<th scope="col">{esc(DAY_TYPE_LABELS[d])}</th>' for d in order)
    body = "".join(
        f'<tr><th scope="row">{h:02d} h</th>'
        + "".join(f'<td class="num">{_num(peaks[d][h])}</td>' for d in order)
        + f'<td class="num">{_num(totals[h])}</td></tr>'
        for h in range(24)
    )
    table = (
        '<details class="chart-data"><summary>Données du graphique</summary>'
        f'<table class="grid compact"><thead><tr><th scope="col">Heure</th>{head}'
        f'<th scope="col">Total</th></tr></thead><tbody>{body}</tbody></table></details>'
    )
    return Html("".join(parts) + table)


def channels_chart(seen: Mapping[str, int]) -> Html:
    """Horizontal bars: persons seen by how they came to the MMG (inline SVG)."""
    width, row, top = 760, 44, 12
    label_w, value_w = 330, 60
    height = top * 2 + row * len(SEEN_SERIES)
    plot_w = width - label_w - value_w
    peak = max((seen[key] for key, _, _ in SEEN_SERIES), default=0)
    parts = [
        f'<svg viewBox="0 0 {width} {height}" role="img" '
        'aria-labelledby="chart-seen-title chart-seen-desc" class="chart-svg">',
        '<title id="chart-seen-title">Personnes vues en consultation, par mode d\'accès</title>',
        f'<desc id="chart-seen-desc">Total du mois : {_num(seen["total"])}. '
        + "; ".join(f"{label} : {_num(seen[key])}" for key, _, label in SEEN_SERIES)
        + ".</desc>",
    ]
    for i, (key, channel, label) in enumerate(SEEN_SERIES):
        y = top + i * row
        value = seen[key]
        w = value / peak * plot_w if peak else 0.0
        parts.append(
            f'<text class="label" x="{label_w - 10}" y="{y + row / 2 + 4:.1f}" '
            f'text-anchor="end">{esc(label)}</text>'
            f'<rect class="track" x="{label_w}" y="{y + 8}" width="{plot_w}" height="{row - 16}"/>'
            f'<rect class="c-{channel}" x="{label_w}" y="{y + 8}" width="{w:.1f}" '
            f'height="{row - 16}"><title>{esc(label)} : {_num(value)}</title></rect>'
            f'<text class="value" x="{label_w + w + 8:.1f}" y="{y + row / 2 + 4:.1f}">'
            f"{_num(value)}</text>"
        )
    parts.append("</svg>")
    return Html("".join(parts))


def _indicator_table(report: Mapping[str, Any]) -> Html:
    rows = report_rows(report)
    circular = "".join(
        f'<tr data-indicator="{esc(key)}"><th scope="row">{esc(label)}</th>'
        f'<td class="num">{_num(value)}</td></tr>'
        for key, label, value in rows[: len(INDICATORS)]
    )
    routes = "".join(
        f'<tr data-indicator="calls_by_route.{esc(route)}"><th scope="row">'
        f'{esc(ROUTE_LABELS[route])}</th><td class="num">{_num(count)}</td></tr>'
        for route, count in report["calls_by_route"].items()
    )
    days = "".join(
        f'<tr><th scope="row">Appels reçus — {esc(DAY_TYPE_LABELS[d])}</th>'
        f'<td class="num">{_num(count)}</td></tr>'
        for d, count in report["calls_by_day_type"].items()
    )
    failsafe = (
        '<tr data-indicator="calls_failsafe"><th scope="row">Appels routés par sécurité vers '
        f'le centre 15</th><td class="num">{_num(report["calls_failsafe"])}</td></tr>'
    )
    return Html(
        '<table class="grid indicators"><caption>Indicateurs de suivi (circulaire, partie 3)'
        '</caption><thead><tr><th scope="col">Indicateur</th><th scope="col" class="num">'
        f"Valeur</th></tr></thead><tbody>{circular}</tbody></table>"
        '<table class="grid indicators"><caption>Détail des appels</caption><thead><tr>'
        '<th scope="col">Indicateur</th><th scope="col" class="num">Valeur</th></tr></thead>'
        f"<tbody>{routes}{days}{failsafe}</tbody></table>"
    )


def _qualitative(report: Mapping[str, Any]) -> Html:
    blocks = []
    for key, title, head in (
        ("age_band", "Tranches d'âge des personnes vues", "Tranche d'âge"),
        ("reason", "Motifs de consultation", "Motif"),
    ):
        counts: Mapping[str, int] = report["qualitative"][key]
        if not counts:
            continue
        body = "".join(
            f'<tr><th scope="row">{esc(k)}</th><td class="num">{_num(v)}</td></tr>'
            for k, v in counts.items()
        )
        blocks.append(
            f'<table class="grid compact"><caption>{esc(title)}</caption><thead><tr>'
            f'<th scope="col">{esc(head)}</th><th scope="col" class="num">Personnes</th></tr>'
            f"</thead><tbody>{body}</tbody></table>"
        )
    if not blocks:
        return Html('<p class="muted">Aucune donnée qualitative ce mois-ci.</p>')
    return Html("".join(blocks))


async def reports_redirect(request: web.Request) -> web.Response:
    """``GET /console/reports?mmg=…&month=…``: the month picker's target."""
    who = _who(request)
    if who is None:
        return _to_login(request)
    mmg = request.query.get("mmg", "")
    if not mmg:
        reportable = [p.id for p in _protocols(request) if who.can_report(p.id)]
        if not reportable:
            return _denied(request, who, "aux indicateurs")
        mmg = reportable[0]
    month = request.query.get("month", "")
    suffix = "?" + urlencode({"month": month}) if month else ""
    return _redirect(f"/console/reports/{quote(mmg)}{suffix}")


async def reports_page(request: web.Request) -> web.Response:
    """``GET /console/reports/{mmg}?month=YYYY-MM``: the month's indicators and charts."""
    access = _mmg_page_access(request, Permission.REPORT)
    if isinstance(access, web.Response):
        return access
    who, proto = access
    mmg = proto.id
    now_month = request.config_dict[keys.CLOCK].now().astimezone(proto.tz).strftime("%Y-%m")
    month = request.query.get("month") or now_month
    if not valid_month(month):
        return _error_page(
            request,
            who,
            400,
            "Mois invalide",
            f"Mois « {month} » invalide : format attendu AAAA-MM (par exemple {now_month}).",
        )
    store = request.config_dict[keys.STORE]
    try:
        counters = await store.call_counters(mmg, month)
        visits = await store.visits(mmg, month)
    except (StoreError, OSError) as exc:
        log.warning("report_store_failed", mmg=mmg, error=str(exc))
        return _error_page(
            request,
            who,
            503,
            "Stockage indisponible",
            "Les indicateurs ne peuvent pas être lus pour le moment ; réessayez dans un instant.",
        )
    report = build_report(mmg, month, counters, visits)
    mmg_options = join(
        f'<option value="{esc(p.id)}"' + (" selected" if p.id == mmg else "") + f">{esc(p.name)}"
        "</option>"
        for p in _protocols(request)
        if who.can_report(p.id)
    )
    api = f"/api/v1/reports/{quote(mmg)}/{month}"
    prev_month, next_month = _shift_month(month, -1), _shift_month(month, 1)
    main = request.config_dict[TEMPLATES].render(
        "reports",
        mmg=mmg,
        name=proto.name,
        month=month,
        month_label=_month_label(month),
        mmg_options=mmg_options,
        prev_href=f"/console/reports/{quote(mmg)}?month={prev_month}",
        prev_label=_month_label(prev_month),
        next_href=f"/console/reports/{quote(mmg)}?month={next_month}",
        next_label=_month_label(next_month),
        csv_href=f"{api}?format=csv",
        md_href=f"{api}?format=md",
        json_href=api,
        calls_received=_num(report["calls_received"]),
        persons_seen=_num(report["persons_seen"]["total"]),
        acts=_num(report["acts"]),
        indicators=_indicator_table(report),
        hours_chart=hours_chart(report["peaks"]["calls"]),
        channels_chart=channels_chart(report["persons_seen"]),
        qualitative=_qualitative(report),
    )
    return _page(
        request,
        who,
        title=f"Indicateurs — {proto.name} — {_month_label(month)}",
        main=main,
        current="reports",
    )


async def not_found(request: web.Request) -> web.Response:
    """Any other ``/console/…`` path: a French 404 page."""
    return _error_page(
        request, _who(request), 404, "Page introuvable", "Cette page de la console n'existe pas."
    )


def setup_consoles(app: web.Application) -> None:
    """The console sub-app's own state (its routes are in :mod:`regulator.web.routes`)."""
    app[TEMPLATES] = Templates.load(TEMPLATES_DIR)
