"""The whisper hooks: what the regulation line hears when it answers (core/whisper.py).

Twilio and Telnyx fetch ``<Number url>``, Vonage a phone endpoint's ``onAnswer`` URL,
once the regulation line has picked up and before the caller is connected. Our URL
names the MMG and the call (``mmg``, ``call_id``, built by ``hook_urls``). The answer
must never stop the call from being put through: whatever fails here (an MMG no
longer loaded, the store too slow to give the caller's number), the line hears a
plain whisper and is connected, and a whisper document never dials (the platforms
refuse a ``<Dial>`` there, which would leave the regulator and the caller apart).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from regulator.calls import CallRouter
from regulator.core.models import Platform
from regulator.core.whisper import FALLBACK, whisper_texts
from regulator.logs import get_logger
from regulator.platforms import _common as f
from regulator.platforms import telnyx, twilio, vonage
from regulator.platforms.base import Answer, BadHookRequest, HookRequest

log = get_logger("regulator.hooks")

#: How each platform that asks for a whisper writes one.
RENDERERS: Final[dict[Platform, Callable[[tuple[str, ...]], Answer]]] = {
    Platform.TWILIO: twilio.render_whisper,
    Platform.TELNYX: telnyx.render_whisper,
    Platform.VONAGE: vonage.render_whisper,
}


async def whisper_answer(router: CallRouter, platform: Platform, req: HookRequest) -> Answer:
    """The whisper document for the call our URL names; never raises."""
    render = RENDERERS[platform]
    try:
        mmg = f.text(req.query.get("mmg"), "mmg")
        call_id = f.text(req.query.get("call_id"), "call_id")
        protocol = router.protocols.current.get(mmg) if mmg else None
        caller = None
        if protocol is not None and protocol.messages.whisper_caller and call_id:
            caller = await router.caller_of(call_id)
        return render(tuple(whisper_texts(protocol, caller)))
    except BadHookRequest as exc:
        log.warning("whisper_bad_request", platform=platform.value, field=exc.field)
    except Exception:  # the line must be connected whatever happened here
        log.exception("whisper_failed", platform=platform.value)
    return render((FALLBACK,))


__all__ = ["RENDERERS", "whisper_answer"]
