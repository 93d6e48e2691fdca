"""Whose budget a request spends (issue 18, point 1): the client address behind trusted
proxies only, and a clear start-up error for a bad REGULATOR_TRUSTED_PROXIES."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest.mock import Mock

import pytest
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict
from pydantic import ValidationError

from regulator.settings import Settings
from regulator.web.limits import client_address

TRUSTED = Settings(trusted_proxies="127.0.0.1/32, 10.0.0.0/8, fd00::/8").trusted_networks()


def request_from(peer: str, *forwarded: str) -> object:
    transport = Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (peer, 443) if name == "peername" else default
    )
    headers = CIMultiDict(("X-Forwarded-For", value) for value in forwarded)
    return make_mocked_request("GET", "/console/login", headers=headers, transport=transport)


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        # No trusted proxy configured: the header is never read.
        ("127.0.0.1", ("203.0.113.7",), (), "127.0.0.1"),
        # A peer that is not our proxy cannot choose its address.
        ("198.51.100.9", ("203.0.113.7",), TRUSTED, "198.51.100.9"),
        # Rightmost hop that is not a trusted proxy; what the client wrote is left of it.
        ("127.0.0.1", ("6.6.6.6, 203.0.113.7",), TRUSTED, "203.0.113.7"),
        ("127.0.0.1", ("6.6.6.6, 203.0.113.7, 10.1.2.3",), TRUSTED, "203.0.113.7"),
        # Several headers are one list, in order.
        ("127.0.0.1", ("6.6.6.6", "203.0.113.7, 10.1.2.3"), TRUSTED, "203.0.113.7"),
        ("fd00::1", ("2001:db8::7",), TRUSTED, "2001:db8::7"),
        # A hop that is no address was not written by our proxy: trust nothing left of it.
        ("127.0.0.1", ("203.0.113.7, junk",), TRUSTED, "127.0.0.1"),
        ("127.0.0.1", ("203.0.113.7, junk, 10.1.2.3",), TRUSTED, "10.1.2.3"),
        # Only proxies on the way (a probe from inside): the leftmost.
        ("127.0.0.1", ("10.9.9.9, 10.1.2.3",), TRUSTED, "10.9.9.9"),
        ("127.0.0.1", (), TRUSTED, "127.0.0.1"),
    ],
)
def test_the_client_address_is_read_from_x_forwarded_for_only_behind_a_trusted_proxy(
    peer: str, forwarded: tuple[str, ...], trusted: tuple[object, ...], expected: str
) -> None:
    found = client_address(request_from(peer, *forwarded), trusted)  # type: ignore[arg-type]
    print(f"peer {peer}, X-Forwarded-For {list(forwarded)}: {found}")
    assert found == expected


def test_a_bad_trusted_proxies_value_is_refused_naming_it() -> None:
    with pytest.raises(ValidationError) as info:
        Settings(trusted_proxies="127.0.0.1/32, 10.0.0.0/33")
    assert "10.0.0.0/33" in str(info.value)
    assert "REGULATOR_TRUSTED_PROXIES" in str(info.value)


def test_serve_stops_with_a_clear_error_on_a_bad_trusted_proxies_value(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGULATOR_")} | {
        "REGULATOR_TRUSTED_PROXIES": "10.0.0.0/33",
        "REGULATOR_DATA_DIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-m", "regulator", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    print(f"exit {done.returncode}: {done.stderr.strip()}")
    assert done.returncode != 0
    assert "REGULATOR_TRUSTED_PROXIES" in done.stderr and "10.0.0.0/33" in done.stderr
    assert "Traceback" not in done.stderr
