"""The real SIP path: SIPp caller → Kamailio (deploy/kamailio/kamailio.cfg) →
``regulator serve`` (/hooks/kamailio/route, rtjson) → SIPp destination.

Each destination (regulation line, front desk, SIP gateway for numbers, and the
fail-safe line Kamailio dials on its own, REGULATION_URI) is a SIPp UAS on its own
loopback port; a call "lands" where the UAS answered. Opening hours are made
deterministic by the test protocols: the open MMGs are open now through a dated
override (now ± 1 h), the closed one has no slot at all.

Three labs differ only by the service's SIP gateway: a SIPp UAS, none configured,
and a host that does not resolve.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.e2e.sip import (
    LOCALHOST,
    Destination,
    Kamailio,
    Landing,
    Service,
    free_port,
    kamailio_binary,
    place_call,
    sipp_binary,
)

pytestmark = pytest.mark.e2e

SECRET = "e2e-kamailio-shared-secret"
TZ = ZoneInfo("Europe/Paris")

OPEN_MMG = "+33466123456"  # open now, front desk with a SIP URI
CLOSED_MMG = "+33466123499"  # never open
GATEWAY_MMG = "+33466123477"  # open now, numbers only, menu defaults to the pharmacy
MIXED_MMG = "+33466123488"  # open now, front desk and regulation with SIP URI and number
UNKNOWN_NUMBER = "+33466999999"  # no protocol: the service's fail-safe

PROFESSIONAL = "+33612345678"
PATIENT = "+33612000001"
FRONT_DESK_NUMBER = "+33466123400"
REGULATION_NUMBER = "+33466000015"
FAILSAFE_NUMBER = "+33466000099"
PHARMACY = "+33466111111"


def _local(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M")


def write_protocols(directory: Path, ports: dict[str, int]) -> None:
    """Three MMGs whose destinations are the loopback SIPp destinations."""
    now = datetime.now(TZ).replace(tzinfo=None, second=0, microsecond=0)
    start, end = _local(now - timedelta(hours=1)), _local(now + timedelta(hours=1))
    regulation_sip = f"sip:regulation@{LOCALHOST}:{ports['regulation']}"
    regulation = f'{{number: "{REGULATION_NUMBER}", sip: "{regulation_sip}"}}'
    closed_week = """
  weekdays: []
  saturday: []
  sunday: []
  holiday: []
  bridge: []"""
    common_routing = f"""
routing:
  when_open: menu
  when_closed: regulation
  menu: {{timeout_s: 6, options: {{"1": regulation, "2": pharmacy}}, default: regulation}}
  direct_access:
    pending_referral: true
    professionals: ["{PROFESSIONAL}"]
    regulation_overflow: null
"""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "e2e-open.yaml").write_text(
        f"""id: e2e-open
name: MMG de test ouverte
timezone: Europe/Paris
calendar: {{country: FR, subdiv: null, bridges: false}}
numbers: ["{OPEN_MMG}"]
opening:{closed_week}
  overrides:
    - {{from: "{start}", to: "{end}", open: true, direct_access: false, reason: Test e2e}}
destinations:
  regulation: {regulation}
  front_desk: {{sip: "sip:desk@{LOCALHOST}:{ports["desk"]}"}}
  pharmacy:
    fallback: "3237"
    roster:
      - {{from: "{start}", to: "{end}", name: Pharmacie de test, number: "+33466222222"}}
{common_routing}""",
        encoding="utf-8",
    )
    (directory / "e2e-closed.yaml").write_text(
        f"""id: e2e-closed
name: MMG de test fermée
timezone: Europe/Paris
calendar: {{country: FR, subdiv: null, bridges: false}}
numbers: ["{CLOSED_MMG}"]
opening:{closed_week}
destinations:
  regulation: {regulation}
  front_desk: {{sip: "sip:desk@{LOCALHOST}:{ports["desk"]}"}}
{common_routing}""",
        encoding="utf-8",
    )
    (directory / "e2e-gateway.yaml").write_text(
        f"""id: e2e-gateway
name: MMG de test joignable par numéro
timezone: Europe/Paris
calendar: {{country: FR, subdiv: null, bridges: false}}
numbers: ["{GATEWAY_MMG}"]
opening:{closed_week}
  overrides:
    - {{from: "{start}", to: "{end}", open: true, direct_access: false, reason: Test e2e}}
destinations:
  regulation: {regulation}
  front_desk: {{number: "{FRONT_DESK_NUMBER}"}}
  pharmacy:
    fallback: "3237"
    roster:
      - {{from: "{start}", to: "{end}", name: Pharmacie de garde de test, number: "{PHARMACY}"}}
{common_routing.replace("default: regulation", "default: pharmacy")}""",
        encoding="utf-8",
    )
    (directory / "e2e-mixed.yaml").write_text(
        f"""id: e2e-mixed
name: MMG de test joignable par SIP et par numéro
timezone: Europe/Paris
calendar: {{country: FR, subdiv: null, bridges: false}}
numbers: ["{MIXED_MMG}"]
opening:{closed_week}
  overrides:
    - {{from: "{start}", to: "{end}", open: true, direct_access: false, reason: Test e2e}}
destinations:
  regulation: {regulation}
  front_desk: {{sip: "sip:desk@{LOCALHOST}:{ports["desk"]}", number: "{FRONT_DESK_NUMBER}"}}
{common_routing}""",
        encoding="utf-8",
    )


@dataclass
class SipLab:
    """The service, Kamailio and four SIPp destinations on loopback."""

    root: Path
    service: Service
    kamailio: Kamailio
    destinations: list[Destination]

    def call(self, caller: str, called: str, *, down: tuple[str, ...] = ()) -> Landing:
        return place_call(
            proxy_port=self.kamailio.port,
            caller=caller,
            called=called,
            destinations=self.destinations,
            workdir=self.root,
            down=down,
        )

    def stop(self) -> None:
        self.kamailio.stop()
        self.service.stop()

    def diagnostics(self) -> str:
        return (
            f"--- kamailio log ---\n{self.kamailio.log()[-4000:]}\n"
            f"--- regulator log ---\n{self.service.log()[-4000:]}"
        )


SIPP_GATEWAY = "sipp"  # start_lab's default: the gateway is the lab's SIPp UAS
UNRESOLVABLE_GATEWAY = "trunk.operator.invalid"


def start_lab(
    root: Path,
    *,
    kamailio_secret: str = SECRET,
    gateway: str | None = SIPP_GATEWAY,
    extra_env: dict[str, str] | None = None,
) -> SipLab:
    """A lab whose service uses ``gateway`` as REGULATOR_SIP_GATEWAY (None: unset),
    and ``extra_env`` (REGULATOR_* settings) on top."""
    kamailio_binary()
    sipp_binary()
    ports = {name: free_port() for name in ("regulation", "desk", "gateway", "failsafe")}
    write_protocols(root / "protocols", ports)
    (root / "var").mkdir(parents=True, exist_ok=True)
    env = {
        "REGULATOR_PROTOCOLS_DIR": str(root / "protocols"),
        "REGULATOR_DATA_DIR": str(root / "var"),
        "REGULATOR_KAMAILIO_SECRET": SECRET,
        "REGULATOR_FAILSAFE_NUMBER": FAILSAFE_NUMBER,
    }
    if gateway == SIPP_GATEWAY:
        env["REGULATOR_SIP_GATEWAY"] = f"{LOCALHOST}:{ports['gateway']}"
    elif gateway is not None:
        env["REGULATOR_SIP_GATEWAY"] = gateway
    env.update(extra_env or {})
    service = Service(workdir=root, env=env)
    service.start()
    kamailio = Kamailio(
        workdir=root / "kamailio",
        service_url=f"{service.base_url}/hooks/kamailio/route",
        # Kamailio's own fail-safe, without the service: in production the regulation
        # centre's long number through the trunk, here a line of its own.
        regulation_uri=f"sip:failsafe@{LOCALHOST}:{ports['failsafe']}",
        secret=kamailio_secret,
    )
    try:
        kamailio.start()
    except BaseException:
        service.stop()
        raise
    destinations = [Destination(name, port, root) for name, port in ports.items()]
    return SipLab(root, service, kamailio, destinations)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SipLab]:
    started = start_lab(tmp_path_factory.mktemp("sip-lab"))
    yield started
    started.stop()


def _assert_landed(lab: SipLab, landing: Landing, name: str, route: str) -> None:
    assert landing.name == name, (
        f"the call landed on {landing.name!r}, expected {name!r}\n{lab.diagnostics()}"
    )
    assert landing.header("X-Regulator-Route") == route, landing.invite


def test_professional_caller_reaches_the_front_desk_of_an_open_mmg(lab: SipLab) -> None:
    landing = lab.call(PROFESSIONAL, OPEN_MMG)

    _assert_landed(lab, landing, "desk", "direct_access")
    line = lab.service.webhook_line(landing.call_id)
    assert line is not None, lab.service.log()[-3000:]
    assert line["platform"] == "kamailio"
    assert line["mmg"] == "e2e-open"
    assert line["route"] == "direct_access"
    assert line["ground"] == "professional"


def test_caller_numbers_are_masked_in_the_service_logs(lab: SipLab) -> None:
    landing = lab.call(PROFESSIONAL, OPEN_MMG)

    line = lab.service.webhook_line(landing.call_id)
    assert line is not None
    assert PROFESSIONAL not in lab.service.log()
    assert "••" in str(line["caller"])


def test_ordinary_caller_of_a_closed_mmg_reaches_regulation(lab: SipLab) -> None:
    landing = lab.call(PATIENT, CLOSED_MMG)

    _assert_landed(lab, landing, "regulation", "regulation")
    line = lab.service.webhook_line(landing.call_id)
    assert line is not None
    assert (line["mmg"], line["route"]) == ("e2e-closed", "regulation")


def test_professional_caller_of_a_closed_mmg_still_reaches_regulation(lab: SipLab) -> None:
    landing = lab.call(PROFESSIONAL, CLOSED_MMG)

    _assert_landed(lab, landing, "regulation", "regulation")


def test_ordinary_caller_of_an_open_mmg_is_regulated_not_put_through(lab: SipLab) -> None:
    # Kamailio cannot play the voice menu: the call goes to regulation.
    landing = lab.call(PATIENT, OPEN_MMG)

    _assert_landed(lab, landing, "regulation", "regulation")


def test_front_desk_known_only_by_number_is_dialled_through_the_sip_gateway(
    lab: SipLab,
) -> None:
    landing = lab.call(PROFESSIONAL, GATEWAY_MMG)

    _assert_landed(lab, landing, "gateway", "direct_access")
    assert landing.request_user == FRONT_DESK_NUMBER


def test_pharmacy_on_duty_is_dialled_through_the_sip_gateway(lab: SipLab) -> None:
    # No voice menu through Kamailio: the menu's default choice applies, here the
    # pharmacy on duty from the protocol's roster.
    landing = lab.call(PATIENT, GATEWAY_MMG)

    _assert_landed(lab, landing, "gateway", "pharmacy")
    assert landing.request_user == PHARMACY
    line = lab.service.webhook_line(landing.call_id)
    assert line is not None
    assert (line["mmg"], line["route"]) == ("e2e-gateway", "pharmacy")


def test_unknown_called_number_reaches_the_failsafe_number_through_the_gateway(
    lab: SipLab,
) -> None:
    landing = lab.call(PATIENT, UNKNOWN_NUMBER)

    _assert_landed(lab, landing, "gateway", "regulation")
    assert landing.request_user == FAILSAFE_NUMBER
    line = lab.service.webhook_line(landing.call_id)
    assert line is not None
    assert line["failsafe"] is True


def test_unreachable_front_desk_fails_over_to_the_regulation_line(lab: SipLab) -> None:
    landing = lab.call(PROFESSIONAL, OPEN_MMG, down=("desk",))

    _assert_landed(lab, landing, "regulation", "regulation")


def test_call_still_reaches_regulation_when_the_service_is_stopped(tmp_path: Path) -> None:
    own = start_lab(tmp_path)
    try:
        assert own.call(PROFESSIONAL, OPEN_MMG).name == "desk", own.diagnostics()

        own.service.stop()
        landing = own.call(PROFESSIONAL, OPEN_MMG)

        _assert_landed(own, landing, "failsafe", "failsafe")
    finally:
        own.stop()


def test_call_reaches_regulation_when_the_service_rejects_kamailio(tmp_path: Path) -> None:
    own = start_lab(tmp_path, kamailio_secret="not-the-shared-secret")
    try:
        landing = own.call(PROFESSIONAL, OPEN_MMG)

        _assert_landed(own, landing, "failsafe", "failsafe")
        assert any(
            event.get("event") == "webhook_signature_rejected" for event in own.service.log_events()
        ), own.service.log()[-3000:]
    finally:
        own.stop()


# ------------------------------------------------- failover that cannot dead-end


@pytest.fixture(scope="module")
def lab_without_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SipLab]:
    started = start_lab(tmp_path_factory.mktemp("sip-lab-no-gateway"), gateway=None)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def lab_with_unresolvable_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SipLab]:
    started = start_lab(
        tmp_path_factory.mktemp("sip-lab-bad-gateway"), gateway=UNRESOLVABLE_GATEWAY
    )
    yield started
    started.stop()


def test_unanswered_front_desk_without_a_gateway_fails_over_to_regulation(
    lab_without_gateway: SipLab,
) -> None:
    # The front desk and the regulation line have a SIP URI and a number; with no
    # gateway configured, the numbers must not become routes that cannot be relayed.
    landing = lab_without_gateway.call(PROFESSIONAL, MIXED_MMG, down=("desk",))

    _assert_landed(lab_without_gateway, landing, "regulation", "regulation")
    line = lab_without_gateway.service.webhook_line(landing.call_id)
    assert line is not None
    assert (line["mmg"], line["route"]) == ("e2e-mixed", "direct_access")
    # Every route the service gave was one Kamailio could relay.
    assert "could not be relayed" not in lab_without_gateway.kamailio.log(), (
        lab_without_gateway.diagnostics()
    )


def test_front_desk_behind_a_gateway_that_does_not_resolve_fails_over_to_regulation(
    lab_with_unresolvable_gateway: SipLab,
) -> None:
    lab = lab_with_unresolvable_gateway
    landing = lab.call(PROFESSIONAL, GATEWAY_MMG)

    _assert_landed(lab, landing, "regulation", "regulation")


def test_unanswered_front_desk_then_a_gateway_that_does_not_resolve_reaches_regulation(
    lab_with_unresolvable_gateway: SipLab,
) -> None:
    lab = lab_with_unresolvable_gateway
    landing = lab.call(PROFESSIONAL, MIXED_MMG, down=("desk",))

    _assert_landed(lab, landing, "regulation", "regulation")


def test_failsafe_number_behind_a_gateway_that_does_not_resolve_reaches_the_failsafe_uri(
    lab_with_unresolvable_gateway: SipLab,
) -> None:
    lab = lab_with_unresolvable_gateway
    landing = lab.call(PATIENT, UNKNOWN_NUMBER)

    _assert_landed(lab, landing, "failsafe", "failsafe")


def test_regulation_line_down_reaches_the_failsafe_uri(lab_without_gateway: SipLab) -> None:
    landing = lab_without_gateway.call(PATIENT, CLOSED_MMG, down=("regulation",))

    _assert_landed(lab_without_gateway, landing, "failsafe", "failsafe")


def test_front_desk_and_regulation_line_down_reach_the_failsafe_uri(
    lab_without_gateway: SipLab,
) -> None:
    landing = lab_without_gateway.call(PROFESSIONAL, MIXED_MMG, down=("desk", "regulation"))

    _assert_landed(lab_without_gateway, landing, "failsafe", "failsafe")


def test_regulation_line_and_gateway_down_reach_the_failsafe_uri(lab: SipLab) -> None:
    # With a working gateway configuration the regulation line is tried by SIP URI,
    # then by number through the gateway; both down, Kamailio's own fail-safe remains.
    landing = lab.call(PATIENT, CLOSED_MMG, down=("regulation", "gateway"))

    _assert_landed(lab, landing, "failsafe", "failsafe")
