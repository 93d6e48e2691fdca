"""Our own callback URLs carry an HMAC over their path and trusted parameters
(issue 18, point 4): HookUrls.with_query keeps it, tampering breaks it."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from regulator.core.models import Platform
from regulator.platforms.base import HookRequest, HookUrls, callback_signed
from regulator.web.hooks.wire import callback_key, hook_urls, trusted_query

BASE = "https://regulator.example"
KEY = callback_key(Platform.TWILIO, "twilio-token")


def _req(url: str) -> HookRequest:
    from urllib.parse import parse_qsl, urlsplit

    query = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
    return HookRequest("POST", url, {}, query, b"", {}, 0.0)


def test_hook_urls_and_with_query_are_signed_and_check() -> None:
    urls = hook_urls(BASE, Platform.TWILIO, "nimes", "CA1", KEY)
    action = HookUrls.with_query(urls.dial_status, target="regulation")
    assert action.count("sig=") == 1 and action.endswith(action.rsplit("&", 1)[1])
    assert "target=regulation" in action and "mmg=nimes" in action
    assert callback_signed(action, KEY)
    # A second with_query re-signs over the whole query.
    twice = HookUrls.with_query(action, target="pharmacy")
    assert twice.count("sig=") == 1 and callback_signed(twice, KEY)
    gather = HookUrls.with_query(urls.gather, mmg="nimes")
    assert callback_signed(gather, KEY)


def test_tampered_moved_or_unsigned_queries_do_not_check() -> None:
    action = HookUrls.with_query(
        hook_urls(BASE, Platform.TWILIO, "nimes", "CA1", KEY).dial_status, target="regulation"
    )
    tampered = {
        "target changed": action.replace("target=regulation", "target=pharmacy"),
        "mmg changed": action.replace("mmg=nimes", "mmg=metz"),
        "moved to another path": action.replace("/dial-status", "/status"),
        "sig removed": action.rsplit("&sig=", 1)[0],
        "two sigs": action + "&sig=00",
        "another key": HookUrls.with_query(
            hook_urls(BASE, Platform.TWILIO, "nimes", "CA1", b"other").dial_status,
            target="regulation",
        ),
    }
    checked = {name: callback_signed(url, KEY) for name, url in tampered.items()}
    print(f"tampered callback URLs that still check: {[n for n, ok in checked.items() if ok]}")
    assert not any(checked.values())
    # Trusted parameters dropped, the others kept: authentic but untargeted.
    req = trusted_query(_req(tampered["target changed"] + "&Foo=1"), KEY)
    assert dict(req.query) == {"Foo": "1"}


def test_reordered_requoted_or_extended_queries_still_check() -> None:
    action = HookUrls.with_query(
        hook_urls(BASE, Platform.TWILIO, "nîmes ville", "CA 1", KEY).dial_status,
        target="regulation",
    )
    head, query = action.split("?", 1)
    pairs = query.split("&")
    sig = pairs.pop()
    reordered = f"{head}?{'&'.join(reversed(pairs))}&{sig}"
    assert callback_signed(reordered, KEY)
    requoted = reordered.replace("+", "%20")
    assert callback_signed(requoted, KEY)
    extended = f"{action}&variable_uuid={quote('x y')}"  # httapi's GET profile adds fields
    assert callback_signed(extended, KEY)
    req = _req(action)
    assert trusted_query(req, KEY) is req


def test_no_key_no_signature_and_nothing_trusted() -> None:
    urls = hook_urls(BASE, Platform.TELNYX, "nimes", "CA1", callback_key(Platform.TELNYX, "pk"))
    assert "sig=" not in urls.dial_status
    assert dict(trusted_query(_req(urls.dial_status), b"").query) == {}


def test_fast_signing_gives_what_sign_callback_gives() -> None:
    """hook_urls and with_query sign from the parts they know (no re-parsing): byte for
    byte what sign_callback gives for the same URL, odd values and bases included."""
    from urllib.parse import urlencode

    from regulator.platforms.base import sign_callback

    bases = (BASE, "http://127.0.0.1:8080/prefix", "HTTPS://Regulator.example", "https://h/?x=1")
    ids = (("nimes", "CA1"), ("a b&c=d/é", "id+1%#"), (None, "CA2"), ("m", None))
    for base in bases:
        for mmg, call_id in ids:
            urls = hook_urls(base, Platform.TWILIO, mmg, call_id, KEY)
            query = urlencode([(k, v) for k, v in (("mmg", mmg), ("call_id", call_id)) if v])
            suffix = f"?{query}" if query else ""
            root = f"{base}/hooks/twilio"
            expected = {
                urls.gather: f"{root}/gather",
                urls.status: f"{root}/status",
                urls.dial_status: f"{root}/dial-status{suffix}",
                urls.leg: f"{root}/leg{suffix}",
                urls.whisper: f"{root}/whisper{suffix}",
            }
            for url, raw in expected.items():
                assert url == sign_callback(raw, KEY), (base, mmg, call_id, url)
                for params in ({"target": "regulation"}, {"target": "a&b c", "x": "ü"}):
                    joined = HookUrls.with_query(url, **params)
                    reference = sign_callback(
                        f"{raw}{'&' if '?' in raw else '?'}{urlencode(params)}", KEY
                    )
                    assert joined == reference, (url, params)
                    assert callback_signed(joined, KEY)


def test_urls_are_signed_when_first_read_and_whisper_can_be_left_out() -> None:
    from regulator.platforms.base import sign_callback

    root = f"{BASE}/hooks/jambonz"
    urls = hook_urls(BASE, Platform.JAMBONZ, "nimes", "CA1", KEY, whisper=False)
    assert not set(vars(urls)) & {"gather", "dial_status", "leg"}  # nothing signed yet
    assert urls.event == sign_callback(f"{root}/event?mmg=nimes&call_id=CA1", KEY)
    assert urls.input == sign_callback(f"{root}/input", KEY)
    assert urls.extra == {"confirm": sign_callback(f"{root}/confirm?mmg=nimes&call_id=CA1", KEY)}
    assert urls.whisper == ""
    assert "gather" not in vars(urls)  # only what was read was built
    twin = hook_urls(BASE, Platform.JAMBONZ, "nimes", "CA1", KEY, whisper=False)
    assert urls == twin and hook_urls(BASE, Platform.TWILIO, "nimes", "CA1", KEY).extra == {}


def test_targeted_signs_once_what_with_query_gives() -> None:
    """HookUrls.targeted: the dial's target URL signed once, byte for byte what
    with_query of the (signed) URL gives — before or after that URL was read, on odd
    bases and values, without a key, and on a plain HookUrls."""
    bases = (BASE, "http://127.0.0.1:8080/prefix", "HTTPS://Regulator.example", "https://h/?x=1")
    ids = (("nimes", "CA1"), ("a b&c=d/é", "id+1%#"), (None, "CA2"), ("m", None), (None, None))
    for base in bases:
        for mmg, call_id in ids:
            for key in (KEY, b""):
                for name in ("leg", "dial_status", "event", "gather", "status", "input"):
                    for target in ("regulation", "desk", "a&b c/é"):
                        fresh = hook_urls(base, Platform.TWILIO, mmg, call_id, key)
                        first = fresh.targeted(name, target)
                        if key and base in bases[:2]:  # bases urlsplit gives back as they are
                            assert name not in vars(fresh)  # the bare URL was not signed
                        expected = HookUrls.with_query(getattr(fresh, name), target=target)
                        assert first == expected, (base, mmg, call_id, name, target)
                        assert fresh.targeted(name, target) == expected
                        if key and (mmg or call_id or target):
                            assert callback_signed(first, key)
    plain = HookUrls(leg="https://h/hooks/twilio/leg?mmg=m")
    assert plain.targeted("leg", "desk") == "https://h/hooks/twilio/leg?mmg=m&target=desk"


def test_a_dial_answer_signs_each_of_its_urls_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twilio's dial (leg callbacks, whisper, dial action) and Vonage's connect (event
    URL): as many HMACs as signed URLs in the answer, not one more for a bare URL read
    to see whether it is there."""
    from regulator.core.models import Destination, Route
    from regulator.platforms import base, twilio, vonage
    from regulator.platforms.base import RenderContext
    from tests.unit.helpers import decision

    macs: list[str] = []
    real = base._callback_mac

    def counting(path: str, pairs: object, key: bytes) -> str:
        macs.append(path)
        return real(path, pairs, key)  # type: ignore[arg-type]

    monkeypatch.setattr(base, "_callback_mac", counting)
    for platform, adapter in ((Platform.TWILIO, twilio), (Platform.VONAGE, vonage)):
        macs.clear()
        key = callback_key(platform, "secret")
        urls = hook_urls(BASE, platform, "nimes", "CA1", key)
        ctx = RenderContext(urls, "+33612345678", "+33466000001", None, None, "MMG")
        dial = decision(Route.REGULATION, Destination(number="+33466000015"), say=("Bonjour",))
        body = adapter.render(dial, ctx).body.decode()
        signed = body.count("sig=")
        print(f"{platform.value}: {len(macs)} HMACs for {signed} signed URLs")
        assert signed >= 2 and len(macs) == signed, macs
