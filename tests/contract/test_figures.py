"""Entered figures, on SQLite and on Redis: current entry, replaced entry, history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from regulator.core.figures import FigureEntry, FigureKind
from regulator.ports import Store

AT = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


def ed(before: int, after: int, by: str, minutes: int = 0) -> FigureEntry:
    return FigureEntry(
        mmg="nimes",
        kind=FigureKind.ED_PASSAGES,
        period="2026-11",
        values={"before_midnight": before, "after_midnight": after},
        source="RPU du CHU de Nîmes",
        entered_by=by,
        entered_at=AT + timedelta(minutes=minutes),
    )


async def test_nothing_entered_is_none_not_zero(store: Store) -> None:
    assert await store.get_figures("nimes", FigureKind.ED_PASSAGES, "2026-11") is None
    assert await store.figures_history("nimes", FigureKind.COSTS, "2026") == []


async def test_an_entry_replaces_the_previous_one_and_both_stay_in_the_history(
    store: Store,
) -> None:
    first, second = ed(412, 97, "ars-occitanie"), ed(415, 97, "coordination-30", minutes=5)
    assert await store.put_figures(first) is None
    assert await store.put_figures(second) == first
    assert await store.get_figures("nimes", FigureKind.ED_PASSAGES, "2026-11") == second
    assert await store.figures_history("nimes", FigureKind.ED_PASSAGES, "2026-11") == [
        first,
        second,
    ]
    # Another period, kind or MMG is another entry.
    assert await store.get_figures("nimes", FigureKind.ED_PASSAGES, "2026-10") is None
    assert await store.get_figures("metz", FigureKind.ED_PASSAGES, "2026-11") is None
    costs = FigureEntry(
        mmg="nimes",
        kind=FigureKind.COSTS,
        period="2026",
        values={"equipment": 1200.5, "staff": 48000, "operation": 0},
        entered_by="ars-occitanie",
        entered_at=AT,
        note="comptes approuvés",
    )
    assert await store.put_figures(costs) is None
    assert await store.get_figures("nimes", FigureKind.COSTS, "2026") == costs


async def test_concurrent_entries_each_see_a_different_previous_value(store: Store) -> None:
    entries = [ed(400 + i, 90, f"coordinator-{i}", minutes=i) for i in range(8)]
    replaced = await asyncio.gather(*(store.put_figures(e) for e in entries))
    history = await store.figures_history("nimes", FigureKind.ED_PASSAGES, "2026-11")
    assert sorted(h.entered_by for h in history) == sorted(e.entered_by for e in entries)
    # Written one after another: each replaced exactly the one before it in the history.
    assert replaced.count(None) == 1
    assert sorted(r.entered_by for r in replaced if r is not None) == sorted(
        h.entered_by for h in history[:-1]
    )
    assert await store.get_figures("nimes", FigureKind.ED_PASSAGES, "2026-11") == history[-1]
