"""API tokens and roles.

Tokens are stored hashed (SHA-256) in ``REGULATOR_TOKENS_FILE``::

    - {name: samu30-poste1, sha256: "<hex>", roles: [regulator], mmgs: [nimes]}
    - {name: accueil-nimes, sha256: "<hex>", roles: ["desk:nimes"]}
    - {name: ars-occitanie, sha256: "<hex>", roles: [coordinator]}

Roles: ``regulator`` (referrals of every MMG of its centre — ``mmgs`` narrows
the centre, absent means all), ``desk:<mmg>`` (one MMG's front desk),
``coordinator`` (reports), ``admin`` (everything). A request carries the token
as ``Authorization: Bearer <token>`` or in the ``regulator_token`` cookie.
Tokens are never logged.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

_ROLE = re.compile(r"^(regulator|coordinator|admin|desk:[a-z0-9][a-z0-9-]{0,62})$")
COOKIE = "regulator_token"


class TokenEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    roles: list[str] = Field(min_length=1)
    mmgs: list[str] | None = None

    @field_validator("roles")
    @classmethod
    def _roles(cls, value: list[str]) -> list[str]:
        for role in value:
            if not _ROLE.match(role):
                raise ValueError(
                    f"unknown role {role!r} (regulator, coordinator, admin or desk:<mmg>)"
                )
        return value


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling the API, and what they may do."""

    name: str
    roles: frozenset[str]
    mmgs: frozenset[str] | None = None  # None = every MMG

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    @property
    def is_regulator(self) -> bool:
        return "regulator" in self.roles or self.is_admin

    def desk_mmgs(self) -> frozenset[str]:
        return frozenset(r.removeprefix("desk:") for r in self.roles if r.startswith("desk:"))

    def _in_centre(self, mmg: str) -> bool:
        return self.mmgs is None or mmg in self.mmgs

    def can_regulate(self, mmg: str) -> bool:
        """Create/cancel referrals to ``mmg``."""
        return self.is_admin or ("regulator" in self.roles and self._in_centre(mmg))

    def can_desk(self, mmg: str) -> bool:
        """Acknowledge, admit and close referrals, record visits at ``mmg``."""
        return self.is_admin or mmg in self.desk_mmgs()

    def can_see(self, mmg: str) -> bool:
        """Read referrals and live events of ``mmg``."""
        return self.can_regulate(mmg) or self.can_desk(mmg)

    def can_export(self) -> bool:
        """The annual export spans every MMG: coordinators (and admins) only."""
        return "coordinator" in self.roles or self.is_admin

    def can_enter_figures(self) -> bool:
        """Enter and read the figures that come from elsewhere (ED passages, costs)."""
        return "coordinator" in self.roles or self.is_admin

    def can_report(self, mmg: str) -> bool:
        """Read the monthly indicators of ``mmg``."""
        return "coordinator" in self.roles or self.can_see(mmg)


#: Everything allowed: used only with REGULATOR_INSECURE_DEV=1 and no tokens file.
DEV_PRINCIPAL = Principal("dev", frozenset({"admin"}))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenError(ValueError):
    """The tokens file is unreadable or invalid."""


class TokenBook:
    """Hashed tokens loaded from the tokens file."""

    def __init__(self, entries: list[TokenEntry]) -> None:
        self._by_hash = {
            e.sha256: Principal(
                e.name, frozenset(e.roles), frozenset(e.mmgs) if e.mmgs is not None else None
            )
            for e in entries
        }

    @classmethod
    def load(cls, path: Path) -> TokenBook:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
        except (OSError, yaml.YAMLError) as exc:
            raise TokenError(f"{path}: {exc}") from None
        if not isinstance(data, list):
            raise TokenError(f"{path}: expected a YAML list of tokens")
        entries = []
        for i, item in enumerate(data):
            try:
                entries.append(TokenEntry.model_validate(item))
            except ValidationError as exc:
                first = exc.errors(include_url=False)[0]
                field = ".".join(str(p) for p in first["loc"])
                raise TokenError(f"{path}: [{i}].{field}: {first['msg']}") from None
        return cls(entries)

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        return self._by_hash.get(hash_token(token))

    def __len__(self) -> int:
        return len(self._by_hash)


def run_token_new(args: argparse.Namespace) -> int:
    """``regulator token new``: print a fresh token once and its tokens-file line."""
    roles: list[str] = args.role
    for role in roles:
        if not _ROLE.match(role):
            print(f"erreur : rôle inconnu {role!r} (regulator, coordinator, admin, desk:<mmg>)")
            return 2
    token = secrets.token_urlsafe(32)
    roles_yaml = ", ".join(f'"{r}"' for r in roles)
    print(f"jeton (affiché une seule fois) : {token}")
    print("ligne à ajouter au fichier des jetons :")
    print(f'- {{name: {args.name}, sha256: "{hash_token(token)}", roles: [{roles_yaml}]}}')
    return 0
