"""Property tests of the dial-leg readers (``parse_leg``) of Twilio, Telnyx, Vonage and
the generic PBX, like the adapter fuzz tests of ``test_hook_fuzz.py``: whatever a
correctly signed request holds, ``parse_leg`` gives a well-formed
:class:`~regulator.core.legs.LegEvent`, None (no leg reported), or raises only
:class:`BadHookRequest` naming a field — and the whisper hooks always answer a
document that connects the line."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
import pytest_asyncio
from hypothesis import given
from hypothesis import strategies as st

from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import DESTINATION_ROUTES
from regulator.platforms import generic, telnyx, twilio, vonage
from regulator.platforms.base import BadHookRequest, HookRequest
from regulator.ports import FixedClock
from regulator.storage.sqlite import SqliteStore
from regulator.web.app import create_app
from tests.faults.test_hook_fuzz import (
    FUZZ,
    AppClient,
    dumps,
    fields,
    form_text,
    json_body,
    json_value,
    path_with,
)
from tests.support.app import PUBLIC, TWILIO_TOKEN, make_settings, paris, vonage_headers


@pytest_asyncio.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[AppClient]:
    store = SqliteStore(tmp_path / "regulator.sqlite3")
    app = create_app(make_settings(tmp_path), store, FixedClock(paris("2026-11-24T21:00")))
    test_client: AppClient = await aiohttp_client(app)
    yield test_client


NOW = time.time()
_AT = datetime.fromtimestamp(NOW, UTC)

#: Times as platforms write them, and as they never would.
instants = st.one_of(
    st.integers(-100_000, 100_000).map(
        lambda s: (_AT + timedelta(seconds=s)).strftime("%a, %d %b %Y %H:%M:%S +0000")
    ),
    st.integers(-100_000, 100_000).map(
        lambda s: (_AT + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    ),
    st.integers(-100_000, 100_000).map(
        lambda s: (_AT + timedelta(seconds=s)).strftime("%Y-%m-%dT%H:%M:%S+05:30")
    ),
    st.just("2026-11-24T21:00:00"),  # no offset
    st.just("٢٠٢٦-11-24T21:00:00Z"),  # other digits
    st.just("Mon, 32 Foo 2026 25:61:61 +9999"),
    st.just("9999-12-31T23:59:59+14:00"),
    form_text(),
)
leg_statuses = st.sampled_from(
    [
        "initiated",
        "ringing",
        "in-progress",
        "answered",
        "completed",
        "busy",
        "no-answer",
        "failed",
        "canceled",
        "cancelled",
        "started",
        "timeout",
        "unanswered",
        "rejected",
        "abandoned",
        "no_answer",
        "offered",
        "human",
        "COMPLETED",
        "",
    ]
)
leg_query = st.dictionaries(
    st.sampled_from(["target", "mmg", "call_id", "call"]),
    st.sampled_from(["regulation", "direct_access", "pharmacy", "front_desk", "metz", "", "é"]),
    max_size=4,
)
TWILIO_LEG_FIELDS = [
    "CallSid",
    "ParentCallSid",
    "CallStatus",
    "Timestamp",
    "CallDuration",
    "DialCallStatus",
    "DialCallDuration",
    "SequenceNumber",
    "CallbackSource",
]
JSON_LEG_FIELDS = [
    "call_id",
    "target",
    "status",
    "at",
    "duration_s",
    "timestamp",
    "duration",
    "uuid",
    "conversation_uuid",
]
form_value = st.one_of(form_text(), leg_statuses, instants)
json_leg_value = st.one_of(json_value, leg_statuses, instants)


def check_leg(ev: LegEvent | None, req: HookRequest) -> None:
    if ev is None:
        return
    assert ev.call_id and ev.target in DESTINATION_ROUTES
    assert ev.at.tzinfo is not None and ev.at.utcoffset() == timedelta(0)
    assert abs((ev.at - datetime.fromtimestamp(req.now, UTC)).total_seconds()) <= 24 * 3600
    assert ev.duration_s is None or (ev.status is LegStatus.COMPLETED and ev.duration_s >= 0)


def parse(module: Any, req: HookRequest) -> None:
    try:
        ev = module.parse_leg(req)
    except BadHookRequest as exc:
        error = exc
    else:
        check_leg(ev, req)
        return
    assert error.field and error.reason  # names the field and why


def request(url: str, form: dict[str, str], body: bytes) -> HookRequest:
    q = dict(parse_qsl(url.partition("?")[2], keep_blank_values=True))
    return HookRequest("POST", url, {}, q, body, form, NOW)


@FUZZ
@given(
    path=st.sampled_from(["leg", "dial-status", "status"]),
    form=fields(TWILIO_LEG_FIELDS, form_value),
    params=leg_query,
)
def test_twilio_and_telnyx_parse_leg_never_crash(
    path: str, form: dict[str, str], params: dict[str, str]
) -> None:
    url = path_with(f"{PUBLIC}/hooks/twilio/{path}", params)
    req = request(url, form, urlencode(form).encode())
    parse(twilio, req)
    parse(telnyx, req)


@FUZZ
@given(
    body=st.one_of(fields(JSON_LEG_FIELDS, json_leg_value).map(dumps), json_body),
    params=leg_query,
)
def test_vonage_and_generic_parse_leg_never_crash(body: bytes, params: dict[str, str]) -> None:
    parse(vonage, request(path_with(f"{PUBLIC}/hooks/vonage/event", params), {}, body))
    parse(generic, request(f"{PUBLIC}/hooks/generic/event", {}, body))


@FUZZ
@given(form=fields(TWILIO_LEG_FIELDS, form_value), params=leg_query)
async def test_twilio_leg_and_whisper_hooks_answer_whatever_they_get(
    client: AppClient, form: dict[str, str], params: dict[str, str]
) -> None:
    for path, ok in (("leg", {204}), ("whisper", {200})):
        target = path_with(f"/hooks/twilio/{path}", params)
        signature = twilio.compute_signature(TWILIO_TOKEN, PUBLIC + target, form)
        resp = await client.post(
            target,
            data=urlencode(form),
            headers={
                "X-Twilio-Signature": signature,
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )
        body = await resp.read()
        assert resp.status in ok, (resp.status, body[:300])
        if path == "whisper":  # Say only: a whisper never dials
            root = ET.fromstring(body)
            assert root.tag == "Response" and all(el.tag in ("Say", "Play") for el in root)


@FUZZ
@given(params=leg_query, body=json_body)
async def test_vonage_whisper_hook_always_answers_an_ncco(
    client: AppClient, params: dict[str, str], body: bytes
) -> None:
    resp = await client.post(
        path_with("/hooks/vonage/whisper", params), data=body, headers=vonage_headers(body)
    )
    assert resp.status == 200
    ncco = orjson.loads(await resp.read())
    assert isinstance(ncco, list) and ncco
    assert all(a["action"] in ("talk", "stream", "wait") for a in ncco)
