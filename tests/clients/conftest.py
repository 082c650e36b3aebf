"""Fixtures the clients' stack tests share: a publisher standing in for a service, and a user of their own."""

import uuid
from collections.abc import AsyncIterator

import pytest

from shared.contracts.routing import Party
from shared.runtime.producer import KafkaPublisher
from tests.fixtures.stack import BootstrappedStack, publisher_as


@pytest.fixture
async def service(bootstrapped_stack: BootstrappedStack) -> AsyncIterator[KafkaPublisher]:
    """Publishes as the whitelist service would: it may produce statuses, audit events and dead letters."""
    publisher = publisher_as(bootstrapped_stack.settings, Party.WHITELIST)
    try:
        yield publisher
    finally:
        await publisher.close()


@pytest.fixture
def user_id() -> str:
    # Topics live for the whole session: each test reads only its own user's records.
    return f"user-{uuid.uuid4().hex[:12]}"
