"""Shared helpers for the unit tests: the example protocols and local instants."""

from __future__ import annotations

import copy
from typing import Any

import yaml

from regulator.core.models import (
    Call,
    Decision,
    Destination,
    Ground,
    MenuPrompt,
    Platform,
    Route,
    Stage,
)
from regulator.core.protocol import Messages, Protocol, parse_protocol
from regulator.protocols import load_protocol_file

# Re-exported: the unit tests read them from here.
from tests.support.clock import PARIS as PARIS
from tests.support.clock import REUNION as REUNION
from tests.support.clock import paris as paris
from tests.support.paths import PROTOCOLS_DIR as PROTOCOLS_DIR
from tests.support.paths import ROOT as ROOT

#: A caller with no special standing (not a professional of any example protocol).
ORDINARY_CALLER = "+33612000001"


def protocol(mmg: str) -> Protocol:
    """One of the example protocols, loaded from ``protocols/``."""
    return load_protocol_file(PROTOCOLS_DIR / f"{mmg}.yaml")


def raw_protocol(mmg: str) -> dict[str, Any]:
    """The parsed YAML of an example protocol, to alter one thing in a test."""
    data = yaml.safe_load((PROTOCOLS_DIR / f"{mmg}.yaml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return copy.deepcopy(data)


def variant(mmg: str, **changes: Any) -> Protocol:
    """An example protocol with some top-level or dotted keys replaced.

    ``variant("nimes", **{"opening.weekdays": ["00:00-24:00"]})``
    """
    data = raw_protocol(mmg)
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return parse_protocol(data, f"{mmg}-variant.yaml")


def call(
    caller: str = ORDINARY_CALLER,
    *,
    called: str = "+33466123456",
    stage: Stage = Stage.INCOMING,
    digits: str | None = None,
) -> Call:
    return Call(
        call_id="test-call",
        caller=caller,
        called=called,
        platform=Platform.GENERIC,
        stage=stage,
        digits=digits,
    )


def decision(
    route: Route,
    destination: Destination | None,
    *,
    say: tuple[str, ...] = (),
    menu: MenuPrompt | None = None,
    dial_timeout_s: int | None = None,
    ground: Ground | None = None,
) -> Decision:
    """A Decision as the engine would give it, for adapter rendering tests."""
    return Decision(
        mmg="nimes",
        route=route,
        rule="test",
        destination=destination,
        ground=ground,
        say=say,
        menu=menu,
        dial_timeout_s=dial_timeout_s,
    )


#: Where the recordings of :func:`recorded` live (https, as the loader requires).
AUDIO_BASE = "https://audio.mmg.example/messages"


def recorded(mmg: str) -> Protocol:
    """An example protocol whose every message is a recording with its text."""
    data = raw_protocol(mmg)
    texts = {**Messages().model_dump(), **data.get("messages", {})}
    messages = {
        name: {"audio": f"{AUDIO_BASE}/{mmg}/{name}.mp3", "text": str(text)}
        for name, text in texts.items()
        if isinstance(text, str)  # the texts, not the switches (whisper_caller)
    }
    data["messages"] = messages
    return parse_protocol(data, f"{mmg}-recorded.yaml")
