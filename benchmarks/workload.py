"""The benchmark's workload: pre-signed Twilio voice webhooks of distinct calls.

Each entry is one ``POST /hooks/twilio/voice`` as Twilio sends it: the full set of
form parameters of a real inbound call (about 450 bytes), signed with
``X-Twilio-Signature`` over ``REGULATOR_PUBLIC_URL`` + path and the sorted
parameters — exactly what :func:`regulator.platforms.twilio.verify` checks.

Calls are spread over the MMG numbers of ``protocols/`` with random French mobile
callers; :data:`RETRY_SHARE` of the entries repeat a recent earlier entry byte for
byte (Twilio retrying a webhook). Signing is done once, here, before any
measurement: the load generators only replay bytes.

Two forms of the same entries:

* a compact text file for ``wrk`` (:func:`write_wrk_file`, one ``sid from to
  signature`` line per entry), from which ``wrk_twilio.lua`` rebuilds the exact body;
* raw HTTP/1.1 request bytes (:func:`raw_request`) for the open-loop generator.
"""

from __future__ import annotations

import base64
import hmac
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: The auth token the benchmark service is started with (a test value, not a secret).
TWILIO_TOKEN = "bench-twilio-auth-token"  # noqa: S105
#: REGULATOR_PUBLIC_URL of the benchmark service: the base URL Twilio signs.
PUBLIC_URL = "https://regulator.example"
VOICE_PATH = "/hooks/twilio/voice"
#: Share of entries that are a retry of an earlier call.
RETRY_SHARE = 0.2
#: A retry repeats one of the previous entries within this window (seconds of traffic).
RETRY_WINDOW = 2000

#: The MMG numbers of ``protocols/`` (E.164), called in turn.
MMG_NUMBERS = ("+33466123456", "+33466123457", "+33387551234", "+262262901234")
# French mobile prefixes that phonenumbers accepts as valid metropolitan numbers
# (0639… is Mayotte, 0693… Réunion: not used for callers here).
_CALLER_PREFIXES = ("+33760", "+33761", "+33762", "+33764", "+33765", "+33766", "+33767")
_ACCOUNT_SID = "AC" + "0b" * 16

# Body parameters in the order they are sent; ``{sid}``, ``{frm}``, ``{to}`` are
# URL-encoded values. The ``wrk`` Lua script holds the same template (WRK_TEMPLATE).
_BODY = (
    "AccountSid=" + _ACCOUNT_SID + "&ApiVersion=2010-04-01&CallSid={sid}&CallStatus=ringing"
    "&Called={to}&CalledCity=&CalledCountry=FR&CalledState=&CalledZip="
    "&Caller={frm}&CallerCity=&CallerCountry=FR&CallerState=&CallerZip="
    "&Direction=inbound&From={frm}&FromCity=&FromCountry=FR&FromState=&FromZip="
    "&To={to}&ToCity=&ToCountry=FR&ToState=&ToZip="
)
# The same parameters sorted by name, concatenated name + value: what Twilio signs
# after the URL (see ``twilio.compute_signature``).
_SIGNED = (
    "AccountSid" + _ACCOUNT_SID + "ApiVersion2010-04-01CallSid{sid}CallStatusringing"
    "Called{to}CalledCityCalledCountryFRCalledStateCalledZip"
    "Caller{frm}CallerCityCallerCountryFRCallerStateCallerZip"
    "DirectioninboundFrom{frm}FromCityFromCountryFRFromStateFromZip"
    "To{to}ToCityToCountryFRToStateToZip"
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One signed voice webhook."""

    sid: str
    caller: str
    called: str
    signature: str

    def params(self) -> dict[str, str]:
        """The form parameters (decoded), as the service sees them."""
        body = self.body().decode()
        pairs = (item.partition("=") for item in body.split("&"))
        return {name: value.replace("%2B", "+") for name, _, value in pairs}

    def body(self) -> bytes:
        return _BODY.format(
            sid=self.sid, frm=self.caller.replace("+", "%2B"), to=self.called.replace("+", "%2B")
        ).encode()


def sign(token: str, url: str, sid: str, caller: str, called: str) -> str:
    """Twilio's signature of one entry (same result as ``twilio.compute_signature``)."""
    payload = url + _SIGNED.format(sid=sid, frm=caller, to=called)
    return base64.b64encode(hmac.digest(token.encode(), payload.encode(), "sha1")).decode()


def entries(
    count: int,
    *,
    seed: int = 1,
    tag: str = "a",
    token: str = TWILIO_TOKEN,
    url: str = PUBLIC_URL + VOICE_PATH,
    retry_share: float = RETRY_SHARE,
) -> Iterator[Entry]:
    """``count`` entries: distinct calls, ``retry_share`` of them repeating an earlier one.

    ``tag`` (a short hex-safe string) keeps the call ids of separate sets distinct.
    """
    rng = random.Random(seed)
    recent: list[Entry] = []
    prefix = "CA" + tag.encode().hex()
    width = 34 - len(prefix)
    for n in range(count):
        if recent and rng.random() < retry_share:
            yield recent[rng.randrange(len(recent))]
            continue
        sid = f"{prefix}{n:0{width}x}"
        caller = f"{rng.choice(_CALLER_PREFIXES)}{rng.randrange(10**6):06d}"
        called = MMG_NUMBERS[n % len(MMG_NUMBERS)]
        entry = Entry(sid, caller, called, sign(token, url, sid, caller, called))
        recent.append(entry)
        if len(recent) > RETRY_WINDOW:
            del recent[: len(recent) - RETRY_WINDOW]
        yield entry


def write_wrk_file(path: Path, items: Iterator[Entry] | Sequence[Entry]) -> int:
    """One ``sid caller called signature`` line per entry; returns the count."""
    n = 0
    with path.open("w", encoding="ascii") as out:
        for e in items:
            out.write(f"{e.sid} {e.caller} {e.called} {e.signature}\n")
            n += 1
    return n


def raw_request(entry: Entry, host: str, path: str = VOICE_PATH) -> bytes:
    """The entry as raw HTTP/1.1 bytes (keep-alive)."""
    body = entry.body()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"X-Twilio-Signature: {entry.signature}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


__all__ = [
    "MMG_NUMBERS",
    "PUBLIC_URL",
    "RETRY_SHARE",
    "TWILIO_TOKEN",
    "VOICE_PATH",
    "Entry",
    "entries",
    "raw_request",
    "sign",
    "write_wrk_file",
]
