"""What the regulation centres are told, and where: outbox events and target configuration.

Every routed call and every referral event becomes one :class:`OutboxEvent`,
written to the durable outbox and pushed to each configured target (a signed
webhook or Hub Santé) whose ``mmgs`` cover the event's MMG.

``event_id`` is a UUID derived from what the event is about (kind, call or
referral id, route or version), so recording the same fact twice — a platform
retrying a webhook, a replica replaying its spool — yields the same id: the
outbox stores it once and a receiver can de-duplicate on it.

Phone numbers: payloads carry the masked number (``caller``,
``callback_number``) and, under ``*_e164`` keys, the full E.164 number, which
:func:`payload_for` removes for the targets that did not opt in: the caller's own
number (``caller_e164`` of call events) only goes to targets with
``include_caller: true``, a referral's callback number to targets with
``full_numbers: true``. The platforms never present the caller's number to the
regulation line (Vonage refuses it), so the event is how centre 15 gets it.
"""

from __future__ import annotations

import fnmatch
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from regulator.core.models import CallRecord, Referral, ReferralStatus
from regulator.core.phone import mask
from regulator.ports import (
    CALLER_NUMBER_KEY,
    EVENT_KINDS,
    FULL_NUMBER_KEYS,
    EventKind,
    OutboxEvent,
    payload_for,
)

#: The referral event that announces each status.
REFERRAL_KIND_BY_STATUS: Final[dict[ReferralStatus, EventKind]] = {
    ReferralStatus.PENDING: "referral.created",
    ReferralStatus.ACKNOWLEDGED: "referral.acknowledged",
    ReferralStatus.ARRIVED: "referral.arrived",
    ReferralStatus.COMPLETED: "referral.completed",
    ReferralStatus.CANCELLED: "referral.cancelled",
    ReferralStatus.NO_SHOW: "referral.no_show",
}

# Namespace of the derived event ids (uuid5); never change it, receivers de-duplicate on them.
_EVENT_NS: Final = uuid.UUID("6c1f4f0e-5b2a-4f47-9d51-2f7f3f8e1a15")


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value is not None else None


def _derived_id(*parts: object) -> str:
    return str(uuid.uuid5(_EVENT_NS, "|".join(str(p) for p in parts)))


def call_event(
    record: CallRecord, kind: EventKind | None = None, *, at: datetime | None = None
) -> OutboxEvent:
    """The event for a recorded call.

    ``kind`` defaults to ``call.completed`` once the call has a final status,
    else ``call.routed``. ``at`` is when it happened (default: the call's start).
    A call whose route changes (menu choice, regulation overflow) gives a new
    ``call.routed`` event; the same route recorded twice gives the same event id.
    """
    if kind is None:
        kind = "call.routed" if record.status == "in_progress" else "call.completed"
    if kind not in ("call.routed", "call.completed"):
        raise ValueError(f"not a call event kind: {kind!r}")
    ground = record.ground.value if record.ground is not None else None
    if kind == "call.routed":
        event_id = _derived_id(kind, record.call_id, record.route.value, ground)
    else:
        event_id = _derived_id(kind, record.call_id)
    occurred = at or record.at
    payload: dict[str, Any] = {
        "call_id": record.call_id,
        "mmg": record.mmg,
        "platform": record.platform,
        "caller": mask(record.caller),
        "caller_e164": record.caller if record.caller.startswith("+") else None,
        "route": record.route.value,
        "ground": ground,
        "rule": record.rule,
        "failsafe": record.failsafe,
        "at": _iso(record.at),
        "day_type": record.day_type.value,
        "status": record.status,
        "duration_s": record.duration_s,
    }
    return OutboxEvent(event_id, kind, record.mmg, occurred.astimezone(UTC), payload)


def referral_event(referral: Referral, kind: EventKind | None = None) -> OutboxEvent:
    """The event for a referral as it is now (after the transition ``kind`` names).

    ``kind`` defaults to the event of the referral's status. The id is derived
    from the referral id, the kind and the referral's version.
    """
    if kind is None:
        kind = REFERRAL_KIND_BY_STATUS[referral.status]
    if not kind.startswith("referral."):
        raise ValueError(f"not a referral event kind: {kind!r}")
    occurred = referral.created_at if kind == "referral.created" else referral.updated_at
    by = referral.history[-1].by if referral.history else referral.created_by
    payload: dict[str, Any] = {
        "id": referral.id,
        "mmg": referral.mmg,
        "case_id": referral.case_id,
        "status": referral.status.value,
        "version": referral.version,
        "patient": {
            "display_name": referral.patient_display_name,
            "age_band": referral.patient_age_band,
        },
        "callback_number": mask(referral.callback_number) if referral.callback_number else None,
        "callback_number_e164": referral.callback_number,
        "reason": referral.reason,
        "urgency": referral.urgency,
        "expected_at": _iso(referral.expected_at),
        "tiers_payant": referral.tiers_payant,
        "note": referral.note,
        "outcome": referral.outcome.value if referral.outcome is not None else None,
        "acts": referral.acts,
        "visit_id": referral.visit_id,
        "created_at": _iso(referral.created_at),
        "created_by": referral.created_by,
        "updated_at": _iso(referral.updated_at),
        "by": by,
    }
    event_id = _derived_id(kind, referral.id, referral.version)
    return OutboxEvent(event_id, kind, referral.mmg, occurred.astimezone(UTC), payload)


# ---- targets ---------------------------------------------------------------------


class TargetsError(ValueError):
    """The targets file is unreadable or invalid; the message names file, field and value."""


_NAME = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"
_HUB_ID = r"^fr\.health\.[a-z0-9_-]+(\.[a-z0-9_-]+)*$"


def _known_event_pattern(pattern: str) -> str:
    if not any(fnmatch.fnmatchcase(k, pattern) for k in EVENT_KINDS):
        raise ValueError(f"matches no event kind ({', '.join(EVENT_KINDS)})")
    return pattern


class _TargetBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME)
    mmgs: list[str] = Field(min_length=1)
    #: Event kinds sent to this target, as shell patterns (``referral.*``).
    events: list[Annotated[str, AfterValidator(_known_event_pattern)]] = Field(
        default_factory=lambda: ["*"], min_length=1
    )
    full_numbers: bool = False
    #: The caller's own number (``caller_e164``) in call events: an explicit opt-in,
    #: whatever ``full_numbers`` says (a bare true/false, not "yes" or 1).
    include_caller: StrictBool = False
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    concurrency: int = Field(default=4, ge=1, le=256)

    @model_validator(mode="after")
    def _caller_needs_call_events(self) -> Self:
        if self.include_caller and not any(
            fnmatch.fnmatchcase(k, p)
            for k in ("call.routed", "call.completed")
            for p in self.events
        ):
            raise ValueError("include_caller is true but the target receives no call.* event")
        return self

    def payload(self, event: OutboxEvent) -> dict[str, Any]:
        """``event``'s payload as this target may see it (its numbers' opt-ins)."""
        return payload_for(event, self.full_numbers, self.include_caller)

    def document(self, event: OutboxEvent) -> dict[str, Any]:
        """The JSON document this target receives for ``event``."""
        return event.as_json(full_numbers=self.full_numbers, include_caller=self.include_caller)

    def wants(self, event: OutboxEvent) -> bool:
        """True if this target receives ``event`` (its MMG and its kind)."""
        if "*" not in self.mmgs and event.mmg not in self.mmgs:
            return False
        return any(fnmatch.fnmatchcase(event.kind, p) for p in self.events)


class WebhookTarget(_TargetBase):
    """A regulation software endpoint receiving HMAC-signed JSON POSTs."""

    kind: Literal["webhook"]
    url: AnyHttpUrl
    secret_env: str = Field(pattern=_ENV)

    def secret(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        value = env.get(self.secret_env)
        if not value:
            raise TargetsError(
                f"target {self.name!r}: environment variable {self.secret_env} "
                "(secret_env) is not set"
            )
        return value


class HubSanteTarget(_TargetBase):
    """Hub Santé over AMQP: our own client id, the SAMU we address, the broker URL's env var."""

    kind: Literal["hubsante"]
    amqp_url_env: str = Field(pattern=_ENV)
    client_id: str = Field(pattern=_HUB_ID)
    recipient: str = Field(pattern=_HUB_ID)
    exchange: str = Field(default="hubsante", min_length=1)
    distribution_status: Literal["Actual", "Exercise"] = "Actual"
    # Hub Santé is the health network the SAMU reads from: numbers are what it needs.
    full_numbers: bool = True
    concurrency: int = Field(default=1, ge=1, le=64)
    #: Seconds to wait for the recipient's functional Ack before publishing again.
    ack_timeout_s: float = Field(default=120.0, gt=0)
    #: dateTimeExpires = dateTimeSent + this.
    expires_s: int = Field(default=86400, ge=60)
    #: Offset written in the envelope's timestamps (the hub refuses ``Z``).
    timezone: str = "Europe/Paris"
    #: ``sender.name`` of the RC-DE header (default: the last part of client_id).
    sender_name: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    def amqp_url(self, environ: Mapping[str, str] | None = None) -> str:
        env = os.environ if environ is None else environ
        value = env.get(self.amqp_url_env)
        if not value:
            raise TargetsError(
                f"target {self.name!r}: environment variable {self.amqp_url_env} "
                "(amqp_url_env) is not set"
            )
        return value


Target = Annotated[WebhookTarget | HubSanteTarget, Field(discriminator="kind")]
_TARGETS: TypeAdapter[list[Target]] = TypeAdapter(list[Target])


def _describe(error: Any, raw: Any) -> str:
    loc = [p for p in error["loc"] if p not in ("webhook", "hubsante")]
    where = ""
    if loc and isinstance(loc[0], int):
        index = loc[0]
        name = raw[index].get("name") if isinstance(raw[index], dict) else None
        where = f"targets[{index}]" + (f" ({name})" if name else "")
        loc = loc[1:]
    field = ".".join(str(p) for p in loc) or "(target)"
    value = error.get("input")
    if error["type"] == "missing":
        return f"{where}.{field}: missing"
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        kind = value.get("kind") if isinstance(value, dict) else None
        return f"{where}.kind: value {kind!r} — must be 'webhook' or 'hubsante'"
    shown = value if isinstance(value, str | int | float | bool) or value is None else "…"
    msg = re.sub(r"^Value error, ", "", str(error["msg"]))
    return f"{where}.{field}: value {shown!r} — {msg}"


def parse_targets(raw: Any, source: str = "<targets>") -> list[Target]:
    """Validate already-parsed YAML (a list of mappings); errors name field and value."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise TargetsError(f"{source}: expected a list of targets, got {type(raw).__name__}")
    try:
        targets = _TARGETS.validate_python(raw)
    except ValidationError as exc:
        lines = [_describe(e, raw) for e in exc.errors()]
        raise TargetsError(f"{source}: " + "; ".join(lines)) from None
    seen: set[str] = set()
    for index, target in enumerate(targets):
        if target.name in seen:
            raise TargetsError(
                f"{source}: targets[{index}].name: value {target.name!r} — duplicate target name"
            )
        seen.add(target.name)
    return targets


def load_targets(
    path: Path, environ: Mapping[str, str] | None = None, *, check_env: bool = True
) -> list[Target]:
    """Read the YAML targets file (DESIGN.md §5, ``REGULATOR_TARGETS_FILE``).

    With ``check_env`` (default), every ``secret_env`` / ``amqp_url_env`` must be
    set, so a missing secret fails at start-up rather than at the first delivery.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TargetsError(f"{path}: cannot read targets file: {exc.strerror or exc}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TargetsError(f"{path}: invalid YAML: {exc}") from None
    targets = parse_targets(raw, str(path))
    if check_env:
        for target in targets:
            try:
                if isinstance(target, WebhookTarget):
                    target.secret(environ)
                else:
                    target.amqp_url(environ)
            except TargetsError as exc:
                raise TargetsError(f"{path}: {exc}") from None
    return targets


def targets_for(event: OutboxEvent, targets: Sequence[Target]) -> list[Target]:
    """The targets that receive ``event``."""
    return [t for t in targets if t.wants(event)]


__all__ = [
    "CALLER_NUMBER_KEY",
    "EVENT_KINDS",
    "FULL_NUMBER_KEYS",
    "EventKind",
    "HubSanteTarget",
    "OutboxEvent",
    "Target",
    "TargetsError",
    "WebhookTarget",
    "call_event",
    "load_targets",
    "parse_targets",
    "payload_for",
    "referral_event",
    "targets_for",
]
