"""The decision engine: a pure function from (protocol, call, instant, context) to a route.

Order of reasoning, each step recorded in the decision's trace:

1. a failed dial (the destination given last did not answer; nothing is ever
   offered twice to one call):
   a. front desk, pharmacy or a destination nobody can name → regulation (centre 15);
   b. regulation → front desk, once, if the protocol allows overflow and the MMG is open;
   c. nothing left to offer, or the caller already told to dial → announcement
      "raccrochez et composez le 15";
2. closed → regulation (or the closed message), whoever calls;
3. open → exceptional direct access on a named ground only (declared influx,
   professional, pending referral);
4. open → menu (and its digits) or straight to regulation.

Anything unexpected yields the fail-safe: centre 15. ``decide`` never raises.
"""

from __future__ import annotations

from datetime import datetime

from regulator.core import phone
from regulator.core.calendar import OpenState
from regulator.core.labels import DAY_TYPE_NAMES, ROUTE_DESTINATIONS
from regulator.core.models import (
    DESTINATION_ROUTES,
    Call,
    Decision,
    DecisionContext,
    Destination,
    Ground,
    MenuPrompt,
    Route,
    Stage,
)
from regulator.core.protocol import Destination as ProtocolDestination
from regulator.core.protocol import Protocol

_NO_CONTEXT = DecisionContext()

#: Read when every destination this call may have has been tried (or centre 15 itself
#: failed): the caller dials 15 on their own phone, which no platform can do for them.
DIAL_15 = (
    "Nous n'avons pas pu vous mettre en relation. Raccrochez et composez le 15. "
    "En cas d'urgence vitale, composez le 15."
)


def _dest(dest: ProtocolDestination, label: str) -> Destination:
    if dest.number is not None and phone.is_short_code(dest.number) and dest.sip is None:
        return Destination(announce=dest.number, label=label)
    return Destination(number=dest.number, sip=dest.sip, label=label)


def regulation_destination(protocol: Protocol) -> Destination:
    return _dest(protocol.destinations.regulation, "centre 15 / SAS")


def failsafe(
    protocol: Protocol | None,
    reason: str,
    failsafe_number: str | None = None,
    trace: tuple[str, ...] = (),
    *,
    regulation_offered: bool = False,
) -> Decision:
    """Route to centre 15 whatever happened: the protocol's regulation line if known,
    else the configured long number, else a message asking to dial 15.

    ``regulation_offered``: centre 15 was already given to this call (a failed dial
    being handled); it is not dialled twice, the caller is asked to dial 15."""
    if regulation_offered:
        destination = Destination(announce="15", label="centre 15")
        say: tuple[str, ...] = (DIAL_15,)
    elif protocol is not None:
        destination = regulation_destination(protocol)
        say = (protocol.messages.failsafe,)
    elif failsafe_number:
        destination = Destination(number=failsafe_number, label="centre 15")
        say = ("Nous vous mettons en relation avec le centre 15.",)
    else:
        destination = Destination(announce="15", label="centre 15")
        say = (
            "Ce numéro n'est pas joignable pour le moment. "
            "Raccrochez et composez le 15. En cas d'urgence vitale, composez le 15.",
        )
    return Decision(
        mmg=protocol.id if protocol else None,
        route=Route.REGULATION,
        rule=f"sécurité : renvoi vers le centre 15 ({reason})",
        destination=destination,
        failsafe=True,
        failsafe_reason=reason,
        say=say,
        trace=(*trace, f"sécurité déclenchée : {reason}"),
    )


def decide(
    protocol: Protocol,
    call: Call,
    now: datetime,
    context: DecisionContext = _NO_CONTEXT,
) -> Decision:
    """Decide where one call goes. Pure: same inputs, same decision; never raises.

    ``now`` must be timezone-aware. Every decision names the rule that fired; its
    ``trace`` explains the reasoning step by step (``regulator decide --explain``).
    """
    try:
        return _decide(protocol, call, now, context)
    except Exception as exc:  # the caller must always be routed somewhere safe
        failed = Route.REGULATION if context.regulation_failed else context.failed_route
        again = call.stage is Stage.DIAL_FAILED or context.regulation_failed
        return failsafe(
            protocol,
            f"erreur interne {type(exc).__name__}",
            regulation_offered=again and Route.REGULATION in {failed, *context.offered},
        )


def _regulation(
    protocol: Protocol,
    state: OpenState,
    rule: str,
    trace: list[str],
    *say: str,
    overflow_possible: bool = True,
) -> Decision:
    overflow = protocol.routing.direct_access.regulation_overflow
    # The ring time before the overflow callback, only if an overflow may follow.
    timeout = (
        overflow.after_s if overflow is not None and state.open and overflow_possible else None
    )
    return Decision(
        mmg=protocol.id,
        route=Route.REGULATION,
        rule=rule,
        destination=regulation_destination(protocol),
        open=state.open,
        day_type=state.day_type,
        say=(*say, protocol.messages.regulation),
        dial_timeout_s=timeout,
        trace=(*trace, f"règle : {rule}"),
    )


def _direct(
    protocol: Protocol, state: OpenState, ground: Ground, rule: str, trace: list[str]
) -> Decision:
    return Decision(
        mmg=protocol.id,
        route=Route.DIRECT_ACCESS,
        rule=rule,
        destination=_dest(protocol.destinations.front_desk, "accueil MMG"),
        ground=ground,
        open=state.open,
        day_type=state.day_type,
        say=(protocol.messages.direct_access,),
        trace=(*trace, f"règle : {rule}"),
    )


def _dial_15(protocol: Protocol, state: OpenState, rule: str, trace: list[str]) -> Decision:
    """Nothing left to dial: the caller is asked to hang up and dial 15 (a regulated call)."""
    return Decision(
        mmg=protocol.id,
        route=Route.REGULATION,
        rule=rule,
        destination=Destination(announce="15", label="centre 15"),
        open=state.open,
        day_type=state.day_type,
        say=(DIAL_15,),
        trace=(*trace, f"règle : {rule}"),
    )


def _after_failed_dial(
    protocol: Protocol,
    state: OpenState,
    failed: Route | None,
    offered: frozenset[Route],
    trace: list[str],
) -> Decision:
    """Step 1: what follows a failed dial. ``failed`` None: nobody can say which
    destination failed. ``offered``: destinations this call was already given (and
    ``CLOSED`` if it was already asked to hang up and dial)."""
    if failed not in DESTINATION_ROUTES:
        failed = None
    if failed is not None:
        offered = offered | {failed}
    what = ROUTE_DESTINATIONS[failed] if failed is not None else "destination inconnue"
    tried_routes = sorted(offered & DESTINATION_ROUTES)
    tried = ", ".join(ROUTE_DESTINATIONS[r] for r in tried_routes) or "aucune"
    trace.append(f"appel sans réponse : {what} ; déjà proposées : {tried}")

    # 1c (first). Already asked to hang up and dial: nothing is dialled any more,
    # whatever the platform reports (a report after an announcement is noise).
    if Route.CLOSED in offered:
        return _dial_15(
            protocol,
            state,
            f"{what} sans réponse, appelant déjà invité à composer le 15 : "
            "annonce « raccrochez et composez le 15 »",
            trace,
        )

    # 1a. Front desk, pharmacy or unknown destination: centre 15, unless already tried.
    if failed is not Route.REGULATION:
        if Route.REGULATION not in offered:
            return _regulation(
                protocol,
                state,
                f"{what} sans réponse : renvoi vers la régulation (centre 15)",
                trace,
                overflow_possible=Route.DIRECT_ACCESS not in offered,
            )
        return _dial_15(
            protocol,
            state,
            f"{what} sans réponse, régulation déjà proposée : "
            "annonce « raccrochez et composez le 15 »",
            trace,
        )
    # 1b. Centre 15 did not answer: the front desk, once, where the protocol allows it.
    overflow = protocol.routing.direct_access.regulation_overflow
    if state.open and overflow is not None and Route.DIRECT_ACCESS not in offered:
        return _direct(
            protocol,
            state,
            Ground.REGULATION_OVERFLOW,
            f"régulation sans réponse après {overflow.after_s} s : "
            "accès direct à l'accueil (débordement autorisé)",
            trace,
        )
    # 1c. Nothing left to offer: never a second dial to the same line.
    if not state.open:
        why = "MMG fermée"
    elif overflow is None:
        why = "débordement non prévu par le protocole"
    else:
        why = "accueil déjà proposé"
    return _dial_15(
        protocol,
        state,
        f"régulation sans réponse, {why} : annonce « raccrochez et composez le 15 »",
        trace,
    )


def _pharmacy(protocol: Protocol, state: OpenState, rule: str, trace: list[str]) -> Decision:
    pharmacy = protocol.destinations.pharmacy
    local = state.local.replace(tzinfo=None)
    entry = pharmacy.on_duty(local)
    msgs = protocol.messages
    if entry is not None:
        trace.append(
            f"pharmacie de garde : {entry.name} "
            f"({entry.from_:%Y-%m-%d %H:%M} → {entry.to:%Y-%m-%d %H:%M})"
        )
        if phone.is_short_code(entry.number):
            destination = Destination(announce=entry.number, label=entry.name)
            say = (msgs.pharmacy_fallback.format(number=entry.number, name=entry.name),)
        else:
            destination = Destination(number=entry.number, label=entry.name)
            say = (msgs.pharmacy.format(name=entry.name, number=entry.number),)
        rule = f"{rule} ; tableau de garde : {entry.name}"
    else:
        fallback = pharmacy.fallback
        trace.append(f"aucune pharmacie au tableau de garde : numéro national {fallback}")
        if phone.is_short_code(fallback):
            destination = Destination(announce=fallback, label="pharmacie de garde")
            say = (msgs.pharmacy_fallback.format(number=fallback, name=""),)
        else:
            destination = Destination(number=fallback, label="pharmacie de garde")
            say = (msgs.pharmacy.format(name="pharmacie de garde", number=fallback),)
        rule = f"{rule} ; pas de tableau de garde à cette heure, repli sur le {fallback}"
    return Decision(
        mmg=protocol.id,
        route=Route.PHARMACY,
        rule=rule,
        destination=destination,
        open=state.open,
        day_type=state.day_type,
        say=say,
        trace=(*trace, f"règle : {rule}"),
    )


def _decide(protocol: Protocol, call: Call, now: datetime, ctx: DecisionContext) -> Decision:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    state = protocol.schedule.state(now)
    local = state.local
    trace = [
        # Same text as f"{local:%Y-%m-%d %H:%M %Z}", without strftime (hot path).
        f"MMG {protocol.id} — heure locale {local.year}-{local.month:02d}-{local.day:02d} "
        f"{local.hour:02d}:{local.minute:02d} {local.tzname() or ''}",
        f"type de jour : {DAY_TYPE_NAMES[state.day_type]}",
        f"{'ouverte' if state.open else 'fermée'} : {state.reason}",
    ]
    caller = phone.try_normalize(call.caller)
    trace.append(f"appelant : {phone.mask(caller) if caller else 'numéro masqué ou invalide'}")
    access = protocol.routing.direct_access
    msgs = protocol.messages

    # 1. A failed dial (step 1 a-c in _after_failed_dial).
    if call.stage is Stage.DIAL_FAILED or ctx.regulation_failed:
        failed = Route.REGULATION if ctx.regulation_failed else ctx.failed_route
        return _after_failed_dial(protocol, state, failed, ctx.offered, trace)

    # 2. Closed: everyone goes to regulation (or hears the closed message).
    if not state.open:
        if protocol.routing.when_closed == "closed_message":
            rule = "MMG fermée : message de fermeture, composer le 15"
            return Decision(
                mmg=protocol.id,
                route=Route.CLOSED,
                rule=rule,
                destination=Destination(announce="15", label="centre 15"),
                open=False,
                day_type=state.day_type,
                say=(msgs.welcome, msgs.closed),
                trace=(*trace, f"règle : {rule}"),
            )
        if protocol.is_professional(caller) or ctx.pending_referral:
            trace.append("motif d'accès direct ignoré : la MMG est fermée")
        return _regulation(
            protocol, state, "MMG fermée : appel régulé par le centre 15", trace, msgs.welcome
        )

    # 3. Open: exceptional direct access, on named grounds only.
    if state.direct_access and state.override is not None:
        return _direct(
            protocol,
            state,
            Ground.DECLARED_INFLUX,
            f"afflux déclaré « {state.override.reason} » : accès direct ouvert",
            trace,
        )
    if protocol.is_professional(caller):
        return _direct(
            protocol, state, Ground.PROFESSIONAL, "professionnel de santé référencé", trace
        )
    if ctx.pending_referral:
        if access.pending_referral:
            return _direct(
                protocol,
                state,
                Ground.PENDING_REFERRAL,
                "orientation régulée en attente vers cette MMG",
                trace,
            )
        trace.append("orientation en attente, mais accès direct non prévu pour ce motif")

    # 4. Open: menu or regulation.
    if protocol.routing.when_open == "menu" and protocol.routing.menu is not None:
        menu = protocol.routing.menu
        if call.digits is None and call.stage is Stage.INCOMING:
            rule = "MMG ouverte : menu vocal"
            return Decision(
                mmg=protocol.id,
                route=Route.MENU,
                rule=rule,
                destination=None,
                open=True,
                day_type=state.day_type,
                say=(msgs.welcome,),
                menu=MenuPrompt(msgs.menu, menu.timeout_s, tuple(menu.options)),
                trace=(*trace, f"règle : {rule}"),
            )
        digits = (call.digits or "").strip()[:1]
        choice = menu.options.get(digits)
        if choice is None:
            what = f"touche « {digits} » inconnue" if digits else "aucune touche"
            trace.append(f"menu : {what}, choix par défaut {menu.default}")
            choice = menu.default
            rule_prefix = f"menu : {what}, choix par défaut"
        else:
            rule_prefix = f"menu : touche {digits}"
        if choice == "pharmacy":
            return _pharmacy(protocol, state, f"{rule_prefix} → pharmacie de garde", trace)
        return _regulation(protocol, state, f"{rule_prefix} → régulation", trace)
    return _regulation(
        protocol, state, "MMG ouverte : accès régulé par le centre 15", trace, msgs.welcome
    )
