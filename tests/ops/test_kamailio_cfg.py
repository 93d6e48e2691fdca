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
    failure = re.search(r"failure_route\[REGULATOR_NEXT\] \{(.*?)\n\}", text, re.S)
    assert failure is not None
    assert "rtjson_next_route()" in failure.group(1)


def test_fails_safe_to_the_regulation_line() -> None:
    text = _text()
    failsafe = re.search(r"route\[FAILSAFE\] \{(.*?)\n\}", text, re.S)
    assert failsafe is not None
    assert "$ru = REGULATION_URI;" in failsafe.group(1)
    regulator = re.search(r"route\[REGULATOR\] \{(.*?)\n\}", text, re.S)
    assert regulator is not None
    assert regulator.group(1).count("route(FAILSAFE);") >= 3
    assert "!= 200" in regulator.group(1)
