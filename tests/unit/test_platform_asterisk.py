"""Asterisk adapter: shared secret and source allowlist, CURL() form posts, the
``key=value`` answer read by ``HASH()``, and the dialplan of deploy/asterisk."""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regulator.core.models import Decision, Destination, MenuPrompt, Platform, Route, Stage
from regulator.platforms import asterisk
from regulator.platforms.base import (
    BadHookRequest,
    HookRequest,
    HookUrls,
    RenderContext,
    SignatureError,
)
from regulator.settings import Settings
from tests.unit.helpers import ROOT, decision
from tests.unit.platform_decisions import every_decision, failsafes

SECRET = "asterisk-shared-secret"
NOW = 1_800_000_000.0
URL = "https://regulator.example/hooks/asterisk/call"
DIALPLAN = ROOT / "deploy" / "asterisk" / "extensions_regulator.conf"

# What [regulator-entry] posts: call_id=${UNIQUEID}&from=${CALLERID(num)}&to=${EXTEN}.
ENTRY = {"call_id": "1733036400.42", "from": "0612345678", "to": "0466123456"}


def hook(
    form: dict[str, str] | None = None,
    *,
    secret: str | None = SECRET,
    body: bytes | None = None,
    parsed: bool = True,
    query: dict[str, str] | None = None,
) -> HookRequest:
    headers = {"x-regulator-secret": secret} if secret is not None else {}
    raw = urlencode(form or {}).encode() if body is None else body
    return HookRequest(
        "POST", URL, headers, query or {}, raw, dict(form or {}) if parsed else {}, NOW
    )


def asterisk_hash(answer: bytes) -> dict[str, str]:
    """What ``CURLOPT(hashcompat)=yes`` + ``HASH(reg)`` make of an answer (func_curl.c:
    trim, split on '&' then '=', ast_uri_decode each part with ast_uri_http: %XX only)."""
    line = answer.decode("ascii").strip()
    fields: dict[str, str] = {}
    for piece in line.split("&"):
        name, _, value = piece.partition("=")
        fields[unquote(name)] = unquote(value)
    return fields


# --------------------------------------------------------------- authenticity


def test_shared_secret_is_accepted_and_anything_else_refused() -> None:
    asterisk.verify(hook(ENTRY), SECRET)
    for given_secret, reason in ((None, "missing"), ("", "missing"), ("wrong", "does not match")):
        with pytest.raises(SignatureError, match=reason):
            asterisk.verify(hook(ENTRY, secret=given_secret), SECRET)
    with pytest.raises(SignatureError, match="not configured"):
        asterisk.verify(hook(ENTRY), "")


def test_a_replay_carrying_the_secret_is_authentic_by_design() -> None:
    # A shared secret has no timestamp to expire: replay protection for Asterisk is
    # TLS, the source allowlist, and the answer cache (a retried call is answered as
    # the first time and never counted twice), as for Kamailio.
    req = hook(ENTRY)
    asterisk.verify(req, SECRET)
    asterisk.verify(req, SECRET)
    with pytest.raises(SignatureError):
        asterisk.verify(hook(ENTRY, secret=SECRET + "x"), SECRET)


@pytest.mark.parametrize(
    ("remote", "allowed"),
    [
        ("192.0.2.10", True),
        ("192.0.2.11", False),
        ("198.51.100.77", True),
        ("::ffff:198.51.100.77", True),
        ("2001:db8::1", True),
        ("2001:db9::1", False),
        ("[2001:db8::5]", True),
        ("fe80::1%eth0", False),
        ("not-an-ip", False),
        ("", False),
        (None, False),
    ],
)
def test_source_allowlist(remote: str | None, allowed: bool) -> None:
    allowlist = asterisk.parse_allowlist("192.0.2.10, 198.51.100.0/24,2001:db8::/32")
    assert asterisk.source_allowed(allowlist, remote) is allowed


def test_empty_allowlist_admits_every_source() -> None:
    assert asterisk.source_allowed(asterisk.parse_allowlist(None), "203.0.113.9")
    assert asterisk.source_allowed(asterisk.parse_allowlist(" , "), None)


def test_settings_refuse_a_bad_allowlist_entry() -> None:
    ok = Settings(asterisk_allowed_sources="192.0.2.0/24")
    assert asterisk.source_allowed(ok.asterisk_allowlist(), "192.0.2.77")
    assert not asterisk.source_allowed(ok.asterisk_allowlist(), "198.51.100.1")
    assert Settings().asterisk_allowlist() == ()
    with pytest.raises(ValueError, match=r"192\.0\.2\.300"):
        Settings(asterisk_allowed_sources="192.0.2.0/24,192.0.2.300")


# --------------------------------------------------------------- parsing


def test_entry_request_becomes_an_incoming_call() -> None:
    call = asterisk.parse_call(hook(ENTRY), Stage.INCOMING)
    assert (call.call_id, call.caller, call.called) == ("1733036400.42", "0612345678", "0466123456")
    assert call.platform is Platform.ASTERISK
    assert call.digits is None


def test_unparsed_body_is_read_when_curl_sent_no_form_content_type() -> None:
    call = asterisk.parse_call(hook({**ENTRY, "digits": "2"}, parsed=False), Stage.DIGITS)
    assert call.digits == "2"


def test_menu_request_with_nothing_typed_means_no_choice() -> None:
    assert asterisk.parse_call(hook({**ENTRY, "digits": ""}), Stage.DIGITS).digits is None


def test_anonymous_caller_is_an_empty_caller() -> None:
    assert asterisk.parse_call(hook({**ENTRY, "from": ""}), Stage.INCOMING).caller == ""


@pytest.mark.parametrize("missing", ["call_id", "to"])
def test_missing_required_field_is_named(missing: str) -> None:
    form = {k: v for k, v in ENTRY.items() if k != missing}
    with pytest.raises(BadHookRequest) as err:
        asterisk.parse_call(hook(form), Stage.INCOMING)
    assert err.value.field == missing


@pytest.mark.parametrize(
    ("dialstatus", "status", "failed"),
    [
        ("ANSWER", "completed", False),
        ("BUSY", "busy", True),
        ("NOANSWER", "no-answer", True),
        ("CHANUNAVAIL", "failed", True),
        ("CONGESTION", "failed", True),
        ("INVALIDARGS", "failed", True),
        ("CANCEL", "canceled", False),
        ("DONTCALL", "busy", True),
        ("TORTURE", "busy", True),
    ],
)
def test_failed_dial_table(dialstatus: str, status: str, failed: bool) -> None:
    form = {**ENTRY, "dialstatus": dialstatus, "target": "regulation", "duration": "0"}
    event = asterisk.parse_event(hook(form))
    assert event.status == status
    assert event.dial_failed is failed
    assert event.target is Route.REGULATION
    assert event.duration_s == 0


def test_hangup_handler_report_is_a_whole_call_event() -> None:
    form = {**ENTRY, "status": "completed", "duration": "73", "cause": "16"}
    event = asterisk.parse_event(hook(form))
    assert (event.status, event.duration_s, event.target, event.dial_failed) == (
        "completed",
        73,
        None,
        False,
    )


def test_unknown_dialstatus_target_or_no_status_is_refused() -> None:
    cases = [
        ({**ENTRY, "dialstatus": "MAYBE", "target": "regulation"}, "dialstatus"),
        ({**ENTRY, "dialstatus": "BUSY", "target": "elsewhere"}, "target"),
        (ENTRY, "dialstatus"),
    ]
    for form, name in cases:
        with pytest.raises(BadHookRequest) as err:
            asterisk.parse_event(hook(form))
        assert err.value.field == name


@settings(max_examples=300, deadline=None)
@given(
    form=st.dictionaries(
        st.sampled_from(
            ["call_id", "from", "to", "digits", "dialstatus", "target", "status", "duration", "x"]
        ),
        st.text(max_size=40),
        max_size=9,
    ),
    body=st.binary(max_size=120),
    parsed=st.booleans(),
)
def test_parsing_garbage_raises_only_bad_hook_request(
    form: dict[str, str], body: bytes, parsed: bool
) -> None:
    req = HookRequest("POST", URL, {}, {}, body, form if parsed else {}, NOW)
    for parse in (
        lambda: asterisk.parse_call(req, Stage.DIGITS),
        lambda: asterisk.parse_event(req),
    ):
        with contextlib.suppress(BadHookRequest):
            parse()


# --------------------------------------------------------------- rendering


def answer_of(d: Decision) -> dict[str, str]:
    answer = asterisk.render(d, RenderContext(HookUrls()))
    assert answer.content_type.startswith("text/plain")
    assert answer.body.endswith(b"\n") and answer.body.count(b"\n") == 1
    fields = asterisk_hash(answer.body)
    assert tuple(fields) == asterisk.KEYS
    return fields


def test_dial_answer_names_the_route_number_and_ring_time() -> None:
    d = decision(
        Route.REGULATION,
        Destination(number="+33466000015", sip="sip:sas30@regulation.example"),
        say=("Nous vous mettons en relation avec le centre 15.",),
        dial_timeout_s=90,
    )
    assert answer_of(d) == {
        "action": "dial",
        "route": "regulation",
        "number": "+33466000015",
        "sip": "sip:sas30@regulation.example",
        "timeout": "90",
        "say": "Nous vous mettons en relation avec le centre 15.",
        "menu": "",
        "menu_timeout": "",
        "failsafe": "0",
    }


def test_menu_answer_carries_the_prompt_and_its_timeout() -> None:
    d = decision(
        Route.MENU,
        None,
        say=("Bienvenue à la MMG de Nîmes.",),
        menu=MenuPrompt("Pour un médecin, tapez 1. Pour la pharmacie, tapez 2.", 6, ("1", "2")),
    )
    fields = answer_of(d)
    assert fields["action"] == "menu"
    assert fields["menu"] == "Pour un médecin tapez 1. Pour la pharmacie tapez 2."
    assert fields["menu_timeout"] == "6"
    assert fields["say"] == "Bienvenue à la MMG de Nîmes."


def test_answer_uses_no_plus_for_spaces() -> None:
    # hashcompat=yes decodes %XX but keeps '+' (only "legacy" turns it into a space).
    body = asterisk.render(
        decision(Route.CLOSED, None, say=("a b",)), RenderContext(HookUrls())
    ).body
    assert b"say=a%20b&" in body
    assert b"+" not in body.split(b"number=")[0]


@pytest.mark.parametrize(
    ("destination", "why"),
    [
        (Destination(number="+33466000015&PJSIP/premium@trunk"), "a second channel"),
        (Destination(number="+33466000015,60,D(1)"), "Dial() options"),
        (Destination(sip="sip:${SHELL(id)}@x.example"), "a variable"),
        (Destination(sip="sip:a@b.example)"), "a closing parenthesis"),
    ],
)
def test_destinations_that_would_inject_into_dial_are_never_handed_over(
    destination: Destination, why: str
) -> None:
    fields = answer_of(decision(Route.REGULATION, destination))
    assert fields["action"] == "announce", why
    assert fields["failsafe"] == "1"  # the dialplan rings its own regulation trunk
    assert fields["number"] == fields["sip"] == ""


def test_texts_lose_what_would_split_the_tts_argument() -> None:
    fields = answer_of(
        decision(Route.CLOSED, Destination(announce="15"), say=("Fermé, (voir) ${X} | 15",))
    )
    assert fields["say"] == "Fermé voir X 15"
    assert not set(fields["say"]) & set(',()|${}[]\\"')


@pytest.mark.parametrize("failsafe_decision", failsafes(), ids=lambda d: d.failsafe_reason or "")
def test_failsafe_reaches_regulation_or_the_dialplans_fallback(failsafe_decision: Decision) -> None:
    fields = answer_of(failsafe_decision)
    assert fields["failsafe"] == "1"
    assert fields["route"] == "regulation"
    if fields["action"] == "dial":
        assert fields["number"] or fields["sip"]
    else:
        assert fields["action"] == "announce"  # → [regulator-fallback]


@pytest.mark.parametrize("route", list(Route))
def test_every_route_renders_an_answer_the_dialplan_reads(route: Route) -> None:
    decisions = [d for d in every_decision() if d.route is route]
    assert decisions
    for d in decisions:
        fields = answer_of(d)
        assert fields["action"] in ("dial", "menu", "announce")
        if fields["action"] == "dial":
            assert re.fullmatch(r"[0-9]+", fields["timeout"])
            assert fields["number"] or fields["sip"]


def test_render_hangup_has_every_key() -> None:
    fields = asterisk_hash(asterisk.render_hangup().body)
    assert tuple(fields) == asterisk.KEYS
    assert fields["action"] == "hangup"


# --------------------------------------------------------------- the dialplan


@dataclass
class Context:
    name: str
    extensions: dict[str, list[tuple[str | None, str]]] = field(default_factory=dict)

    def labels(self) -> set[str]:
        return {label for steps in self.extensions.values() for label, _ in steps if label}

    def apps(self) -> list[str]:
        return [app for steps in self.extensions.values() for _, app in steps]


_EXTEN = re.compile(r"exten\s*=>\s*([^,]+),\s*1\s*(?:\((\w+)\))?,\s*(.+)")
_SAME = re.compile(r"same\s*=>\s*n\s*(?:\((\w+)\))?,\s*(.+)")


def parse_dialplan(text: str) -> dict[str, Context]:
    """A small extensions.conf parser: contexts, extensions, priorities, labels."""
    contexts: dict[str, Context] = {}
    current: Context | None = None
    exten: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split(";", 1)[0].strip() if not raw.lstrip().startswith(";") else ""
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            current = contexts.setdefault(line[1:-1], Context(line[1:-1]))
            exten = None
            continue
        assert current is not None, f"line {number}: outside any context"
        if current.name == "globals":
            assert re.fullmatch(r"[A-Z_]+=.*", line), f"line {number}: {line}"
            continue
        if m := _EXTEN.fullmatch(line):
            exten = m.group(1).strip()
            current.extensions[exten] = [(m.group(2), m.group(3))]
        elif m := _SAME.fullmatch(line):
            assert exten is not None, f"line {number}: 'same' before any 'exten'"
            current.extensions[exten].append((m.group(1), m.group(2)))
        else:
            pytest.fail(f"line {number}: not a dialplan line: {line}")
    return contexts


@pytest.fixture(scope="module")
def dialplan() -> dict[str, Context]:
    return parse_dialplan(DIALPLAN.read_text(encoding="utf-8"))


def _balanced(app: str) -> bool:
    depth = 0
    for char in app:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_dialplan_has_entry_menu_fallback_and_hangup_handler(dialplan: dict[str, Context]) -> None:
    for name in (
        "regulator-entry",
        "regulator-apply",
        "regulator-menu",
        "regulator-fallback",
        "regulator-hangup",
        "regulator-http",
        "regulator-say",
        "regulator-answered",
        "globals",
    ):
        assert name in dialplan, name
    assert {"dial", "announce", "hangup", "dialled", "sip"} <= dialplan["regulator-apply"].labels()
    entry = dialplan["regulator-entry"].apps()
    assert "Set(CHANNEL(hangup_handler_push)=regulator-hangup,s,1)" in entry
    # The hangup handler is a subroutine: it must Return.
    assert dialplan["regulator-hangup"].apps()[-1] == "Return()"
    assert any(a.startswith("Read(") for a in dialplan["regulator-menu"].apps())
    dials = [a for a in dialplan["regulator-apply"].apps() if a.startswith("Dial(")]
    assert len(dials) == 2 and all(
        a.endswith(",${REGULATOR_RING},gU(regulator-answered^${CHANNEL}))") for a in dials
    )
    # The answer stamp: a subroutine on the called channel writing the caller's SHARED().
    answered = dialplan["regulator-answered"].apps()
    assert answered == ["Set(SHARED(REGULATOR_ANSWERED_AT,${ARG1})=${EPOCH})", "Return()"]
    fallback = dialplan["regulator-fallback"].apps()
    assert any(a.startswith("Dial(PJSIP/${REGULATOR_FALLBACK_NUMBER}@") for a in fallback)


def test_every_goto_and_gosub_lands_on_a_context_and_label(dialplan: dict[str, Context]) -> None:
    jumps = re.compile(r"(?:Goto|Gosub)\(([\w-]+),(\w+),1\b|[?:]([\w-]+),s,1|\?(\w+)\)")
    for context in dialplan.values():
        for app in context.apps():
            assert _balanced(app), app
            for target, ext, other, label in jumps.findall(app):
                if target or other:
                    name = target or other
                    assert name in dialplan, f"{context.name}: {app}"
                    assert (ext or "s") in dialplan[name].extensions, app
                if label:
                    assert label in context.labels(), f"{context.name}: {app}"
            if m := re.fullmatch(r"Goto\((\w+)\)", app):
                assert m.group(1) in context.labels(), app


def test_service_timeout_secret_and_hash_answer_are_set_before_curl(
    dialplan: dict[str, Context],
) -> None:
    http = dialplan["regulator-http"].apps()
    curl = next(i for i, a in enumerate(http) if "${CURL(" in a)
    before = http[:curl]
    assert "Set(CURLOPT(httptimeout)=${REGULATOR_HTTP_TIMEOUT})" in before
    assert "Set(CURLOPT(conntimeout)=${REGULATOR_CONNECT_TIMEOUT})" in before
    assert "Set(CURLOPT(httpheader)=X-Regulator-Secret: ${REGULATOR_SECRET})" in before
    assert "Set(CURLOPT(httpheader)=Content-Type: application/x-www-form-urlencoded)" in before
    assert "Set(CURLOPT(hashcompat)=yes)" in before
    assert http[curl].startswith("Set(HASH(reg)=${CURL(${REGULATOR_URL}/hooks/asterisk/")


def test_dialplan_reads_only_keys_the_service_sends(dialplan: dict[str, Context]) -> None:
    text = DIALPLAN.read_text(encoding="utf-8")
    read = set(re.findall(r"\$\{HASH\(reg,(\w+)\)\}", text))
    assert read and read <= set(asterisk.KEYS)
    actions = set(re.findall(r'"\$\{REGULATOR_ACTION\}" = "(\w+)"', text))
    assert actions == {"dial", "menu", "announce", "hangup"}
    # Anything else (empty: no answer in time) falls through to the fallback.
    apply = dialplan["regulator-apply"].apps()
    last_check = max(i for i, a in enumerate(apply) if "REGULATOR_ACTION}" in a and "GotoIf" in a)
    assert apply[last_check + 1] == "Goto(regulator-fallback,s,1)"


def test_dialplan_posts_the_fields_and_paths_the_adapter_reads() -> None:
    text = DIALPLAN.read_text(encoding="utf-8")
    paths = set(re.findall(r"regulator-http,s,1\((\w[\w-]*),", text))
    paths |= set(re.findall(r"/hooks/asterisk/(\w[\w-]*),", text))
    assert paths == {"call", "gather", "dial-status", "status"}
    posted = set(re.findall(r"[,&](\w+)=\$\{", text))
    assert {"call_id", "from", "to", "digits", "dialstatus", "target", "duration"} <= posted


def test_each_new_platform_has_one_secret_setting_kept_out_of_reprs() -> None:
    values = {
        "asterisk_secret": "s-asterisk",
        "freeswitch_secret": "s-freeswitch",
        "jambonz_secret": "s-jambonz",
    }
    configured = Settings(**values)  # type: ignore[arg-type]
    for name, value in values.items():
        assert configured.secret(name) == value
        assert value not in repr(configured)
    unset = Settings()
    assert all(unset.secret(name) is None for name in (*values, "telnyx_public_key"))
    assert {p.value for p in Platform} >= {"asterisk", "freeswitch", "jambonz", "telnyx"}


# --------------------------------------------------------------- dial legs

LEG_FIELDS = {
    "call_id": "1700000000.42",
    "from": "+33612345678",
    "to": "+33466123456",
    "dialstatus": "ANSWER",
    "target": "regulation",
    "dial_at": "1790000000",
    "answered_at": "1790000025",
    "ended_at": "1790000085",
}


def test_dial_report_is_the_legs_offer_answer_and_end() -> None:
    from regulator.core.legs import LegStatus

    events = asterisk.parse_leg(hook(LEG_FIELDS))
    assert isinstance(events, tuple)
    assert [(e.status, int(e.at.timestamp())) for e in events] == [
        (LegStatus.OFFERED, 1790000000),
        (LegStatus.ANSWERED, 1790000025),
        (LegStatus.COMPLETED, 1790000085),
    ]
    assert {e.target for e in events} == {Route.REGULATION}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dial_at", "１７９００００００"),  # fullwidth digits: str.isdigit() would take them
        ("answered_at", "١٧٩٠٠٠٠٠٢٥"),
        ("ended_at", "1790000085.5"),
        ("ended_at", "99"),  # 1970: an unset clock, not a call
        ("dialstatus", "RINGING"),
        ("target", "closed"),
    ],
)
def test_bad_leg_stamps_or_status_name_the_field(field: str, value: str) -> None:
    with pytest.raises(BadHookRequest) as err:
        asterisk.parse_leg(hook({**LEG_FIELDS, field: value}))
    assert err.value.field == field


def test_no_leg_without_a_dial_or_its_stamp() -> None:
    hangup = {"call_id": "c", "status": "completed", "leg_status": "", "dial_at": ""}
    assert asterisk.parse_leg(hook(hangup)) is None
    old_dialplan = {k: v for k, v in LEG_FIELDS.items() if k != "dial_at"}
    assert asterisk.parse_leg(hook(old_dialplan)) is None


def test_dial_stamps_are_set_only_when_one_of_our_dials_follows(
    dialplan: dict[str, Context],
) -> None:
    """Between the stamp of the dial's start and our Dial() nothing may jump to the
    fallback: the hangup handler would report the fallback trunk's Dial() as our leg."""
    apply = dialplan["regulator-apply"].apps()
    stamp = apply.index("Set(REGULATOR_DIAL_AT=${EPOCH})")
    first_dial = next(i for i, a in enumerate(apply) if a.startswith("Dial("))
    assert stamp < first_dial
    assert not any("regulator-fallback" in a for a in apply[stamp:first_dial])
    assert "Set(REGULATOR_DIAL_END=)" in apply[:stamp]
    dialled = apply.index("Set(REGULATOR_DIAL_END=${EPOCH})")
    assert "dial-status" in apply[dialled + 1]  # reported right after Dial() returns
    hangup = " ".join(dialplan["regulator-hangup"].apps())
    assert '"${REGULATOR_DIAL_END}" = ""' in hangup  # only a Dial() that never returned
