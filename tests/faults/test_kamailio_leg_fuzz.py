"""Property tests of Kamailio's dial-leg notifications (``POST /hooks/kamailio/event``).

Authentic (right secret) but arbitrary bodies — random fields and types, times in
every digit script, codes out of range, huge strings, bytes that are not JSON — give
:func:`regulator.platforms.kamailio.parse_leg` a clean :class:`LegEvent` or a
:class:`BadHookRequest` naming a field, nothing else; through the real app they are
answered 204 (a leg report never changes a call), never a 5xx, and whatever the store
then holds is a leg it can read back.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import DESTINATION_ROUTES
from regulator.platforms import kamailio
from regulator.platforms.base import BadHookRequest, HookRequest
from regulator.ports import FixedClock
from regulator.storage.sqlite import SqliteStore
from regulator.web import keys
from regulator.web.app import create_app
from tests.support.app import KAMAILIO_SECRET, make_settings, paris

AppClient = TestClient[web.Request, web.Application]

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NOW = time.time()

# Digits of every script (str.isdigit() accepts them all; Kamailio writes only ASCII).
digit_text = st.text(alphabet=st.characters(categories=["Nd"]), min_size=1, max_size=14)
near_now = st.floats(min_value=NOW - 30 * 86400, max_value=NOW + 30 * 86400)
times = st.one_of(
    near_now.map(lambda t: f"{t:.6f}"),
    near_now.map(int),
    digit_text,
    st.from_regex(r"[0-9]{1,13}(\.[0-9]{0,10})?", fullmatch=True),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.none(),
    st.booleans(),
)
codes = st.one_of(
    st.integers(min_value=-1000, max_value=100_000),
    st.sampled_from([180, 183, 200, 408, 480, 486, 487, 600, 603, 503, 302]),
    digit_text,
    st.text(max_size=6),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True),
)
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=40),
    st.text(min_size=200, max_size=600),
    st.just("<null>"),
    st.just("\x00\r\nX-Evil: 1"),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
events = st.one_of(st.sampled_from([*kamailio.EVENTS, "FAILED", "hangup", ""]), values)
targets = st.one_of(
    st.sampled_from(["regulation", "direct_access", "pharmacy", "menu", "closed", "Regulation"]),
    values,
)
notification = st.fixed_dictionaries(
    {},
    optional={
        "call_id": st.one_of(st.text(min_size=1, max_size=80), values),
        "target": targets,
        "event": events,
        "code": codes,
        "timeout": st.one_of(st.booleans(), values),
        "replied": st.one_of(st.booleans(), values),
        "at": times,
    },
)
bodies = st.one_of(
    notification.map(lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8", "surrogatepass")),
    st.binary(max_size=300),
    values.map(lambda v: json.dumps(v).encode()),
)


def request(body: bytes) -> HookRequest:
    return HookRequest(
        "POST",
        "https://regulator.example/hooks/kamailio/event",
        {"x-regulator-secret": KAMAILIO_SECRET},
        {},
        body,
        {},
        NOW,
    )


@FUZZ
@given(body=bodies)
def test_parse_leg_gives_a_clean_event_or_names_the_field(body: bytes) -> None:
    refused: BadHookRequest | None = None
    try:
        event = kamailio.parse_leg(request(body))
    except BadHookRequest as exc:
        refused = exc
    if refused is not None:
        assert refused.field in {
            "body",
            "call_id",
            "target",
            "event",
            "code",
            "timeout",
            "replied",
            "at",
        }
        assert refused.reason
        return
    assert isinstance(event, LegEvent)
    assert event.call_id.strip() == event.call_id and event.call_id
    assert event.target in DESTINATION_ROUTES
    assert event.at.tzinfo is UTC
    assert abs(event.at.timestamp() - NOW) <= 8 * 86400
    assert event.platform == "kamailio" and event.mmg == ""
    assert event.status is not LegStatus.FAILED or json.loads(body).get("event", "").lower() in {
        "failed"
    }


@FUZZ
@given(
    code=st.integers(min_value=300, max_value=699),
    timeout=st.booleans(),
    at=st.floats(min_value=NOW - 3000, max_value=NOW + 3000),
)
def test_every_final_failure_is_busy_no_answer_or_failed(
    code: int, timeout: bool, at: float
) -> None:
    body = {"call_id": "c", "target": "regulation", "event": "failed", "code": code}
    body |= {"timeout": timeout, "at": f"{at:.6f}"}
    event = kamailio.parse_leg(request(json.dumps(body).encode()))
    assert event is not None
    expected = (
        LegStatus.NO_ANSWER
        if timeout or code in kamailio.NO_ANSWER_CODES
        else LegStatus.BUSY
        if code in kamailio.BUSY_CODES
        else LegStatus.FAILED
    )
    assert event.status is expected
    # Kamailio's $TV(Sn) to the microsecond, not through a float.
    whole, micros = f"{at:.6f}".split(".")
    assert event.at == datetime.fromtimestamp(int(whole), UTC) + timedelta(microseconds=int(micros))


@pytest_asyncio.fixture
async def client(aiohttp_client: Any, tmp_path: Path) -> AsyncIterator[AppClient]:
    store = SqliteStore(tmp_path / "regulator.sqlite3")
    app = create_app(make_settings(tmp_path), store, FixedClock(paris("2026-11-24T21:00")))
    test_client: AppClient = await aiohttp_client(app)
    yield test_client


@FUZZ
@given(body=bodies)
async def test_any_authentic_notification_is_answered_204_and_the_store_stays_readable(
    client: AppClient, body: bytes
) -> None:
    resp = await client.post(
        "/hooks/kamailio/event",
        data=body,
        headers={"X-Regulator-Secret": KAMAILIO_SECRET, "Content-Type": "application/json"},
    )
    text = await resp.read()
    assert resp.status == 204, (resp.status, text[:300])
    assert text == b""
    await client.app[keys.WRITER].flush()
    # Nothing here names an MMG the router knows: whatever was stored is readable.
    store = client.app[keys.STORE]
    now = datetime.fromtimestamp(NOW, UTC)
    for leg in await store.legs("", now - timedelta(days=40), now + timedelta(days=40)):
        assert leg.target in DESTINATION_ROUTES
