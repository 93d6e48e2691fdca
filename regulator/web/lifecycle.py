"""Readiness state: false until the store is open, false again as soon as shutdown starts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Lifecycle:
    store_open: bool = False
    shutting_down: bool = False

    @property
    def ready(self) -> bool:
        return self.store_open and not self.shutting_down
