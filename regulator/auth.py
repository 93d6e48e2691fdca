"""API tokens and roles.

Tokens are stored hashed (SHA-256) in ``REGULATOR_TOKENS_FILE``::

    - {name: samu30-poste1, sha256: "<hex>", roles: [regulator], mmgs: [nimes]}
    - {name: accueil-nimes, sha256: "<hex>", roles: ["desk:nimes"]}
    - {name: ars-occitanie, sha256: "<hex>", roles: [coordinator]}

Roles: ``regulator`` (referrals of every MMG of its centre), ``desk:<mmg>`` (one
MMG's front desk), ``coordinator`` (reports), ``admin`` (everything). ``mmgs``
narrows a token to some MMGs, for every role it carries: the regulator's centre,
the coordinator's reports; a ``desk:<mmg>`` role outside ``mmgs`` and ``mmgs`` on an
admin token are refused at load, as are two tokens with one name (the name scopes
idempotency keys and rate limits) or one hash. A request carries the token as
``Authorization: Bearer <token>``; the consoles' ``regulator_token`` cookie holds a
session id, never the token (:mod:`regulator.core.sessions`). Tokens are never logged.

The file is reloaded on SIGHUP and when it changes (:class:`TokenBook` ``watch``):
a removed token stops working within a second, its console sessions too (they are
checked by name and fingerprint against the tokens in force); a broken file is
refused, logged, and the tokens in force stay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from regulator.logs import get_logger

log = get_logger("regulator.auth")
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

    def scope_problem(self) -> str | None:
        """Why ``mmgs`` cannot be honoured for this token's roles (French), or None."""
        if self.mmgs is None:
            return None
        if not self.mmgs:
            return "« mmgs » est vide : ce jeton ne donnerait accès à rien (retirez-le)"
        if "admin" in self.roles:
            return (
                "« mmgs » ne peut pas restreindre le rôle admin (qui donne tout) : "
                "retirez « mmgs » ou remplacez admin par regulator/coordinator"
            )
        outside = sorted(
            r
            for r in self.roles
            if r.startswith("desk:") and r.removeprefix("desk:") not in self.mmgs
        )
        if outside:
            return f"rôle(s) {', '.join(outside)} hors de « mmgs » {sorted(self.mmgs)}"
        return None


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
        """Read the monthly indicators of ``mmg`` (``mmgs`` narrows a coordinator too)."""
        return ("coordinator" in self.roles and self._in_centre(mmg)) or self.can_see(mmg)

    def can_amend_closed_month(self, mmg: str) -> bool:
        """Record visits into a month already exported (see ``core.referrals.month_closed``)."""
        return self.is_admin or ("coordinator" in self.roles and self._in_centre(mmg))

    def visible_mmgs(self) -> frozenset[str] | None:
        """The MMGs whose referrals :meth:`can_see` allows; None = every MMG.

        Handed to the store so a listing is filtered before its limit applies."""
        if self.is_admin or ("regulator" in self.roles and self.mmgs is None):
            return None
        regulated = self.mmgs if "regulator" in self.roles and self.mmgs else frozenset()
        return regulated | self.desk_mmgs()


#: Everything allowed: used only with REGULATOR_INSECURE_DEV=1 and no tokens file.
DEV_PRINCIPAL = Principal("dev", frozenset({"admin"}))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenError(ValueError):
    """The tokens file is unreadable or invalid."""


def _principal(entry: TokenEntry) -> Principal:
    mmgs = frozenset(entry.mmgs) if entry.mmgs is not None else None
    return Principal(entry.name, frozenset(entry.roles), mmgs)


def session_fingerprint(entry: TokenEntry) -> str:
    """What a console session keeps of its token: a hash of the token's hash, so the
    store holds nothing that the tokens file does not already protect."""
    return hashlib.sha256(b"session-token:" + entry.sha256.encode()).hexdigest()[:32]


def _tables(
    entries: list[TokenEntry],
) -> tuple[dict[str, Principal], dict[str, tuple[Principal, str]]]:
    """The look-up tables of a tokens file: by token hash, and by name for sessions."""
    by_hash = {e.sha256: _principal(e) for e in entries}
    by_name = {e.name: (by_hash[e.sha256], session_fingerprint(e)) for e in entries}
    return by_hash, by_name


def _fingerprint(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime, st.st_size)


def load_entries(path: Path) -> list[TokenEntry]:
    """Read and check the whole tokens file; :class:`TokenError` on the first problem."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, yaml.YAMLError) as exc:
        raise TokenError(f"{path}: {exc}") from None
    if not isinstance(data, list):
        raise TokenError(f"{path}: expected a YAML list of tokens")
    entries: list[TokenEntry] = []
    names: dict[str, int] = {}
    hashes: dict[str, int] = {}
    for i, item in enumerate(data):
        try:
            entry = TokenEntry.model_validate(item)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            field = ".".join(str(p) for p in first["loc"])
            raise TokenError(f"{path}: [{i}].{field}: {first['msg']}") from None
        problem = entry.scope_problem()
        if problem is not None:
            raise TokenError(f"{path}: [{i}] jeton « {entry.name} » : {problem}")
        if entry.name in names:
            raise TokenError(
                f"{path}: [{i}] nom « {entry.name} » déjà pris par le jeton [{names[entry.name]}] "
                "(le nom sépare les clés Idempotency-Key et les limites de débit : "
                "un nom par jeton)"
            )
        # Load time, the operator's own file: no timing to protect (dict look-up).
        same = hashes.setdefault(entry.sha256, i)
        if same != i:
            raise TokenError(
                f"{path}: [{i}] jeton « {entry.name} » : même empreinte sha256 que le jeton "
                f"[{same}] (générez un jeton par usage : regulator token new)"
            )
        names[entry.name] = i
        entries.append(entry)
    return entries


class TokenBook:
    """Hashed tokens loaded from the tokens file; the one object the app holds.

    :meth:`reload` swaps the whole table in one attribute assignment, so every
    holder sees the new tokens at once and a request sees either the old table or
    the new one, never a mix.
    """

    def __init__(self, entries: list[TokenEntry], path: Path | None = None) -> None:
        self.path = path
        self.last_error: str | None = None
        self._by_hash, self._by_name = _tables(entries)
        self._fingerprint = _fingerprint(path) if path is not None else None
        #: Called with the names a reload removed (the app deletes their sessions).
        self.on_removed: Callable[[frozenset[str]], None] | None = None

    @classmethod
    def load(cls, path: Path) -> TokenBook:
        fingerprint = _fingerprint(path)
        book = cls(load_entries(path), path)
        book._fingerprint = fingerprint
        return book

    def authenticate(self, token: str | None) -> Principal | None:
        if not token:
            return None
        return self._by_hash.get(hash_token(token))

    def fingerprint(self, token: str) -> tuple[Principal, str] | None:
        """The caller of ``token`` and the fingerprint a console session keeps of it."""
        who = self.authenticate(token)
        if who is None:
            return None
        return who, self._by_name[who.name][1]

    def by_session(self, name: str, fingerprint: str) -> Principal | None:
        """The caller of a console session opened with the token ``name`` whose
        fingerprint was ``fingerprint``: None once that token is removed or changed."""
        entry = self._by_name.get(name)
        if entry is None or not hmac.compare_digest(entry[1], fingerprint):
            return None
        return entry[0]

    def __len__(self) -> int:
        return len(self._by_hash)

    def names(self) -> frozenset[str]:
        return frozenset(p.name for p in self._by_hash.values())

    def reload(self) -> bool:
        """Re-read the file; on success swap it in, else log and keep the tokens in force."""
        if self.path is None:
            return False
        fingerprint = _fingerprint(self.path)
        try:
            entries = load_entries(self.path)
        except TokenError as exc:
            self._fingerprint = fingerprint
            self.last_error = str(exc)
            log.error("tokens_reload_failed", error=str(exc), kept=len(self._by_hash))
            return False
        before = self.names()
        self._fingerprint = fingerprint
        # Both tables in one statement, no await between: a request (on the event
        # loop, like this reload) sees the old pair or the new pair.
        self._by_hash, self._by_name = _tables(entries)
        self.last_error = None
        after = self.names()
        log.info(
            "tokens_loaded",
            tokens=len(self._by_hash),
            added=sorted(after - before),
            removed=sorted(before - after),
        )
        if before - after and self.on_removed is not None:
            self.on_removed(before - after)
        return True

    def changed(self) -> bool:
        return self.path is not None and _fingerprint(self.path) != self._fingerprint

    async def watch(self, interval_s: float = 0.5) -> None:
        """Poll the file (one ``stat``) and reload when it changes (runs until cancelled).

        Half a second: a revoked token stops working within a second of the edit."""
        while True:
            await asyncio.sleep(interval_s)
            with contextlib.suppress(Exception):  # never let the watcher die
                if self.changed():
                    self.reload()


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
