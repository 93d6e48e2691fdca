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
    assert "t_on_failure" not in failsafe
    assert 't_reply("503"' in failsafe
    branch = _block(text, "branch_route[FAILSAFE_BRANCH]")
    assert 'append_hf("X-Regulator-Route: failsafe\\r\\n");' in branch


def test_fails_safe_to_the_regulation_line() -> None:
    text = _text()
    assert "$ru = REGULATION_URI;" in _block(text, "route[FAILSAFE]")
    regulator = _block(text, "route[REGULATOR]")
    assert regulator.count("route(FAILSAFE);") >= 3
    assert "!= 200" in regulator
