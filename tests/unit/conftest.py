"""Fixtures: the three example protocols of ``protocols/``, loaded once."""

from __future__ import annotations

import pytest

from regulator.core.protocol import Protocol
from tests.unit.helpers import protocol


@pytest.fixture(scope="session")
def nimes() -> Protocol:
    return protocol("nimes")


@pytest.fixture(scope="session")
def metz() -> Protocol:
    return protocol("metz")


@pytest.fixture(scope="session")
def reunion_mmg() -> Protocol:
    return protocol("saint-denis-reunion")
