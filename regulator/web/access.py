"""Who is calling, and may they: authentication, CSRF and the one MMG access check.

:class:`Caller` is who a request comes from: a Bearer token, a console session
(found in the store by :mod:`regulator.web.sessions` before the rate limiter runs),
or nobody; ``principal`` turns it into the authenticated caller or a 401;
``require_mmg`` is the single "find the MMG or 404, check the role or 403" of every
handler that serves one MMG: written once, so no handler can forget half of it.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import Enum
from typing import Literal
from urllib.parse import urlsplit

from aiohttp import web

from regulator.auth import DEV_PRINCIPAL, Principal
from regulator.core.protocol import Protocol
from regulator.errors import Forbidden, NotFound, Unauthorized, Unavailable, Unprocessable
from regulator.web import keys

#: Header the consoles send with cookie-authenticated writes (see :func:`csrf_token`).
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Where the API's auth middleware leaves the authenticated caller of a request.
PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)

#: ``anonymous``: no credential; ``bogus``: a token or session cookie that opens
#: nothing (unknown, ended, revoked); ``token``: a valid Bearer token; ``session``: a
#: live console session of a token in force; ``unavailable``: a session cookie the
#: store could not be asked about.
CallerKind = Literal["anonymous", "bogus", "token", "session", "unavailable"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Where a request comes from, as far as credentials go (rate limits, auth)."""

    kind: CallerKind
    principal: Principal | None = None
    #: The console cookie's session id (kind ``session``): its CSRF value derives from it.
    session_id: str | None = None


CALLER: web.RequestKey[Caller] = web.RequestKey("caller", Caller)
SESSION_UNAVAILABLE = (
    "La session n'a pas pu être vérifiée (stockage indisponible) : réessayez dans un instant."
)


def bearer(request: web.Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None without one."""
    header = request.headers.get("Authorization", "")
    return header[7:].strip() if header[:7].lower() == "bearer " else None


def csrf_token(session_id: str) -> str:
    """The anti-CSRF value of a console session: sha256("csrf:" + session id).

    Derived from the cookie's session id rather than a per-process secret, so every
    replica accepts it; another site can neither read the cookie nor compute it.
    """
    return hashlib.sha256(b"csrf:" + session_id.encode()).hexdigest()


def caller(request: web.Request) -> Caller:
    """The request's :class:`Caller` as the sub-app's first middleware found it; for a
    request it did not see, the Bearer token alone (no session without the store)."""
    if CALLER in request:
        return request[CALLER]
    tokens = request.config_dict[keys.TOKENS]
    token = bearer(request)
    if token is None:
        return Caller("anonymous")
    who = tokens.authenticate(token) if tokens is not None else None
    return Caller("token", who) if who is not None else Caller("bogus")


def authenticate(request: web.Request) -> Principal:
    """The caller (Bearer token or console session), or 401.

    A write authenticated by a console session must also carry ``X-CSRF-Token`` (403
    otherwise): browsers attach cookies to cross-site requests, never that header.
    """
    tokens = request.config_dict[keys.TOKENS]
    settings = request.config_dict[keys.SETTINGS]
    if tokens is None:
        if settings.insecure_dev:
            return DEV_PRINCIPAL
        raise Unauthorized(
            "API désactivée : aucun fichier de jetons configuré (REGULATOR_TOKENS_FILE)."
        )
    found = caller(request)
    if found.kind == "unavailable":
        raise Unavailable(SESSION_UNAVAILABLE)
    if found.principal is None:
        raise Unauthorized("Jeton d'accès ou session manquant, invalide ou expiré.")
    if found.kind == "session" and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "").encode(errors="replace")
        if not hmac.compare_digest(sent, csrf_token(found.session_id or "").encode()):
            raise Forbidden(
                "Requête refusée : en-tête X-CSRF-Token manquant ou invalide "
                "(rechargez la console et réessayez)."
            )
    return found.principal


def principal(request: web.Request) -> Principal:
    """The authenticated caller: the one the API's auth middleware found, else
    authenticated now (consoles). Raises 401/403 like :func:`authenticate`."""
    who = request.get(PRINCIPAL)
    if who is None:
        who = authenticate(request)
        request[PRINCIPAL] = who
    return who


class Permission(Enum):
    """What a caller wants to do at one MMG, with the French words of its refusal."""

    SEE = "see"  # referrals and live events
    REGULATE = "regulate"  # send patients (create referrals)
    DESK = "desk"  # the front desk: acknowledge, admit, close, record visits
    REPORT = "report"  # the monthly indicators
    CANCEL = "cancel"  # cancel a referral: its regulator or the desk
    VISITS = "visits"  # read a month's visits: the desk or whoever reads the reports
    PROTOCOL = "protocol"  # the usage protocol, its plan and its history: the report readers
    FIGURES = "figures"  # figures entered by hand (ED passages, costs): coordinators

    def allows(self, who: Principal, mmg: str) -> bool:
        match self:
            case Permission.SEE:
                return who.can_see(mmg)
            case Permission.REGULATE:
                return who.can_regulate(mmg)
            case Permission.DESK:
                return who.can_desk(mmg)
            case Permission.REPORT:
                return who.can_report(mmg)
            case Permission.CANCEL:
                return who.can_regulate(mmg) or who.can_desk(mmg)
            case Permission.VISITS:
                return who.can_desk(mmg) or who.can_report(mmg)
            case Permission.PROTOCOL:
                return who.can_report(mmg)
            case Permission.FIGURES:
                return who.can_enter_figures() and who.can_report(mmg)

    def what(self, proto: Protocol) -> str:
        """The thing refused, completing "ne donne pas accès …"."""
        match self:
            case Permission.SEE:
                return f"aux orientations de « {proto.name} »"
            case Permission.REGULATE:
                return f"à l'orientation de patients vers « {proto.name} » (rôle « regulator »)"
            case Permission.DESK:
                return f"à l'accueil de « {proto.name} » (rôle « desk:{proto.id} »)"
            case Permission.REPORT:
                return f"aux indicateurs de « {proto.name} »"
            case Permission.CANCEL:
                return f"à l'annulation des orientations de « {proto.name} »"
            case Permission.VISITS:
                return f"aux passages de « {proto.name} »"
            case Permission.PROTOCOL:
                return f"au protocole de « {proto.name} »"
            case Permission.FIGURES:
                return f"aux données déclarées de « {proto.name} » (rôle coordinator)"


def require_mmg(
    request: web.Request,
    permission: Permission,
    mmg: str | None = None,
    *,
    source: Literal["path", "body"] = "path",
) -> tuple[Principal, Protocol]:
    """The caller and the MMG's protocol, or raise: 404 for an unknown MMG (422 when
    the MMG was named in the request body), 403 when the caller's role does not allow
    ``permission`` there. ``mmg`` defaults to the ``{mmg}`` of the path."""
    who = principal(request)
    name = request.match_info["mmg"] if mmg is None else mmg
    proto = request.config_dict[keys.PROTOCOLS].current.get(name)
    if proto is None:
        if source == "body":
            raise Unprocessable(
                f"Champ(s) invalide(s) : mmg (MMG inconnue : {name!r}).",
                errors=[{"field": "mmg", "value": name, "message": "MMG inconnue"}],
            )
        raise NotFound(f"MMG inconnue : {name!r}.", field="mmg", value=name)
    if not permission.allows(who, proto.id):
        raise Forbidden(f"Le jeton « {who.name} » ne donne pas accès {permission.what(proto)}.")
    return who, proto


def same_origin(request: web.Request) -> bool:
    """True when a form post comes from one of our own pages (Origin, else Referer)."""
    allowed = {f"{request.scheme}://{request.host}".lower()}
    public = request.config_dict[keys.SETTINGS].public_url
    if public:
        parts = urlsplit(public)
        allowed.add(f"{parts.scheme}://{parts.netloc}".lower())
    origin = request.headers.get("Origin")
    if origin is not None:
        return origin.lower() in allowed  # "null" (opaque origin) never matches
    referer = request.headers.get("Referer")
    if referer:
        parts = urlsplit(referer)
        return f"{parts.scheme}://{parts.netloc}".lower() in allowed
    return False
