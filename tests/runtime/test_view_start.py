"""A view given a max age (shared/runtime/subscriptions.py `follow`) starts each partition at the broker's offset
for now − max age − margin, on the real broker: the records it reads are those from that offset on. Tansu answers
every lookup by time with the partition's start, so there the view reads from the beginning, as without a max
age; the seek past older records is shown against a consumer that answers by time
(tests/runtime/test_subscriptions.py)."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared.contracts.events import BindingStatus
from shared.contracts.outcomes import status
from shared.contracts.routing import Party, Topic
from shared.contracts.states import BindingState, RequestKind
from shared.runtime.broker import make_broker
from shared.runtime.config import IntakeSettings
from shared.runtime.provenance import EventVerifier
from shared.runtime.subscriptions import _START_MARGIN_S, follow
from tests.fakes import InMemoryVault
from tests.fixtures.topics import create_topics

pytestmark = pytest.mark.stack

MAX_AGE = timedelta(days=7)


class TrustingVerifier(EventVerifier):
    """Takes every record for the status topic's producer: what is read, not who signed it, is under test."""

    async def producer_of(self, *record: Any) -> Party:
        return Party.INTAKE


async def broker_start(bootstrap_servers: str, partition: TopicPartition) -> int:
    """Where the broker says the records produced within the view's reach begin (plain aiokafka)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=None, enable_auto_commit=False)
    await consumer.start()
    try:
        since_ms = int((time.time() - MAX_AGE.total_seconds() - _START_MARGIN_S) * 1000)
        found = (await consumer.offsets_for_times({partition: since_ms}))[partition]
        return 0 if found is None else found.offset
    finally:
        await consumer.stop()


async def test_a_view_reads_its_partitions_from_the_brokers_offset_for_its_max_age(kafka_server):
    settings = IntakeSettings(kafka_bootstrap_servers=kafka_server, topic_prefix=f"view-start-{uuid.uuid4().hex[:8]}.")
    name = settings.topic(Topic.BINDING_STATUS)
    await create_topics(kafka_server, {name: 2})
    now = datetime.now(UTC)
    sent = [(f"old-{n}", now - timedelta(days=30)) for n in range(3)] + [(f"new-{n}", now) for n in range(3)]
    producer = AIOKafkaProducer(bootstrap_servers=kafka_server)
    await producer.start()
    try:
        for request_id, at in sent:
            event = status(
                exchange="htx", user_id="u1", state=BindingState.RECEIVED, request_id=request_id, binding_id=None,
                occurred_at=at, kind=RequestKind.BIND)
            await producer.send_and_wait(name, event.to_bytes(), partition=0, timestamp_ms=int(at.timestamp() * 1000))
    finally:
        await producer.stop()
    start = await broker_start(kafka_server, TopicPartition(name, 0))

    read: list[BindingStatus] = []
    broker = make_broker(settings, settings.service_name)
    follow(broker, settings, Topic.BINDING_STATUS, read.append, TrustingVerifier(InMemoryVault()), MAX_AGE)
    async with broker:
        await broker.start()
        async with asyncio.timeout(30):
            while not read or read[-1].request_id != sent[-1][0]:
                await asyncio.sleep(0.05)

    assert [event.request_id for event in read] == [request_id for request_id, _ in sent[start:]]
