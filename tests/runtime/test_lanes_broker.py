"""Flood fairness of shared.runtime.lanes on the real broker, through FastStream's batch subscriber as
shared/runtime/subscriptions.py wires it: records sent straight to a topic for one user (one key) must not
make the other users wait for the flood."""

import asyncio
import uuid
from typing import cast

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaMessage

from shared.runtime.broker import make_broker, whole_message
from shared.runtime.config import ServiceSettings
from shared.runtime.lanes import Consumer, LanedSubscription
from tests.fixtures.topics import create_topics

pytestmark = pytest.mark.stack

PARTITIONS = 6
FLOOD = 300
HANDLING_S = 0.02  # per record: the flood alone keeps its key's lane busy FLOOD × HANDLING_S = 6 s
OTHER_USERS = [b"user-b", b"user-c", b"user-d", b"user-e", b"user-f"]


async def create_topic(bootstrap_servers: str) -> str:
    name = f"lanes-flood-{uuid.uuid4().hex[:8]}"
    await create_topics(bootstrap_servers, {name: PARTITIONS})
    return name


async def wait_until(condition, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def test_a_flood_for_one_user_does_not_delay_the_other_users(kafka_server):
    settings = ServiceSettings(kafka_bootstrap_servers=kafka_server)
    topic = await create_topic(kafka_server)
    loop = asyncio.get_running_loop()
    handled_at: dict[bytes, float] = {}

    async def process(record: ConsumerRecord) -> None:
        await asyncio.sleep(HANDLING_S)
        handled_at[record.key] = loop.time()

    subscription = LanedSubscription(process, settings.kafka_max_records_in_hand, settings.kafka_max_share_per_key)
    broker = make_broker(settings, "lanes-flood-test")

    # The wiring of shared/runtime/subscriptions.py `subscribe` on the binding path, minus the event parsing.
    @broker.subscriber(topic, group_id=f"{topic}.group", auto_offset_reset="earliest", ack_policy=AckPolicy.MANUAL,
                       listener=subscription, batch=True, max_records=settings.kafka_max_records_in_hand,
                       batch_timeout_ms=10, fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms, decoder=whole_message)
    async def consume(batch: KafkaMessage) -> None:
        await subscription.admit(batch.raw_message, cast(Consumer, batch.consumer))

    producer = AIOKafkaProducer(bootstrap_servers=kafka_server, linger_ms=5)
    await broker.start()
    await producer.start()
    try:
        # Every partition assigned and read before the flood, so that the figure is not the group's join.
        warm_up = [f"warm-{partition}".encode() for partition in range(PARTITIONS)]
        for partition, key in enumerate(warm_up):
            await producer.send_and_wait(topic, b"{}", key=key, partition=partition)
        await wait_until(lambda: all(key in handled_at for key in warm_up), timeout_s=60)

        # The flood, on partition 0; each other user on a partition of its own, as keys spread over partitions.
        flood = [await producer.send(topic, b"{}", key=b"user-a", partition=0) for _ in range(FLOOD)]
        await asyncio.gather(*flood)
        published_at = {}
        for partition, key in enumerate(OTHER_USERS, start=1):
            published_at[key] = loop.time()
            await producer.send_and_wait(topic, b"{}", key=key, partition=partition)
        await wait_until(lambda: all(key in handled_at for key in OTHER_USERS), timeout_s=60)

        latencies = {key.decode(): round(handled_at[key] - published_at[key], 3) for key in OTHER_USERS}
        print(f"\nother users' latency behind a flood of {FLOOD} x {HANDLING_S}s: {latencies}")
        assert max(latencies.values()) < 1.0, latencies  # the flood alone takes 6 s
    finally:
        await producer.stop()
        await subscription.close()
        await broker.stop()
