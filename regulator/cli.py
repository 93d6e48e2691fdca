"""Command line: ``regulator serve | check-protocols | decide | calendar | roster |
report | export | explain | token``.

Each sub-command is a small function taking parsed arguments and returning an exit
code; heavy imports (aiohttp, storage) happen inside the commands that need them so
``check-protocols`` and ``decide`` start fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import orjson

from regulator.core.decision import decide
from regulator.core.labels import DAY_TYPE_NAMES, GROUND_LABELS, ROUTE_PHRASES
from regulator.core.models import Call, DecisionContext, Platform, Route, Stage
from regulator.core.protocol import (
    ProtocolLoadError,
    ProtocolSet,
    pds_hours_warnings,
    roster_gap_warnings,
)
from regulator.protocols import load_protocols

Command = Callable[[argparse.Namespace], int]


def _err(message: str) -> None:
    print(message, file=sys.stderr)


def _default_protocols_dir() -> str:
    from regulator.settings import Settings

    return str(Settings().protocols_dir)


def _load(directory: str) -> ProtocolSet | None:
    try:
        return load_protocols(directory)
    except ProtocolLoadError as exc:
        for issue in exc.issues:
            _err(f"erreur : {issue}")
        return None


def _warn_pds_hours(protocols: ProtocolSet) -> int:
    """Print one warning per slot outside the R.6315-1 PDS hours and per pharmacy
    roster gap during them; return how many."""
    count = 0
    for proto in protocols:
        file = protocols.files.get(proto.id, proto.id)
        for issue in [*pds_hours_warnings(proto, file), *roster_gap_warnings(proto, file)]:
            _err(f"avertissement : {issue}")
            count += 1
    return count


def cmd_check_protocols(args: argparse.Namespace) -> int:
    """Validate every protocol of a directory; exit 1 naming file, field and reason.

    Warnings (opening outside the PDS hours) keep exit 0 unless ``--strict``.
    """
    directory = args.directory or args.protocols or _default_protocols_dir()
    protocols = _load(directory)
    if protocols is None:
        return 1
    for proto in protocols:
        numbers = ", ".join(proto.numbers)
        print(f"ok  {proto.id:<24} {proto.name} ({proto.timezone}; {numbers})")
    warnings = _warn_pds_hours(protocols) + _warn_unreachable_over_kamailio(protocols)
    print(f"{len(protocols)} protocole(s) valide(s) dans {directory}")
    if warnings:
        plural = "s" if warnings > 1 else ""
        print(f"{warnings} avertissement{plural}" + (" (--strict : échec)" if args.strict else ""))
        if args.strict:
            return 1
    return 0


def _warn_unreachable_over_kamailio(protocols: ProtocolSet) -> int:
    """With a Kamailio secret set, name on stderr each destination Kamailio cannot ring
    (neither a SIP URI nor REGULATOR_SIP_GATEWAY); return how many. A warning: the exit
    code is unchanged unless ``--strict``."""
    from pydantic import ValidationError

    from regulator.platforms import kamailio
    from regulator.settings import Settings

    try:
        settings = Settings()
    except ValidationError:
        _err("avertissement : réglages REGULATOR_* invalides, destinations Kamailio non vérifiées")
        return 1
    if not settings.secret("kamailio_secret"):
        return 0
    count = 0
    for proto in protocols:
        for name in kamailio.unreachable_destinations(proto, settings.sip_gateway):
            count += 1
            _err(
                f"avertissement : MMG {proto.id}, destination {name} : ni URI SIP ni passerelle "
                "SIP (REGULATOR_SIP_GATEWAY) ; Kamailio ne peut pas l'appeler et passe à la "
                "route suivante (régulation)"
            )
    return count


def parse_instant(value: str | None, tz: object) -> datetime:
    """ISO 8601 instant; without an offset it is the MMG's local time."""
    from zoneinfo import ZoneInfo

    assert isinstance(tz, ZoneInfo)
    if value is None:
        return datetime.now(UTC)
    text = value.strip().replace(" ", "T", 1) if "T" not in value else value.strip()
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=tz)
    return parsed


def cmd_decide(args: argparse.Namespace) -> int:
    """Dry-run one decision and print it (``--json`` for the stable JSON shape)."""
    directory = args.protocols or _default_protocols_dir()
    protocols = _load(directory)
    if protocols is None:
        return 1
    proto = protocols.get(args.mmg)
    if proto is None:
        known = ", ".join(p.id for p in protocols) or "aucune"
        _err(f"erreur : MMG inconnue {args.mmg!r} (connues : {known})")
        return 2
    try:
        now = parse_instant(args.at, proto.tz)
    except ValueError:
        _err(f"erreur : --at {args.at!r} n'est pas une date ISO 8601 (ex. 2026-11-24T21:30)")
        return 2
    stage = Stage.DIAL_FAILED if args.overflow else Stage.INCOMING
    call = Call(
        call_id="cli",
        caller=args.caller,
        called=proto.numbers[0],
        platform=Platform.CLI,
        stage=stage,
        digits=args.digits,
    )
    ctx = DecisionContext(
        pending_referral=args.pending_referral,
        failed_route=Route.REGULATION if args.overflow else None,
    )
    decision = decide(proto, call, now, ctx)
    if args.json:
        out = decision.as_json()
        if args.explain:
            out["trace"] = list(decision.trace)
        sys.stdout.write(orjson.dumps(out).decode() + "\n")
        return 0
    dest = decision.destination.display() if decision.destination else "—"
    # The code for scripts, its French meaning for the person reading.
    print(f"route       : {decision.route.value} ({ROUTE_PHRASES[decision.route]})")
    ground = decision.ground
    print(f"motif       : {f'{ground.value} ({GROUND_LABELS[ground]})' if ground else '—'}")
    print(f"destination : {dest}")
    print(f"règle       : {decision.rule}")
    print(f"ouverte     : {'oui' if decision.open else 'non'}")
    day_type = decision.day_type
    print(f"type de jour: {f'{day_type.value} ({DAY_TYPE_NAMES[day_type]})' if day_type else '—'}")
    if args.explain:
        print("explication :")
        for step in decision.trace:
            print(f"  - {step}")
        for text, audio in decision.prompts:
            print(f"  « {text} »" + (f" (enregistrement : {audio})" if audio else ""))
    return 0


#: Longest plan ``regulator calendar`` prints (a year and a day: a leap year).
MAX_CALENDAR_DAYS = 366


def cmd_calendar(args: argparse.Namespace) -> int:
    """Print an MMG's plan: day types, slots and their source, pharmacy on duty,
    routing when open and closed (text, json) or its opening hours (ics)."""
    from datetime import date

    from regulator.core.plan import build_plan, to_ics, to_json, to_text

    directory = args.protocols or _default_protocols_dir()
    protocols = _load(directory)
    if protocols is None:
        return 1
    proto = protocols.get(args.mmg)
    if proto is None:
        known = ", ".join(p.id for p in protocols) or "aucune"
        _err(f"erreur : MMG inconnue {args.mmg!r} (connues : {known})")
        return 2
    now = datetime.now(UTC)
    try:
        start = date.fromisoformat(args.from_) if args.from_ else now.astimezone(proto.tz).date()
    except ValueError:
        _err(f"erreur : --from {args.from_!r} n'est pas une date (ex. 2026-12-21)")
        return 2
    if not 1 <= args.days <= MAX_CALENDAR_DAYS:
        _err(f"erreur : --days doit être entre 1 et {MAX_CALENDAR_DAYS}")
        return 2
    plan = build_plan(proto, start, args.days)
    if args.format == "json":
        sys.stdout.write(orjson.dumps(to_json(plan), option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.format == "ics":
        sys.stdout.buffer.write(to_ics(proto, plan, now))
        sys.stdout.flush()
    else:
        sys.stdout.write(to_text(plan))
    return 0


def cmd_roster_check(args: argparse.Namespace) -> int:
    """Read one roster file (ICS or CSV) and print its stretches, one per line.

    Exit 1 naming each unreadable stretch or overlap; gaps between stretches during
    the PDS hours (metropolitan calendar, or ``--subdiv``) are warnings.
    """
    from pathlib import Path
    from zoneinfo import ZoneInfoNotFoundError

    from pydantic import ValidationError

    from regulator import rosters
    from regulator.core.calendar import Schedule, format_local
    from regulator.core.protocol import (
        CalendarConfig,
        Opening,
        phone_region,
        roster_gaps,
        roster_overlaps,
    )

    try:
        calendar = CalendarConfig(subdiv=args.subdiv)
        schedule = Schedule(args.timezone, calendar, Opening())
    except (ZoneInfoNotFoundError, ValueError, OSError, ValidationError):
        _err(f"erreur : fuseau {args.timezone!r} ou département {args.subdiv!r} inconnu")
        return 2
    path = Path(args.file)
    try:
        entries = rosters.read_roster(
            path, timezone=args.timezone, region=phone_region(calendar.subdiv)
        )
    except rosters.RosterFileError as exc:
        for problem in exc.problems:
            _err(f"erreur : {exc.file} : {problem}")
        return 1
    for entry in sorted(entries, key=lambda e: e.from_):
        print(
            f"du {format_local(entry.from_)} au {format_local(entry.to)} : "
            f"{entry.name} ({entry.number})"
        )
    overlaps = roster_overlaps(entries)
    for problem in overlaps:
        _err(f"erreur : {path} : {problem}")
    for start, end in roster_gaps(entries, schedule):
        _err(
            f"avertissement : {path} : aucune pharmacie de garde du {format_local(start)} "
            f"au {format_local(end)} pendant des heures de PDS"
        )
    plural = "s" if len(entries) > 1 else ""
    print(f"{len(entries)} période{plural} de garde dans {path}")
    return 1 if overlaps else 0


def cmd_serve(args: argparse.Namespace) -> int:
    from regulator.web.app import serve

    return serve(args)


def cmd_report(args: argparse.Namespace) -> int:
    from regulator.reporting import run_report

    return run_report(args)


def cmd_export(args: argparse.Namespace) -> int:
    from regulator.reporting import run_export

    return run_export(args)


def cmd_explain(args: argparse.Namespace) -> int:
    from regulator.explain import run_explain

    return run_explain(args)


def cmd_token(args: argparse.Namespace) -> int:
    from regulator.auth import run_token_new

    return run_token_new(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="regulator",
        description="Routage des appels d'une maison médicale de garde selon son protocole.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the HTTP service")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--protocols", help="protocols directory (default: settings)")
    p.add_argument(
        "--workers",
        help="worker processes on one port, or 'auto' (one per core; default: settings, 1)",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("check-protocols", help="validate every protocol file")
    p.add_argument("directory", nargs="?")
    p.add_argument("--protocols", help=argparse.SUPPRESS)
    p.add_argument("--strict", action="store_true", help="warnings become errors (exit 1)")
    p.set_defaults(func=cmd_check_protocols)

    p = sub.add_parser("decide", help="dry-run one routing decision")
    p.add_argument("--protocols", help="protocols directory (default: settings)")
    p.add_argument("--mmg", required=True, help="MMG id")
    p.add_argument("--caller", required=True, help="caller number, any notation")
    p.add_argument("--at", help="ISO instant; without offset, the MMG's local time")
    p.add_argument("--digits", help="menu choice already typed")
    p.add_argument("--pending-referral", action="store_true", help="caller has an open referral")
    p.add_argument("--overflow", action="store_true", help="the regulation line did not answer")
    p.add_argument("--json", action="store_true")
    p.add_argument("--explain", action="store_true")
    p.set_defaults(func=cmd_decide)

    p = sub.add_parser("calendar", help="an MMG's plan: days, slots, pharmacy on duty")
    p.add_argument("--protocols", help="protocols directory (default: settings)")
    p.add_argument("--mmg", required=True, help="MMG id")
    p.add_argument("--from", dest="from_", help="first local date, YYYY-MM-DD (default: today)")
    p.add_argument("--days", type=int, default=14, help="number of days (default: 14)")
    p.add_argument("--format", choices=["text", "json", "ics"], default="text")
    p.set_defaults(func=cmd_calendar)

    p = sub.add_parser("roster", help="pharmacy duty roster files")
    rsub = p.add_subparsers(dest="roster_command", required=True)
    r = rsub.add_parser("check", help="read one roster file (ICS or CSV), print its stretches")
    r.add_argument("file")
    r.add_argument(
        "--timezone", default="Europe/Paris", help="MMG time zone (for ICS times in UTC)"
    )
    r.add_argument("--subdiv", help="department (57, 974…): holidays and number region")
    r.set_defaults(func=cmd_roster_check)

    p = sub.add_parser("report", help="monthly indicator report")
    p.add_argument("--mmg", required=True)
    p.add_argument("--month", required=True, help="YYYY-MM")
    p.add_argument("--format", choices=["json", "csv", "md", "xlsx"], default="json")
    p.add_argument("--output", "-o", help="file to write (default: stdout; required for xlsx)")
    p.add_argument("--protocols")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="annual export for the regional authority (ARS)")
    p.add_argument("--year", required=True, type=int)
    p.add_argument("--format", choices=["json", "csv", "xlsx"], default="json")
    p.add_argument("--output", "-o", help="file to write (default: stdout; required for xlsx)")
    p.add_argument("--protocols")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "explain", help="re-run a recorded call's decision against its protocol version"
    )
    p.add_argument("--call-id", required=True, help="the call id (as in the call log)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("token", help="API tokens")
    tsub = p.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("new", help="print a fresh token and its tokens-file line")
    t.add_argument("--name", required=True)
    t.add_argument("--role", required=True, action="append")
    t.set_defaults(func=cmd_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Command = args.func
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
