"""What every telephony adapter shares: the request it reads and the answer it writes.

An adapter module (``twilio``, ``vonage``, ``kamailio``, ``generic``) is a set of
pure functions, no aiohttp:

* ``verify(req, secret)`` — raise :class:`SignatureError` unless the request is
  authentic (constant-time comparisons, replay windows). Called first.
* ``parse_call(req, stage)`` — the request as a :class:`~regulator.core.models.Call`
  (raise :class:`BadHookRequest` naming the field).
* ``parse_event(req)`` — a status/dial callback as a :class:`CallEvent`.
* ``parse_leg(req)`` — the dial-leg report a callback carries, as a
  :class:`~regulator.core.legs.LegEvent`, or None when it reports no leg (a whole-call
  status, a menu). Called on every authenticated callback that is not a call to decide.
  A PBX that reports a leg once, at its end, with its own timestamps of the dial's
  start and answer (Asterisk, FreeSWITCH) returns those as a tuple of events
  (:data:`LegReport`): one event cannot name three instants.
* ``render(decision, ctx)`` — the platform's answer (:class:`Answer`); ``ctx`` (a
  :class:`RenderContext`) carries what some platforms need beyond the decision.
* ``render_hangup()`` — the answer that ends the call politely.

:class:`PlatformAdapter` types that shape, so mypy checks every adapter module
against it (``regulator.web.hooks`` holds them as ``PlatformAdapter``).
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Protocol
from urllib.parse import parse_qsl, quote_plus, urlencode, urlsplit

# Re-exported: a status callback is a domain fact (core.models), adapters produce it.
from regulator.core.legs import LegEvent
from regulator.core.models import CALL_STATUSES, Call, CallEvent, Decision, Destination, Stage

#: What ``parse_leg`` returns: no leg, one event, or several events about one leg.
LegReport = LegEvent | tuple[LegEvent, ...] | None


class SignatureError(Exception):
    """The request is not authentic (missing, forged or replayed signature)."""


class BadHookRequest(Exception):
    """The request is authentic but unusable; names the field and why."""

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


@dataclass(frozen=True, slots=True)
class HookRequest:
    """A webhook as adapters see it.

    ``url`` is the full URL the platform called (scheme, host, port as sent, path
    and query), rebuilt from ``REGULATOR_PUBLIC_URL`` when behind a proxy.
    ``headers`` keys are lower-case. ``form`` holds the parsed
    ``application/x-www-form-urlencoded`` body (empty for JSON bodies).
    ``now`` is the current Unix time, for replay windows.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes
    form: Mapping[str, str]
    now: float


@dataclass(frozen=True, slots=True)
class Answer:
    """The body and media type returned to the platform (always HTTP 200)."""

    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class HookUrls:
    """Absolute public URLs of our own callbacks for one platform."""

    gather: str = ""
    dial_status: str = ""
    status: str = ""
    event: str = ""
    input: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)
    #: A dialled leg's own progress callbacks (Twilio ``<Number statusCallback>``),
    #: naming the MMG and the call; the renderer adds ``target``.
    leg: str = ""
    #: What the regulation line hears when it answers (Twilio ``<Number url>``, Vonage
    #: ``onAnswer``); empty: no whisper (the protocol plays none).
    whisper: str = ""

    def targeted(self, name: str, target: str) -> str:
        """The URL ``name`` (``leg``, ``dial_status``, ``event``) of a dial naming its
        ``target`` route: ``with_query(self.<name>, target=target)``. The URLs the
        service builds (web/hooks/wire.py) sign it once, not once bare and once with
        the target (an HMAC is about 3 µs; a dial answer names its target twice).
        An empty URL (the platform has none) stays empty."""
        url: str = getattr(self, name)
        return self.with_query(url, target=target) if url else ""

    @staticmethod
    def with_query(url: str, **params: str) -> str:
        """Append query parameters (e.g. ``target=regulation``) to a callback URL.

        A URL of ours (a :class:`CallbackUrl`, as :func:`regulator.web.hooks.wire.hook_urls`
        builds them) is signed again over its whole new query (:func:`sign_callback`):
        every platform's callback URLs carry the HMAC without the adapter knowing."""
        if not params:
            return url
        if (
            isinstance(url, CallbackUrl)
            and url.key
            and "sig" not in params
            and all(type(v) is str for v in params.values())
        ):
            # Its parts are known: what sign_callback would parse back out of the
            # joined URL, without urlsplit/parse_qsl (two of these per dial answer).
            sep = "&" if "?" in url.unsigned else "?"
            added = tuple(params.items())
            query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in added)  # urlencode
            return signed_url(f"{url.unsigned}{sep}{query}", url.path, url.pairs + added, url.key)
        key = url.key if isinstance(url, CallbackUrl) else b""
        bare = _SIG.sub("", url)
        sep = "&" if "?" in bare else "?"
        joined = f"{bare}{sep}{urlencode(params)}"
        return sign_callback(joined, key) if key else joined


#: The query parameters of our own callback URLs that the service trusts only when the
#: URL's HMAC (``sig``) checks: who the call is, its MMG, the destination dialled.
CALLBACK_PARAMS: frozenset[str] = frozenset({"mmg", "call_id", "target"})
#: 128 bits of HMAC-SHA256, hex: the ``sig`` query parameter.
_SIG_CHARS = 32
_SIG = re.compile(r"[?&]sig=[^&#]*$")


class CallbackUrl(str):
    """A callback URL of ours, with the key its query is signed with (see
    :meth:`HookUrls.with_query`). Still a plain ``str`` to every renderer."""

    key: bytes
    #: The URL without its ``sig``, its path and its query's pairs (``sig`` excluded):
    #: what :meth:`HookUrls.with_query` extends without parsing the URL again.
    unsigned: str
    path: str
    pairs: tuple[tuple[str, str], ...]

    def __new__(
        cls,
        url: str,
        key: bytes,
        unsigned: str | None = None,
        path: str = "",
        pairs: tuple[tuple[str, str], ...] = (),
    ) -> CallbackUrl:
        obj = super().__new__(cls, url)
        obj.key = key
        obj.unsigned = url if unsigned is None else unsigned
        obj.path = path
        obj.pairs = pairs
        return obj


def _callback_mac(path: str, pairs: Sequence[tuple[str, str]], key: bytes) -> str:
    # Over the CALLBACK_PARAMS only, sorted and re-encoded: a platform may re-order or
    # re-quote the query, or add its own fields to it (httapi's GET profile); the path
    # is included so a signed query can't be moved to another of our callbacks.
    signed = sorted((k, v) for k, v in pairs if k in CALLBACK_PARAMS)
    # urlencode(signed), without its generic machinery (the same quote_plus per name
    # and value, memoised: names are three, values repeat over a call's URLs).
    query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in signed)
    canonical = path.encode() + b"\n" + query.encode()
    mac = keyed_hmac(key, "sha256").copy()
    mac.update(canonical)
    return mac.hexdigest()[:_SIG_CHARS]


#: quote_plus, memoised (a call's id, its MMG and the route names recur in every URL).
_quote = lru_cache(maxsize=4096)(quote_plus)

_KEYED: dict[tuple[bytes, str], hmac.HMAC] = {}


def keyed_hmac(key: bytes, digest: str) -> hmac.HMAC:
    """An HMAC already keyed with ``key``, to ``copy()`` then update: keying (OpenSSL's
    digest fetch and key pads) is most of an HMAC of a short message, and our keys are
    a handful (one per platform secret), fixed for the process."""
    mac = _KEYED.get((key, digest))
    if mac is None:
        if len(_KEYED) >= 64:  # keys are few; never let a caller grow this
            _KEYED.clear()
        mac = _KEYED[(key, digest)] = hmac.new(key, digestmod=digest)
    return mac


def sign_callback(url: str, key: bytes) -> str:
    """``url`` with ``sig=<HMAC-SHA256(key, path + "\\n" + sorted CALLBACK_PARAMS)>``
    appended last (a :class:`CallbackUrl`); a URL without any of those is returned as
    it is. A parameter the service is to trust must be one of :data:`CALLBACK_PARAMS`."""
    parts = urlsplit(_SIG.sub("", url))
    pairs = tuple((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "sig")
    return signed_url(parts.geturl(), parts.path, pairs, key)


def signed_url(
    unsigned: str, path: str, pairs: tuple[tuple[str, str], ...], key: bytes
) -> CallbackUrl:
    """What :func:`sign_callback` gives for ``unsigned`` when its parts are already
    known: ``path`` its path and ``pairs`` its query's (decoded, ``sig`` excluded)."""
    if not any(k in CALLBACK_PARAMS for k, _ in pairs):
        return CallbackUrl(unsigned, key, unsigned, path, pairs)
    signed = f"{unsigned}&sig={_callback_mac(path, pairs, key)}"
    return CallbackUrl(signed, key, unsigned, path, pairs)


def callback_signed(url: str, key: bytes) -> bool:
    """Whether ``url`` (as the platform called it) carries a valid ``sig`` for its query."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    sigs = [v for k, v in pairs if k == "sig"]
    if len(sigs) != 1 or not key:
        return False
    rest = [(k, v) for k, v in pairs if k != "sig"]
    expected = _callback_mac(parts.path, rest, key).encode()
    return hmac.compare_digest(expected, sigs[0].strip().lower().encode("ascii", "replace"))


@dataclass(frozen=True, slots=True)
class RenderContext:
    """Everything an answer may need besides the decision, the same for every platform.

    ``urls``: our own callbacks; ``caller``: the caller's number as the platform sent
    it; ``own_number``: the MMG's own number (E.164) to present on a dialled leg, None
    if unknown; ``regulation``: the MMG's regulation line (centre 15 / SAS), the
    failover of platforms that route in one answer (Kamailio); ``sip_gateway``: where
    numbers are dialled over SIP; ``mmg_name``: the MMG's name from its protocol, for
    the regulation line to know where a call comes from (Kamailio's
    ``X-Regulator-Origin``). An adapter reads what it needs and ignores the rest.
    """

    urls: HookUrls
    caller: str | None = None
    own_number: str | None = None
    regulation: Destination | None = None
    sip_gateway: str | None = None
    mmg_name: str | None = None


class PlatformAdapter(Protocol):
    """One telephony platform: verify → parse → render (a module of pure functions)."""

    def verify(self, req: HookRequest, secret: str, /) -> None: ...

    def parse_call(self, req: HookRequest, stage: Stage, /) -> Call: ...

    def parse_event(self, req: HookRequest, /) -> CallEvent: ...

    def parse_leg(self, req: HookRequest, /) -> LegReport: ...

    def render(self, decision: Decision, ctx: RenderContext, /) -> Answer: ...

    def render_hangup(self) -> Answer: ...


__all__ = [
    "CALLBACK_PARAMS",
    "CALL_STATUSES",
    "Answer",
    "BadHookRequest",
    "CallEvent",
    "CallbackUrl",
    "HookRequest",
    "HookUrls",
    "LegEvent",
    "LegReport",
    "PlatformAdapter",
    "RenderContext",
    "SignatureError",
    "callback_signed",
    "sign_callback",
]
