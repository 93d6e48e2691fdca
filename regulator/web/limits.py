"""Rate limits of the API and the consoles: who a request counts against, and the buckets.

Three budgets, each ``REGULATOR_RATE_LIMIT_PER_MINUTE`` a minute (bursts of as many),
in buckets of their own so that one kind of traffic can never spend another's:

- a valid token or console session: the token's name (wherever it comes from);
- anonymous requests (no credential): the client address;
- bogus credentials (unknown token, ended or revoked session, failed sign-in): the
  client address.

The client address is the peer's, unless the peer is one of
``REGULATOR_TRUSTED_PROXIES``: then it is the rightmost ``X-Forwarded-For`` hop that is
not a trusted proxy (the address the outermost of our proxies saw; the hops left of it
are whatever the client wrote).

Sign-in is never refused before its token is read: the sign-in form (and its static
files) are not limited, and ``POST /console/login`` charges a valid token's own budget
or, for a wrong one, the address's bogus budget (:meth:`Limiter.take_sign_in`). A flood
of junk from one address, even behind the same proxy as a regulator, then only limits
the junk. Webhooks, ``/metrics`` and the probes are never limited.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from aiohttp import web
from aiohttp.typedefs import Middleware

from regulator.auth import Principal
from regulator.logs import get_logger
from regulator.platforms.asterisk import Network
from regulator.web.access import Caller
from regulator.web.middlewares import ErrorPage, Handler, json_response
from regulator.web.sessions import identify

log = get_logger("regulator.http")


class TokenBuckets:
    """One token bucket per client: ``per_minute`` requests a minute on average, bursts
    of up to ``per_minute``. Bounded memory: the least recently seen clients are forgotten
    beyond ``max_clients`` (a forgotten client starts again with a full bucket)."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, stamp

    def take(self, client: str) -> float:
        """Spend one token; 0.0 if allowed, else the seconds until one is available."""
        now = self._clock()
        tokens, stamp = self._buckets.pop(client, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - stamp) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _trusted(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, nets: Sequence[Network]
) -> bool:
    return any(address.version == net.version and address in net for net in nets)


def client_address(request: web.Request, trusted: Sequence[Network]) -> str:
    """The address a request counts against (see the module docstring)."""
    peer = request.remote or "?"
    peer_address = _address(peer)
    if not trusted or peer_address is None or not _trusted(peer_address, trusted):
        return peer
    hops = [
        hop for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")
    ]
    first: str | None = None
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            # Our proxy writes addresses: a hop that is none is not its; trust nothing left.
            return first or peer
        if not _trusted(address, trusted):
            return str(address)
        first = str(address)
    return first or peer  # only proxies on the way (a health check from inside)


class Limiter:
    """The three budgets of the API and the consoles (one set per process)."""

    def __init__(
        self,
        per_minute: int,
        trusted: Sequence[Network] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = per_minute > 0
        self.trusted = tuple(trusted)
        rate = max(per_minute, 1)
        self.tokens = TokenBuckets(rate, clock=clock)
        self.anonymous = TokenBuckets(rate, clock=clock)
        self.bogus = TokenBuckets(rate, clock=clock)

    def take(self, request: web.Request, caller: Caller) -> float:
        """Charge one request of ``caller``; 0.0 if allowed, else seconds to wait."""
        if not self.enabled:
            return 0.0
        if caller.principal is not None:
            return self.tokens.take(caller.principal.name)
        address = client_address(request, self.trusted)
        if caller.kind == "anonymous":
            return self.anonymous.take(address)
        return self.bogus.take(address)

    def take_sign_in(self, request: web.Request, who: Principal | None) -> float:
        """Charge a sign-in once its token is read: the token's own budget, or the
        address's bogus budget for a wrong token."""
        if not self.enabled:
            return 0.0
        if who is not None:
            return self.tokens.take(who.name)
        return self.bogus.take(client_address(request, self.trusted))


#: The limiter of the API and the consoles (set on the root app by ``routes.mount``).
LIMITER: web.AppKey[Limiter] = web.AppKey("limiter", Limiter)


def retry_after(wait: float) -> int:
    return max(1, math.ceil(wait))


def too_many(wait: float) -> web.Response:
    """The API's 429: ``Retry-After`` and a French JSON message."""
    seconds = retry_after(wait)
    return json_response(
        {
            "error": "too_many_requests",
            "message": f"Trop de requêtes : réessayez dans {seconds} s.",
        },
        status=429,
        headers={"Retry-After": str(seconds)},
    )


def rate_limit(unlimited: frozenset[Handler], page: ErrorPage | None = None) -> Middleware:
    """Charge each request to its budget before the handler runs (but the routes of
    ``unlimited`` and static files); 429 with ``Retry-After``: JSON, or the consoles'
    French page when ``page`` is given."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        match = request.match_info
        if match.handler in unlimited or isinstance(match.route.resource, web.StaticResource):
            return await handler(request)
        limiter = request.config_dict[LIMITER]
        wait = limiter.take(request, await identify(request))
        if wait <= 0:
            return await handler(request)
        seconds = retry_after(wait)
        log.warning("rate_limited", path=request.path, retry_after_s=seconds)
        if page is None:
            return too_many(wait)
        response = page(
            request, 429, "Trop de requêtes", f"Trop de requêtes : réessayez dans {seconds} s."
        )
        response.headers["Retry-After"] = str(seconds)
        return response

    return middleware


__all__ = ["LIMITER", "Limiter", "TokenBuckets", "client_address", "rate_limit", "too_many"]
