"""Fixtures of the trading library's unit tests."""

import pytest

from tests.fakes import CountingVault
from tests.trading.fakes import ManualClock


@pytest.fixture
def vault() -> CountingVault:
    return CountingVault()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
