"""Every French word the service shows for a code: one place, keyed by the enums.

Reports, consoles, the Hub Santé texts and the CLI read their labels here, so a
front desk, a coordinator and centre 15 see the same words for the same thing and
no English code (``weekday``, ``no_show``…) ends up inside a French sentence.
Several tables exist for one enum only where the grammar differs (a noun in a
table header, a phrase in a sentence); ``tests/unit/test_labels.py`` checks that
each table names every member.

The enums are ``StrEnum``: a table keyed by ``DayType.WEEKDAY`` answers ``"weekday"``
too, so code holding the stored string value needs no conversion.
"""

from __future__ import annotations

from typing import Final

from regulator.core.models import DayType, Ground, Outcome, ReferralStatus, Route, VisitChannel

# ------------------------------------------------------------------- calls

#: What happened to a call, as a phrase after "Appel …" (Hub Santé free text, CLI).
ROUTE_PHRASES: Final[dict[Route, str]] = {
    Route.REGULATION: "transféré à la régulation (centre 15 / SAS)",
    Route.DIRECT_ACCESS: "accès direct à l'accueil de la maison médicale de garde",
    Route.PHARMACY: "orienté vers la pharmacie de garde",
    Route.MENU: "menu vocal",
    Route.CLOSED: "message de fermeture",
}

#: Where a route rings, as a name: "l'accueil de la MMG sans réponse" (decision rules).
ROUTE_DESTINATIONS: Final[dict[Route, str]] = {
    Route.REGULATION: "la régulation",
    Route.DIRECT_ACCESS: "l'accueil de la MMG",
    Route.PHARMACY: "la pharmacie de garde",
    Route.MENU: "le menu vocal",
    Route.CLOSED: "le message de fermeture",
}

#: Rows of the monthly report: calls counted by route.
ROUTE_REPORT_LABELS: Final[dict[Route, str]] = {
    Route.REGULATION: "Appels transférés à la régulation (centre 15 / SAS)",
    Route.DIRECT_ACCESS: "Appels en accès direct exceptionnel",
    Route.PHARMACY: "Appels orientés vers la pharmacie de garde",
    Route.MENU: "Appels terminés au menu vocal",
    Route.CLOSED: "Appels reçus MMG fermée (message)",
}

#: Why a caller reached the front desk without regulation (reports, CLI).
GROUND_LABELS: Final[dict[Ground, str]] = {
    Ground.PENDING_REFERRAL: "orientation régulée en attente",
    Ground.PROFESSIONAL: "professionnel de santé enregistré",
    Ground.REGULATION_OVERFLOW: "débordement de la ligne de régulation",
    Ground.DECLARED_INFLUX: "afflux déclaré",
}

#: Why a call is being put through to the front desk, as the desk console heads its
#: card (the overflow's delay, when the protocol sets one, is added by the console).
DESK_GROUND_LABELS: Final[dict[Ground, str]] = {
    Ground.PENDING_REFERRAL: "Patient attendu : orientation régulée en cours",
    Ground.PROFESSIONAL: "Professionnel de santé enregistré",
    Ground.REGULATION_OVERFLOW: "Débordement : la régulation (centre 15) n'a pas répondu",
    Ground.DECLARED_INFLUX: "Afflux déclaré : accès direct ouvert",
}

#: The platforms' normalised call statuses (``platforms/base.py`` CALL_STATUSES).
CALL_STATUS_LABELS: Final[dict[str, str]] = {
    "started": "appel lancé",
    "ringing": "sonnerie en cours",
    "answered": "appel décroché",
    "completed": "appel terminé normalement",
    "busy": "ligne occupée",
    "no-answer": "sans réponse",
    "failed": "échec de l'appel",
    "canceled": "appel annulé",
}

# ------------------------------------------------------------------ calendar

#: One day of that kind: "jour de semaine" (console state, trace, calendar reasons).
DAY_TYPE_NAMES: Final[dict[DayType, str]] = {
    DayType.WEEKDAY: "jour de semaine",
    DayType.SATURDAY: "samedi",
    DayType.SUNDAY: "dimanche",
    DayType.HOLIDAY: "jour férié",
    DayType.BRIDGE: "pont",
}

#: All days of that kind: "jours de semaine" (report rows, chart series).
DAY_TYPE_PLURALS: Final[dict[DayType, str]] = {
    DayType.WEEKDAY: "jours de semaine",
    DayType.SATURDAY: "samedis",
    DayType.SUNDAY: "dimanches",
    DayType.HOLIDAY: "jours fériés",
    DayType.BRIDGE: "ponts",
}

MONTHS: Final[tuple[str, ...]] = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def month_label(month: str) -> str:
    """``2026-11`` → ``novembre 2026``."""
    return f"{MONTHS[int(month[5:]) - 1]} {month[:4]}"


# ------------------------------------------------------------ referrals, visits

STATUS_LABELS: Final[dict[ReferralStatus, str]] = {
    ReferralStatus.PENDING: "en attente",
    ReferralStatus.ACKNOWLEDGED: "vue par l'accueil",
    ReferralStatus.ARRIVED: "patient arrivé",
    ReferralStatus.COMPLETED: "consultation terminée",
    ReferralStatus.CANCELLED: "annulée",
    ReferralStatus.NO_SHOW: "patient non venu",
}

#: The desk's choices of outcome (form options).
OUTCOME_LABELS: Final[dict[Outcome, str]] = {
    Outcome.HOME: "Retour à domicile",
    Outcome.EMERGENCY: "Réorientation vers une structure d'urgence",
    Outcome.HOSPITALISED: "Hospitalisation",
    Outcome.OTHER: "Autre",
}

#: An outcome inside a sentence: "Consultation terminée … : retour à domicile".
OUTCOME_PHRASES: Final[dict[Outcome, str]] = {
    Outcome.HOME: "retour à domicile",
    Outcome.EMERGENCY: "orienté vers les urgences",
    Outcome.HOSPITALISED: "hospitalisé",
    Outcome.OTHER: "autre issue",
}

#: How a person came (the desk's visit form, the visit's JSON).
CHANNEL_LABELS: Final[dict[VisitChannel, str]] = {
    VisitChannel.REGULATION: "Adressé(e) par la régulation (15 / SAS)",
    VisitChannel.DIRECT: "Accès direct (sans régulation préalable)",
    VisitChannel.EMERGENCY_REORIENTATION: "Réorientation par un service d'urgences",
    VisitChannel.OTHER: "Autre",
}

#: Persons seen by channel, as the report's chart names its series.
CHANNEL_SEEN_LABELS: Final[dict[VisitChannel, str]] = {
    VisitChannel.REGULATION: "Via la régulation de la PDS",
    VisitChannel.DIRECT: "Accès direct (hors régulation préalable)",
    VisitChannel.EMERGENCY_REORIENTATION: "Après réorientation par un service d'urgences",
    VisitChannel.OTHER: "Autres cas",
}

#: Age bands the consoles offer: (stored value, label).
AGE_BANDS: Final[tuple[tuple[str, str], ...]] = (
    ("0-1", "moins de 2 ans"),
    ("2-17", "2 à 17 ans"),
    ("18-64", "18 à 64 ans"),
    ("65-74", "65 à 74 ans"),
    ("75+", "75 ans et plus"),
)

#: Degrees of urgency of a regulated referral (the regulator's own codes).
URGENCIES: Final[tuple[str, ...]] = ("P0", "P1", "P2", "P3")
