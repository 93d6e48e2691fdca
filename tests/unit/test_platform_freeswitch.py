"""FreeSWITCH mod_httapi adapter: Basic credentials, httapi form posts, httapi documents,
and the dialplan and profile of deploy/freeswitch."""

from __future__ import annotations

import base64
import contextlib
import re
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core.models import Decision, Destination, MenuPrompt, Platform, Route, Stage
from regulator.platforms import freeswitch
from regulator.platforms.base import (
    BadHookRequest,
    HookRequest,
    HookUrls,
    RenderContext,
    SignatureError,
)
from tests.unit.helpers import ROOT, decision
from tests.unit.platform_decisions import every_decision, failsafes

SECRET = "freeswitch-httapi-secret"
NOW = 1_800_000_000.0
DEPLOY = ROOT / "deploy" / "freeswitch"
URLS = HookUrls(
    gather="https://regulator.example/hooks/freeswitch/gather",
    dial_status="https://regulator.example/hooks/freeswitch/dial-status?mmg=nimes&call_id=x",
)

# What httapi posts on the first hit: session_id and hostname (httapi_sync,
# client_create), the caller profile with the "Caller" prefix
# (switch_caller_profile_event_set_data), the {…} params of the dialplan's httapi call.
FIRST_POST = {
    "session_id": "8c5e4fc2-3c5d-4d0e-9f77-1a2b3c4d5e6f",
    "hostname": "pbx1",
    "url": "https://regulator.example/hooks/freeswitch/voice",
    "httapi_profile": "regulator",
    "full_channel_data_on_every_req": "true",
    "Caller-Direction": "inbound",
    "Caller-Username": "0612345678",
    "Caller-Dialplan": "XML",
    "Caller-Caller-ID-Name": "0612345678",
    "Caller-Caller-ID-Number": "0612345678",
    "Caller-Network-Addr": "192.0.2.1",
    "Caller-Destination-Number": "+33466123456",
    "Caller-Unique-ID": "8c5e4fc2-3c5d-4d0e-9f77-1a2b3c4d5e6f",
    "Caller-Source": "mod_sofia",
    "Caller-Context": "public",
    "Caller-Channel-Name": "sofia/external/0612345678@192.0.2.1",
}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def hook(
    form: dict[str, str],
    *,
    url: str = "https://regulator.example/hooks/freeswitch/voice",
    authorization: str | None = None,
) -> HookRequest:
    headers = {"authorization": authorization or basic("regulator", SECRET)}
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    return HookRequest("POST", url, headers, query, b"", form, NOW)


# --------------------------------------------------------------- authenticity


def test_basic_credentials_with_the_secret_are_accepted() -> None:
    freeswitch.verify(hook(FIRST_POST), SECRET)
    # The password is the secret; a colon in it is fine (split on the first one).
    freeswitch.verify(hook(FIRST_POST, authorization=basic("regulator", "a:b")), "a:b")


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [
        ("", "missing"),
        ("Bearer abc", "missing"),
        ("Basic", "missing"),
        ("Basic not*base64", "malformed"),
        ("Basic " + base64.b64encode(b"no-colon").decode(), "malformed"),
        (basic("regulator", "wrong"), "do not match"),
        (basic("regulator", SECRET + "x"), "do not match"),
    ],
)
def test_missing_malformed_or_wrong_credentials_are_refused(
    authorization: str, reason: str
) -> None:
    req = HookRequest("POST", "https://h/", {"authorization": authorization}, {}, b"", {}, NOW)
    with pytest.raises(SignatureError, match=reason):
        freeswitch.verify(req, SECRET)


def test_no_authorization_header_or_unset_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="missing"):
        freeswitch.verify(HookRequest("POST", "https://h/", {}, {}, b"", {}, NOW), SECRET)
    with pytest.raises(SignatureError, match="not configured"):
        freeswitch.verify(hook(FIRST_POST), "")


# --------------------------------------------------------------- parsing


def test_first_post_becomes_an_incoming_call() -> None:
    call = freeswitch.parse_call(hook(FIRST_POST), Stage.INCOMING)
    assert call.call_id == FIRST_POST["session_id"]
    assert call.caller == "0612345678"
    assert call.called == "+33466123456"
    assert call.platform is Platform.FREESWITCH
    assert call.digits is None


def test_bound_speak_posts_the_key_under_its_name() -> None:
    form = {**FIRST_POST, "digits": "2", "input_type": "dtmf"}
    assert freeswitch.parse_call(hook(form), Stage.DIGITS).digits == "2"
    # No key within the timeout: httapi posts without it; an error-file marks "invalid".
    assert freeswitch.parse_call(hook(FIRST_POST), Stage.DIGITS).digits is None
    invalid = {**FIRST_POST, "digits": "invalid", "input_type": "invalid"}
    assert freeswitch.parse_call(hook(invalid), Stage.DIGITS).digits is None


def test_caller_unique_id_stands_in_for_a_missing_session_id() -> None:
    form = {k: v for k, v in FIRST_POST.items() if k != "session_id"}
    assert (
        freeswitch.parse_call(hook(form), Stage.INCOMING).call_id == FIRST_POST["Caller-Unique-ID"]
    )


@pytest.mark.parametrize("missing", ["Caller-Destination-Number", "Caller-Unique-ID"])
def test_missing_required_field_is_named(missing: str) -> None:
    form = {k: v for k, v in FIRST_POST.items() if k not in (missing, "session_id")}
    with pytest.raises(BadHookRequest) as err:
        freeswitch.parse_call(hook(form), Stage.INCOMING)
    assert err.value.field == missing


DIAL_URL = "https://regulator.example/hooks/freeswitch/dial-status?mmg=nimes&target=regulation"


@pytest.mark.parametrize(
    ("variables", "status", "failed"),
    [
        ({"variable_originate_disposition": "USER_BUSY"}, "busy", True),
        ({"variable_originate_disposition": "CALL_REJECTED"}, "busy", True),
        ({"variable_originate_disposition": "NO_ANSWER"}, "no-answer", True),
        ({"variable_originate_disposition": "NO_USER_RESPONSE"}, "no-answer", True),
        ({"variable_originate_disposition": "ALLOTTED_TIMEOUT"}, "no-answer", True),
        ({"variable_originate_disposition": "NO_ROUTE_DESTINATION"}, "failed", True),
        ({"variable_originate_disposition": "UNALLOCATED_NUMBER"}, "failed", True),
        ({"variable_originate_disposition": "ORIGINATOR_CANCEL"}, "canceled", False),
        (
            {"variable_originate_disposition": "SUCCESS", "variable_billsec": "61"},
            "completed",
            False,
        ),
        ({"variable_DIALSTATUS": "BUSY"}, "busy", True),
        ({"variable_DIALSTATUS": "NOANSWER"}, "no-answer", True),
        ({"variable_DIALSTATUS": "SUCCESS"}, "completed", False),
        # What originate really sets when the peer answered (switch_ivr_originate.c).
        ({"variable_originate_disposition": "call accepted"}, "completed", False),
        ({"variable_DIALSTATUS": "EARLY"}, "completed", False),
        ({}, "failed", True),  # posted after the bridge without its outcome: failed
    ],
)
def test_failed_dial_table(variables: dict[str, str], status: str, failed: bool) -> None:
    event = freeswitch.parse_event(hook({**FIRST_POST, **variables}, url=DIAL_URL))
    assert event.status == status
    assert event.dial_failed is failed
    assert event.target is Route.REGULATION
    assert event.call_id == FIRST_POST["session_id"]


def test_exiting_post_is_the_calls_end_wherever_it_is_sent() -> None:
    form = {**FIRST_POST, "exiting": "true", "variable_duration": "95"}
    for url in (DIAL_URL, URLS.gather, "https://regulator.example/hooks/freeswitch/voice"):
        req = hook(form, url=url)
        assert freeswitch.is_exiting(req)
        event = freeswitch.parse_event(req)
        assert (event.status, event.target, event.duration_s) == ("completed", None, 95)
    assert not freeswitch.is_exiting(hook(FIRST_POST))


def test_exiting_post_is_never_taken_for_a_menu_choice() -> None:
    with pytest.raises(BadHookRequest) as err:
        freeswitch.parse_call(
            hook({**FIRST_POST, "exiting": "true"}, url=URLS.gather), Stage.DIGITS
        )
    assert err.value.field == "exiting"


def test_post_after_bridge_without_target_or_with_unknown_one_is_refused() -> None:
    with pytest.raises(BadHookRequest) as err:
        freeswitch.parse_event(hook(FIRST_POST))
    assert err.value.field == "target"
    with pytest.raises(BadHookRequest):
        freeswitch.parse_event(hook(FIRST_POST, url=DIAL_URL.replace("regulation", "x")))


@settings(max_examples=300, deadline=None)
@given(
    form=st.dictionaries(
        st.sampled_from(
            [
                "session_id",
                "Caller-Unique-ID",
                "Caller-Caller-ID-Number",
                "Caller-Destination-Number",
                "digits",
                "exiting",
                "variable_originate_disposition",
                "variable_DIALSTATUS",
                "variable_billsec",
                "x",
            ]
        ),
        st.text(max_size=40),
        max_size=9,
    ),
    target=st.sampled_from(["", "regulation", "zz"]),
)
def test_parsing_garbage_raises_only_bad_hook_request(form: dict[str, str], target: str) -> None:
    req = HookRequest(
        "POST", "https://h/", {}, {"target": target} if target else {}, b"", form, NOW
    )
    for parse in (
        lambda: freeswitch.parse_call(req, Stage.DIGITS),
        lambda: freeswitch.parse_event(req),
    ):
        with contextlib.suppress(BadHookRequest):
            parse()


# --------------------------------------------------------------- rendering


def work(body: bytes) -> list[ET.Element]:
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    root = ET.fromstring(body)  # our own output
    assert root.tag == "document"
    assert root.attrib == {"type": "xml/freeswitch-httapi"}
    (tag,) = root.findall("work")
    tags = list(tag)
    assert tags, "httapi refuses a <work> without instructions"
    return tags


def test_menu_speaks_then_binds_one_key_to_the_gather_url() -> None:
    menu = decision(
        Route.MENU,
        None,
        say=("Bienvenue à la MMG de Nîmes.",),
        menu=MenuPrompt("Pour un médecin, tapez 1.", 6, ("1", "2")),
    )
    speak, bound = work(freeswitch.render(menu, RenderContext(URLS)).body)
    assert speak.tag == "speak"
    assert speak.attrib == {
        "engine": "tts_commandline",
        "voice": "fr-FR",
        "text": "Bienvenue à la MMG de Nîmes.",
    }
    assert bound.tag == "speak"
    assert bound.attrib["text"] == "Pour un médecin, tapez 1."
    assert bound.attrib["name"] == "digits"
    assert bound.attrib["action"] == URLS.gather
    assert bound.attrib["input-timeout"] == "6000"
    (bind,) = list(bound)
    assert (bind.tag, bind.text, bind.attrib) == ("bind", "~\\d", {"strip": "#"})


def test_dial_bridges_then_reports_back_with_the_route() -> None:
    regulation = decision(
        Route.REGULATION,
        Destination(number="+33466000015"),
        say=("Nous vous mettons en relation avec le centre 15.",),
        dial_timeout_s=90,
    )
    speak, dial, cont = work(freeswitch.render(regulation, RenderContext(URLS)).body)
    assert speak.tag == "speak"
    assert dial.tag == "dial"
    assert dial.text == "[leg_timeout=90]sofia/gateway/regulator/+33466000015"
    # httapi makes a tag's action the session's URL before running it: a caller who
    # hangs up during the bridge is reported there (exiting=true), naming the leg.
    assert dial.attrib == {"action": URLS.dial_status + "&target=regulation"}
    assert cont.tag == "continue"
    assert cont.attrib == {"action": URLS.dial_status + "&target=regulation"}


def test_sip_destination_is_bridged_through_the_sofia_profile() -> None:
    desk = decision(Route.DIRECT_ACCESS, Destination(sip="sip:accueil@mmg.example"))
    dial, _ = work(freeswitch.render(desk, RenderContext(URLS)).body)
    assert (
        dial.text
        == f"[leg_timeout={freeswitch.DEFAULT_DIAL_TIMEOUT_S}]sofia/external/accueil@mmg.example"
    )


@pytest.mark.parametrize(
    "destination",
    [
        Destination(number="+33466000015|sofia/gateway/premium/0899"),
        Destination(number="+33466000015,x"),
        Destination(sip="sip:a@b.example;transport=tcp|user/1000"),
        Destination(sip="sip:${system(id)}@x.example"),
    ],
)
def test_destination_that_would_inject_into_bridge_leaves_for_the_fallback(
    destination: Destination,
) -> None:
    tags = work(
        freeswitch.render(decision(Route.REGULATION, destination), RenderContext(URLS)).body
    )
    assert [t.tag for t in tags] == ["break"]


def test_announcement_is_spoken_then_hung_up() -> None:
    pharmacy = decision(Route.PHARMACY, Destination(announce="3237"), say=("Composez le 32 37.",))
    assert [t.tag for t in work(freeswitch.render(pharmacy, RenderContext(URLS)).body)] == [
        "speak",
        "hangup",
    ]


@pytest.mark.parametrize("failsafe_decision", failsafes(), ids=lambda d: d.failsafe_reason or "")
def test_failsafe_bridges_regulation_or_leaves_for_the_dialplans_fallback(
    failsafe_decision: Decision,
) -> None:
    tags = work(freeswitch.render(failsafe_decision, RenderContext(URLS)).body)
    last = [t.tag for t in tags][-2:]
    if last == ["dial", "continue"]:
        assert tags[-1].attrib["action"].endswith("target=regulation")
    else:
        assert last[-1] == "break"


@pytest.mark.parametrize("route", list(Route))
def test_every_route_renders_a_valid_document(route: Route) -> None:
    decisions = [d for d in every_decision() if d.route is route]
    assert decisions
    for d in decisions:
        tags = work(freeswitch.render(d, RenderContext(URLS)).body)
        assert tags[-1].tag in ("speak", "continue", "hangup", "break")
        for tag in tags:
            if tag.tag == "speak":
                assert tag.attrib["engine"] and "text" in tag.attrib


def test_texts_are_escaped_and_control_characters_dropped() -> None:
    tricky = 'Tapez <1> & "2" \x07fin'
    doc = freeswitch.render(decision(Route.CLOSED, None, say=(tricky,)), RenderContext(URLS))
    (speak, hangup) = work(doc.body)
    assert speak.attrib["text"] == 'Tapez <1> & "2" fin'
    assert hangup.tag == "hangup"
    assert doc.content_type == "text/xml"  # httapi refuses anything else


def test_render_hangup_hangs_up() -> None:
    assert [t.tag for t in work(freeswitch.render_hangup().body)] == ["hangup"]


# --------------------------------------------------------------- deploy files


def test_deploy_files_are_well_formed_xml() -> None:
    files = sorted(DEPLOY.rglob("*.xml"))
    assert {f.name for f in files} == {"httapi.conf.xml", "regulator.xml"}
    for path in files:
        ET.parse(path)


def test_profile_authenticates_with_basic_credentials_and_allows_what_we_send() -> None:
    config = ET.parse(DEPLOY / "autoload_configs" / "httapi.conf.xml").getroot()
    assert config.attrib["name"] == "httapi.conf"
    (profile,) = config.iter("profile")
    assert profile.attrib["name"] == "regulator"
    params = {p.attrib["name"]: p.attrib["value"] for p in profile.iter("param")}
    assert params["auth-scheme"] == "basic"
    assert params["gateway-credentials"].startswith("regulator:")
    assert params["method"] == "POST"
    assert 1 <= int(params["timeout"]) <= 10
    perms = {p.attrib["name"]: p.attrib["value"] for p in profile.iter("permission")}
    # <dial> with a bridge string, and the channel variables of its outcome.
    assert perms["dial"] == perms["dial-full-originate"] == perms["extended-data"] == "true"
    # Nothing that would let a document run arbitrary applications or API calls.
    assert perms["execute-apps"] == perms["expand-vars"] == "false"


def test_dialplan_prepares_the_bridge_runs_httapi_then_falls_back_to_regulation() -> None:
    include = ET.parse(DEPLOY / "dialplan" / "regulator.xml").getroot()
    (condition,) = include.iter("condition")
    actions = [
        (a.attrib["application"], a.attrib.get("data", "")) for a in condition.iter("action")
    ]
    apps = [a for a, _ in actions]
    httapi = apps.index("httapi")
    before = {data for app, data in actions[:httapi] if app == "set"}
    assert {"continue_on_fail=true", "hangup_after_bridge=false"} <= before
    data = actions[httapi][1]
    assert "httapi_profile=regulator" in data
    assert "url=https://regulator.example/hooks/freeswitch/voice" in data
    assert "full_channel_data_on_every_req=true" in data
    after = actions[httapi + 1 :]
    assert any(
        app == "bridge" and "sofia/gateway/regulator/${regulator_fallback_number}" in data
        for app, data in after
    )
    assert any(data.startswith("regulator_fallback_number=+") for _, data in actions[:httapi])


# --------------------------------------------------------------- dial legs


def fs_expand(value: str) -> str:
    """The escapes of FreeSWITCH's variable expansion (switch_channel.c,
    switch_channel_expand_variables_check): ``\\\\`` keeps one backslash, ``\\$`` a
    literal ``$`` that starts no variable. (Variables themselves are not expanded
    here: the test is that none is left to expand before the hook runs.)"""
    out, i = [], 0
    while i < len(value):
        char = value[i]
        if char == "\\" and i + 1 < len(value) and value[i + 1] in "\\$":
            out.append(value[i + 1])
            i += 2
            continue
        assert not value.startswith("${", i), f"expanded too early: {value[i:]}"
        out.append(char)
        i += 1
    return "".join(out)


def test_dialplan_stamps_each_instant_when_it_happens_and_posts_variables() -> None:
    include = ET.parse(DEPLOY / "dialplan" / "regulator.xml").getroot()
    (condition,) = include.iter("condition")
    actions = [
        (a.attrib["application"], a.attrib.get("data", "")) for a in condition.iter("action")
    ]
    apps = [a for a, _ in actions]
    # httapi posts variable_* only for a channel with verbose events.
    assert apps.index("verbose_events") < apps.index("httapi")
    hooks = {}
    for app, data in actions[: apps.index("httapi")]:
        name, _, value = data.partition("=")
        if app == "set" and name.startswith("execute_on_"):
            # "set": the core expands its argument, then the application the value.
            hooks[name] = fs_expand(fs_expand(value))
    stamps = {
        "execute_on_pre_originate_regulator": freeswitch.STAMP_DIAL,
        "execute_on_post_originate_regulator": freeswitch.STAMP_DIAL_END,
        "execute_on_pre_bridge_regulator": freeswitch.STAMP_ANSWER,
        "execute_on_post_bridge_regulator": freeswitch.STAMP_BRIDGE_END,
    }
    for hook_name, variable in stamps.items():
        stamp = variable.removeprefix("variable_")
        assert hooks[hook_name] == f"set {stamp}=${{strmicroepoch()}}", hooks


STAMPED = {
    **FIRST_POST,
    "variable_originate_disposition": "call accepted",
    freeswitch.STAMP_DIAL: "1790000000000000",
    freeswitch.STAMP_DIAL_END: "1790000025500000",
    freeswitch.STAMP_ANSWER: "1790000025500000",
    freeswitch.STAMP_BRIDGE_END: "1790000085000000",
}


def test_answered_bridge_is_offered_answered_and_ended_at_freeswitchs_instants() -> None:
    from regulator.core.legs import LegStatus

    events = freeswitch.parse_leg(hook(STAMPED, url=DIAL_URL))
    assert isinstance(events, tuple)
    assert [(e.status, e.at.timestamp()) for e in events] == [
        (LegStatus.OFFERED, 1790000000.0),
        (LegStatus.ANSWERED, 1790000025.5),
        (LegStatus.COMPLETED, 1790000085.0),
    ]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        (freeswitch.STAMP_DIAL, "１７９００００００００００００００"),
        (freeswitch.STAMP_ANSWER, "1790000025.5"),
        (freeswitch.STAMP_BRIDGE_END, "-1"),
    ],
)
def test_bad_stamps_name_the_field(field: str, value: str) -> None:
    with pytest.raises(BadHookRequest) as err:
        freeswitch.parse_leg(hook({**STAMPED, field: value}, url=DIAL_URL))
    assert err.value.field == field


def test_posts_about_no_bridge_or_without_stamps_report_no_leg() -> None:
    assert freeswitch.parse_leg(hook(STAMPED)) is None  # /voice: no ?target=
    unstamped = {k: v for k, v in STAMPED.items() if k != freeswitch.STAMP_DIAL}
    assert freeswitch.parse_leg(hook(unstamped, url=DIAL_URL)) is None


def test_profile_posts_every_parameter_the_adapter_reads_and_only_those() -> None:
    """httapi's ``enable-post-var`` list filters every posted parameter (session_id,
    Caller-*, digits included: mod_httapi.c, switch_event_build_param_string): a name
    the adapter reads and the list lacks would never arrive."""
    config = ET.parse(DEPLOY / "autoload_configs" / "httapi.conf.xml").getroot()
    posted = {
        p.attrib["value"] for p in config.iter("param") if p.attrib["name"] == "enable-post-var"
    }
    source = (ROOT / "regulator" / "platforms" / "freeswitch.py").read_text(encoding="utf-8")
    read = set(re.findall(r'_param\(req, "([^"]+)"\)', source))
    read |= {freeswitch.DIGITS_PARAM, freeswitch.STAMP_HANGUP}
    read |= {
        freeswitch.STAMP_DIAL,
        freeswitch.STAMP_DIAL_END,
        freeswitch.STAMP_ANSWER,
        freeswitch.STAMP_BRIDGE_END,
    }
    assert read == posted
