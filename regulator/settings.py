"""Service settings: ``REGULATOR_*`` environment variables and/or a TOML file.

Read once at start-up and passed down; secrets are ``SecretStr`` so they never
appear in a repr or a log line.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from regulator.core import phone
from regulator.platforms.asterisk import Network, parse_allowlist
from regulator.platforms.telnyx import load_public_key


class Settings(BaseSettings):
    """All settings of the service (DESIGN.md §5). Environment wins over the TOML file."""

    model_config = SettingsConfigDict(env_prefix="REGULATOR_", extra="ignore", frozen=True)

    protocols_dir: Path = Path("./protocols")
    data_dir: Path = Path("./var")
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    redis_url: SecretStr | None = None
    redis_prefix: str = "regulator"
    public_url: str | None = None
    twilio_auth_token: SecretStr | None = None
    vonage_signature_secret: SecretStr | None = None
    kamailio_secret: SecretStr | None = None
    generic_secret: SecretStr | None = None
    #: Shared secret the Asterisk dialplan sends in ``X-Regulator-Secret``.
    asterisk_secret: SecretStr | None = None
    #: Optional comma-separated CIDRs (``192.0.2.10/32,2001:db8::/48``) the Asterisk
    #: hooks accept requests from; unset: any source holding the secret.
    asterisk_allowed_sources: str | None = None
    #: Password of the HTTP Basic credentials of the FreeSWITCH ``httapi`` profile.
    freeswitch_secret: SecretStr | None = None
    #: jambonz webhook signing secret (``Jambonz-Signature``).
    jambonz_secret: SecretStr | None = None
    #: Telnyx account public key (base64, Mission Control → Keys & Credentials): it
    #: verifies ``telnyx-signature-ed25519``. Not secret, kept as one for uniformity.
    telnyx_public_key: SecretStr | None = None
    #: Key of the HMAC on our own Telnyx callback URLs (``sig``): Telnyx signs with a
    #: key pair, so no shared secret exists to derive it from. Unset: the ``mmg``,
    #: ``call_id`` and ``target`` of Telnyx callbacks are not trusted (its dial legs
    #: are not attributed; failed dials are decided from the stored route history).
    telnyx_callback_secret: SecretStr | None = None
    failsafe_number: str | None = None
    #: Host (``host[:port]``) of the SIP trunk through which Kamailio dials numbers
    #: (``sip:<E.164>@<sip_gateway>``). Unset: destinations known only by number get
    #: no Kamailio route (never a URI that cannot be relayed).
    sip_gateway: str | None = None
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    tokens_file: Path | None = None
    targets_file: Path | None = None
    insecure_dev: bool = False
    decision_budget_ms: float = Field(default=50.0, gt=0)
    store_budget_ms: float = Field(default=150.0, gt=0)
    retention_months: int = Field(default=13, ge=1)
    #: A caller who hangs up within this many seconds of a leg being offered is a
    #: "short abandon" (QRAARM, Samu 93): left out of the offered legs of the
    #: answer-quality figures and of ``regulator_legs_*``.
    short_abandon_s: float = Field(default=15.0, ge=0, le=300)
    #: Directory where, from the 1st of each month, the previous month's report of each
    #: MMG is written (XLSX and JSON), and from 1 January the previous year's export for
    #: the ARS; a file already there is never rewritten. Unset: no files written.
    export_dir: Path | None = None
    referral_no_show_minutes: int = Field(default=180, ge=1)
    watch_protocols: bool = True
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    #: Requests a minute per client (token name, else remote address) on the API and
    #: consoles; bursts up to the same number. Never applied to /hooks, /metrics,
    #: /healthz, /readyz. 0 disables the limit.
    rate_limit_per_minute: int = Field(default=600, ge=0)
    #: Comma-separated CIDRs of the reverse proxies in front of the service
    #: (``127.0.0.1/32,10.0.0.0/8``): only a request whose peer is one of them has its
    #: client address read from ``X-Forwarded-For`` (the rightmost hop that is not a
    #: trusted proxy), for the rate limits. Unset: the peer address, header ignored.
    trusted_proxies: str | None = None
    #: A console session unused for this many minutes ends (sign in again).
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    #: A console session ends this many hours after sign-in, however busy.
    session_max_hours: int = Field(default=12, ge=1, le=7 * 24)
    #: On SIGTERM, seconds spent answering with /readyz at 503 before the listener
    #: closes, so a load balancer stops sending new calls first (set it to about the
    #: readiness probe period behind Kubernetes or a load balancer).
    shutdown_grace_s: float = Field(default=0.0, ge=0, le=60)
    #: Worker processes of ``regulator serve`` on one port (``SO_REUSEPORT``), or
    #: ``auto``: one per core this process may run on. 1: a single process, as before.
    workers: int = 1
    #: Set by the supervisor of ``serve --workers N`` in each worker's environment
    #: (0…N-1): never set it by hand. Unset: not a worker.
    worker_index: int | None = Field(default=None, ge=0)

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: object) -> int:
        return parse_workers(value)

    @field_validator("sip_gateway")
    @classmethod
    def _gateway(cls, value: str | None) -> str | None:
        if value is None:
            return None
        return value.strip() or None

    @field_validator("asterisk_allowed_sources")
    @classmethod
    def _allowed_sources(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parse_allowlist(value)  # raises ValueError naming the bad entry
        return value.strip()

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        try:
            parse_allowlist(value)
        except ValueError as exc:
            raise ValueError(f"REGULATOR_TRUSTED_PROXIES={value!r}: {exc}") from None
        return value.strip()

    @field_validator("telnyx_public_key")
    @classmethod
    def _telnyx_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        load_public_key(value.get_secret_value())  # raises ValueError when unusable
        return value

    @field_validator("failsafe_number")
    @classmethod
    def _failsafe(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        number = phone.normalize(value)
        if phone.is_short_code(number):
            raise ValueError(
                "REGULATOR_FAILSAFE_NUMBER must be the long number of the regulation centre: "
                "platforms cannot dial the short code 15"
            )
        return number

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get("REGULATOR_CONFIG")
        if config:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config)))
        return tuple(sources)

    def asterisk_allowlist(self) -> tuple[Network, ...]:
        """The Asterisk hooks' source networks (empty: any source), for
        :func:`regulator.platforms.asterisk.source_allowed`."""
        return parse_allowlist(self.asterisk_allowed_sources)

    def trusted_networks(self) -> tuple[Network, ...]:
        """The reverse proxies whose ``X-Forwarded-For`` is believed (empty: none)."""
        return parse_allowlist(self.trusted_proxies)

    @property
    def local_dir(self) -> Path:
        """This process's own journals and spools: ``data_dir`` for a single process,
        ``data_dir/worker-<i>`` for worker ``i`` (the store stays in ``data_dir``)."""
        if self.worker_index is None:
            return self.data_dir
        return self.data_dir / f"worker-{self.worker_index}"

    @property
    def runs_singletons(self) -> bool:
        """Whether this process runs the once-per-service background tasks (retention
        purge, exports, no-show sweeper, protocol history): a single process, or worker 0."""
        return self.worker_index in (None, 0)

    def secret(self, name: str) -> str | None:
        value: Any = getattr(self, name)
        return value.get_secret_value() if value is not None else None


def available_cores() -> int:
    """The cores this process may run on (its affinity set, e.g. under ``taskset`` or
    a container's cpuset), else the machine's."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 1


def parse_workers(value: object) -> int:
    """``REGULATOR_WORKERS`` / ``--workers``: a count of 1 or more, or ``auto``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} : attendu un nombre de processus (1 ou plus) ou « auto »")
    if isinstance(value, int):
        count = value
    else:
        text = str(value).strip().lower()
        if text == "auto":
            return available_cores()
        try:
            count = int(text)
        except ValueError:
            raise ValueError(
                f"{str(value)!r} : attendu un nombre de processus (1 ou plus) ou « auto »"
            ) from None
    if count < 1:
        raise ValueError(f"{count} : il faut au moins 1 processus (ou « auto »)")
    return count
