"""The at-least-once promise of shared.runtime.lanes on the real broker: a user's slow record holds its
partition's committed offset while other users' later records on that partition finish, and the offset moves
past them all once it finishes. A crash in between would redeliver the slow record, never skip it."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contracts.events import BindingValidated
from shared.contracts.routing import Party, Topic
from shared.runtime.broker import make_broker
from shared.runtime.config import VaultWriterSettings, consumer_group_id
from shared.runtime.provenance import EventSigner, EventVerifier
from shared.runtime.publishing import EventPublisher
from shared.runtime.subscriptions import subscribe
from tests.builders import provenance_headers, validated
from tests.fakes import InMemoryVault
from tests.fixtures.topics import create_topics

pytestmark = pytest.mark.stack


async def committed_offset(bootstrap_servers: str, group_id: str, partition: TopicPartition) -> int | None:
    # A consumer that never subscribes reads the group's committed offset without joining the group.
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group_id, enable_auto_commit=False)
    await reader.start()
    try:
        return await reader.committed(partition)
    finally:
        await reader.stop()


async def wait_until(condition, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


async def test_a_slow_record_holds_the_commit_while_later_records_of_other_users_finish(kafka_server):
    settings = VaultWriterSettings(kafka_bootstrap_servers=kafka_server, topic_prefix=f"lanes-{uuid.uuid4().hex[:8]}.")
    topic = settings.topic(Topic.BINDING_VALIDATED)
    await create_topics(kafka_server, {topic: 1})  # one partition: every user's records share it
    partition = TopicPartition(topic, 0)
    group_id = consumer_group_id(settings.topic_prefix, settings.service_name, settings.kafka_group_suffix,
                                 Topic.BINDING_VALIDATED)

    release_slow = asyncio.Event()
    finished: list[str] = []

    async def handle(event: BindingValidated, *, at):
        if event.user_id == "slow-user":
            await release_slow.wait()
        finished.append(event.user_id)
        return []

    broker = make_broker(settings, "lanes-test")
    vault = InMemoryVault()
    subscription = subscribe(broker, settings, Topic.BINDING_VALIDATED, handle, lambda error, *, at: [],
                             EventPublisher(broker, settings.topic_prefix, EventSigner(vault, Party.VAULT_WRITER)),
                             EventVerifier(vault))
    await broker.start()
    try:
        for user in ("slow-user", "user-2", "user-3"):
            body = validated(user_id=user, request_id=f"r-{user}").to_bytes()
            headers = provenance_headers(vault, Party.VALIDATOR, Topic.BINDING_VALIDATED, body, user.encode())
            await broker.publish(body, topic=topic, key=user.encode(),
                                 headers={name: value.decode() for name, value in headers})
        await wait_until(lambda: finished == ["user-2", "user-3"], timeout_s=120)
        await asyncio.sleep(1.0)  # five commit ticks
        assert await committed_offset(kafka_server, group_id, partition) in (None, 0)

        release_slow.set()
        await wait_until(lambda: len(finished) == 3, timeout_s=10)
        await asyncio.sleep(1.0)
        assert await committed_offset(kafka_server, group_id, partition) == 3
    finally:
        release_slow.set()
        await subscription.close()
        await broker.stop()
