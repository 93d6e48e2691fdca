"""Recorded prompts: ``{audio: "https://…", text: "…"}`` messages, checked at load and
carried by the decision to every adapter (Twilio and Vonage have their own tests)."""

from __future__ import annotations

import pickle
from datetime import datetime
from typing import Any

import orjson
import pytest

from regulator.core.decision import decide
from regulator.core.models import Call, Platform, Prompt, Stage, audio_of
from regulator.core.protocol import ProtocolLoadError, parse_protocol
from regulator.platforms import generic, kamailio
from regulator.platforms.base import HookUrls, RenderContext
from tests.unit.helpers import AUDIO_BASE, PARIS, protocol, raw_protocol, recorded

WELCOME = f"{AUDIO_BASE}/nimes/welcome.mp3"


def _with_welcome(value: Any) -> dict[str, Any]:
    data = raw_protocol("nimes")
    data["messages"]["welcome"] = value
    return data


def _issue(value: Any) -> str:
    with pytest.raises(ProtocolLoadError) as caught:
        parse_protocol(_with_welcome(value), "nimes.yaml")
    (issue,) = caught.value.issues
    assert issue.field == "messages.welcome"
    return issue.reason


def test_a_message_may_be_a_recording_with_its_text() -> None:
    proto = parse_protocol(_with_welcome({"audio": WELCOME, "text": "Bonjour."}), "n.yaml")
    assert proto.messages.welcome == "Bonjour."
    assert audio_of(proto.messages.welcome) == WELCOME
    assert audio_of(proto.messages.menu) is None  # the others stay plain text


@pytest.mark.parametrize(
    "audio",
    [
        "http://audio.mmg.example/welcome.mp3",
        "ftp://audio.mmg.example/welcome.mp3",
        "file:///srv/welcome.mp3",
        "https:///welcome.mp3",
        "https://audio.mmg.example/bien venue.mp3",
        "/srv/audio/welcome.mp3",
        42,
    ],
)
def test_only_https_recordings_are_accepted_with_a_french_error_naming_the_field(
    audio: Any,
) -> None:
    reason = _issue({"audio": audio, "text": "Bonjour."})
    assert reason.startswith("messages.welcome.audio : ")
    assert "https" in reason
    assert "seuls les enregistrements servis en https sont acceptés" in reason


def test_a_recording_needs_its_text_and_nothing_else() -> None:
    assert _issue({"audio": WELCOME}).startswith("messages.welcome.text : le texte est obligatoire")
    assert _issue({"audio": WELCOME, "text": "  "}).startswith("messages.welcome.text")
    assert "clé(s) inconnue(s) voice" in _issue({"audio": WELCOME, "text": "x", "voice": "f"})
    assert _issue(["Bonjour."]).startswith("messages.welcome : attendu un texte")


def test_the_decision_carries_the_recordings_of_its_messages() -> None:
    nimes = recorded("nimes")
    now = datetime(2026, 11, 23, 21, 0, tzinfo=PARIS)
    menu = decide(nimes, Call("c", "+33612000001", nimes.numbers[0]), now)
    assert menu.prompts == (
        ("Vous êtes en relation avec la maison médicale de garde de Nîmes.", WELCOME),
    )
    assert menu.menu is not None
    assert audio_of(menu.menu.text) == f"{AUDIO_BASE}/nimes/menu.mp3"
    pharmacy = decide(nimes, Call("c", "+33612000001", nimes.numbers[0], digits="2"), now)
    # The text fills in the name; the recording (made without it) is kept.
    ((text, audio),) = pharmacy.prompts
    assert text == (
        "La pharmacie de garde est la Pharmacie de la Maison Carrée. Nous vous mettons en relation."
    )
    assert audio == f"{AUDIO_BASE}/nimes/pharmacy.mp3"


def test_a_prompt_is_its_text_for_every_existing_user() -> None:
    prompt = Prompt("Bonjour {name}.", WELCOME)
    assert prompt == "Bonjour {name}."
    assert prompt.format(name="Anne") == "Bonjour Anne."
    assert audio_of(prompt.format(name="Anne")) == WELCOME
    again = pickle.loads(pickle.dumps(prompt))  # noqa: S301 - our own bytes
    assert (str(again), audio_of(again)) == ("Bonjour {name}.", WELCOME)
    assert orjson.loads(orjson.dumps([prompt])) == ["Bonjour {name}."]
    assert audio_of("Bonjour.") is None


def test_generic_adapter_gives_a_play_entry_beside_each_message() -> None:
    nimes = recorded("nimes")
    now = datetime(2026, 11, 23, 21, 0, tzinfo=PARIS)
    menu = decide(nimes, Call("c", "+33612000001", nimes.numbers[0]), now)
    document = orjson.loads(generic.render(menu, RenderContext(HookUrls())).body)
    assert document["say"] == ["Vous êtes en relation avec la maison médicale de garde de Nîmes."]
    assert document["play"] == [WELCOME]
    assert document["menu"]["play"] == f"{AUDIO_BASE}/nimes/menu.mp3"
    assert document["menu"]["text"].startswith("Pour un médecin")
    plain = protocol("nimes")
    document = orjson.loads(
        generic.render(
            decide(plain, Call("c", "+33612000001", plain.numbers[0]), now),
            RenderContext(HookUrls()),
        ).body
    )
    assert document["play"] == [None]
    assert document["menu"]["play"] is None
    assert orjson.loads(generic.render_hangup().body)["play"] == []


def test_kamailio_ignores_recordings() -> None:
    at = datetime(2026, 11, 23, 21, 0, tzinfo=PARIS)
    plain, rec = protocol("metz"), recorded("metz")
    call = Call("c", "+33612000001", "+33387551234", Platform.KAMAILIO, Stage.INCOMING)
    gateway = "gw.example"
    with_audio = kamailio.render(
        decide(rec, call, at), RenderContext(HookUrls(), sip_gateway=gateway)
    ).body
    assert (
        with_audio
        == kamailio.render(
            decide(plain, call, at), RenderContext(HookUrls(), sip_gateway=gateway)
        ).body
    )
    assert b"audio.mmg.example" not in with_audio
