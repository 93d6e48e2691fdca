"""deploy/kamailio/kamailio.cfg on its own, in front of a scripted stand-in for the
service: the routing request it sends, rtjson relaying, and its fail-safe to the
regulation line whatever the service does (error status, garbage, no route, too
slow). Real Kamailio, real SIPp; the stand-in only replaces ``regulator serve``.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.e2e.sip import (
    LOCALHOST,
    Destination,
    Kamailio,
    Landing,
    free_port,
    invite_final_status,
    kamailio_binary,
    place_call,
    sipp_binary,
)

pytestmark = pytest.mark.e2e

SECRET = "stand-in-secret"
CALLER = "+33612000001"
CALLED = "+33466123456"


@dataclass
class Script:
    """What the stand-in answers next, and what it received: routing requests in
    ``requests``, dial-leg notifications (``…/event``, answered 204 after
    ``event_delay_s``) in ``events``."""

    status: int = 200
    body: bytes = b""
    delay_s: float = 0.0
    event_delay_s: float = 0.0
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    events: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _StandIn

    def do_POST(self) -> None:
        script = self.server.script
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        if self.path.endswith("/event"):
            script.events.append((headers, body))
            time.sleep(script.event_delay_s)
            with contextlib.suppress(OSError):
                self.send_response(204)
                self.end_headers()
            return
        script.requests.append((headers, body))
        if script.delay_s:
            time.sleep(script.delay_s)
        with contextlib.suppress(OSError):
            self.send_response(script.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(script.body)))
            self.end_headers()
            self.wfile.write(script.body)

    def log_message(self, format: str, *args: object) -> None:
        del format, args


class _StandIn(ThreadingHTTPServer):
    daemon_threads = True
    script: Script


def rtjson(*uris_and_routes: tuple[str, str]) -> bytes:
    routes = [
        {"uri": uri, "headers": {"extra": f"X-Regulator-Route: {route}\r\n"}}
        for uri, route in uris_and_routes
    ]
    targets = "|".join(route for _, route in uris_and_routes)
    document = {"version": "1.0", "routing": "serial", "routes": routes, "targets": targets}
    return json.dumps(document).encode()


@dataclass
class Bench:
    root: Path
    server: _StandIn
    kamailio: Kamailio
    regulation: Destination
    desk: Destination

    @property
    def script(self) -> Script:
        return self.server.script

    def answer(self, status: int, body: bytes, delay_s: float = 0.0) -> None:
        self.server.script = Script(status=status, body=body, delay_s=delay_s)

    def decision(self) -> bytes:
        """The service's usual answer: front desk first, regulation line last."""
        return rtjson(
            (f"sip:desk@{LOCALHOST}:{self.desk.port}", "direct_access"),
            (f"sip:regulation@{LOCALHOST}:{self.regulation.port}", "regulation"),
        )

    def call(self, *, desk_refuses: int | None = None, down: tuple[str, ...] = ()) -> Landing:
        desk = self.desk
        if desk_refuses is not None:
            desk = Destination(desk.name, desk.port, desk.workdir, refuse=desk_refuses)
        return place_call(
            proxy_port=self.kamailio.port,
            caller=CALLER,
            called=CALLED,
            destinations=[self.regulation, desk],
            workdir=self.root,
            down=down,
        )


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bench]:
    kamailio_binary()
    sipp_binary()
    root = tmp_path_factory.mktemp("kamailio-bench")
    server = _StandIn((LOCALHOST, 0), _Handler)
    server.script = Script()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    regulation = Destination("regulation", free_port(), root)
    desk = Destination("desk", free_port(), root)
    kamailio = Kamailio(
        workdir=root / "kamailio",
        service_url=f"http://{LOCALHOST}:{server.server_address[1]}/hooks/kamailio/route",
        regulation_uri=f"sip:regulation@{LOCALHOST}:{regulation.port}",
        secret=SECRET,
    )
    kamailio.start()
    try:
        yield Bench(root, server, kamailio, regulation, desk)
    finally:
        kamailio.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_routing_request_is_the_documented_json_with_the_shared_secret(bench: Bench) -> None:
    bench.answer(200, bench.decision())

    landing = bench.call()

    assert len(bench.script.requests) == 1
    headers, body = bench.script.requests[0]
    assert headers["x-regulator-secret"] == SECRET
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {
        "call_id": landing.call_id,
        "from": CALLER,
        "to": CALLED,
        "source_ip": LOCALHOST,
    }


def test_first_route_of_the_document_is_dialled_with_its_headers(bench: Bench) -> None:
    bench.answer(200, bench.decision())

    landing = bench.call()

    assert landing.name == "desk", bench.kamailio.log()[-3000:]
    assert landing.header("X-Regulator-Route") == "direct_access"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        pytest.param(503, b'{"error": "unavailable"}', id="server-error"),
        pytest.param(403, b"", id="secret-rejected"),
        pytest.param(404, b"", id="hook-disabled"),
        pytest.param(200, b"<html>proxy error page</html>", id="not-json"),
        pytest.param(200, b'{"version": "1.0", "routing": "serial", "routes": []}', id="no-route"),
    ],
)
def test_unusable_answer_falls_back_to_the_regulation_line(
    bench: Bench, status: int, body: bytes
) -> None:
    bench.answer(status, body)

    landing = bench.call()

    assert landing.name == "regulation", bench.kamailio.log()[-3000:]
    assert landing.header("X-Regulator-Route") == "failsafe"


def test_service_slower_than_the_http_budget_falls_back_to_the_regulation_line(
    bench: Bench,
) -> None:
    bench.answer(200, bench.decision(), delay_s=3.0)

    started = time.monotonic()
    landing = bench.call()

    assert landing.name == "regulation", bench.kamailio.log()[-3000:]
    assert landing.header("X-Regulator-Route") == "failsafe"
    # HTTP_TIMEOUT_S is 1 s: the caller did not wait for the slow answer.
    assert time.monotonic() - started < 3.0


# ------------------------------------------------------- dial-leg notifications


def _notifications(
    bench: Bench, count: int, timeout_s: float, calls: tuple[str, ...] = ("",)
) -> list[dict[str, object]]:
    """The notifications about calls whose Call-ID starts with one of ``calls``, once
    ``count`` of them came (notifications of earlier tests' calls may still arrive:
    the timer process posts them one after the other)."""

    def own() -> list[dict[str, object]]:
        received = [json.loads(body) for _, body in list(bench.script.events)]
        return [n for n in received if str(n["call_id"]).startswith(calls)]

    deadline = time.monotonic() + timeout_s
    while len(own()) < count and time.monotonic() < deadline:
        time.sleep(0.1)
    for headers, _ in bench.script.events:
        assert headers["x-regulator-secret"] == SECRET
        assert headers["content-type"] == "application/json"
    return own()


def test_dial_leg_notifications_never_delay_a_call(bench: Bench) -> None:
    # The service takes 3 s to take each notification, past Kamailio's 1 s HTTP
    # budget: the timer process that posts them waits, the calls do not.
    bench.answer(200, bench.decision())
    bench.script.event_delay_s = 3.0

    started = time.monotonic()
    first = bench.call()
    second = bench.call()
    took = time.monotonic() - started

    assert (first.name, second.name) == ("desk", "desk"), bench.kamailio.log()[-3000:]
    assert took < 3.0, took  # four notifications per call were waiting meanwhile
    notified = _notifications(bench, 8, timeout_s=30, calls=(first.call_id, second.call_id))
    for landing in (first, second):
        own = [n for n in notified if n["call_id"] == landing.call_id]
        assert [(n["event"], n.get("code")) for n in own] == [
            ("offered", None),
            ("ringing", 180),
            ("answered", 200),
            ("bye", None),
        ], notified
        assert {n["target"] for n in own} == {"direct_access"}
        assert {n["timeout"] for n in own} == {False}
        times = [float(str(n["at"])) for n in own]
        assert times == sorted(times)
        assert all(re.fullmatch(r"[0-9]{10}\.[0-9]{6}", str(n["at"])) for n in own)


def test_a_refused_route_is_notified_with_its_sip_code(bench: Bench) -> None:
    bench.answer(200, bench.decision())

    landing = bench.call(desk_refuses=486)

    assert landing.name == "regulation"
    notified = [
        (n["target"], n["event"], n.get("code"))
        for n in _notifications(bench, 6, timeout_s=10, calls=(landing.call_id,))
    ]
    assert notified == [
        ("direct_access", "offered", None),
        ("direct_access", "failed", 486),
        ("regulation", "offered", None),
        ("regulation", "ringing", 180),
        ("regulation", "answered", 200),
        ("regulation", "bye", None),
    ]


def test_a_route_that_cannot_be_sent_is_notified_as_not_reached(bench: Bench) -> None:
    # tm runs no failure route for a branch it could not send (a host that does
    # not resolve): the script reports it itself, as tm's own 478, nothing replied.
    bench.answer(
        200,
        rtjson(
            ("sip:+33466123400@gateway.invalid", "direct_access"),
            (f"sip:regulation@{LOCALHOST}:{bench.regulation.port}", "regulation"),
        ),
    )

    landing = bench.call()

    assert landing.name == "regulation"
    notified = [
        (n["target"], n["event"], n.get("code"), n["replied"])
        for n in _notifications(bench, 3, timeout_s=10, calls=(landing.call_id,))
    ]
    assert notified[:3] == [
        ("direct_access", "offered", None, True),
        ("direct_access", "failed", 478, False),
        ("regulation", "offered", None, True),
    ], notified


def test_the_failsafe_line_s_own_refusal_is_notified_and_reaches_the_caller(
    bench: Bench,
) -> None:
    bench.answer(503, b"")  # the service fails: REGULATION_URI, which refuses
    line = Destination("regulation", bench.regulation.port, bench.root, refuse=603)
    line.start()
    try:
        status = invite_final_status(bench.kamailio.port, CALLER, CALLED)
    finally:
        line.stop()

    assert status == 603
    notified = [
        (n["target"], n["event"], n.get("code"))
        for n in _notifications(bench, 2, timeout_s=10, calls=("e2e-final-",))
    ]
    assert notified == [("regulation", "offered", None), ("regulation", "failed", 603)]


# ------------------------------------------------------------------ failover
# Whatever makes a route fail, the next one is tried; when every route has failed,
# REGULATION_URI. A route that fails locally (a host that does not resolve: tm's
# "failure to add branches") must not end the failover either.

UNRESOLVABLE = "sip:+33466123400@gateway.invalid"


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(486, id="4xx-busy"),
        pytest.param(404, id="4xx-not-found"),
        pytest.param(503, id="5xx-unavailable"),
        pytest.param(603, id="6xx-decline"),
    ],
)
def test_route_refused_with_any_final_reply_moves_on_to_the_next(bench: Bench, code: int) -> None:
    bench.answer(200, bench.decision())

    landing = bench.call(desk_refuses=code)

    assert landing.name == "regulation", bench.kamailio.log()[-3000:]
    assert landing.header("X-Regulator-Route") == "regulation"


def test_route_that_does_not_answer_moves_on_to_the_next(bench: Bench) -> None:
    bench.answer(200, bench.decision())

    landing = bench.call(down=("desk",))

    assert landing.name == "regulation", bench.kamailio.log()[-3000:]
    assert landing.header("X-Regulator-Route") == "regulation"


def test_first_route_that_does_not_resolve_moves_on_to_the_next(bench: Bench) -> None:
    bench.answer(
        200,
        rtjson(
            (UNRESOLVABLE, "direct_access"),
            (f"sip:regulation@{LOCALHOST}:{bench.regulation.port}", "regulation"),
        ),
    )

    landing = bench.call()

    assert landing.name == "regulation", bench.kamailio.log()[-3000:]
    assert landing.header("X-Regulator-Route") == "regulation"


def test_route_that_does_not_resolve_after_a_failed_one_moves_on_to_the_next(
    bench: Bench,
) -> None:
    bench.answer(
        200,
        rtjson(
            (f"sip:desk@{LOCALHOST}:{bench.desk.port}", "direct_access"),
            (UNRESOLVABLE, "direct_access"),
            ("sip:+33466123400@other-gateway.invalid", "direct_access"),
            (f"sip:regulation@{LOCALHOST}:{bench.regulation.port}", "regulation"),
        ),
    )

    landing = bench.call(desk_refuses=480)

    assert landing.name == "regulation", bench.kamailio.log()[-3000:]
    assert landing.header("X-Regulator-Route") == "regulation"


def test_when_every_route_has_failed_the_call_goes_to_the_regulation_uri(bench: Bench) -> None:
    bench.answer(
        200,
        rtjson(
            (f"sip:desk@{LOCALHOST}:{bench.desk.port}", "direct_access"),
            ("sip:+33466000015@gateway.invalid", "regulation"),
        ),
    )

    landing = bench.call(desk_refuses=503)

    assert landing.name == "regulation", bench.kamailio.log()[-3000:]
    assert landing.header("X-Regulator-Route") == "failsafe"


def test_when_no_route_resolves_the_call_goes_to_the_regulation_uri(bench: Bench) -> None:
    bench.answer(200, rtjson((UNRESOLVABLE, "direct_access"), (UNRESOLVABLE, "regulation")))

    landing = bench.call()

    assert landing.name == "regulation", bench.kamailio.log()[-3000:]
    assert landing.header("X-Regulator-Route") == "failsafe"


@pytest.fixture(scope="module")
def bench_with_unroutable_failsafe(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Bench]:
    """The bench, but REGULATION_URI is the config's default placeholder, which does
    not resolve (a deployment that forgot to set it)."""
    kamailio_binary()
    sipp_binary()
    root = tmp_path_factory.mktemp("kamailio-bench-unroutable")
    server = _StandIn((LOCALHOST, 0), _Handler)
    server.script = Script()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    regulation = Destination("regulation", free_port(), root)
    desk = Destination("desk", free_port(), root)
    kamailio = Kamailio(
        workdir=root / "kamailio",
        service_url=f"http://{LOCALHOST}:{server.server_address[1]}/hooks/kamailio/route",
        regulation_uri="sip:+33466000015@trunk.invalid",
        secret=SECRET,
    )
    kamailio.start()
    try:
        yield Bench(root, server, kamailio, regulation, desk)
    finally:
        kamailio.stop()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize(
    "where",
    [
        pytest.param("request", id="no-route-resolves"),
        pytest.param("failure", id="after-a-failed-route"),
    ],
)
def test_unroutable_regulation_uri_gives_the_caller_a_final_error_not_silence(
    bench_with_unroutable_failsafe: Bench, where: str
) -> None:
    # Nothing is left to try: the caller must hear a final reply at once, not wait.
    bench = bench_with_unroutable_failsafe
    if where == "request":
        bench.answer(200, rtjson((UNRESOLVABLE, "direct_access")))
    else:
        desk = f"sip:desk@{LOCALHOST}:{free_port()}"  # nobody listens: 408 after 1.5 s
        bench.answer(200, rtjson((desk, "direct_access"), (UNRESOLVABLE, "regulation")))

    started = time.monotonic()
    status = invite_final_status(bench.kamailio.port, CALLER, CALLED)

    assert status == 503, bench.kamailio.log()[-3000:]
    assert time.monotonic() - started < 5.0
