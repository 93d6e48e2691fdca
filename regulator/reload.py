"""The protocols in force, reloadable without restart (SIGHUP or file change).

The files watched are the protocol files and the pharmacy roster files they name
(``destinations.pharmacy.roster_file``): editing a roster reloads its protocol.

A reload validates the whole directory first; if anything is wrong the error is
logged, counted in ``regulator_protocol_reloads_total{result="error"}`` and the
previous protocols stay in force — a typo never takes a clinic off the air.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from regulator.core.decision import decide
from regulator.core.models import Call
from regulator.core.protocol import ProtocolLoadError, ProtocolSet, load_protocols, protocol_files
from regulator.logs import get_logger
from regulator.metrics import Metrics
from regulator.rosters import referenced_roster_files

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


class ProtocolRegistry:
    """Holds the current :class:`ProtocolSet`; swapping it is one attribute assignment."""

    def __init__(self, directory: Path, metrics: Metrics, initial: ProtocolSet | None = None):
        self.directory = directory
        self.metrics = metrics
        self.current: ProtocolSet = initial if initial is not None else ProtocolSet(())
        self.last_error: str | None = None
        self._fingerprint: tuple[tuple[str, float, int], ...] = ()
        #: Roster files the protocols name, found at the last (re)load attempt.
        self._rosters: tuple[Path, ...] = ()

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
        self.current = loaded
        self.last_error = None
        self.metrics.protocol_reloads.labels(result="ok").inc()
        log.info("protocols_loaded", directory=str(self.directory), mmgs=sorted(loaded.by_id))
        return True

    def changed(self) -> bool:
        return self.fingerprint() != self._fingerprint

    async def watch(self, interval_s: float = 2.0) -> None:
        """Poll the directory and reload when a file changes (runs until cancelled)."""
        while True:
            await asyncio.sleep(interval_s)
            if self.changed():
                self.reload()
