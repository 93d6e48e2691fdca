"""Property tests of every platform's webhooks through the real app (aiohttp test client).

Correctly signed but arbitrary requests — random fields, types, encodings, huge or
missing values, bytes that are not what the content type says — get a 4xx or a valid
answer of the platform's format (a fail-safe one when unusable); never a 5xx, never a
stack trace. Bodies over ``max_body_bytes`` get 413.

Asterisk, FreeSWITCH, jambonz and Telnyx are fuzzed at the adapter level (their routes
are wired into the app separately): a correctly signed arbitrary request passes
``verify``, then ``parse_call``/``parse_event`` give a Call/CallEvent or raise only
``BadHookRequest``, and the answer the hook would give — the platform's fail-safe on a
bad request — is a valid document of the platform's format.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regulator.core.decision import decide, failsafe
from regulator.core.legs import LegEvent
from regulator.core.models import DESTINATION_ROUTES, Call, DecisionContext, Stage
from regulator.platforms import asterisk, freeswitch, generic, jambonz, telnyx, twilio
from regulator.platforms.base import Answer, BadHookRequest, HookRequest, HookUrls, RenderContext
from regulator.ports import FixedClock
from regulator.storage.sqlite import SqliteStore
from regulator.web.app import create_app
from tests.faults.conftest import FAILSAFE, NIMES
from tests.support.app import (
    GENERIC_SECRET,
    KAMAILIO_SECRET,
    PUBLIC,
    TWILIO_TOKEN,
    VONAGE_SECRET,
    make_settings,
    paris,
)
from tests.unit.helpers import protocol

AppClient = TestClient[web.Request, web.Application]

TELNYX_KEY = Ed25519PrivateKey.generate()
TELNYX_PUBLIC = base64.b64encode(
    TELNYX_KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
).decode()

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ----------------------------------------------------------------------- strategies

# Text a platform could send, and text it never would: controls, RTL marks, emoji,
# lone surrogates are excluded only where the transport can't carry them (forms).
printable = st.text(max_size=40)
numbers = st.sampled_from([NIMES, "0466123456", "33466123456", "+33612345678", "15", ""])
field_value = st.one_of(
    printable,
    numbers,
    st.text(alphabet=st.characters(codec="utf-8"), min_size=200, max_size=2000),
    st.just("<null>"),
    st.just("\x00\x01\x1b[31m"),
    st.sampled_from(["1", "2", "9", "*", "#", "hangup", "12345678901234567890123456789012345"]),
    st.sampled_from(["completed", "busy", "no-answer", "failed", "in-progress", "BUSY"]),
)
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        field_value,
    ),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(printable, inner, max_size=4),
    max_leaves=12,
)

TWILIO_FIELDS = [
    "CallSid",
    "From",
    "To",
    "Digits",
    "CallStatus",
    "DialCallStatus",
    "DialCallDuration",
    "CallDuration",
]
JSON_FIELDS = [
    "call_id",
    "from",
    "to",
    "digits",
    "stage",
    "status",
    "duration_s",
    "target",
    "uuid",
    "conversation_uuid",
    "dtmf",
    "duration",
    "from_user",
    "source_ip",
]


def fields(names: list[str], values: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts with some of the platform's own field names and some random ones."""
    return st.dictionaries(st.sampled_from(names) | printable, values, max_size=8)


def form_text() -> st.SearchStrategy[str]:
    return st.text(alphabet=st.characters(codec="utf-8"), max_size=60) | field_value


def dumps(value: Any) -> bytes:
    """JSON as a sender might write it: big integers, non-ASCII, even lone surrogates
    (then the bytes are not valid UTF-8)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


json_body = st.one_of(
    fields(JSON_FIELDS, json_value).map(dumps),
    json_value.map(dumps),
    st.binary(max_size=300),
    st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass")),
)
query = st.dictionaries(
    st.sampled_from(["target", "mmg", "call_id", "bodySHA256", "x"]),
    st.sampled_from(["regulation", "front_desk", "pharmacy", "nimes", "zzz", "", "é"]),
    max_size=3,
)

# ------------------------------------------------------------------------- the app


@pytest_asyncio.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[AppClient]:
    settings_ = make_settings(tmp_path, failsafe_number=FAILSAFE)
    store = SqliteStore(tmp_path / "regulator.sqlite3")
    # Tuesday 21:00 in Nîmes: open, the menu path and the store lookups run.
    app = create_app(settings_, store, FixedClock(paris("2026-11-24T21:00")))
    test_client: AppClient = await aiohttp_client(app)
    yield test_client


def check(platform: str, status: int, body: bytes) -> None:
    """A 4xx, or an empty 204, or a valid document of the platform's format."""
    assert status < 500, (status, body[:300])
    assert b"Traceback" not in body
    if status == 204 or 400 <= status < 500:
        return
    assert status == 200, status
    if platform == "twilio":
        root = ET.fromstring(body)
        assert root.tag == "Response"
        dial = root.find("Dial")
        if dial is not None:
            assert (dial.findtext("Number") or dial.findtext("Sip") or "").strip()
    elif platform == "vonage":
        ncco = orjson.loads(body)
        assert isinstance(ncco, list) and ncco
        assert all(isinstance(a, dict) and a.get("action") for a in ncco)
    elif platform == "kamailio":
        document = orjson.loads(body)
        assert document["version"] == "1.0"
        assert isinstance(document["routes"], list)
    else:
        document = orjson.loads(body)
        assert isinstance(document, dict)
        assert document.get("action") in ("menu", "dial", "announce", "hangup") or document == {
            "ok": True
        }


def path_with(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


# ----------------------------------------------------------------------- per platform


@FUZZ
@given(
    path=st.sampled_from(["voice", "gather", "dial-status", "status"]),
    form=fields(TWILIO_FIELDS, form_text()),
    raw=st.none() | st.binary(max_size=300),
    params=query,
)
async def test_twilio_any_signed_request_gets_4xx_or_valid_twiml(
    client: AppClient, path: str, form: dict[str, str], raw: bytes | None, params: dict[str, str]
) -> None:
    target = path_with(f"/hooks/twilio/{path}", params)
    body = urlencode(form).encode() if raw is None else raw
    try:  # sign what the app will parse, as Twilio signs what it sent
        signed = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        signed = {}
    signature = twilio.compute_signature(TWILIO_TOKEN, PUBLIC + target, signed)
    resp = await client.post(
        target,
        data=body,
        headers={
            "X-Twilio-Signature": signature,
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )
    check("twilio", resp.status, await resp.read())


def vonage_token(body: bytes, **claims: Any) -> str:
    payload = {
        "iat": int(time.time()),
        "jti": f"jti-{time.monotonic_ns()}",
        "iss": "Vonage",
        "payload_hash": hashlib.sha256(body).hexdigest(),
        **claims,
    }
    return jwt.encode(payload, VONAGE_SECRET, algorithm="HS256")


@FUZZ
@given(
    path=st.sampled_from(["answer", "event", "input"]),
    body=json_body,
    params=query,
    get=st.booleans(),
    answer_query=fields(JSON_FIELDS, form_text()),
)
async def test_vonage_any_signed_request_gets_4xx_or_valid_ncco(
    client: AppClient,
    path: str,
    body: bytes,
    params: dict[str, str],
    get: bool,
    answer_query: dict[str, str],
) -> None:
    if get and path == "answer":  # GET answer webhook: the fields are in the query
        target = path_with("/hooks/vonage/answer", {**answer_query, **params})
        token = vonage_token(b"")
        resp = await client.get(target, headers={"Authorization": f"Bearer {token}"})
    else:
        target = path_with(f"/hooks/vonage/{path}", params)
        resp = await client.post(
            target,
            data=body,
            headers={
                "Authorization": f"Bearer {vonage_token(body)}",
                "Content-Type": "application/json",
            },
        )
    check("vonage", resp.status, await resp.read())


@FUZZ
@given(body=json_body)
async def test_kamailio_any_authentic_request_gets_4xx_or_valid_rtjson(
    client: AppClient, body: bytes
) -> None:
    resp = await client.post(
        "/hooks/kamailio/route",
        data=body,
        headers={"X-Regulator-Secret": KAMAILIO_SECRET, "Content-Type": "application/json"},
    )
    check("kamailio", resp.status, await resp.read())


@FUZZ
@given(path=st.sampled_from(["call", "event"]), body=json_body, params=query)
async def test_generic_any_signed_request_gets_4xx_or_valid_json(
    client: AppClient, path: str, body: bytes, params: dict[str, str]
) -> None:
    target = path_with(f"/hooks/generic/{path}", params)
    header = generic.sign(GENERIC_SECRET, body, int(time.time()), method="POST", path=target)
    resp = await client.post(
        target,
        data=body,
        headers={"X-Regulator-Signature": header, "Content-Type": "application/json"},
    )
    check("generic", resp.status, await resp.read())


# ------------------------------------------- adapters whose routes the integrator wires

ADAPTER_SECRET = "fuzz-shared-secret"
ADAPTER_URLS = HookUrls(
    gather="https://regulator.example/hooks/x/gather",
    dial_status="https://regulator.example/hooks/x/dial-status?mmg=nimes",
)
#: The answers to a bad request: the fail-safe with the configured number, and without.
ADAPTER_FAILSAFES = (
    failsafe(None, "bad_request", FAILSAFE),
    failsafe(None, "bad_request"),
)
ASTERISK_FIELDS = ["call_id", "from", "to", "digits", "dialstatus", "target", "status", "duration"]
FREESWITCH_FIELDS = [
    "session_id",
    "Caller-Unique-ID",
    "Caller-Caller-ID-Number",
    "Caller-Destination-Number",
    "digits",
    "exiting",
    "variable_originate_disposition",
    "variable_DIALSTATUS",
    "variable_billsec",
]
JAMBONZ_FIELDS = ["call_sid", "from", "to", "digits", "call_status", "dial_call_status", "duration"]
form_fields = st.dictionaries(
    st.sampled_from(ASTERISK_FIELDS + FREESWITCH_FIELDS + TWILIO_FIELDS) | printable,
    form_text(),
    max_size=10,
)


ADAPTER_PROTOCOL = protocol("nimes")
ADAPTER_NOW = paris("2026-11-24T21:00")  # Tuesday evening: open, the menu path


def adapter_answers(module: Any, req: HookRequest, render: Callable[[Any], Answer]) -> list[Answer]:
    """What the hook answers: the engine's decision for a request that parses, the
    fail-safe's document on BadHookRequest (both fail-safes), the hang-up after an event."""
    answers: list[Answer] = []
    for stage in (Stage.INCOMING, Stage.DIGITS):
        try:
            call = module.parse_call(req, stage)
        except BadHookRequest:
            answers.extend(render(d) for d in ADAPTER_FAILSAFES)
            continue
        answers.append(render(decide(ADAPTER_PROTOCOL, call, ADAPTER_NOW)))
    try:
        event = module.parse_event(req)
    except BadHookRequest:
        answers.extend(render(d) for d in ADAPTER_FAILSAFES)
    else:
        if event.dial_failed:
            call = Call(event.call_id, event.caller or "", NIMES, stage=Stage.DIAL_FAILED)
            context = DecisionContext(failed_route=event.target)
            answers.append(render(decide(ADAPTER_PROTOCOL, call, ADAPTER_NOW, context)))
    answers.append(module.render_hangup())
    return answers


def form_request(
    url: str, headers: dict[str, str], form: dict[str, str], body: bytes
) -> HookRequest:
    query = dict(parse_qsl(url.partition("?")[2], keep_blank_values=True))
    return HookRequest("POST", url, headers, query, body, form, time.time())


@FUZZ
@given(form=form_fields, raw=st.none() | st.binary(max_size=300), params=query)
def test_asterisk_any_authentic_request_gets_a_readable_answer(
    form: dict[str, str], raw: bytes | None, params: dict[str, str]
) -> None:
    body = urlencode(form).encode() if raw is None else raw
    url = path_with("https://regulator.example/hooks/asterisk/dial-status", params)
    req = form_request(
        url, {"x-regulator-secret": ADAPTER_SECRET}, form if raw is None else {}, body
    )
    asterisk.verify(req, ADAPTER_SECRET)
    for answer in adapter_answers(
        asterisk, req, lambda d: asterisk.render(d, RenderContext(ADAPTER_URLS))
    ):
        line = answer.body.decode("ascii")
        assert line.endswith("\n") and line.count("\n") == 1
        keys = [piece.partition("=")[0] for piece in line.strip().split("&")]
        assert tuple(keys) == asterisk.KEYS


@FUZZ
@given(form=form_fields, params=query, user=printable)
def test_freeswitch_any_authentic_request_gets_an_httapi_document(
    form: dict[str, str], params: dict[str, str], user: str
) -> None:
    url = path_with("https://regulator.example/hooks/freeswitch/dial-status", params)
    credentials = f"{user.replace(':', '')}:{ADAPTER_SECRET}".encode()
    headers = {"authorization": "Basic " + base64.b64encode(credentials).decode()}
    req = form_request(url, headers, form, urlencode(form).encode())
    freeswitch.verify(req, ADAPTER_SECRET)
    freeswitch.is_exiting(req)
    for answer in adapter_answers(
        freeswitch, req, lambda d: freeswitch.render(d, RenderContext(ADAPTER_URLS))
    ):
        root = ET.fromstring(answer.body)
        assert root.tag == "document" and root.attrib["type"] == "xml/freeswitch-httapi"
        work = root.find("work")
        assert work is not None and len(work) > 0
        dial = work.find("dial")
        if dial is not None:
            assert (dial.text or "").strip()


@FUZZ
@given(
    body=st.one_of(fields(JAMBONZ_FIELDS, json_value).map(dumps), json_body),
    params=query,
    get=st.booleans(),
    get_query=fields(JAMBONZ_FIELDS, form_text()),
)
def test_jambonz_any_signed_request_gets_a_verb_array(
    body: bytes, params: dict[str, str], get: bool, get_query: dict[str, str]
) -> None:
    sent = b"" if get else body
    url = path_with(
        "https://regulator.example/hooks/jambonz/dial-status",
        {**get_query, **params} if get else params,
    )
    headers = {"jambonz-signature": jambonz.sign(ADAPTER_SECRET, sent, int(time.time()))}
    req = form_request(url, headers, {}, sent)
    jambonz.verify(req, ADAPTER_SECRET)
    for answer in adapter_answers(
        jambonz, req, lambda d: jambonz.render(d, RenderContext(ADAPTER_URLS))
    ):
        verbs = orjson.loads(answer.body)
        assert isinstance(verbs, list) and verbs
        assert all(v["verb"] in ("say", "gather", "dial", "hangup") for v in verbs)
        assert verbs[-1]["verb"] in ("gather", "dial", "hangup")


@FUZZ
@given(
    form=fields(TWILIO_FIELDS, form_text()), raw=st.none() | st.binary(max_size=300), params=query
)
def test_telnyx_any_signed_request_gets_valid_texml(
    form: dict[str, str], raw: bytes | None, params: dict[str, str]
) -> None:
    body = urlencode(form).encode() if raw is None else raw
    timestamp = str(int(time.time()))
    signature = base64.b64encode(TELNYX_KEY.sign(timestamp.encode() + b"|" + body)).decode()
    headers = {"telnyx-timestamp": timestamp, "telnyx-signature-ed25519": signature}
    url = path_with("https://regulator.example/hooks/telnyx/dial-status", params)
    req = form_request(url, headers, form if raw is None else {}, body)
    telnyx.verify(req, TELNYX_PUBLIC)
    for answer in adapter_answers(
        telnyx, req, lambda d: telnyx.render(d, RenderContext(ADAPTER_URLS))
    ):
        check("twilio", 200, answer.body)


# ------------------------------------------------------------------------ body size

HOOKS = [
    "/hooks/twilio/voice",
    "/hooks/vonage/answer",
    "/hooks/kamailio/route",
    "/hooks/generic/call",
    "/api/v1/referrals",
    "/api/v1/visits",
]


@pytest.mark.parametrize("path", HOOKS)
async def test_bodies_over_the_limit_get_413(client: AppClient, path: str) -> None:
    limit = 64 * 1024
    headers = {
        "X-Regulator-Secret": KAMAILIO_SECRET,
        "Authorization": "Bearer tok-admin",
        "Content-Type": "application/json",
    }
    resp = await client.post(path, data=b"x" * (limit + 1), headers=headers)
    assert resp.status == 413
    # Just under the limit: refused for what it is (bad signature, bad JSON), not its size.
    resp = await client.post(path, data=b"x" * (limit - 1024), headers=headers)
    assert resp.status not in (413,) and resp.status < 500


# ------------------------------------------------- dial-leg reports (PBX adapters)

#: What a stamp field may hold: PBX epochs, and what they must never be taken for.
stamp_value = st.one_of(
    st.integers(min_value=0, max_value=10**19).map(str),
    st.sampled_from(
        ["", "0", "１７９０", "١٧٩٠٠٠٠٠٠٠", "1790000000.5", "-1", "1e9", " 1790000000 "]
    ),
    st.text(alphabet="0123456789²", max_size=20),
    printable,
)
LEG_QUERY = st.fixed_dictionaries(
    {},
    optional={
        "target": st.sampled_from(["regulation", "direct_access", "pharmacy", "closed", "x", ""]),
        "mmg": st.sampled_from(["nimes", ""]),
        "call_id": printable,
    },
)


def check_leg_report(report: Any) -> None:
    """A parsed leg report: None, or aware-UTC events about one destination leg."""
    events = (report,) if isinstance(report, LegEvent) else report or ()
    assert len({(ev.call_id, ev.target) for ev in events}) <= 1
    for ev in events:
        assert isinstance(ev, LegEvent)
        assert ev.target in DESTINATION_ROUTES and ev.call_id
        assert ev.at.tzinfo is not None and ev.at.utcoffset() == timedelta(0)


@FUZZ
@given(
    form=st.dictionaries(
        st.sampled_from(
            [*ASTERISK_FIELDS, "leg_status", "leg_target", "dial_at", "answered_at", "ended_at"]
        ),
        st.one_of(stamp_value, st.sampled_from([*asterisk.LEG_STATUS, "answer", "EARLY"])),
        max_size=10,
    ),
    params=LEG_QUERY,
)
def test_asterisk_leg_parser_raises_only_bad_hook_request(
    form: dict[str, str], params: dict[str, str]
) -> None:
    url = path_with("https://regulator.example/hooks/asterisk/dial-status", params)
    req = form_request(url, {}, form, urlencode(form).encode())
    try:
        report = asterisk.parse_leg(req)
    except BadHookRequest as exc:
        field = exc.field  # the field named is one the request sent (or lacks)
        assert field in form or field in ("target", "leg_target", "call_id")
    else:
        check_leg_report(report)


@FUZZ
@given(
    form=st.dictionaries(
        st.sampled_from(
            [
                *FREESWITCH_FIELDS,
                freeswitch.STAMP_DIAL,
                freeswitch.STAMP_DIAL_END,
                freeswitch.STAMP_ANSWER,
                freeswitch.STAMP_BRIDGE_END,
                freeswitch.STAMP_HANGUP,
            ]
        ),
        st.one_of(stamp_value, st.sampled_from([*freeswitch.LEG_DISPOSITIONS, "EARLY", "true"])),
        max_size=12,
    ),
    params=LEG_QUERY,
)
def test_freeswitch_leg_parser_raises_only_bad_hook_request(
    form: dict[str, str], params: dict[str, str]
) -> None:
    url = path_with("https://regulator.example/hooks/freeswitch/dial-status", params)
    req = form_request(url, {}, form, urlencode(form).encode())
    try:
        report = freeswitch.parse_leg(req)
    except BadHookRequest as exc:
        field = exc.field
        assert field in form or field in ("target", "session_id", "Caller-Unique-ID")
    else:
        check_leg_report(report)


@FUZZ
@given(
    body=st.one_of(
        fields(
            [*JAMBONZ_FIELDS, "parent_call_sid", "customerData", "dial_call_status"],
            st.one_of(
                json_value,
                st.sampled_from([*jambonz.CHILD_STATUS, "canceled"]),
                st.fixed_dictionaries({jambonz.TAG_TARGET: json_value}),
            ),
        ).map(dumps),
        json_body,
    ),
    params=LEG_QUERY,
)
def test_jambonz_leg_parser_raises_only_bad_hook_request(
    body: bytes, params: dict[str, str]
) -> None:
    url = path_with("https://regulator.example/hooks/jambonz/status", params)
    req = form_request(url, {}, {}, body)
    with contextlib.suppress(BadHookRequest):
        check_leg_report(jambonz.parse_leg(req))
