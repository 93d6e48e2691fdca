"""jambonz adapter: Jambonz-Signature, JSON webhooks, verb arrays checked by jambonz's
own ``@jambonz/verb-specifications`` (tests/js, run with the machine's Node.js)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core.models import Decision, Destination, MenuPrompt, Platform, Route, Stage
from regulator.platforms import jambonz
from regulator.platforms.base import (
    BadHookRequest,
    HookRequest,
    HookUrls,
    RenderContext,
    SignatureError,
)
from tests.unit.helpers import ROOT, decision
from tests.unit.platform_decisions import every_decision, failsafes

SECRET = "wh_secret_a1b2c3d4e5f67890abcdef1234567890"
NOW = 1_800_000_000
URL = "https://regulator.example/hooks/jambonz/call"
JS = ROOT / "tests" / "js"
URLS = HookUrls(
    gather="https://regulator.example/hooks/jambonz/gather",
    dial_status="https://regulator.example/hooks/jambonz/dial-status?mmg=nimes&call_id=c1",
    # The protocol has a whisper (hook_urls keeps this URL only then): a confirmHook.
    whisper="https://regulator.example/hooks/jambonz/whisper?mmg=nimes&call_id=c1",
    extra={"confirm": "https://regulator.example/hooks/jambonz/confirm?mmg=nimes&call_id=c1"},
)

# jambonz's documented call hook payload (docs.jambonz.org, "New Call", POST).
CALL_HOOK = {
    "call_sid": "b5e39996-bd2f-4bda-b928-355147186a2a",
    "direction": "inbound",
    "from": "+33612345678",
    "to": "+33466123456",
    "call_id": "7ade3efb-7163-123b-e6ba-023fd61c5256",
    "sip_status": 100,
    "sip_reason": "Trying",
    "call_status": "trying",
    "account_sid": "300be250-5a79-46bd-8393-45e7d26c2e34",
    "application_sid": "33b259c1-303d-486a-a8dd-0123456789ab",
    "caller_name": "",
    "originating_sip_ip": "192.0.2.1",
    "originating_sip_trunk_name": "operateur",
}


def hook(
    body: bytes | dict[str, Any],
    *,
    url: str = URL,
    header: str | None = "sign",
    now: float = NOW,
    query: dict[str, str] | None = None,
) -> HookRequest:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    headers = {}
    if header == "sign":
        headers["jambonz-signature"] = jambonz.sign(SECRET, raw, NOW)
    elif header is not None:
        headers["jambonz-signature"] = header
    return HookRequest("POST", url, headers, query or {}, raw, {}, now)


# --------------------------------------------------------------- signature


def node_client_signature(secret: str, body: bytes, t: int) -> str:
    """@jambonz/node-client's computeSignature: hex HMAC-SHA256 of `${t}.${body}`."""
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def test_signature_follows_jambonz_node_client_scheme() -> None:
    body = orjson.dumps(CALL_HOOK)
    assert (
        jambonz.sign(SECRET, body, NOW) == f"t={NOW},v1={node_client_signature(SECRET, body, NOW)}"
    )
    jambonz.verify(hook(body), SECRET)


def test_one_matching_signature_among_several_is_enough() -> None:
    body = orjson.dumps(CALL_HOOK)
    good = node_client_signature(SECRET, body, NOW)
    header = f"t={NOW},v1={'0' * 64},v1={good}"
    jambonz.verify(hook(body, header=header), SECRET)


def test_tampered_body_is_refused() -> None:
    body = orjson.dumps(CALL_HOOK)
    header = jambonz.sign(SECRET, body, NOW)
    tampered = body.replace(b"+33612345678", b"+33612345679")
    with pytest.raises(SignatureError, match="does not match"):
        jambonz.verify(hook(tampered, header=header), SECRET)


@pytest.mark.parametrize("age", [-301, 301, 86_400])
def test_replayed_or_future_signature_is_refused(age: int) -> None:
    body = orjson.dumps(CALL_HOOK)
    with pytest.raises(SignatureError, match="replay window"):
        jambonz.verify(hook(body, now=NOW + age), SECRET)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("v1=" + "a" * 64, "one t="),
        (f"t={NOW}", "no v1"),
        (f"t={NOW},t={NOW},v1={'a' * 64}", "one t="),
        (f"t=abc,v1={'a' * 64}", "one t="),
        (f"t={NOW},v0={'a' * 64}", "no v1"),
        (",".join(["x=1"] * 20), "malformed"),
    ],
)
def test_missing_or_malformed_signature_is_refused(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError, match=reason):
        jambonz.verify(hook(CALL_HOOK, header=header), SECRET)


def test_other_or_unset_secret_is_refused() -> None:
    with pytest.raises(SignatureError):
        jambonz.verify(hook(CALL_HOOK), "another-secret")
    with pytest.raises(SignatureError, match="not configured"):
        jambonz.verify(hook(CALL_HOOK), "")


# --------------------------------------------------------------- parsing


def test_call_hook_becomes_an_incoming_call() -> None:
    call = jambonz.parse_call(hook(CALL_HOOK), Stage.INCOMING)
    assert call.call_id == CALL_HOOK["call_sid"]
    assert call.caller == "+33612345678"
    assert call.called == "+33466123456"
    assert call.platform is Platform.JAMBONZ
    assert call.stage is Stage.INCOMING
    assert call.digits is None


def test_get_call_hook_reads_the_query() -> None:
    query = {k: str(v) for k, v in CALL_HOOK.items()}
    call = jambonz.parse_call(hook(b"", query=query), Stage.INCOMING)
    assert call.call_id == CALL_HOOK["call_sid"]


def test_gather_action_hook_carries_the_digit_or_a_timeout() -> None:
    pressed = {**CALL_HOOK, "call_status": "in-progress", "digits": "2", "reason": "dtmfDetected"}
    assert jambonz.parse_call(hook(pressed), Stage.DIGITS).digits == "2"
    timeout = {**CALL_HOOK, "call_status": "in-progress", "reason": "timeout"}
    assert jambonz.parse_call(hook(timeout), Stage.DIGITS).digits is None


@pytest.mark.parametrize("missing", ["call_sid", "to"])
def test_missing_required_field_is_named(missing: str) -> None:
    body = {k: v for k, v in CALL_HOOK.items() if k != missing}
    with pytest.raises(BadHookRequest) as err:
        jambonz.parse_call(hook(body), Stage.INCOMING)
    assert err.value.field == missing


# The dial actionHook as jambonz documents it ("subsequent dial request").
DIAL_HOOK = {
    **CALL_HOOK,
    "sip_status": 200,
    "call_status": "in-progress",
    "dial_sip_status": 486,
    "dial_call_sid": "56666f6c-5884-42a0-837d-0123456789ab",
}


@pytest.mark.parametrize(
    ("dial_call_status", "status", "failed"),
    [
        ("completed", "completed", False),
        ("busy", "busy", True),
        ("no-answer", "no-answer", True),
        ("failed", "failed", True),
        ("canceled", "canceled", False),
    ],
)
def test_failed_dial_table(dial_call_status: str, status: str, failed: bool) -> None:
    url = "https://regulator.example/hooks/jambonz/dial-status?mmg=nimes&target=regulation"
    event = jambonz.parse_event(
        hook(
            {**DIAL_HOOK, "dial_call_status": dial_call_status},
            url=url,
            query={"target": "regulation"},
        )
    )
    assert event.call_id == CALL_HOOK["call_sid"]
    assert event.status == status
    assert event.dial_failed is failed
    assert event.target is Route.REGULATION


@pytest.mark.parametrize(
    ("call_status", "status"),
    [
        ("trying", "started"),
        ("ringing", "ringing"),
        ("early-media", "ringing"),
        ("in-progress", "answered"),
        ("completed", "completed"),
        ("failed", "failed"),
        ("busy", "busy"),
        ("no-answer", "no-answer"),
        ("queued", "started"),
    ],
)
def test_call_status_hook_statuses(call_status: str, status: str) -> None:
    event = jambonz.parse_event(hook({**CALL_HOOK, "call_status": call_status, "duration": 42}))
    assert event.status == status
    assert event.target is None
    assert event.duration_s == 42


def test_event_without_any_status_or_with_unknown_target_is_refused() -> None:
    body = {k: v for k, v in CALL_HOOK.items() if k != "call_status"}
    with pytest.raises(BadHookRequest) as err:
        jambonz.parse_event(hook(body))
    assert err.value.field == "call_status"
    with pytest.raises(BadHookRequest) as err:
        jambonz.parse_event(hook({**DIAL_HOOK, "dial_call_status": "busy"}, query={"target": "x"}))
    assert err.value.field == "target"


_FIELDS = st.sampled_from(
    ["call_sid", "from", "to", "digits", "call_status", "dial_call_status", "duration", "x"]
)
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40))


@settings(max_examples=300, deadline=None)
@given(
    body=st.one_of(
        # json, not orjson: integers beyond 64 bits reach the parser too.
        st.dictionaries(_FIELDS, _VALUES, max_size=8).map(lambda d: json.dumps(d).encode()),
        st.binary(max_size=80),
    ),
    query=st.dictionaries(st.sampled_from(["target", "call_sid", "to"]), st.text(max_size=20)),
)
def test_parsing_garbage_raises_only_bad_hook_request(body: bytes, query: dict[str, str]) -> None:
    req = HookRequest("POST", URL, {}, query, body, {}, NOW)
    for parse in (lambda: jambonz.parse_call(req, Stage.DIGITS), lambda: jambonz.parse_event(req)):
        with contextlib.suppress(BadHookRequest):
            parse()


# --------------------------------------------------------------- rendering + the oracle


def _ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def verb_specs() -> Callable[[list[Any]], list[str | None]]:
    """jambonz's own validator: ``validate(logger, document)`` of
    @jambonz/verb-specifications, installed by ``npm ci`` from tests/js's lock file."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        message = "node and npm are needed for the jambonz verb-specifications oracle"
        if _ci():
            pytest.fail(message)
        pytest.skip(message)
    package = JS / "node_modules" / "@jambonz" / "verb-specifications" / "package.json"
    if not package.is_file():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS,
            check=True,
            timeout=300,
        )
    locked = json.loads((JS / "package-lock.json").read_text())
    installed = json.loads(package.read_text())
    assert (
        installed["version"]
        == locked["packages"]["node_modules/@jambonz/verb-specifications"]["version"]
    )

    def validate(documents: list[Any]) -> list[str | None]:
        proc = subprocess.run(
            [node, str(JS / "validate.js")],
            input=json.dumps(documents),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        result: list[str | None] = json.loads(proc.stdout)
        return result

    return validate


def verbs(answer_body: bytes) -> list[dict[str, Any]]:
    document = orjson.loads(answer_body)
    assert isinstance(document, list) and document
    return document


def test_the_oracle_refuses_what_jambonz_refuses(
    verb_specs: Callable[[list[Any]], list[str | None]],
) -> None:
    results = verb_specs(
        [[{"verb": "dial"}], [{"verb": "gather", "numDigits": "1"}], [{"verb": "talk"}]]
    )
    assert all(results), results


def test_every_document_the_service_can_produce_passes_jambonz_verb_specifications(
    verb_specs: Callable[[list[Any]], list[str | None]],
) -> None:
    documents: dict[bytes, Decision] = {}
    for decision_ in every_decision():
        for caller in ("+33612000001", "anonymous"):
            body = jambonz.render(
                decision_, RenderContext(URLS, caller=caller, own_number="+33466123456")
            ).body
            documents.setdefault(body, decision_)
    documents.setdefault(jambonz.render_hangup().body, decision(Route.CLOSED, None))
    bodies = list(documents)
    results = verb_specs([orjson.loads(b) for b in bodies])
    refused = {b.decode(): r for b, r in zip(bodies, results, strict=True) if r is not None}
    assert not refused, refused
    kinds = {verbs(b)[-1]["verb"] for b in bodies}
    assert kinds == {"gather", "dial", "hangup"}
    targets = {verbs(b)[-1]["target"][0]["type"] for b in bodies if verbs(b)[-1]["verb"] == "dial"}
    assert targets == {"phone", "sip"}


@settings(max_examples=25, deadline=None)
@given(
    texts=st.lists(st.text(max_size=60), max_size=3),
    timeout=st.integers(min_value=-5, max_value=10_000),
    kind=st.sampled_from(["menu", "number", "sip", "announce"]),
)
def test_any_texts_and_timeouts_still_pass_the_verb_specifications(
    verb_specs: Callable[[list[Any]], list[str | None]], texts: list[str], timeout: int, kind: str
) -> None:
    destination = {
        "menu": None,
        "number": Destination(number="+33466000015"),
        "sip": Destination(sip="sip:sas@regulation.example"),
        "announce": Destination(announce="3237"),
    }[kind]
    menu = MenuPrompt(texts[0] if texts else "", timeout, ("1", "2")) if kind == "menu" else None
    decision_ = decision(
        Route.MENU if menu else Route.REGULATION,
        destination,
        say=tuple(texts),
        menu=menu,
        dial_timeout_s=timeout if kind in ("number", "sip") else None,
    )
    assert verb_specs([orjson.loads(jambonz.render(decision_, RenderContext(URLS)).body)]) == [None]


def test_menu_gathers_one_digit_and_speaks_before_it() -> None:
    menu = decision(
        Route.MENU,
        None,
        say=("Bienvenue à la MMG de Nîmes.",),
        menu=MenuPrompt("Pour un médecin, tapez 1.", 6, ("1", "2")),
    )
    (gather,) = verbs(jambonz.render(menu, RenderContext(URLS)).body)
    assert gather == {
        "verb": "gather",
        "input": ["digits"],
        "numDigits": 1,
        "timeout": 6,
        "actionHook": URLS.gather,
        "say": {"text": "Bienvenue à la MMG de Nîmes. Pour un médecin, tapez 1."},
    }


def test_dial_reports_back_with_the_route_in_the_action_hook() -> None:
    regulation = decision(
        Route.REGULATION,
        Destination(number="+33466000015"),
        say=("Nous vous mettons en relation avec le centre 15.",),
        dial_timeout_s=90,
    )
    say, dial = verbs(
        jambonz.render(
            regulation, RenderContext(URLS, caller="+33611223344", own_number="+33466123456")
        ).body
    )
    assert say == {"verb": "say", "text": "Nous vous mettons en relation avec le centre 15."}
    assert dial == {
        "verb": "dial",
        "target": [
            {
                "type": "phone",
                "number": "+33466000015",
                # The regulation line hears the whisper when it answers.
                "confirmHook": URLS.extra["confirm"] + "&target=regulation",
            }
        ],
        "actionHook": URLS.dial_status + "&target=regulation",
        "timeout": 90,
        "answerOnBridge": True,
        "callerId": "+33611223344",
        # The dialled call's status webhooks name the line (customerData).
        "tag": {"regulator_target": "regulation"},
    }
    sip = decision(Route.DIRECT_ACCESS, Destination(sip="sip:accueil@mmg.example"))
    (dial,) = verbs(jambonz.render(sip, RenderContext(URLS)).body)
    # No whisper for the front desk: no confirmHook.
    assert dial["target"] == [{"type": "sip", "sipUri": "sip:accueil@mmg.example"}]
    assert dial["tag"] == {"regulator_target": "direct_access"}
    assert dial["timeout"] == jambonz.DEFAULT_DIAL_TIMEOUT_S
    assert "callerId" not in dial


@pytest.mark.parametrize("failsafe_decision", failsafes(), ids=lambda d: d.failsafe_reason or "")
def test_failsafe_always_reaches_regulation_or_says_to_dial_15(failsafe_decision: Decision) -> None:
    document = verbs(jambonz.render(failsafe_decision, RenderContext(URLS)).body)
    last = document[-1]
    if last["verb"] == "dial":
        assert last["actionHook"].endswith("target=regulation")
    else:
        assert last["verb"] == "hangup"
        assert any("15" in v.get("text", "") for v in document if v["verb"] == "say")


@pytest.mark.parametrize("route", list(Route))
def test_every_route_renders_a_valid_document(route: Route) -> None:
    decisions = [d for d in every_decision() if d.route is route]
    assert decisions
    for d in decisions:
        assert verbs(jambonz.render(d, RenderContext(URLS)).body)[-1]["verb"] in (
            "gather",
            "dial",
            "hangup",
        )


def test_render_hangup_is_a_single_hangup() -> None:
    answer = jambonz.render_hangup()
    assert answer.content_type == jambonz.CONTENT_TYPE
    assert verbs(answer.body) == [{"verb": "hangup"}]


def test_the_oracle_is_installed_from_the_committed_lock_file() -> None:
    assert (JS / "package-lock.json").is_file()
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "tests/js/node_modules/" in ignored
    assert Path(JS / "validate.js").is_file()


# --------------------------------------------------------------- dial legs, whisper


def test_whisper_and_empty_confirm_answers_pass_the_verb_specifications(
    verb_specs: Callable[[list[Any]], list[str | None]],
) -> None:
    documents = [
        orjson.loads(jambonz.render_whisper(("Appel transmis par la maison médicale.",)).body),
        orjson.loads(jambonz.render_whisper(()).body),
    ]
    assert documents[1] == []  # jambonz connects at once on an empty confirm app
    assert verb_specs(documents) == [None, None]


CHILD = {
    "call_sid": "child-1",
    "parent_call_sid": CALL_HOOK["call_sid"],
    "direction": "outbound",
    "call_status": "ringing",
    "customerData": {"regulator_target": "regulation"},
}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({**CHILD, "call_status": "sonne"}, "call_status"),
        ({**CHILD, "customerData": {"regulator_target": "closed"}}, "target"),
        ({**CHILD, "call_status": "completed", "duration": "٤٢"}, "duration"),
        ({**CALL_HOOK, "dial_call_status": "maybe"}, "dial_call_status"),
    ],
)
def test_bad_leg_reports_name_the_field(payload: dict[str, Any], field: str) -> None:
    query = {"target": "regulation"} if "dial_call_status" in payload else {}
    with pytest.raises(BadHookRequest) as err:
        jambonz.parse_leg(hook(payload, query=query))
    assert err.value.field == field


def test_parent_call_statuses_and_untagged_children_report_no_leg() -> None:
    assert jambonz.parse_leg(hook({**CALL_HOOK, "call_status": "completed"})) is None
    untagged = {k: v for k, v in CHILD.items() if k != "customerData"}
    assert jambonz.parse_leg(hook(untagged)) is None
    # Rang out or the caller hung up: the child cannot tell, the actionHook does.
    assert jambonz.parse_leg(hook({**CHILD, "call_status": "no-answer"})) is None


def test_no_confirm_hook_without_a_whisper_to_say() -> None:
    """jambonz hangs up on the answering line when its confirmHook fails: none is asked
    for unless the protocol has a whisper."""
    regulation = decision(Route.REGULATION, Destination(number="+33466000015"))
    silent = dataclasses.replace(URLS, whisper="")
    *_, dial = verbs(jambonz.render(regulation, RenderContext(silent)).body)
    assert "confirmHook" not in dial["target"][0]
