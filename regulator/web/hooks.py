"""Telephony webhooks: Twilio, Vonage, Kamailio and generic PBX.

Every handler follows the same steps: authenticate (404 if the platform has no
secret configured, 403 for a bad signature — no call record), parse, route
through :class:`~regulator.calls.CallRouter`, render the platform's answer. After
authentication nothing reaches the platform but a valid answer: any failure
becomes the fail-safe route to centre 15 (never a 5xx, never a stack trace).
Retried webhooks get the answer given the first time (answer cache), except failed
dials: each one is decided again from the call's route history, so a repeated
failure report can never bring the caller back to a destination already offered.
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import ModuleType
from urllib.parse import quote_plus, unquote

import structlog
from aiohttp import web
from prometheus_client import Histogram

from regulator.calls import CallRouter, DialFailure
from regulator.core import phone
from regulator.core.decision import regulation_destination
from regulator.core.models import Call, Decision, Platform, Route, Stage
from regulator.core.phone import mask
from regulator.logs import get_logger
from regulator.metrics import Metrics
from regulator.platforms import generic, kamailio, twilio, vonage
from regulator.platforms.base import (
    Answer,
    BadHookRequest,
    CallEvent,
    HookRequest,
    HookUrls,
    SignatureError,
)
from regulator.settings import Settings
from regulator.web import keys

log = get_logger("regulator.hooks")

_SECRETS = {
    Platform.TWILIO: "twilio_auth_token",
    Platform.VONAGE: "vonage_signature_secret",
    Platform.KAMAILIO: "kamailio_secret",
    Platform.GENERIC: "generic_secret",
}
_ADAPTERS: dict[Platform, ModuleType] = {
    Platform.TWILIO: twilio,
    Platform.VONAGE: vonage,
    Platform.KAMAILIO: kamailio,
    Platform.GENERIC: generic,
}


class AnswerCache:
    """Answers already given, so a retried webhook gets the same one (bounded LRU + TTL).

    Entries are tuples of plain values (not :class:`Answer` objects): the cyclic GC
    stops tracking those, so tens of thousands of cached answers add nothing to
    the full collections that would otherwise pause webhooks.
    """

    def __init__(self, size: int = 50_000, ttl_s: float = 600.0) -> None:
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


def _public_base(request: web.Request, settings: Settings) -> str:
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"{request.scheme}://{request.host}"


def _urls(base: str, platform: Platform, mmg: str | None, call_id: str | None) -> HookUrls:
    root = f"{base}/hooks/{platform.value}"
    # Dial callbacks name the MMG and the call: Vonage reports a failed leg with the
    # dialled number as ``to`` and the leg's own uuid, not the MMG's number and call.
    # What urlencode({"mmg": …, "call_id": …}) gives, without its generic machinery.
    query = "&".join(f"{k}={quote_plus(v)}" for k, v in (("mmg", mmg), ("call_id", call_id)) if v)
    suffix = f"?{query}" if query else ""
    return HookUrls(
        gather=f"{root}/gather",
        dial_status=f"{root}/dial-status{suffix}",
        status=f"{root}/status",
        event=f"{root}/event{suffix}",
        input=f"{root}/input",
    )


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
            value = unquote(value)
        form[name] = value
    return form


async def _read(request: web.Request, settings: Settings) -> HookRequest:
    body = await request.read()
    form: dict[str, str] = {}
    if request.content_type == "application/x-www-form-urlencoded" and body:
        try:
            form = parse_form(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            form = {}
    url = _public_base(request, settings) + request.raw_path
    return HookRequest(
        method=request.method,
        url=url,
        headers={k.lower(): v for k, v in request.headers.items()},
        query=dict(request.query) if request.query_string else {},
        body=body,
        form=form,
        now=time.time(),
    )


class Hooks:
    """The webhook handlers of one application."""

    def __init__(self, router: CallRouter, settings: Settings, metrics: Metrics) -> None:
        self.router = router
        self.settings = settings
        self.metrics = metrics
        self.answers = AnswerCache()
        # Labelled histogram children, created on first use (labels() costs per call).
        self._webhook_seconds: dict[Platform, Histogram] = {}

    # ------------------------------------------------------------------ plumbing
    async def _authentic(self, request: web.Request, platform: Platform) -> HookRequest:
        secret = self.settings.secret(_SECRETS[platform])
        if secret is None and not self.settings.insecure_dev:
            raise web.HTTPNotFound()  # platform not configured: don't even admit the hook exists
        req = await _read(request, self.settings)
        if secret is not None:
            try:
                _ADAPTERS[platform].verify(req, secret)
            except SignatureError as exc:
                log.warning("webhook_signature_rejected", platform=platform.value, reason=str(exc))
                raise web.HTTPForbidden(text="signature invalide") from None
        return req

    def _render(
        self, platform: Platform, decision: Decision, base: str, call: Call | None = None
    ) -> Answer:
        urls = _urls(base, platform, decision.mmg, call.call_id if call else None)
        if platform is Platform.KAMAILIO:
            protocol = self.router.protocols.current.get(decision.mmg) if decision.mmg else None
            regulation = regulation_destination(protocol) if protocol else decision.destination
            answer: Answer = kamailio.render(
                decision, urls, sip_gateway=self.settings.sip_gateway, regulation=regulation
            )
            return answer
        if platform is Platform.VONAGE:
            return vonage.render(decision, urls, from_number=self._own_number(decision, call))
        if platform is Platform.TWILIO:
            own = self._own_number(decision, call)
            return twilio.render(
                decision, urls, caller=call.caller if call else None, own_number=own
            )
        rendered: Answer = _ADAPTERS[platform].render(decision, urls)
        return rendered

    def _own_number(self, decision: Decision, call: Call | None) -> str | None:
        """The MMG's own number (E.164) to present on a dialled leg, or None if unknown.

        The number the caller dialled when it is one of the MMG's, else the MMG's first
        number (a Vonage dial callback's ``to`` is the dialled line). With no MMG (an
        unknown number), the number called, which still is one of the platform account's.
        """
        called = phone.try_normalize(call.called) if call is not None and call.called else None
        protocol = self.router.protocols.current.get(decision.mmg) if decision.mmg else None
        if protocol is not None:
            return called if called in protocol.numbers else protocol.numbers[0]
        if call is None or call.stage is Stage.DIAL_FAILED:
            return None
        return called if called is not None and called.startswith("+") else None

    def _failsafe_answer(self, platform: Platform, reason: str, base: str, out: Outcome) -> Answer:
        decision = self.router.failsafe(reason)
        out.from_decision(decision)
        return self._render(platform, decision, base)

    @staticmethod
    def _respond(answer: Answer) -> web.Response:
        return web.Response(body=answer.body, content_type=answer.content_type.split(";")[0])

    async def _run(
        self,
        request: web.Request,
        platform: Platform,
        work: Callable[[HookRequest, str, Outcome], Awaitable[Answer | None]],
    ) -> web.StreamResponse:
        """Authenticate, run ``work`` with fail-safe on any error, log one canonical line."""
        started = time.perf_counter()
        out = Outcome()
        status = 200
        try:
            req = await self._authentic(request, platform)
            base = _public_base(request, self.settings)
            try:
                answer = await work(req, base, out)
            except BadHookRequest as exc:
                log.warning(
                    "webhook_bad_request",
                    platform=platform.value,
                    field=exc.field,
                    reason=exc.reason,
                )
                answer = self._failsafe_answer(platform, "bad_request", base, out)
            except Exception:
                log.exception("webhook_failed", platform=platform.value)
                answer = self._failsafe_answer(platform, "internal_error", base, out)
            if answer is None:
                return web.Response(status=204)
            return self._respond(answer)
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            duration = time.perf_counter() - started
            histogram = self._webhook_seconds.get(platform)
            if histogram is None:
                histogram = self.metrics.webhook_seconds.labels(platform=platform.value)
                self._webhook_seconds[platform] = histogram
            histogram.observe(duration)
            structlog.contextvars.bind_contextvars(call_id=out.call_id)
            log.info(
                "webhook",
                platform=platform.value,
                path=request.path,
                status=status,
                mmg=out.mmg,
                route=out.route,
                ground=out.ground,
                rule=out.rule,
                caller=mask(out.caller) if out.caller else None,
                failsafe=out.failsafe,
                retried=out.cached,
                duration_ms=round(duration * 1000, 2),
            )

    async def _decide(
        self,
        platform: Platform,
        call: Call,
        base: str,
        out: Outcome,
        *,
        failure: DialFailure | None = None,
        mmg: str | None = None,
    ) -> Answer:
        out.call_id = call.call_id
        out.caller = call.caller
        # Not for failed dials: the same report twice is a second failure to decide on
        # (the route history has moved on), never a replay of the first answer.
        key = (platform.value, call.call_id, call.stage.value, call.digits or "")
        if failure is None:
            cached = self.answers.get(key)
            if cached is not None:
                out.cached = True
                return cached
        decision = await self.router.route(
            call,
            menu_capable=platform is not Platform.KAMAILIO,
            failure=failure,
            mmg_hint=mmg,
        )
        out.from_decision(decision)
        answer = self._render(platform, decision, base, call)
        if failure is None:
            self.answers.put(key, answer)
        return answer

    async def _dial_failed(
        self,
        platform: Platform,
        call: Call,
        base: str,
        out: Outcome,
        target: Route | None,
        mmg: str | None = None,
    ) -> Answer:
        """Decide again after a failed dial of ``target`` (None: the call's last route)."""
        failure = await self.router.dial_failure(call.call_id, target)
        if failure.caller:
            # The recorded caller, not the failed leg's ``from``: on Vonage that is the
            # MMG's number we presented, and centre 15 must learn the patient's.
            call = dataclasses.replace(call, caller=failure.caller)
        return await self._decide(platform, call, base, out, failure=failure, mmg=mmg)

    async def _dial_event(
        self, platform: Platform, ev: CallEvent, base: str, out: Outcome, mmg: str | None = None
    ) -> Answer | None:
        """A dial outcome: on failure, decide again; on success, end quietly."""
        out.call_id = ev.call_id
        if not ev.dial_failed:
            await self.router.event(ev)
            return None
        call = Call(
            call_id=ev.call_id,
            caller=ev.caller or "",
            called=ev.called or "",
            platform=platform,
            stage=Stage.DIAL_FAILED,
        )
        return await self._dial_failed(platform, call, base, out, ev.target, mmg)

    # ------------------------------------------------------------------ Twilio
    async def twilio_voice(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            return await self._decide(
                Platform.TWILIO, twilio.parse_call(req, Stage.INCOMING), base, out
            )

        return await self._run(request, Platform.TWILIO, work)

    async def twilio_gather(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            return await self._decide(
                Platform.TWILIO, twilio.parse_call(req, Stage.DIGITS), base, out
            )

        return await self._run(request, Platform.TWILIO, work)

    async def twilio_dial_status(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            answer = await self._dial_event(
                Platform.TWILIO, twilio.parse_event(req), base, out, req.query.get("mmg")
            )
            return answer if answer is not None else twilio.render_hangup()

        return await self._run(request, Platform.TWILIO, work)

    async def twilio_status(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            ev = twilio.parse_event(req)
            out.call_id = ev.call_id
            await self.router.event(ev)
            return None

        return await self._run(request, Platform.TWILIO, work)

    # ------------------------------------------------------------------ Vonage
    async def vonage_answer(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            return await self._decide(
                Platform.VONAGE, vonage.parse_call(req, Stage.INCOMING), base, out
            )

        return await self._run(request, Platform.VONAGE, work)

    async def vonage_input(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            return await self._decide(
                Platform.VONAGE, vonage.parse_call(req, Stage.DIGITS), base, out
            )

        return await self._run(request, Platform.VONAGE, work)

    async def vonage_event(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            ev = vonage.parse_event(req)
            if ev.target is None:
                out.call_id = ev.call_id
                await self.router.event(ev)
                return None
            return await self._dial_event(Platform.VONAGE, ev, base, out, req.query.get("mmg"))

        return await self._run(request, Platform.VONAGE, work)

    # ------------------------------------------------------------------ Kamailio
    async def kamailio_route(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            return await self._decide(
                Platform.KAMAILIO, kamailio.parse_call(req, Stage.INCOMING), base, out
            )

        return await self._run(request, Platform.KAMAILIO, work)

    # ------------------------------------------------------------------ generic
    async def generic_call(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            call, target = generic.parse_call_target(req, Stage.INCOMING)
            if call.stage is Stage.DIAL_FAILED:
                mmg = req.query.get("mmg")
                return await self._dial_failed(Platform.GENERIC, call, base, out, target, mmg)
            return await self._decide(Platform.GENERIC, call, base, out)

        return await self._run(request, Platform.GENERIC, work)

    async def generic_event(self, request: web.Request) -> web.StreamResponse:
        async def work(req: HookRequest, base: str, out: Outcome) -> Answer | None:
            ev = generic.parse_event(req)
            if ev.dial_failed:  # busy, no-answer, failed: a failed dial, target or not
                return await self._dial_event(Platform.GENERIC, ev, base, out, req.query.get("mmg"))
            out.call_id = ev.call_id
            await self.router.event(ev)
            return Answer(b'{"ok":true}', "application/json")

        return await self._run(request, Platform.GENERIC, work)


def setup_hooks(app: web.Application) -> None:
    """Register the webhook routes (paths are a contract: DESIGN.md §3)."""
    hooks = Hooks(app[keys.ROUTER], app[keys.SETTINGS], app[keys.METRICS])
    app[keys.HOOKS] = hooks
    app.router.add_post("/hooks/twilio/voice", hooks.twilio_voice)
    app.router.add_post("/hooks/twilio/gather", hooks.twilio_gather)
    app.router.add_post("/hooks/twilio/dial-status", hooks.twilio_dial_status)
    app.router.add_post("/hooks/twilio/status", hooks.twilio_status)
    app.router.add_route("GET", "/hooks/vonage/answer", hooks.vonage_answer)
    app.router.add_post("/hooks/vonage/answer", hooks.vonage_answer)
    app.router.add_post("/hooks/vonage/event", hooks.vonage_event)
    app.router.add_post("/hooks/vonage/input", hooks.vonage_input)
    app.router.add_post("/hooks/kamailio/route", hooks.kamailio_route)
    app.router.add_post("/hooks/generic/call", hooks.generic_call)
    app.router.add_post("/hooks/generic/event", hooks.generic_event)
