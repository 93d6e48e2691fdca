"""What the webhook handlers share: the answer cache, the request as adapters see it,
our own callback URLs and the canonical log line's fields."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from urllib.parse import quote_plus, unquote, urlsplit

from aiohttp import web

from regulator.core.models import Decision, Platform
from regulator.platforms.base import (
    CALLBACK_PARAMS,
    Answer,
    HookRequest,
    HookUrls,
    callback_signed,
    sign_callback,
    signed_url,
)
from regulator.settings import Settings

#: Answers kept per process. A platform retries a webhook within seconds (Twilio's
#: 15 s timeout, a dropped connection); replays later, on another replica or after a
#: restart, are the store's (``Store.hook_answer``, replay-proof counting). 10,000
#: covers the 10-minute TTL up to 16 calls/s per replica, far beyond a region's
#: epidemic peak; 50,000 held ~40 MB resident for nothing (benchmarks, issue 21).
ANSWER_CACHE_SIZE = 10_000


class AnswerCache:
    """Answers already given, so a retried webhook gets the same one (bounded LRU + TTL).

    Entries are tuples of plain values (not :class:`Answer` objects): the cyclic GC
    stops tracking those, so tens of thousands of cached answers add nothing to
    the full collections that would otherwise pause webhooks.
    """

    def __init__(self, size: int = ANSWER_CACHE_SIZE, ttl_s: float = 600.0) -> None:
        self._items: OrderedDict[tuple[str, ...], tuple[float, bytes, str]] = OrderedDict()
        # Identical answers (the voice menu of an MMG, a closed message) share one body.
        self._bodies: dict[bytes, bytes] = {}
        self.size = size
        self.ttl_s = ttl_s

    def get(self, key: tuple[str, ...]) -> Answer | None:
        item = self._items.get(key)
        if item is None:
            return None
        stamp, body, content_type = item
        if time.monotonic() - stamp > self.ttl_s:
            del self._items[key]
            return None
        return Answer(body, content_type)

    def put(self, key: tuple[str, ...], answer: Answer) -> None:
        body = self._bodies.get(answer.body)
        if body is None:
            if len(self._bodies) >= 1024:
                self._bodies.clear()
            body = self._bodies[answer.body] = answer.body
        self._items[key] = (time.monotonic(), body, answer.content_type)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


@dataclass(slots=True)
class Outcome:
    """What a handler did, for the canonical log line."""

    call_id: str = ""
    mmg: str | None = None
    route: str | None = None
    ground: str | None = None
    rule: str | None = None
    caller: str | None = None
    failsafe: bool = False
    cached: bool = False

    def from_decision(self, decision: Decision) -> None:
        self.mmg = decision.mmg
        self.route = decision.route.value
        self.ground = decision.ground.value if decision.ground else None
        self.rule = decision.rule
        self.failsafe = decision.failsafe


def public_base(request: web.Request, settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"{request.scheme}://{request.host}"


def hook_urls(
    base: str,
    platform: Platform,
    mmg: str | None,
    call_id: str | None,
    key: bytes = b"",
    *,
    whisper: bool = True,
) -> HookUrls:
    """Our callback URLs for one answer. With ``key`` (:func:`callback_key`), each URL
    with a query carries its HMAC (``sig``), and so does every URL an adapter derives
    from them with :meth:`HookUrls.with_query`: on the way back, the query's ``mmg``,
    ``call_id`` and ``target`` are trusted only if it checks (:func:`trusted_query`).
    ``whisper=False``: no whisper URL (the protocol plays none).

    Each URL is built and signed when the renderer first reads it: an answer uses
    one to three of the eight (a voice menu its ``gather``, a dial its action, leg
    and whisper URLs), and signing all eight was 6 % of a webhook's CPU (py-spy)."""
    return _LazyUrls(base, platform, mmg, call_id, key, whisper)


#: :class:`_LazyUrls`' URLs: attribute → (path segment, whether it carries the call's
#: ``mmg``/``call_id`` query). Read by the properties and by ``targeted`` alike.
_URLS: dict[str, tuple[str, bool]] = {
    "gather": ("gather", False),
    "dial_status": ("dial-status", True),
    "status": ("status", False),
    "event": ("event", True),
    "input": ("input", False),
    "leg": ("leg", True),
}


def _lazy_url(attribute: str) -> cached_property[str]:
    """One of :class:`_LazyUrls`' URLs (:data:`_URLS`): ``/hooks/{platform}/{segment}``,
    with the call's query when it carries one; built and signed on first read."""
    segment, with_call = _URLS[attribute]

    def build(self: _LazyUrls) -> str:
        return self._url(segment, with_call)

    return cached_property(build)


class _LazyUrls(HookUrls):
    """:class:`HookUrls` whose fields are computed on first read (``cached_property``
    shadows the frozen dataclass's slots; ``__eq__``/``repr`` read them all)."""

    # Set once in __init__ through __dict__ (the frozen base refuses setattr).
    _root: str
    _pairs: tuple[tuple[str, str], ...]
    _suffix: str
    _key: bytes
    _root_path: str | None
    _platform: Platform
    _whisper: bool

    def __init__(
        self,
        base: str,
        platform: Platform,
        mmg: str | None,
        call_id: str | None,
        key: bytes,
        whisper: bool,
    ) -> None:
        # No dataclass __init__: every field is a cached_property below.
        root = f"{base}/hooks/{platform.value}"
        # Dial callbacks name the MMG and the call: Vonage reports a failed leg with the
        # dialled number as ``to`` and the leg's own uuid, not the MMG's number and call.
        # What urlencode({"mmg": …, "call_id": …}) gives, without its generic machinery.
        pairs = tuple((k, v) for k, v in (("mmg", mmg), ("call_id", call_id)) if v)
        query = "&".join(f"{k}={quote_plus(v)}" for k, v in pairs)
        own = self.__dict__
        own["_root"] = root
        own["_pairs"] = pairs
        own["_suffix"] = f"?{query}" if query else ""
        own["_key"] = key
        # The root's parts, parsed once per base: each URL is then signed from the
        # pairs above (what sign_callback would parse back), not parsed again.
        own["_root_path"] = _root_path(root) if key else None
        own["_platform"] = platform
        own["_whisper"] = whisper

    def _url(self, name: str, with_call: bool, target: str | None = None) -> str:
        path = f"{self._root}/{name}{self._suffix if with_call else ''}"
        if not self._key:
            return path
        if self._root_path is None:
            return sign_callback(path, self._key)
        unsigned, _, q = path.partition("?")
        pairs = self._pairs if q else ()
        if target is not None:  # what HookUrls.with_query(<path signed>, target=…) gives
            path = f"{path}{'&' if q else '?'}target={quote_plus(target)}"
            pairs += (("target", target),)
        return signed_url(path, self._root_path + unsigned[len(self._root) :], pairs, self._key)

    def targeted(self, name: str, target: str) -> str:
        # Built and signed once with its target, not read (signed) then signed again.
        spec = _URLS.get(name)
        if spec is None or not self._key or self._root_path is None:
            return super().targeted(name, target)
        segment, with_call = spec
        return self._url(segment, with_call, target)

    gather = _lazy_url("gather")
    dial_status = _lazy_url("dial_status")
    status = _lazy_url("status")
    event = _lazy_url("event")
    input = _lazy_url("input")
    leg = _lazy_url("leg")

    @cached_property
    def whisper(self) -> str:
        return self._url("whisper", True) if self._whisper else ""

    @cached_property
    def extra(self) -> Mapping[str, str]:
        # jambonz: a dial target's confirmHook (the leg answered; the whisper).
        if self._platform is Platform.JAMBONZ:
            return {"confirm": self._url("confirm", True)}
        return {}


@lru_cache(maxsize=64)
def _root_path(root: str) -> str | None:
    """The path of ``root`` when ``root`` + a path + a query of ours splits back into
    exactly those (no query or fragment of its own, unchanged by urlsplit/urlunsplit),
    else None: such a base is signed through :func:`sign_callback`, as it always was."""
    parts = urlsplit(root)
    if parts.query or parts.fragment or "?" in root or "#" in root or parts.geturl() != root:
        return None
    return parts.path


#: Platforms whose callbacks are URLs we render (TwiML action, NCCO eventUrl, httapi,
#: jambonz actionHook, TeXML): their ``CALLBACK_PARAMS`` must carry our HMAC. Not the
#: generic PBX (its v2 signature covers the query, written by the PBX), nor Asterisk
#: (its dialplan writes the query), nor Kamailio (no callbacks).
SIGNED_CALLBACKS: frozenset[Platform] = frozenset(
    {Platform.TWILIO, Platform.VONAGE, Platform.FREESWITCH, Platform.JAMBONZ, Platform.TELNYX}
)
#: Platforms whose configured "secret" is public (Telnyx: an Ed25519 public key): no
#: URL key can be derived from it, so their callback queries are never trusted.
_PUBLIC_SECRETS: frozenset[Platform] = frozenset({Platform.TELNYX})


def callback_key(platform: Platform, secret: str | None) -> bytes:
    """The key of ``platform``'s callback-URL HMAC, derived from its webhook secret
    (b"" when it has none usable: URLs unsigned, their queries untrusted)."""
    if not secret or platform not in SIGNED_CALLBACKS or platform in _PUBLIC_SECRETS:
        return b""
    return derived_key(secret)


def derived_key(secret: str) -> bytes:
    """A callback-URL key from a secret (never the secret itself: the key signs URLs
    anyone on the call path can read)."""
    return hmac.new(secret.encode("utf-8"), b"regulator callback url v1", hashlib.sha256).digest()


def trusted_query(req: HookRequest, key: bytes) -> HookRequest:
    """``req`` as far as its query can be trusted: our ``CALLBACK_PARAMS`` stay only if
    the URL's HMAC checks. Missing or wrong, the request is kept (it is authentic, the
    platform signed it) but untargeted: a failed dial is then decided from the call's
    stored route history, the call id and MMG come from the platform's own fields —
    never from a query anyone could have written."""
    named = CALLBACK_PARAMS.intersection(req.query)
    if not named and "sig" not in req.query:
        return req
    if key and callback_signed(req.url, key):
        return req
    query = {k: v for k, v in req.query.items() if k not in CALLBACK_PARAMS and k != "sig"}
    return dataclasses.replace(req, query=query)


def parse_form(text: str) -> dict[str, str]:
    """``dict(parse_qsl(text, keep_blank_values=True))`` — the same pairs, last one wins
    — without parse_qsl's per-field overhead (a Twilio webhook has some 25 fields)."""
    form: dict[str, str] = {}
    for item in text.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = unquote(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            if value[:3] in _PLUS and value.find("%", 3) < 0:
                value = "+" + value[3:]  # a number (``%2B33…``), the only escape: no cache
            elif len(value) <= _CACHED_VALUE_CHARS:
                value = _unquote(value)
            else:
                value = unquote(value)
        form[name] = value
    return form


#: Escaped values up to this length go through the cache (numbers, SIP URIs): a
#: Twilio webhook escapes four numbers (``%2B33…``), the MMG's on every call.
_CACHED_VALUE_CHARS = 64
_PLUS = ("%2B", "%2b")
_unquote = lru_cache(maxsize=8192)(unquote)


async def read_hook(request: web.Request, settings: Settings) -> HookRequest:
    body = await request.read()
    form: dict[str, str] = {}
    if request.content_type == "application/x-www-form-urlencoded" and body:
        try:
            form = parse_form(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            form = {}
    url = public_base(request, settings) + request.raw_path
    return HookRequest(
        method=request.method,
        url=url,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query) if request.query_string else {},
        body=body,
        form=form,
        now=time.time(),
    )
