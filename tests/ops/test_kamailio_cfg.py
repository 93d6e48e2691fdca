"""deploy/kamailio/kamailio.cfg: Kamailio accepts it (``kamailio -c``) with its
defaults and with the overrides the end-to-end tests use, and it keeps the
contract of DESIGN.md §5 ("Kamailio routing request"). The SIP behaviour itself
is exercised by tests/e2e (real Kamailio, SIPp and ``regulator serve``)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.ops.deploy import DEPLOY, require_binary

CFG = DEPLOY / "kamailio" / "kamailio.cfg"


def kamailio_check(tmp_path: Path, *defines: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("kamailio", "kamailio kamailio-utils-modules", "/usr/sbin")
    args = [binary, "-c", "-f", str(CFG), "-Y", str(tmp_path), "-w", str(tmp_path)]
    for define in defines:
        args += ["-A", define]
    return subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)


def test_config_is_accepted_with_its_defaults(tmp_path: Path) -> None:
    result = kamailio_check(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "config file ok" in output


def test_config_is_accepted_with_overrides(tmp_path: Path) -> None:
    result = kamailio_check(
        tmp_path,
        "SIP_LISTEN=udp:127.0.0.1:25060",
        'REGULATOR_URL="http://127.0.0.1:18080/hooks/kamailio/route"',
        'REGULATION_URI="sip:regulation@127.0.0.1:25061"',
        "HTTP_TIMEOUT_S=2",
        "NO_REPLY_TIMEOUT_MS=1500",
        "RING_TIMEOUT_MS=20000",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "127.0.0.1 [127.0.0.1]:25060" in output


def _text() -> str:
    return CFG.read_text(encoding="utf-8")


def test_routing_request_is_the_documented_json_to_the_route_hook() -> None:
    text = _text()
    assert '"/hooks/kamailio/route"' in text or "/hooks/kamailio/route" in text
    for field in ('"call_id": "', '"from": "', '"to": "', '"source_ip": "'):
        assert field in text
    for variable in ("$ci", "$fU", "$rU", "$si"):
        assert variable in text
    assert "X-Regulator-Secret: " in text
    assert "$env(REGULATOR_KAMAILIO_SECRET)" in text


@pytest.mark.parametrize(
    ("module", "parameter", "value"),
    [
        ("http_client", "query_result", "0"),
        ("http_client", "connection_timeout", "HTTP_TIMEOUT_S"),
        ("tm", "fr_inv_timer", "RING_TIMEOUT_MS"),
    ],
)
def test_module_parameter(module: str, parameter: str, value: str) -> None:
    assert f'modparam("{module}", "{parameter}", {value})' in _text()


def test_relays_with_rtjson_and_fails_over_serially() -> None:
    text = _text()
    for function in (
        "http_client_query(",
        "rtjson_init_routes(",
        "rtjson_push_routes()",
        "rtjson_update_branch()",
        "rtjson_next_route()",
    ):
        assert function in text
    failure = _block(text, "failure_route[REGULATOR_NEXT]")
    assert "route(NEXT_ROUTE);" in failure


def _block(text: str, name: str) -> str:
    """The body of a top-level block such as ``route[FAILSAFE]``."""
    found = re.search(re.escape(name) + r" \{(.*?)\n\}", text, re.S)
    assert found is not None, f"{name} is missing"
    return found.group(1)


def test_a_route_that_cannot_be_relayed_moves_on_to_the_next() -> None:
    # A relay that fails here (DNS, "failure to add branches") must neither answer
    # the caller with tm's error reply nor end the failover.
    text = _text()
    regulator = _block(text, "route[REGULATOR]")
    assert regulator.index("t_set_disable_internal_reply(1);") < regulator.index("t_relay()")
    assert "route(NEXT_ROUTE);" in regulator
    following = _block(text, "route[NEXT_ROUTE]")
    loop = re.search(r"while \(rtjson_next_route\(\)\) \{(.*?)\n\t\}", following, re.S)
    assert loop is not None, following
    assert "if (t_relay()) {" in loop.group(1)
    assert 't_on_failure("REGULATOR_NEXT");' in loop.group(1)
    # Every route failed: the fail-safe.
    assert following.rstrip().endswith("route(FAILSAFE);")


def test_failover_never_uses_the_stateless_error_reply() -> None:
    # route(RELAY) answers sl_reply_error() when t_relay fails: fine in-dialog, a
    # dead end on the routes of a new call.
    text = _text()
    for name in ("route[REGULATOR]", "route[NEXT_ROUTE]", "failure_route[REGULATOR_NEXT]"):
        assert "route(RELAY)" not in _block(text, name), name


def test_failsafe_branch_says_so_and_has_no_failover_of_its_own() -> None:
    text = _text()
    failsafe = _block(text, "route[FAILSAFE]")
    assert 't_on_branch("FAILSAFE_BRANCH");' in failsafe
    # Its failure route only notifies the dial leg: no route past REGULATION_URI.
    assert failsafe.count("t_on_failure(") == 1
    assert 't_on_failure("FAILSAFE_FAILED");' in failsafe
    failed = _block(text, "failure_route[FAILSAFE_FAILED]")
    for relaying in ("t_relay", "route(NEXT_ROUTE)", "route(FAILSAFE)", "rtjson_next_route"):
        assert relaying not in failed
    assert 't_reply("503"' in failsafe
    branch = _block(text, "branch_route[FAILSAFE_BRANCH]")
    assert 'append_hf("X-Regulator-Route: failsafe\\r\\n");' in branch


def test_fails_safe_to_the_regulation_line() -> None:
    text = _text()
    assert "$ru = REGULATION_URI;" in _block(text, "route[FAILSAFE]")
    regulator = _block(text, "route[REGULATOR]")
    assert regulator.count("route(FAILSAFE);") >= 3
    assert "!= 200" in regulator


def _blocks(text: str) -> dict[str, str]:
    """Every top-level block of the script, by its header (``route[LEG_POST]``…)."""
    return {
        match.group(1): match.group(2)
        for match in re.finditer(r"^(\w+(?:\[\w+\])?) \{(.*?)\n\}", text, re.S | re.M)
    }


def test_dial_leg_notifications_are_posted_by_the_timer_process_only() -> None:
    # The SIP workers must never wait on the network for a notification: only the
    # routing request (the call needs its answer) and the timer route may post.
    text = _text()
    posting = {name for name, body in _blocks(text).items() if "http_client_query(" in body}
    assert posting == {"route[REGULATOR]", "route[LEG_POST]"}
    assert 'modparam("rtimer", "exec", "timer=leg_events;route=LEG_POST")' in text
    assert "mode=1;" in text  # a timer process of its own, not the shared timer
    assert 'modparam("mqueue", "mqueue", "name=leg_events;size=10000")' in text
    post = _block(text, "route[LEG_POST]")
    assert 'while (mq_fetch("leg_events"))' in post
    assert "REGULATOR_EVENT_URL" in post and "$env(REGULATOR_KAMAILIO_SECRET)" in post
    assert 'mq_add("leg_events"' in _block(text, "route[LEG_NOTIFY]")


@pytest.mark.parametrize(
    ("block", "event"),
    [
        ("route[LEG_BRANCH]", "offered"),
        ("onreply_route[LEG_REPLY]", "ringing"),
        ("onreply_route[LEG_REPLY]", "answered"),
        ("route[LEG_FAILED]", "failed"),
        ("route[LEG_CANCEL]", "cancel"),
        ("route[LEG_BYE]", "bye"),
    ],
)
def test_each_dial_leg_event_is_notified_with_kamailio_s_time(block: str, event: str) -> None:
    text = _text()
    assert f'$var(leg_event) = "{event}";' in _block(text, block)
    assert "$TV(Sn)" in _block(text, "route[LEG_NOTIFY]")


def test_the_events_reach_the_service_from_every_path_of_a_call() -> None:
    text = _text()
    assert "route(LEG_CANCEL);" in _block(text, "request_route")
    assert "route(LEG_BYE);" in _block(text, "route[WITHINDLG]")
    assert "route(LEG_FAILED);" in _block(text, "failure_route[REGULATOR_NEXT]")
    assert "route(LEG_FAILED);" in _block(text, "failure_route[FAILSAFE_FAILED]")
    for branch in ("branch_route[REGULATOR_BRANCH]", "branch_route[FAILSAFE_BRANCH]"):
        assert "route(LEG_BRANCH);" in _block(text, branch)
