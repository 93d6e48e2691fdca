"""Protocol files: read the YAML documents (and their roster files) from disk.

The pure domain (:mod:`regulator.core.protocol`) validates a parsed document; this
module does the I/O around it: reading a file, its roster file
(:mod:`regulator.rosters`), a whole directory and the checks across its files.
"""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from regulator import rosters
from regulator.core.protocol import (
    Protocol,
    ProtocolIssue,
    ProtocolLoadError,
    ProtocolSet,
    RosterEntry,
    parse_protocol,
    phone_region,
)

__all__ = ["load_protocol_file", "load_protocols", "protocol_files", "referenced_roster_files"]


def _dig(data: object, *keys: str) -> object:
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _read_roster_file(data: object, path: Path) -> list[RosterEntry] | None:
    """The stretches of the document's ``roster_file`` (None if it names none).

    The file I/O and parsing live in :mod:`regulator.rosters`; the time zone and
    region come from the raw document (the protocol is not validated yet: if they are
    wrong, validation says so, and the defaults only keep this step going).
    """
    value = _dig(data, "destinations", "pharmacy", "roster_file")
    if not isinstance(value, str) or not value.strip():
        return None  # absent, or not a string: the model's validation names it
    timezone = _dig(data, "timezone")
    try:
        zone = ZoneInfo(timezone) if isinstance(timezone, str) else None
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe": a tzdata directory
        zone = None
    region = phone_region(_dig(data, "calendar", "subdiv"))
    try:
        return rosters.read_roster(
            path.parent / value.strip(),
            timezone=zone.key if zone is not None else "Europe/Paris",
            region=region,
        )
    except rosters.RosterFileError as exc:
        field = "destinations.pharmacy.roster_file"
        raise ProtocolLoadError(
            [ProtocolIssue(str(path), field, repr(value), problem) for problem in exc.problems]
        ) from None


def load_protocol_file(path: Path) -> Protocol:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProtocolLoadError([ProtocolIssue(str(path), "", "", f"cannot read: {exc}")]) from None
    except yaml.YAMLError as exc:
        raise ProtocolLoadError(
            [ProtocolIssue(str(path), "", "", f"invalid YAML: {exc}".replace("\n", " "))]
        ) from None
    return parse_protocol(data, str(path), _read_roster_file(data, path))


def protocol_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_protocols(directory: Path | str) -> ProtocolSet:
    """Load and cross-check every ``*.yaml``/``*.yml`` file of a directory.

    Reports every problem at once; duplicate MMG ids or numbers across files are
    errors because a called number must name exactly one MMG.
    """
    root = Path(directory)
    if not root.is_dir():
        raise ProtocolLoadError([ProtocolIssue(str(root), "", "", "not a directory")])
    issues: list[ProtocolIssue] = []
    loaded: list[tuple[Path, Protocol]] = []
    files = protocol_files(root)
    if not files:
        issues.append(ProtocolIssue(str(root), "", "", "no protocol file (*.yaml) found"))
    for path in files:
        try:
            loaded.append((path, load_protocol_file(path)))
        except ProtocolLoadError as exc:
            issues.extend(exc.issues)
    ids: dict[str, Path] = {}
    numbers: dict[str, Path] = {}
    for path, proto in loaded:
        if proto.id in ids:
            issues.append(
                ProtocolIssue(str(path), "id", repr(proto.id), f"already used by {ids[proto.id]}")
            )
        ids.setdefault(proto.id, path)
        for i, number in enumerate(proto.numbers):
            if number in numbers:
                issues.append(
                    ProtocolIssue(
                        str(path),
                        f"numbers[{i}]",
                        repr(number),
                        f"already used by {numbers[number]}",
                    )
                )
            numbers.setdefault(number, path)
    if issues:
        raise ProtocolLoadError(issues)
    return ProtocolSet(
        (proto for _, proto in loaded), files={proto.id: str(path) for path, proto in loaded}
    )


def referenced_roster_files(directory: Path) -> list[Path]:
    """The roster files the protocols of ``directory`` name (for the reload watcher).

    Read straight from the YAML, so a protocol that does not validate still has its
    roster file watched: fixing the file then triggers the reload that fixes it.
    """
    paths: list[Path] = []
    try:
        files = protocol_files(directory)
    except OSError:
        return paths
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        value = _dig(data, "destinations", "pharmacy", "roster_file")
        if isinstance(value, str) and value.strip():
            paths.append(path.parent / value.strip())
    return paths
