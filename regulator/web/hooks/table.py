"""Every webhook path, one row each: which platform, which method, what it reports.

Adding a platform is one adapter module (a :class:`~regulator.platforms.base.
PlatformAdapter`), one line in :data:`ADAPTERS` and :data:`SECRETS`, and one row here
per path it calls. Paths are a contract (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Final

from regulator.core.models import Call, Platform, Route, Stage
from regulator.platforms import (
    asterisk,
    freeswitch,
    generic,
    jambonz,
    kamailio,
    telnyx,
    twilio,
    vonage,
)
from regulator.platforms.base import HookRequest, PlatformAdapter

ADAPTERS: Final[dict[Platform, PlatformAdapter]] = {
    Platform.TWILIO: twilio,
    Platform.VONAGE: vonage,
    Platform.KAMAILIO: kamailio,
    Platform.GENERIC: generic,
    Platform.ASTERISK: asterisk,
    Platform.FREESWITCH: freeswitch,
    Platform.JAMBONZ: jambonz,
    Platform.TELNYX: telnyx,
}

#: The setting holding each platform's webhook secret (no secret: the hooks are 404).
SECRETS: Final[dict[Platform, str]] = {
    Platform.TWILIO: "twilio_auth_token",
    Platform.VONAGE: "vonage_signature_secret",
    Platform.KAMAILIO: "kamailio_secret",
    Platform.GENERIC: "generic_secret",
    Platform.ASTERISK: "asterisk_secret",
    Platform.FREESWITCH: "freeswitch_secret",
    Platform.JAMBONZ: "jambonz_secret",
    Platform.TELNYX: "telnyx_public_key",
}

#: httapi posts a call's end (``exiting=true``) to whatever path the call was on:
#: on these platforms every path first checks for it (a status, then hang up).
EXITING_ENDS_CALL: Final[frozenset[Platform]] = frozenset({Platform.FREESWITCH})


class Kind(Enum):
    """What a webhook reports."""

    CALL = "call"  # a call to decide at the row's stage (the menu's digits included)
    DIAL = "dial"  # the outcome of a dial we asked for: failed → decide again
    STATUS = "status"  # a whole-call status: recorded
    EVENT = "event"  # either: a dial outcome when it is about a dial, else a status
    LEG = "leg"  # a dial-leg report only (adapter.parse_leg): recorded, nothing decided
    WHISPER = "whisper"  # the answering regulation line asks what to hear (whisper.py)


class Quiet(Enum):
    """The answer when there is nothing to decide (a dial answered, a status)."""

    NO_CONTENT = "no_content"  # HTTP 204
    HANGUP = "hangup"  # the adapter's render_hangup()
    OK = "ok"  # {"ok": true}


#: Reads a call and, for a failed dial reported on the call hook, the failed target.
CallParser = Callable[[HookRequest, Stage], tuple[Call, Route | None]]


@dataclass(frozen=True, slots=True)
class HookRoute:
    """One webhook path.

    ``parse``: how the path reads a call when it is not ``adapter.parse_call`` (the
    generic call hook also reports failed dials, naming their target).
    ``untargeted_failures``: on an EVENT path, whether a busy/no-answer/failed status
    without a target is a failed dial (generic PBX) or a whole-call status (Vonage).
    """

    platform: Platform
    method: str
    path: str
    kind: Kind
    stage: Stage = Stage.INCOMING
    quiet: Quiet = Quiet.NO_CONTENT
    parse: CallParser | None = None
    untargeted_failures: bool = False


HOOK_ROUTES: Final[tuple[HookRoute, ...]] = (
    HookRoute(Platform.TWILIO, "POST", "/hooks/twilio/voice", Kind.CALL),
    HookRoute(Platform.TWILIO, "POST", "/hooks/twilio/gather", Kind.CALL, Stage.DIGITS),
    HookRoute(Platform.TWILIO, "POST", "/hooks/twilio/dial-status", Kind.DIAL, quiet=Quiet.HANGUP),
    HookRoute(Platform.TWILIO, "POST", "/hooks/twilio/status", Kind.STATUS),
    HookRoute(Platform.TWILIO, "POST", "/hooks/twilio/leg", Kind.LEG),
    HookRoute(Platform.TWILIO, "POST", "/hooks/twilio/whisper", Kind.WHISPER),
    HookRoute(Platform.VONAGE, "GET", "/hooks/vonage/answer", Kind.CALL),
    HookRoute(Platform.VONAGE, "POST", "/hooks/vonage/answer", Kind.CALL),
    HookRoute(Platform.VONAGE, "POST", "/hooks/vonage/event", Kind.EVENT),
    HookRoute(Platform.VONAGE, "POST", "/hooks/vonage/input", Kind.CALL, Stage.DIGITS),
    HookRoute(Platform.VONAGE, "GET", "/hooks/vonage/whisper", Kind.WHISPER),
    HookRoute(Platform.VONAGE, "POST", "/hooks/vonage/whisper", Kind.WHISPER),
    HookRoute(Platform.KAMAILIO, "POST", "/hooks/kamailio/route", Kind.CALL),
    # The script's dial-leg notifications (mqueue + rtimer: never on the SIP worker)
    HookRoute(Platform.KAMAILIO, "POST", "/hooks/kamailio/event", Kind.LEG),
    HookRoute(
        Platform.GENERIC, "POST", "/hooks/generic/call", Kind.CALL, parse=generic.parse_call_target
    ),
    HookRoute(
        Platform.GENERIC,
        "POST",
        "/hooks/generic/event",
        Kind.EVENT,
        quiet=Quiet.OK,
        untargeted_failures=True,
    ),
    # Asterisk (CURL() from the dialplan; DIALSTATUS and the hangup handler report back)
    HookRoute(Platform.ASTERISK, "POST", "/hooks/asterisk/call", Kind.CALL),
    HookRoute(Platform.ASTERISK, "POST", "/hooks/asterisk/gather", Kind.CALL, Stage.DIGITS),
    HookRoute(
        Platform.ASTERISK, "POST", "/hooks/asterisk/dial-status", Kind.DIAL, quiet=Quiet.HANGUP
    ),
    HookRoute(Platform.ASTERISK, "POST", "/hooks/asterisk/status", Kind.STATUS),
    # FreeSWITCH mod_httapi
    HookRoute(Platform.FREESWITCH, "POST", "/hooks/freeswitch/voice", Kind.CALL),
    HookRoute(Platform.FREESWITCH, "POST", "/hooks/freeswitch/gather", Kind.CALL, Stage.DIGITS),
    HookRoute(
        Platform.FREESWITCH, "POST", "/hooks/freeswitch/dial-status", Kind.DIAL, quiet=Quiet.HANGUP
    ),
    # jambonz (webhooks: call, actionHooks, call status)
    HookRoute(Platform.JAMBONZ, "POST", "/hooks/jambonz/call", Kind.CALL),
    HookRoute(Platform.JAMBONZ, "POST", "/hooks/jambonz/gather", Kind.CALL, Stage.DIGITS),
    HookRoute(
        Platform.JAMBONZ, "POST", "/hooks/jambonz/dial-status", Kind.DIAL, quiet=Quiet.HANGUP
    ),
    HookRoute(Platform.JAMBONZ, "POST", "/hooks/jambonz/status", Kind.STATUS),
    # the dial target's confirmHook: the called party answered (leg), the whisper
    HookRoute(Platform.JAMBONZ, "POST", "/hooks/jambonz/confirm", Kind.WHISPER),
    # Telnyx TeXML (Twilio's shape, Ed25519 signatures)
    HookRoute(Platform.TELNYX, "POST", "/hooks/telnyx/voice", Kind.CALL),
    HookRoute(Platform.TELNYX, "POST", "/hooks/telnyx/gather", Kind.CALL, Stage.DIGITS),
    HookRoute(Platform.TELNYX, "POST", "/hooks/telnyx/dial-status", Kind.DIAL, quiet=Quiet.HANGUP),
    HookRoute(Platform.TELNYX, "POST", "/hooks/telnyx/status", Kind.STATUS),
    HookRoute(Platform.TELNYX, "POST", "/hooks/telnyx/leg", Kind.LEG),
    HookRoute(Platform.TELNYX, "POST", "/hooks/telnyx/whisper", Kind.WHISPER),
)

#: Platforms that cannot play a voice menu: Kamailio routes a call in one answer
#: (rtjson), so its callers go straight to the route the menu would default to.
NO_MENU: Final[frozenset[Platform]] = frozenset({Platform.KAMAILIO})
