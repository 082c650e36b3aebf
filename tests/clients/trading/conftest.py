"""Fixtures of the trading library's unit tests."""

import pytest

from tests.clients.trading.fakes import ManualClock
from tests.fakes import CountingVault


@pytest.fixture
def vault() -> CountingVault:
    return CountingVault()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
