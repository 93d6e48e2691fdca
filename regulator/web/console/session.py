"""Sign-in and sign-out of the consoles.

Sign-in stores the API token in the ``regulator_token`` cookie (HttpOnly,
SameSite=Strict, Secure over HTTPS); the login and logout forms are plain HTML
posts, protected by an Origin/Referer same-origin check.
"""

from __future__ import annotations

from aiohttp import web

from regulator.auth import COOKIE, DEV_PRINCIPAL
from regulator.logs import get_logger
from regulator.web import keys
from regulator.web.access import same_origin
from regulator.web.console.render import error_page, landing, page, redirect, who

log = get_logger("regulator.consoles")

#: Lifetime of the console cookie: one long night shift, not forever.
SESSION_MAX_AGE_S = 14 * 3600


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
    person = tokens.authenticate(token)
    if person is None:
        log.info("console_login_failed")
        return _login_page(request, error="Jeton invalide", next_path=next_path, status=401)
    log.info("console_login", name=person.name)
    response = redirect(next_path or landing(request, person))
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
    if not same_origin(request):
        return error_page(
            request, None, 403, "Requête refusée", "L'origine de la requête n'a pas été vérifiée."
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
