"""Figures that come from elsewhere: entered by a coordinator, never computed here.

The circular asks for two kinds of figures this service cannot count itself:

- per MMG and month, the emergency department passages before and after midnight in
  the nearby establishments ("Nombre de passages aux urgences avant et après minuit
  dans les établissements implantés"), from the establishments' own statistics —
  their source is always recorded;
- per MMG and year, the real cost of the MMG by heading (équipement, fonctionnement,
  personnel, prestations, communication, indemnisation), in euros.

Each entry is kept with who entered it and when; every revision stays in the store's
history (the previous value is the revision before). A figure not entered is
``None`` in the report and "non renseigné" on screen and in files, never 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from regulator.core.indicators import Indicator, Section

#: Shown for a figure nobody entered (a 0 would be a figure).
NOT_ENTERED = "non renseigné"


class FigureKind(StrEnum):
    """What an entry holds: its period is a month (``YYYY-MM``) or a year (``YYYY``)."""

    ED_PASSAGES = "ed_passages"
    COSTS = "costs"


#: The circular's question 2 and its row, split into its two figures.
ED_SECTION = Section(
    "2- Quel est l'impact de la MMG sur les autres modes de recours aux soins ? "
    "Sur le recours aux urgences",
    (
        Indicator(
            "entered.ed_passages.before_midnight",
            "Nombre de passages aux urgences avant minuit dans les établissements implantés",
        ),
        Indicator(
            "entered.ed_passages.after_midnight",
            "Nombre de passages aux urgences après minuit dans les établissements implantés",
        ),
    ),
)

#: The annual real-cost table, one row per heading (euros).
COST_SECTION = Section(
    "3- Coût réel de la MMG (annuel, en euros)",
    (
        Indicator("entered.costs.equipment", "Équipement"),
        Indicator("entered.costs.operation", "Fonctionnement"),
        Indicator("entered.costs.staff", "Personnel"),
        Indicator("entered.costs.services", "Prestations"),
        Indicator("entered.costs.communication", "Communication"),
        Indicator("entered.costs.compensation", "Indemnisation"),
    ),
)

#: The value fields of each kind, in the circular's order.
FIELDS: dict[FigureKind, tuple[str, ...]] = {
    FigureKind.ED_PASSAGES: tuple(i.key.rsplit(".", 1)[1] for i in ED_SECTION.indicators),
    FigureKind.COSTS: tuple(i.key.rsplit(".", 1)[1] for i in COST_SECTION.indicators),
}


def kind_of_period(period: str) -> FigureKind | None:
    """``YYYY-MM`` → ED passages (monthly), ``YYYY`` → costs (annual), else None."""
    if len(period) == 7 and period[4] == "-" and period[:4].isdigit() and period[5:].isdigit():
        return FigureKind.ED_PASSAGES if 1 <= int(period[5:]) <= 12 else None
    if len(period) == 4 and period.isdigit():
        return FigureKind.COSTS
    return None


@dataclass(frozen=True, slots=True)
class FigureEntry:
    """One revision of the figures of one MMG, kind and period."""

    mmg: str
    kind: FigureKind
    period: str
    values: Mapping[str, float | int]
    entered_by: str
    entered_at: datetime
    source: str | None = None
    note: str = field(default="")

    def to_dict(self) -> dict[str, Any]:
        return {
            "mmg": self.mmg,
            "kind": self.kind.value,
            "period": self.period,
            "values": dict(self.values),
            "source": self.source,
            "note": self.note,
            "entered_by": self.entered_by,
            "entered_at": self.entered_at.isoformat(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FigureEntry:
        return cls(
            mmg=data["mmg"],
            kind=FigureKind(data["kind"]),
            period=data["period"],
            values=dict(data["values"]),
            source=data.get("source"),
            note=data.get("note", ""),
            entered_by=data["entered_by"],
            entered_at=datetime.fromisoformat(data["entered_at"]),
        )


def entered_one(entry: FigureEntry | None) -> dict[str, Any] | None:
    """One kind's block of a report's ``entered`` field: values, source and audit, or
    None when nothing was entered."""
    if entry is None:
        return None
    out: dict[str, Any] = {name: entry.values.get(name) for name in FIELDS[entry.kind]}
    out.update(
        source=entry.source,
        period=entry.period,
        entered_by=entry.entered_by,
        entered_at=entry.entered_at.isoformat(),
    )
    return out


_SECTIONS = {FigureKind.ED_PASSAGES: ED_SECTION, FigureKind.COSTS: COST_SECTION}


def entered_rows(entered: Mapping[str, Any]) -> list[tuple[str, str, float | int | None]]:
    """(key, label, value or None) of an ``entered`` field's kinds (None: not entered)."""
    rows: list[tuple[str, str, float | int | None]] = []
    for kind, section in _SECTIONS.items():
        if kind.value not in entered:
            continue
        block = entered[kind.value]
        for indicator in section.indicators:
            name = indicator.key.rsplit(".", 1)[1]
            rows.append((indicator.key, indicator.label, None if block is None else block[name]))
    return rows


def is_euros(key: str) -> bool:
    return key.startswith("entered.costs.")


def entered_text(value: float | int | None) -> str:
    """A count in French (``1 412``), or "non renseigné"."""
    if value is None:
        return NOT_ENTERED
    return f"{int(value):,}".replace(",", "\u202f")


def sum_entered(values: Sequence[float | int | None]) -> float | int | None:
    """A yearly total of monthly entries: None unless every month was entered (a sum
    of some months would read as the year's figure)."""
    if any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)
