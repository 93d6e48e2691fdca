"""Sign-in and sign-out of the consoles.

Sign-in checks the token and opens a server-side session (:mod:`regulator.web.sessions`):
the ``regulator_token`` cookie (HttpOnly, SameSite=Strict, Secure over HTTPS) holds its
random id, never the token; signing in again replaces the session. Sign-out deletes
the session in the store, so the cookie opens nothing anywhere, even if kept. The
login and logout forms are plain HTML posts, protected by an Origin/Referer
same-origin check. Sign-in is rate limited once its token is read (a wrong token
counts against the address, a right one against the token: :mod:`regulator.web.limits`).
"""

from __future__ import annotations

from aiohttp import web

from regulator.auth import COOKIE, DEV_PRINCIPAL
from regulator.logs import get_logger
from regulator.ports import StoreError
from regulator.web import keys
from regulator.web.access import same_origin
from regulator.web.console.render import error_page, landing, page, redirect, who
from regulator.web.limits import LIMITER, retry_after
from regulator.web.sessions import end_session, open_session

log = get_logger("regulator.consoles")


def session_max_age_s(request: web.Request) -> int:
    """Lifetime of the console cookie: the session's absolute timeout."""
    return request.config_dict[keys.SETTINGS].session_max_hours * 3600


def _safe_next(value: object) -> str | None:
    """A local console path to return to after sign-in (never an open redirect)."""
    if not isinstance(value, str) or not value.isprintable() or "\\" in value:
        return None
    if not value.startswith("/console/") or value.startswith("/console/login"):
        return None
    return value


def _login_page(
    request: web.Request,
    *,
    error: str | None = None,
    next_path: str | None = None,
    status: int = 200,
) -> web.Response:
    person = who(request)
    signed_in = None
    if person is not None:
        signed_in = {"name": person.name, "landing": landing(request, person)}
    no_tokens = (
        request.config_dict[keys.TOKENS] is None
        and not request.config_dict[keys.SETTINGS].insecure_dev
    )
    return page(
        request,
        person,
        "login.html",
        title="Connexion",
        status=status,
        signed_in=signed_in,
        no_tokens=no_tokens,
        next=next_path or "",
        error=error,
        idle_minutes=request.config_dict[keys.SETTINGS].session_idle_minutes,
        max_hours=request.config_dict[keys.SETTINGS].session_max_hours,
    )


async def login_form(request: web.Request) -> web.Response:
    """``GET /console/login``."""
    return _login_page(request, next_path=_safe_next(request.query.get("next")))


async def login(request: web.Request) -> web.Response:
    """``POST /console/login``: check the token, set the cookie, go to the role's console."""
    if not same_origin(request):
        return error_page(
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
            return redirect(next_path or landing(request, DEV_PRINCIPAL))
        return _login_page(
            request,
            error="Connexion impossible : aucun fichier de jetons n'est configuré.",
            status=503,
        )
    found = tokens.fingerprint(token)
    person = found[0] if found is not None else None
    wait = request.config_dict[LIMITER].take_sign_in(request, person)
    if wait > 0:
        seconds = retry_after(wait)
        log.warning("console_login_rate_limited", retry_after_s=seconds)
        response = _login_page(
            request,
            error=f"Trop de tentatives : réessayez dans {seconds} s.",
            next_path=next_path,
            status=429,
        )
        response.headers["Retry-After"] = str(seconds)
        return response
    if found is None:
        log.info("console_login_failed")
        return _login_page(request, error="Jeton invalide", next_path=next_path, status=401)
    person, fingerprint = found
    try:
        session_id = await open_session(request, person, fingerprint)
    except StoreError as exc:
        log.error("console_session_store_failed", error=str(exc))
        return _login_page(
            request,
            error="Connexion impossible pour l'instant (stockage des sessions indisponible) : "
            "réessayez dans un instant.",
            next_path=next_path,
            status=503,
        )
    log.info("console_login", name=person.name)
    response = redirect(next_path or landing(request, person))
    response.set_cookie(
        COOKIE,
        session_id,
        max_age=session_max_age_s(request),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure or (settings.public_url or "").startswith("https"),
    )
    return response


async def logout(request: web.Request) -> web.Response:
    """``POST /console/logout``: end the session in the store, forget the cookie."""
    if not same_origin(request):
        return error_page(
            request, None, 403, "Requête refusée", "L'origine de la requête n'a pas été vérifiée."
        )
    try:
        await end_session(request)
    except StoreError as exc:
        log.error("console_logout_store_failed", error=str(exc))
        return error_page(
            request,
            None,
            503,
            "Service indisponible",
            "La déconnexion n'a pas pu être enregistrée (stockage indisponible) : "
            "réessayez dans un instant.",
        )
    response = redirect("/console/login")
    response.del_cookie(COOKIE, path="/")
    return response


async def console_home(request: web.Request) -> web.Response:
    """``GET /console``: the console of the signed-in role, or the sign-in form."""
    person = who(request)
    if person is None:
        return redirect("/console/login")
    return redirect(landing(request, person))
