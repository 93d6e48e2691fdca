"""Telephony webhooks: Twilio, Vonage, Kamailio and generic PBX.

One handler, :meth:`Hooks.handler`, serves every row of the hook table
(:mod:`regulator.web.hooks.table`), in the same steps: authenticate (404 if the
platform has no secret configured, 403 for a bad signature — no call record), parse, route
through :class:`~regulator.calls.CallRouter`, render the platform's answer. After
authentication nothing reaches the platform but a valid answer: any failure
becomes the fail-safe route to centre 15 (never a 5xx, never a stack trace).
Retried webhooks get the answer given the first time, except failed dials: each one
is decided again from the call's route history, so a repeated failure report can
never bring the caller back to a destination already offered.

Replays (issue 18): the answer cache is per process, so a retry or replay may reach a
replica that never saw the call, or this one after a restart. A later-stage webhook
(menu digits) then reads its first answer from the store (kept 24 h, written behind
by the call writer) and routes nothing again. The first webhook of a call waits on no
store read: it is decided again (the same decision, made afresh), and the write path
settles whether its record is the call's first; only then is it counted and shown
(:meth:`CallRouter.records_settled`). With the store down, both guards fall back to
the per-process cache (a replay on another replica is then decided and counted again).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from functools import partial

import structlog
from aiohttp import web
from prometheus_client import Histogram

from regulator.calls import CallRouter, DialFailure
from regulator.core import phone
from regulator.core.decision import regulation_destination
from regulator.core.legs import LegEvent
from regulator.core.models import Call, CallEvent, Decision, Platform, Route, Stage
from regulator.core.phone import mask
from regulator.core.protocol import Protocol
from regulator.core.whisper import has_whisper
from regulator.logs import get_logger
from regulator.metrics import Metrics
from regulator.platforms import asterisk, freeswitch, vonage
from regulator.platforms.base import (
    Answer,
    BadHookRequest,
    HookRequest,
    RenderContext,
    SignatureError,
)
from regulator.ports import StoreError
from regulator.settings import Settings
from regulator.web.hooks.table import (
    ADAPTERS,
    EXITING_ENDS_CALL,
    NO_MENU,
    SECRETS,
    HookRoute,
    Kind,
    Quiet,
)
from regulator.web.hooks.whisper import whisper_answer
from regulator.web.hooks.wire import (
    SIGNED_CALLBACKS,
    AnswerCache,
    Outcome,
    callback_key,
    derived_key,
    hook_urls,
    public_base,
    read_hook,
    trusted_query,
)

log = get_logger("regulator.hooks")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OK = Answer(b'{"ok":true}', "application/json")
#: Vonage token ids one replica remembers (5 minutes of webhooks at a high rate).
SEEN_JTI_MAX = 200_000


class Hooks:
    """The webhook handlers of one application."""

    def __init__(self, router: CallRouter, settings: Settings, metrics: Metrics) -> None:
        self.router = router
        self.settings = settings
        self.metrics = metrics
        self.answers = AnswerCache()
        # The callback-URL HMAC key of each platform (b"": URLs unsigned, see wire.py).
        self._url_keys = {p: callback_key(p, settings.secret(n)) for p, n in SECRETS.items()}
        # Telnyx's webhook "secret" is a public key: its URLs take a key of their own.
        telnyx_key = settings.secret("telnyx_callback_secret")
        self._url_keys[Platform.TELNYX] = derived_key(telnyx_key) if telnyx_key else b""
        # Vonage token ids seen here → until when (insertion order ≈ expiry order).
        self._seen_jti: OrderedDict[str, float] = OrderedDict()
        # Labelled histogram children, created on first use (labels() costs per call).
        self._webhook_seconds: dict[Platform, Histogram] = {}

    # ------------------------------------------------------------------ plumbing
    async def _authentic(self, request: web.Request, platform: Platform) -> HookRequest:
        secret = self.settings.secret(SECRETS[platform])
        if secret is None and not self.settings.insecure_dev:
            raise web.HTTPNotFound()  # platform not configured: don't even admit the hook exists
        if platform is Platform.ASTERISK and not asterisk.source_allowed(
            self.settings.asterisk_allowlist(), request.remote
        ):
            log.warning("webhook_source_refused", platform=platform.value)
            raise web.HTTPForbidden(text="source non autorisée")
        req = await read_hook(request, self.settings)
        if secret is None:
            return req  # insecure dev mode: nothing to check, the query included
        try:
            if platform is Platform.VONAGE:
                jti, until = vonage.token_id(vonage.decode_claims(req, secret))
                if not await self._first_use(jti, req.now, until):
                    raise SignatureError("JWT already used (jti replayed)")
            else:
                ADAPTERS[platform].verify(req, secret)
        except SignatureError as exc:
            log.warning("webhook_signature_rejected", platform=platform.value, reason=str(exc))
            raise web.HTTPForbidden(text="signature invalide") from None
        if platform in SIGNED_CALLBACKS:
            trusted = trusted_query(req, self._url_keys[platform])
            if trusted is not req:
                log.warning("callback_query_untrusted", platform=platform.value, path=request.path)
            req = trusted
        return req

    async def _first_use(self, jti: str, now: float, until: float) -> bool:
        """Whether this Vonage ``jti`` is seen for the first time, on any replica.

        This replica's memory first (no store round trip for its own replays), then
        the store (``claim_token_id``, atomic across replicas) within the store
        budget. With the store down or slow, the memory alone decides: a token
        replayed on another replica during an outage is then accepted once more there
        (its signature still binds it to this body, for at most its 5 minutes)."""
        seen = self._seen_jti
        while seen and next(iter(seen.values())) < now:  # oldest first: expired ones
            seen.popitem(last=False)
        if jti in seen:
            return False
        seen[jti] = until
        while len(seen) > SEEN_JTI_MAX:
            seen.popitem(last=False)
        try:
            async with asyncio.timeout(self.router.store_budget_s):
                return await self.router.store.claim_token_id("vonage", jti, now, until)
        except (StoreError, TimeoutError) as exc:
            self.metrics.storage_errors.labels(op="claim_token_id").inc()
            log.warning("token_id_claim_failed", error=str(exc) or "timeout")
        except Exception:
            log.exception("token_id_claim_failed")
        return True

    def _render(
        self, platform: Platform, decision: Decision, base: str, call: Call | None = None
    ) -> Answer:
        protocol = self.router.protocols.current.get(decision.mmg) if decision.mmg else None
        urls = hook_urls(
            base,
            platform,
            decision.mmg,
            call.call_id if call else None,
            self._url_keys[platform],
            whisper=has_whisper(protocol),
        )
        ctx = RenderContext(
            urls=urls,
            caller=call.caller if call else None,
            own_number=self._own_number(protocol, call),
            regulation=regulation_destination(protocol) if protocol else decision.destination,
            sip_gateway=self.settings.sip_gateway,
            mmg_name=protocol.name if protocol else None,
        )
        return ADAPTERS[platform].render(decision, ctx)

    @staticmethod
    def _own_number(protocol: Protocol | None, call: Call | None) -> str | None:
        """The MMG's own number (E.164) to present on a dialled leg, or None if unknown.

        The number the caller dialled when it is one of the MMG's, else the MMG's first
        number (a Vonage dial callback's ``to`` is the dialled line). With no MMG (an
        unknown number), the number called, which still is one of the platform account's.
        """
        called = phone.try_normalize(call.called) if call is not None and call.called else None
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
            base = public_base(request, self.settings)
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
            if cached is None:  # another replica, or before a restart: the store knows
                stored = await self.router.first_answer(*key[:2], call.stage, key[3])
                if stored is not None:
                    cached = Answer(stored.body, stored.content_type)
                    self.answers.put(key, cached)
            if cached is not None:
                out.cached = True
                return cached
        decision = await self.router.route(
            call,
            menu_capable=platform not in NO_MENU,
            failure=failure,
            mmg_hint=mmg,
        )
        out.from_decision(decision)
        answer = self._render(platform, decision, base, call)
        if failure is None:
            self.answers.put(key, answer)
            self.router.keep_answer(
                key[0], key[1], call.stage, key[3], answer.body, answer.content_type
            )
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

    async def _leg(self, platform: Platform, req: HookRequest) -> None:
        """Record the dial-leg report a callback carries (core/legs.py), if any.

        Never changes the callback's answer: an unreadable leg report is logged and
        dropped (the figures miss one report; the caller's route does not depend on it).
        """
        try:
            leg = ADAPTERS[platform].parse_leg(req)
        except BadHookRequest as exc:
            log.warning(
                "leg_event_bad_request", platform=platform.value, field=exc.field, reason=exc.reason
            )
            return
        for event in (leg,) if isinstance(leg, LegEvent) else leg or ():
            await self.router.leg_event(event)

    # ------------------------------------------------------------------ the table
    def handler(self, spec: HookRoute) -> Handler:
        """The aiohttp handler of one row of the hook table."""

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._run(request, spec.platform, partial(self._work, spec))

        return handle

    async def _work(
        self, spec: HookRoute, req: HookRequest, base: str, out: Outcome
    ) -> Answer | None:
        platform = spec.platform
        adapter = ADAPTERS[platform]
        mmg = req.query.get("mmg")
        if spec.kind is not Kind.CALL:
            # A whisper request may report a leg too (jambonz's confirmHook: answered).
            await self._leg(platform, req)
        if spec.kind is Kind.WHISPER:
            return await whisper_answer(self.router, platform, req)
        if spec.kind is Kind.LEG:
            return None
        if platform in EXITING_ENDS_CALL and freeswitch.is_exiting(req):
            ev = adapter.parse_event(req)  # the call is over, whatever this path is
            out.call_id = ev.call_id
            await self.router.event(ev)
            return adapter.render_hangup()
        if spec.kind is Kind.CALL:
            if spec.parse is not None:
                call, target = spec.parse(req, spec.stage)
            else:
                call, target = adapter.parse_call(req, spec.stage), None
            if call.stage is Stage.DIAL_FAILED:
                return await self._dial_failed(platform, call, base, out, target, mmg)
            return await self._decide(platform, call, base, out)
        ev = adapter.parse_event(req)
        out.call_id = ev.call_id
        about_a_dial = spec.kind is Kind.DIAL or (
            spec.kind is Kind.EVENT
            and (ev.target is not None or (spec.untargeted_failures and ev.dial_failed))
        )
        if about_a_dial and ev.dial_failed:
            return await self._dial_event(platform, ev, base, out, mmg)
        await self.router.event(ev)
        if spec.quiet is Quiet.HANGUP:
            return adapter.render_hangup()
        if spec.quiet is Quiet.OK:
            return _OK
        return None
