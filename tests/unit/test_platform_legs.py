"""Dial legs as Twilio, Telnyx, Vonage and a generic PBX report them (adapters'
``parse_leg``), what the service asks of them (callbacks on every dial, the whisper on
the regulation line) and what the regulation line hears (core/whisper.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest

from regulator.core.legs import LegEvent, LegStatus
from regulator.core.models import Destination, Route
from regulator.core.whisper import FALLBACK, has_whisper, place_of, spoken_number, whisper_texts
from regulator.platforms import generic, telnyx, twilio, vonage
from regulator.platforms.base import BadHookRequest, HookRequest, HookUrls, RenderContext
from tests.support.vonage_ncco import check_ncco
from tests.unit.helpers import decision, protocol, variant

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
AT = datetime.fromtimestamp(NOW, UTC)
BASE = "https://regulator.example/hooks"
LEG_URL = f"{BASE}/twilio/leg?mmg=metz&call_id=CAparent&target=regulation"
REGULATION = Destination(number="+33387000015")
DESK = Destination(number="+33387551200")


def hook(url: str, form: Mapping[str, str] | None = None, *, body: bytes = b"") -> HookRequest:
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return HookRequest(
        method="POST", url=url, headers={}, query=query, body=body, form=dict(form or {}), now=NOW
    )


def rfc2822(at: datetime) -> str:
    return at.strftime("%a, %d %b %Y %H:%M:%S +0000")


def urls(platform: str) -> HookUrls:
    q = "?mmg=metz&call_id=CAparent"
    return HookUrls(
        gather=f"{BASE}/{platform}/gather",
        dial_status=f"{BASE}/{platform}/dial-status{q}",
        event=f"{BASE}/{platform}/event{q}",
        leg=f"{BASE}/{platform}/leg{q}",
        whisper=f"{BASE}/{platform}/whisper{q}",
    )


# ----------------------------------------------------------------------- Twilio


@pytest.mark.parametrize(
    ("call_status", "expected"),
    [
        ("initiated", LegStatus.OFFERED),
        ("ringing", LegStatus.RINGING),
        ("in-progress", LegStatus.ANSWERED),
        ("answered", LegStatus.ANSWERED),
        ("busy", LegStatus.BUSY),
        ("no-answer", LegStatus.NO_ANSWER),
        ("failed", LegStatus.FAILED),
        ("canceled", LegStatus.ABANDONED),  # the caller hung up while it rang
    ],
)
def test_twilio_leg_callbacks_are_leg_events_at_twilios_timestamp(
    call_status: str, expected: LegStatus
) -> None:
    at = AT - timedelta(seconds=42)
    form = {
        "CallSid": "CAchild",
        "ParentCallSid": "CAparent",
        "CallStatus": call_status,
        "Timestamp": rfc2822(at),
        "CallbackSource": "call-progress-events",
        "SequenceNumber": "1",
    }
    ev = twilio.parse_leg(hook(LEG_URL, form))
    assert ev == LegEvent(
        call_id="CAparent",
        target=Route.REGULATION,
        status=expected,
        at=at,
        mmg="metz",
        platform="twilio",
    )


def test_twilio_completed_leg_carries_its_talk_time() -> None:
    form = {
        "CallSid": "CAchild",
        "CallStatus": "completed",
        "CallDuration": "60",
        "Timestamp": rfc2822(AT),
    }
    ev = twilio.parse_leg(hook(LEG_URL, form))
    assert ev is not None and ev.status is LegStatus.COMPLETED and ev.duration_s == 60
    assert ev.answered_at == AT - timedelta(seconds=60)


def test_twilio_leg_without_timestamp_is_dated_on_receipt() -> None:
    ev = twilio.parse_leg(hook(LEG_URL, {"CallSid": "CAchild", "CallStatus": "ringing"}))
    assert ev is not None and ev.at == AT


def test_twilio_dial_action_is_the_legs_end_received_now() -> None:
    url = f"{BASE}/twilio/dial-status?mmg=metz&call_id=CAparent&target=direct_access"
    form = {"CallSid": "CAparent", "DialCallStatus": "completed", "DialCallDuration": "95"}
    ev = twilio.parse_leg(hook(url, form))
    assert ev == LegEvent(
        call_id="CAparent",
        target=Route.DIRECT_ACCESS,
        status=LegStatus.COMPLETED,
        at=AT,
        mmg="metz",
        platform="twilio",
        duration_s=95,
    )
    busy = twilio.parse_leg(hook(url, {"CallSid": "CAparent", "DialCallStatus": "busy"}))
    assert busy is not None and busy.status is LegStatus.BUSY and busy.duration_s is None


def test_twilio_whole_call_status_is_no_leg() -> None:
    form = {"CallSid": "CAparent", "CallStatus": "completed", "CallDuration": "120"}
    assert twilio.parse_leg(hook(f"{BASE}/twilio/status", form)) is None
    # An older <Dial action> without ?target= names no leg either.
    dial = {"CallSid": "CAparent", "DialCallStatus": "busy"}
    assert twilio.parse_leg(hook(f"{BASE}/twilio/dial-status?mmg=metz", dial)) is None


def test_twilio_leg_call_id_falls_back_to_the_parent_call() -> None:
    url = f"{BASE}/twilio/leg?target=regulation"
    form = {"CallSid": "CAchild", "ParentCallSid": "CAparent", "CallStatus": "ringing"}
    ev = twilio.parse_leg(hook(url, form))
    assert ev is not None and ev.call_id == "CAparent" and ev.mmg == ""


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("CallStatus", "exploded", "not a call status"),
        ("Timestamp", "yesterday at noon", "RFC 2822"),
        ("Timestamp", "Mon, 01 Jan 2001 00:00:00 +0000", "24 h"),
    ],
)
def test_twilio_unusable_leg_reports_name_the_field(field: str, value: str, reason: str) -> None:
    form = {"CallSid": "CAchild", "CallStatus": "ringing", field: value}
    with pytest.raises(BadHookRequest) as err:
        twilio.parse_leg(hook(LEG_URL, form))
    assert err.value.field == field and reason in err.value.reason


def _dial(body: bytes) -> ET.Element:
    dial = ET.fromstring(body).find("Dial")
    assert dial is not None
    return dial


@pytest.mark.parametrize("module", [twilio, telnyx])
def test_every_twiml_dial_asks_for_the_legs_progress(module: Any) -> None:
    for route, dest in [
        (Route.DIRECT_ACCESS, DESK),
        (Route.DIRECT_ACCESS, Destination(sip="sip:accueil@mmg-metz.example")),
        (Route.PHARMACY, Destination(number="+33387111111")),
    ]:
        answer = module.render(decision(route, dest), RenderContext(urls=urls("twilio")))
        dial = _dial(answer.body)
        (noun,) = list(dial)
        assert noun.tag == ("Number" if dest.number else "Sip")
        assert noun.get("statusCallbackEvent") == "initiated ringing answered completed"
        assert noun.get("statusCallbackMethod") == "POST"
        callback = noun.get("statusCallback") or ""
        assert callback.startswith(f"{BASE}/twilio/leg?")
        assert parse_qs(urlsplit(callback).query) == {
            "mmg": ["metz"],
            "call_id": ["CAparent"],
            "target": [route.value],
        }
        assert noun.get("url") is None  # the whisper is for the regulation line only


@pytest.mark.parametrize("module", [twilio, telnyx])
def test_the_regulation_dial_plays_the_whisper_before_connecting(module: Any) -> None:
    answer = module.render(decision(Route.REGULATION, REGULATION), RenderContext(urls=urls("t")))
    (noun,) = list(_dial(answer.body))
    assert noun.get("url") == f"{BASE}/t/whisper?mmg=metz&call_id=CAparent"
    assert noun.get("method") == "POST"
    without = HookUrls(dial_status=urls("t").dial_status, leg=urls("t").leg)
    answer = module.render(decision(Route.REGULATION, REGULATION), RenderContext(urls=without))
    (noun,) = list(_dial(answer.body))
    assert noun.get("url") is None and noun.get("statusCallback")


def test_twiml_whisper_says_and_never_dials() -> None:
    texts = whisper_texts(variant("metz", **{"messages.whisper_caller": True}), "+33612345678")
    root = ET.fromstring(twilio.render_whisper(texts).body)
    assert [(el.tag, el.get("language"), el.text) for el in root] == [
        ("Say", "fr-FR", "Appel transmis par la maison médicale de garde de Metz."),
        ("Say", "fr-FR", "Numéro de l'appelant : 06 12 34 56 78."),
    ]
    assert ET.fromstring(twilio.render_whisper(()).body).find("Dial") is None


# ----------------------------------------------------------------------- Telnyx


def test_telnyx_leg_callbacks_read_its_iso_timestamps() -> None:
    url = f"{BASE}/telnyx/leg?mmg=metz&call_id=v3:parent&target=regulation"
    form = {
        "CallSid": "v3:child",
        "ParentCallSid": "v3:parent",
        "CallStatus": "ringing",
        "CallbackSource": "call-progress-events",
        "Timestamp": "2027-01-15 07:59:18.731479Z",
    }
    ev = telnyx.parse_leg(hook(url, form))
    assert ev is not None and ev.platform == "telnyx" and ev.call_id == "v3:parent"
    assert ev.at == datetime(2027, 1, 15, 7, 59, 18, 731479, tzinfo=UTC)


# ----------------------------------------------------------------------- Vonage


def vonage_event(status: str, **extra: Any) -> HookRequest:
    url = f"{BASE}/vonage/event?mmg=metz&call_id=CON-1&target=regulation"
    payload = {
        "from": "33387551234",
        "to": "33387000015",
        "uuid": "leg-uuid",
        "conversation_uuid": "CON-1",
        "status": status,
        "direction": "outbound",
        "timestamp": "2027-01-15T07:59:30.123Z",
        **extra,
    }
    return hook(url, body=orjson.dumps(payload))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("started", LegStatus.OFFERED),
        ("ringing", LegStatus.RINGING),
        ("answered", LegStatus.ANSWERED),
        ("busy", LegStatus.BUSY),
        ("rejected", LegStatus.BUSY),
        ("timeout", LegStatus.NO_ANSWER),
        ("unanswered", LegStatus.NO_ANSWER),
        ("failed", LegStatus.FAILED),
        ("cancelled", LegStatus.ABANDONED),
    ],
)
def test_vonage_connect_events_are_leg_events(status: str, expected: LegStatus) -> None:
    ev = vonage.parse_leg(vonage_event(status))
    assert ev == LegEvent(
        call_id="CON-1",
        target=Route.REGULATION,
        status=expected,
        at=datetime(2027, 1, 15, 7, 59, 30, 123000, tzinfo=UTC),
        mmg="metz",
        platform="vonage",
    )


def test_vonage_completed_is_an_answer_only_with_talk_time() -> None:
    ev = vonage.parse_leg(vonage_event("completed", duration="60"))
    assert ev is not None and ev.status is LegStatus.COMPLETED and ev.duration_s == 60
    assert vonage.parse_leg(vonage_event("completed", duration="0")) is None
    assert vonage.parse_leg(vonage_event("completed")) is None


def test_vonage_whole_call_and_other_events_are_no_legs() -> None:
    whole = hook(f"{BASE}/vonage/event", body=orjson.dumps({"status": "answered", "uuid": "u"}))
    assert vonage.parse_leg(whole) is None
    assert vonage.parse_leg(vonage_event("human")) is None


def test_vonage_naive_timestamp_is_refused_by_name() -> None:
    with pytest.raises(BadHookRequest) as err:
        vonage.parse_leg(vonage_event("ringing", timestamp="2027-01-15T07:59:30"))
    assert err.value.field == "timestamp"


def test_vonage_regulation_connect_whispers_on_answer_and_validates() -> None:
    answer = vonage.render(
        decision(Route.REGULATION, REGULATION), RenderContext(urls=urls("vonage"))
    )
    connect = next(a for a in check_ncco(answer.body) if a["action"] == "connect")
    assert connect["endpoint"] == [
        {
            "type": "phone",
            "number": "33387000015",
            "onAnswer": {"url": f"{BASE}/vonage/whisper?mmg=metz&call_id=CAparent"},
        }
    ]
    assert parse_qs(urlsplit(connect["eventUrl"][0]).query)["target"] == ["regulation"]
    desk = vonage.render(decision(Route.DIRECT_ACCESS, DESK), RenderContext(urls=urls("vonage")))
    connect = next(a for a in check_ncco(desk.body) if a["action"] == "connect")
    assert "onAnswer" not in connect["endpoint"][0]


def test_vonage_whisper_is_a_valid_ncco() -> None:
    texts = whisper_texts(protocol("metz"), "+33612345678")
    assert check_ncco(vonage.render_whisper(texts).body) == [
        {
            "action": "talk",
            "text": "Appel transmis par la maison médicale de garde de Metz.",
            "language": "fr-FR",
        }
    ]
    assert check_ncco(vonage.render_whisper(()).body) == [{"action": "wait", "timeout": 0.1}]


# ----------------------------------------------------------------------- generic


def generic_event(**payload: Any) -> HookRequest:
    return hook(f"{BASE}/generic/event", body=orjson.dumps({"call_id": "pbx-1", **payload}))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("ringing", LegStatus.RINGING),
        ("answered", LegStatus.ANSWERED),
        ("abandoned", LegStatus.ABANDONED),
        ("busy", LegStatus.BUSY),
        ("no_answer", LegStatus.NO_ANSWER),
        ("no-answer", LegStatus.NO_ANSWER),
        ("failed", LegStatus.FAILED),
    ],
)
def test_generic_leg_reports(status: str, expected: LegStatus) -> None:
    ev = generic.parse_leg(generic_event(target="regulation", status=status))
    assert ev == LegEvent(
        call_id="pbx-1", target=Route.REGULATION, status=expected, at=AT, platform="generic"
    )


def test_generic_at_is_the_pbxs_time_with_its_offset() -> None:
    ev = generic.parse_leg(
        generic_event(
            target="direct_access",
            status="completed",
            duration_s=30,
            at="2027-01-15T08:59:00+01:00",
        )
    )
    assert ev is not None and ev.at == datetime(2027, 1, 15, 7, 59, tzinfo=UTC)
    assert ev.duration_s == 30 and ev.answered_at == datetime(2027, 1, 15, 7, 58, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"target": "regulation", "status": "ringing", "at": "2027-01-15T08:59:00"}, "at"),
        ({"target": "regulation", "status": "ringing", "at": "٢٠٢٧-01-15T08:59:00Z"}, "at"),
        ({"target": "regulation", "status": "ringing", "at": 1800000000}, "at"),
        ({"target": "regulation", "status": "exploded"}, "status"),
        ({"target": "centre15", "status": "ringing"}, "target"),
    ],
)
def test_generic_bad_leg_reports_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(BadHookRequest) as err:
        generic.parse_leg(generic_event(**payload))
    assert err.value.field == field


def test_generic_event_without_target_is_about_the_whole_call() -> None:
    assert generic.parse_leg(generic_event(status="completed", duration_s=120)) is None


# ----------------------------------------------------------------------- whisper


@pytest.mark.parametrize(
    ("number", "spoken"),
    [
        ("+33612345678", "06 12 34 56 78"),
        ("0466123456", "04 66 12 34 56"),
        ("+262692123456", "06 92 12 34 56"),
        ("+442079460000", "+44 20 79 46 00 00"),
        ("anonymous", None),
        (None, None),
        ("3237", None),
    ],
)
def test_caller_number_is_spoken_by_digit_pairs(number: str | None, spoken: str | None) -> None:
    assert spoken_number(number) == spoken


def test_whisper_speaks_the_caller_only_where_the_protocol_allows() -> None:
    metz = protocol("metz")
    assert not metz.messages.whisper_caller  # off unless the MMG says so
    assert whisper_texts(metz, "+33612345678") == (
        "Appel transmis par la maison médicale de garde de Metz.",
    )
    allowed = variant("metz", **{"messages.whisper_caller": True})
    assert whisper_texts(allowed, "+33612345678")[1] == "Numéro de l'appelant : 06 12 34 56 78."
    assert whisper_texts(allowed, "anonymous") == whisper_texts(metz, None)


def test_whisper_can_be_worded_or_switched_off() -> None:
    worded = variant("nimes", **{"messages.regulation_whisper": "MMG {place}, via {name}."})
    assert whisper_texts(worded, None) == ("MMG de Nîmes, via Maison médicale de garde de Nîmes.",)
    for off in (None, ""):
        silent = variant("metz", **{"messages.regulation_whisper": off})
        assert whisper_texts(silent, "+33612345678") == () and not has_whisper(silent)
    assert whisper_texts(None, None) == (FALLBACK,)


def test_whisper_with_an_unknown_placeholder_is_refused_at_load() -> None:
    from regulator.core.protocol import ProtocolLoadError

    with pytest.raises(ProtocolLoadError, match="regulation_whisper"):
        variant("metz", **{"messages.regulation_whisper": "Appel de {mmg}"})


@pytest.mark.parametrize(
    ("name", "place"),
    [
        ("Maison médicale de garde de Metz", "de Metz"),
        ("maison medicale de garde du Pays de Gex", "du Pays de Gex"),
        ("Maison médicale de garde d'Ajaccio", "d'Ajaccio"),
        ("Metz", "de Metz"),
    ],
)
def test_place_of_an_mmg(name: str, place: str) -> None:
    assert place_of(name) == place
