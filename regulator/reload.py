"""The protocols in force, reloadable without restart (SIGHUP or file change).

The files watched are the protocol files and the pharmacy roster files they name
(``destinations.pharmacy.roster_file``): editing a roster reloads its protocol.

A reload validates the whole directory first; if anything is wrong the error is
logged, counted in ``regulator_protocol_reloads_total{result="error"}`` and the
previous protocols stay in force — a typo never takes a clinic off the air.

Each protocol in force has a version (:mod:`regulator.core.history`): call records
name it, and :meth:`ProtocolRegistry.keep_history` records every version that comes
into force in the store, with what changed, so every replica shows one history.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regulator.core.decision import decide
from regulator.core.history import (
    ProtocolVersion,
    diff_protocols,
    protocol_document,
    protocol_from_document,
    version_id,
)
from regulator.core.models import Call
from regulator.core.protocol import Protocol, ProtocolLoadError, ProtocolSet
from regulator.logs import get_logger
from regulator.metrics import Metrics
from regulator.ports import Clock, Store, StoreError, SystemClock
from regulator.protocols import load_protocols, protocol_files, referenced_roster_files

log = get_logger("regulator.protocols")


def warm_up(protocols: ProtocolSet) -> None:
    """Compute this year's holidays and this week's day plans before serving, so the
    first call after a (re)load doesn't pay for them inside its decision budget."""
    now = datetime.now(UTC)
    for proto in protocols:
        today = now.astimezone(proto.tz).date()
        for offset in range(-1, 8):
            proto.schedule.plan(today + timedelta(days=offset))
        decide(proto, Call("warm-up", "", proto.numbers[0]), now)


def _sha256(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""  # gone since it was loaded: the document still says what was in force


def versions_of(protocols: ProtocolSet, now: datetime) -> dict[str, ProtocolVersion]:
    """The version of each protocol of a set just loaded (summary filled when recorded)."""
    out = {}
    for proto in protocols:
        document = protocol_document(proto)
        file = protocols.files.get(proto.id, "")
        roster_name = proto.destinations.pharmacy.roster_file
        roster = Path(file).parent / roster_name.strip() if file and roster_name else None
        out[proto.id] = ProtocolVersion(
            mmg=proto.id,
            version=version_id(document),
            loaded_at=now,
            file=file,
            file_sha256=_sha256(Path(file)) if file else "",
            summary=(),
            document=document,
            roster_file=str(roster) if roster is not None else "",
            roster_sha256=_sha256(roster),
        )
    return out


class ProtocolRegistry:
    """Holds the current :class:`ProtocolSet`; swapping it is one attribute assignment."""

    def __init__(
        self,
        directory: Path,
        metrics: Metrics,
        initial: ProtocolSet | None = None,
        clock: Clock | None = None,
    ):
        self.directory = directory
        self.metrics = metrics
        #: When a version came into force (the service's clock, pinned in tests).
        self.clock: Clock = clock or SystemClock()
        self.current: ProtocolSet = initial if initial is not None else ProtocolSet(())
        self.last_error: str | None = None
        self._fingerprint: tuple[tuple[str, float, int], ...] = ()
        #: Roster files the protocols name, found at the last (re)load attempt.
        self._rosters: tuple[Path, ...] = ()
        #: MMG id → (protocol in force, its version), swapped with ``current``.
        self._versions: dict[str, tuple[Protocol, ProtocolVersion]] = {}
        #: Versions loaded and not recorded in the store yet (keep_history drains it).
        self._unrecorded: dict[str, tuple[Protocol, ProtocolVersion]] = {}
        self._loaded = asyncio.Event()
        #: Every (MMG, version) this process had in force: calls queued in the writer
        #: may name one the store does not show as named yet; the purge keeps them.
        self._in_force: set[tuple[str, str]] = set()
        if initial is not None:
            self._set_versions(initial)

    def _set_versions(self, protocols: ProtocolSet) -> None:
        versions = versions_of(protocols, self.clock.now())
        self._versions = {v.mmg: (protocols.by_id[v.mmg], v) for v in versions.values()}
        self._unrecorded.update(self._versions)
        self._in_force.update((v.mmg, v.version) for v in versions.values())
        self._loaded.set()

    def version_for(self, protocol: Protocol) -> str:
        """The version of ``protocol``, which may have been replaced by a reload since
        it was looked up (a call awaiting the store meanwhile): identity, not the id."""
        known = self._versions.get(protocol.id)
        if known is not None and known[0] is protocol:
            return known[1].version
        return version_id(protocol_document(protocol))

    def kept_versions(self) -> frozenset[tuple[str, str]]:
        """The versions the retention purge must keep whatever the store says."""
        return frozenset(self._in_force)

    def versions(self) -> dict[str, ProtocolVersion]:
        """The version in force of each MMG."""
        return {mmg: version for mmg, (_, version) in self._versions.items()}

    def fingerprint(self) -> tuple[tuple[str, float, int], ...]:
        """Names, mtimes and sizes of the protocol files and of the roster files they
        named at the last reload (cheap change detection; a new ``roster_file`` is a
        protocol change, which refreshes the list)."""
        try:
            files = protocol_files(self.directory)
        except OSError:
            return ()
        out = []
        for path in (*files, *self._rosters):
            try:
                st = path.stat()
            except OSError:
                out.append((str(path), -1.0, -1))  # missing: its return is a change too
                continue
            out.append((str(path), st.st_mtime, st.st_size))
        return tuple(out)

    def reload(self) -> bool:
        """Load the directory; on success swap it in. Returns True on success."""
        # Found from the YAML even when a protocol does not validate: fixing its
        # roster file must trigger the reload that puts it back in force.
        self._rosters = tuple(referenced_roster_files(self.directory))
        fingerprint = self.fingerprint()
        try:
            loaded = load_protocols(self.directory)
        except ProtocolLoadError as exc:
            self._fingerprint = fingerprint
            self.last_error = str(exc)
            self.metrics.protocol_reloads.labels(result="error").inc()
            log.error(
                "protocol_reload_failed",
                directory=str(self.directory),
                errors=[str(i) for i in exc.issues],
                kept=sorted(self.current.by_id),
            )
            return False
        self._fingerprint = fingerprint
        warm_up(loaded)
        self._set_versions(loaded)
        self.current = loaded
        self.last_error = None
        self.metrics.protocol_reloads.labels(result="ok").inc()
        log.info("protocols_loaded", directory=str(self.directory), mmgs=sorted(loaded.by_id))
        return True

    def changed(self) -> bool:
        return self.fingerprint() != self._fingerprint

    async def record_history(self, store: Store) -> int:
        """Record the versions loaded since the last call; returns how many were new.

        The summary compares with the newest version the store holds for the MMG
        (another replica's, or this one's before a restart), not with this replica's
        memory. A store error keeps the rest for the next call."""
        recorded = 0
        for mmg, pending in list(self._unrecorded.items()):
            new, version = pending
            previous = await store.protocol_history(mmg, limit=1)
            if previous and previous[0].version == version.version:
                self._done(mmg, pending)
                continue
            old: Protocol | None = None
            summary: list[str] = []
            if previous:
                try:
                    old = protocol_from_document(previous[0].document, previous[0].file)
                except ProtocolLoadError:
                    summary.append(
                        f"version précédente {previous[0].version} illisible par cette "
                        "version du service : changements non détaillés"
                    )
            if old is not None or not previous:
                summary += diff_protocols(old, new)
            entry = dataclasses.replace(version, summary=tuple(summary))
            if await store.add_protocol_version(entry):
                recorded += 1
                log.info("protocol_version_recorded", mmg=mmg, version=version.version)
            self._done(mmg, pending)
        return recorded

    def _done(self, mmg: str, pending: tuple[Protocol, ProtocolVersion]) -> None:
        if self._unrecorded.get(mmg) is pending:  # not replaced by a reload meanwhile
            del self._unrecorded[mmg]

    async def keep_history(self, store: Store, retry_s: float = 5.0) -> None:
        """Record each version that comes into force (runs until cancelled)."""
        while True:
            self._loaded.clear()
            try:
                await self.record_history(store)
            except StoreError as exc:
                self.metrics.storage_errors.labels(op="protocol_history").inc()
                log.warning("protocol_history_failed", error=str(exc))
                self._loaded.set()  # try again after retry_s
            except Exception:  # the history never stops the service
                log.exception("protocol_history_failed")
                self._loaded.set()
            if self._loaded.is_set():
                await asyncio.sleep(retry_s)
            await self._loaded.wait()

    async def watch(self, interval_s: float = 2.0) -> None:
        """Poll the directory and reload when a file changes (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            if self.changed():
                self.reload()
