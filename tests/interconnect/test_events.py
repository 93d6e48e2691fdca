"""Outbox events (ids, payloads, numbers) and the targets file."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from regulator.core.models import ReferralStatus, Route
from regulator.interconnect.events import (
    HubSanteTarget,
    OutboxEvent,
    TargetsError,
    WebhookTarget,
    call_event,
    load_targets,
    parse_targets,
    payload_for,
    referral_event,
    targets_for,
)
from tests.interconnect.helpers import CALLBACK, CALLER, call_record, referral

ENV = {"SAMU30_WEBHOOK_SECRET": "x", "HUBSANTE_AMQP_URL": "amqp://localhost/"}

DESIGN_EXAMPLE = """
- {name: samu30-lrm, kind: webhook, url: "https://lrm.samu30.example/regulator",
   secret_env: SAMU30_WEBHOOK_SECRET, mmgs: [nimes]}
- {name: hub, kind: hubsante, amqp_url_env: HUBSANTE_AMQP_URL, client_id: fr.health.test.regulator,
   recipient: fr.health.samu030, mmgs: [nimes]}   # the vhost is in the AMQP URL
"""


def test_call_event_masks_the_caller_and_keeps_the_full_number_apart() -> None:
    event = call_event(call_record(1))
    assert event.kind == "call.routed"
    assert event.mmg == "nimes"
    assert event.payload["caller"] == "+33 6 •• •• •• 42"
    assert event.payload["caller_e164"] == CALLER
    assert event.payload["route"] == "regulation"
    assert event.payload["rule"]
    assert event.occurred_at.utcoffset() is not None
    assert CALLER not in str(payload_for(event, full_numbers=False, include_caller=False))
    assert payload_for(event, full_numbers=False, include_caller=True)["caller_e164"] == CALLER


WEBHOOK = {"kind": "webhook", "url": "https://lrm.example/", "secret_env": "S", "mmgs": ["nimes"]}
HUB = {
    "kind": "hubsante",
    "amqp_url_env": "U",
    "client_id": "fr.health.test.regulator",
    "recipient": "fr.health.samu030",
    "mmgs": ["nimes"],
}


def test_callers_number_reaches_only_the_targets_that_opt_in() -> None:
    plain, full, opted, hub, hub_opted = parse_targets(
        [
            {"name": "plain", **WEBHOOK},
            {"name": "full", "full_numbers": True, **WEBHOOK},
            {"name": "opted", "include_caller": True, **WEBHOOK},
            {"name": "hub", **HUB},
            {"name": "hub-opted", "include_caller": True, **HUB},
        ]
    )
    event = call_event(call_record(1))
    assert event.payload["caller_e164"] == CALLER  # the event itself has it
    for target in (plain, full, hub):
        assert target.include_caller is False
        assert "caller_e164" not in target.payload(event), target.name
        assert CALLER not in str(target.document(event)), target.name
        assert target.payload(event)["caller"] == "+33 6 •• •• •• 42"
    for target in (opted, hub_opted):
        assert target.payload(event)["caller_e164"] == CALLER, target.name
        assert target.document(event)["payload"]["caller_e164"] == CALLER, target.name


def test_include_caller_leaves_referral_callback_numbers_to_full_numbers() -> None:
    opted, full = parse_targets(
        [
            {"name": "opted", "include_caller": True, **WEBHOOK},
            {"name": "full", "full_numbers": True, **WEBHOOK},
        ]
    )
    created = referral_event(referral(1))
    assert "callback_number_e164" not in opted.payload(created)
    assert full.payload(created)["callback_number_e164"] == CALLBACK


def test_outbox_keeps_only_the_numbers_a_receiver_may_see() -> None:
    plain, full, opted = parse_targets(
        [
            {"name": "plain", **WEBHOOK},
            {"name": "full", "full_numbers": True, **WEBHOOK},
            {"name": "opted", "include_caller": True, **WEBHOOK},
        ]
    )
    event = call_event(call_record(1))
    assert "caller_e164" not in event.numbers_for([plain, full]).payload
    assert event.numbers_for([plain, opted]).payload["caller_e164"] == CALLER
    assert event.numbers_for([full, opted]) == event
    again = OutboxEvent.from_json(event.numbers_for([plain]).as_json())
    assert CALLER not in str(again.as_json())


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"include_caller": "yes"}, r"targets\[0\] \(a\)\.include_caller: value 'yes'"),
        ({"include_caller": 1}, r"targets\[0\] \(a\)\.include_caller: value 1"),
        (
            {"include_caller": True, "events": ["referral.*"]},
            "include_caller is true but the target receives no call.* event",
        ),
    ],
)
def test_include_caller_is_validated_at_load(extra: dict[str, object], expected: str) -> None:
    with pytest.raises(TargetsError, match=expected):
        parse_targets([{"name": "a", **WEBHOOK, **extra}], "targets.yaml")


def test_same_call_recorded_twice_gives_the_same_event_id() -> None:
    assert call_event(call_record(1)).event_id == call_event(call_record(1)).event_id
    assert call_event(call_record(1)).event_id != call_event(call_record(2)).event_id


def test_a_new_route_for_the_same_call_is_a_new_event() -> None:
    menu = call_event(call_record(1, route=Route.MENU))
    regulation = call_event(call_record(1, route=Route.REGULATION))
    assert menu.event_id != regulation.event_id


def test_finished_call_is_a_completed_event() -> None:
    from dataclasses import replace

    record = replace(call_record(1), status="completed", duration_s=42)
    event = call_event(record)
    assert event.kind == "call.completed"
    assert event.payload["duration_s"] == 42


def test_referral_events_follow_status_and_version() -> None:
    created = referral_event(referral(1))
    arrived = referral_event(referral(1, ReferralStatus.ARRIVED, version=3))
    assert created.kind == "referral.created"
    assert arrived.kind == "referral.arrived"
    assert created.event_id != arrived.event_id
    assert referral_event(referral(1)).event_id == created.event_id
    assert created.payload["callback_number"] == "+33 6 •• •• •• 44"
    assert created.payload["callback_number_e164"] == CALLBACK
    assert created.payload["patient"] == {"display_name": "M. D.", "age_band": "18-64"}
    assert arrived.payload["by"] == "accueil-nimes"


def test_event_json_round_trip() -> None:
    event = referral_event(referral(1, ReferralStatus.COMPLETED, version=4))
    again = OutboxEvent.from_json(event.as_json())
    assert again == event


def test_wrong_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not a referral event kind"):
        referral_event(referral(1), "call.routed")


def test_design_example_targets_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    webhook, hub = load_targets(path, ENV)
    assert isinstance(webhook, WebhookTarget)
    assert str(webhook.url) == "https://lrm.samu30.example/regulator"
    assert webhook.full_numbers is False
    assert webhook.secret(ENV) == "x"
    assert isinstance(hub, HubSanteTarget)
    assert hub.exchange == "hubsante"
    assert hub.distribution_status == "Actual"
    assert hub.amqp_url(ENV) == "amqp://localhost/"


def test_missing_secret_env_is_named(tmp_path: Path) -> None:
    path = tmp_path / "targets.yaml"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    with pytest.raises(TargetsError, match="SAMU30_WEBHOOK_SECRET"):
        load_targets(path, {"HUBSANTE_AMQP_URL": "amqp://x/"})
    assert len(load_targets(path, {}, check_env=False)) == 2


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            {"name": "a", "kind": "webhook", "url": "ftp://x", "secret_env": "S", "mmgs": ["n"]},
            r"targets\[0\] \(a\)\.url: value 'ftp://x'",
        ),
        (
            {"name": "a", "kind": "smtp", "mmgs": ["n"]},
            r"targets\[0\] \(a\)\.kind: value 'smtp'",
        ),
        (
            {"name": "a", "kind": "webhook", "url": "https://x", "mmgs": ["n"]},
            r"targets\[0\] \(a\)\.secret_env: missing",
        ),
        (
            {
                "name": "h",
                "kind": "hubsante",
                "amqp_url_env": "U",
                "client_id": "fr.health.x",
                "recipient": "samu030",
                "mmgs": ["n"],
            },
            r"targets\[0\] \(h\)\.recipient: value 'samu030'",
        ),
        (
            {
                "name": "h",
                "kind": "hubsante",
                "amqp_url_env": "U",
                "client_id": "fr.health.x",
                "recipient": "fr.health.samu030",
                "mmgs": ["n"],
                "distribution_status": "Test",
            },
            r"\.distribution_status: value 'Test'",
        ),
        (
            {
                "name": "a",
                "kind": "webhook",
                "url": "https://x",
                "secret_env": "S",
                "mmgs": ["n"],
                "concurrency": 0,
            },
            r"\.concurrency: value 0",
        ),
        (
            {
                "name": "a",
                "kind": "webhook",
                "url": "https://x",
                "secret_env": "S",
                "mmgs": ["n"],
                "events": ["visit.*"],
            },
            r"\.events\.0: value 'visit\.\*' — matches no event kind",
        ),
    ],
)
def test_invalid_target_error_names_field_and_value(entry: object, expected: str) -> None:
    with pytest.raises(TargetsError, match=expected):
        parse_targets([entry], "targets.yaml")


def test_duplicate_target_names_are_refused() -> None:
    entry = {"name": "a", "kind": "webhook", "url": "https://x", "secret_env": "S", "mmgs": ["n"]}
    with pytest.raises(TargetsError, match="duplicate target name"):
        parse_targets([entry, entry])


def test_targets_filter_by_mmg_and_kind() -> None:
    common = {"kind": "webhook", "url": "https://x", "secret_env": "S"}
    targets = parse_targets(
        [
            {"name": "nimes-all", "mmgs": ["nimes"], **common},
            {"name": "metz", "mmgs": ["metz"], **common},
            {"name": "everyone-referrals", "mmgs": ["*"], "events": ["referral.*"], **common},
        ]
    )
    call = call_event(call_record(1))
    ref = referral_event(referral(1))
    assert [t.name for t in targets_for(call, targets)] == ["nimes-all"]
    assert [t.name for t in targets_for(ref, targets)] == ["nimes-all", "everyone-referrals"]


def test_readme_targets_example_loads() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Centre 15 targets", 1)[1]
    block = section.split("```yaml", 1)[1].split("```", 1)[0]
    webhook, hub = parse_targets(yaml.safe_load(block), "README.md")
    assert webhook.include_caller is True
    assert hub.include_caller is False
