"""Console sessions on the web side: find the caller of a request, open and end sessions.

The ``regulator_token`` cookie holds a random session id (``secrets.token_urlsafe(32)``),
never the API token; the store (shared by every replica) keeps only its hash, the
token's name and fingerprint, and when the session was opened and last used
(:mod:`regulator.core.sessions`). On every request the session must be alive (idle and
absolute timeouts: ``REGULATOR_SESSION_IDLE_MINUTES``, ``REGULATOR_SESSION_MAX_HOURS``)
and its token still in the tokens file with the same fingerprint: removing or changing
a token ends its sessions at once, on every replica, with no store scan. Sign-in
always opens a new session (the one the browser held is deleted), sign-out deletes it.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from aiohttp import web

from regulator.auth import COOKIE, Principal
from regulator.core.sessions import ConsoleSession, session_key
from regulator.logs import get_logger
from regulator.ports import StoreError
from regulator.web import keys
from regulator.web.access import CALLER, Caller, bearer, caller
from regulator.web.middlewares import Handler

log = get_logger("regulator.sessions")


async def identify(request: web.Request) -> Caller:
    """The request's caller, found once (then kept on the request): a Bearer token
    (checked in memory), else the session of the console cookie (one store read, which
    also records the use), else nobody."""
    if CALLER in request:
        return request[CALLER]
    found: Caller | None = None
    tokens = request.config_dict[keys.TOKENS]
    cookie = request.cookies.get(COOKIE)
    if tokens is None or bearer(request) is not None or not cookie:
        found = caller(request)
    else:
        store = request.config_dict[keys.STORE]
        now = request.config_dict[keys.CLOCK].now()
        try:
            session = await store.get_session(session_key(cookie), now)
        except StoreError as exc:
            log.warning("session_lookup_failed", error=str(exc))
            session = None
            found = Caller("unavailable")
        if session is not None:
            who = tokens.by_session(session.token_name, session.token_fingerprint)
            found = Caller("session", who, cookie) if who is not None else Caller("bogus")
        elif found is None:
            found = Caller("bogus")
    request[CALLER] = found
    return found


@web.middleware
async def identify_caller(request: web.Request, handler: Handler) -> web.StreamResponse:
    """First middleware of the API and the consoles: who is calling (rate limits and
    authentication both read it)."""
    await identify(request)
    return await handler(request)


async def open_session(request: web.Request, who: Principal, fingerprint: str) -> str:
    """Start a console session for ``who`` (signed in with a token of ``fingerprint``);
    end the one the browser held, if any. Returns the new id for the cookie."""
    settings = request.config_dict[keys.SETTINGS]
    store = request.config_dict[keys.STORE]
    now = request.config_dict[keys.CLOCK].now()
    await end_session(request)  # a fresh id at every sign-in: no session fixation
    session_id = secrets.token_urlsafe(32)
    await store.create_session(
        ConsoleSession(
            key=session_key(session_id),
            token_name=who.name,
            token_fingerprint=fingerprint,
            created_at=now,
            seen_at=now,
            idle=timedelta(minutes=settings.session_idle_minutes),
            max_age=timedelta(hours=settings.session_max_hours),
        )
    )
    return session_id


async def end_session(request: web.Request) -> None:
    """Delete the session of the request's console cookie (whatever it still opens)."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        await request.config_dict[keys.STORE].delete_session(session_key(cookie))


async def forget_removed_tokens(app: web.Application, removed: frozenset[str]) -> None:
    """Delete the stored sessions of tokens removed from the tokens file. Housekeeping
    only: :func:`identify` already refuses them by fingerprint."""
    for name in sorted(removed):
        try:
            count = await app[keys.STORE].delete_sessions_of(name)
        except StoreError as exc:  # they stay refused; Redis/the next sign-in drops them
            log.warning("sessions_cleanup_failed", token=name, error=str(exc))
        else:
            log.info("sessions_of_removed_token_deleted", token=name, sessions=count)


__all__ = ["end_session", "forget_removed_tokens", "identify", "identify_caller", "open_session"]
