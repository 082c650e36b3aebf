"""Static membership (KIP-345) on the real broker, through shared.runtime.subscriptions.subscribe: an instance that
restarts under the same HASH7_KAFKA_INSTANCE_ID gets its own partitions back while the other instance of its group
keeps working; without it, the restart takes the other instance's partitions away for a rebalance."""

import asyncio
import time
import uuid

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from faststream.kafka import KafkaBroker

from shared.contracts.routing import ROUTES, Topic
from shared.runtime.broker import make_broker
from shared.runtime.config import VaultWriterSettings
from shared.runtime.lanes import LanedSubscription
from shared.runtime.provenance import EventSigner, EventVerifier
from shared.runtime.publishing import EventPublisher
from shared.runtime.subscriptions import subscribe
from tests.fakes import InMemoryVault

pytestmark = pytest.mark.stack

TOPIC = Topic.BINDING_VALIDATED
VAULT = InMemoryVault()
# Far longer than a restart here, so that the broker keeps a static member's place while it is away.
SESSION_TIMEOUT_MS = 30_000


async def no_outcome(event, *, at):
    return []


class Instance:
    """One vault-writer instance's subscription to TOPIC, recording every partition it had taken away."""

    def __init__(self, settings: VaultWriterSettings) -> None:
        self.broker: KafkaBroker = make_broker(settings, settings.service_name)
        publisher = EventPublisher(self.broker, settings.topic_prefix, EventSigner(VAULT, settings.service_name))
        self.subscription: LanedSubscription = subscribe(self.broker, settings, TOPIC, no_outcome, no_outcome,
                                                         publisher, EventVerifier(VAULT))
        self.revoked: list[set[TopicPartition]] = []
        revoke = self.subscription.on_partitions_revoked

        async def on_partitions_revoked(revoked: set[TopicPartition]) -> None:
            self.revoked.append(set(revoked))
            await revoke(revoked)

        self.subscription.on_partitions_revoked = on_partitions_revoked

    def assignment(self) -> frozenset[TopicPartition]:
        consumer = self.broker.subscribers[0].consumer
        return frozenset(consumer.assignment()) if consumer is not None else frozenset()

    async def start(self) -> "Instance":
        await self.broker.start()
        return self

    async def stop(self) -> None:
        await self.subscription.close()
        await self.broker.stop()


async def _create_topic(bootstrap_servers: str, prefix: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC.full_name(prefix), ROUTES[TOPIC].partitions, 1)])
    finally:
        await admin.close()


async def _until(condition, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.05)


async def _restart_one_of_two(kafka_server: str, static: bool) -> tuple[Instance, frozenset, frozenset, float]:
    """Two instances share the partitions; the first restarts. The second instance, the first's partitions before
    and after, and how long the restarted one took to get partitions again."""
    prefix = f"static-{uuid.uuid4().hex[:8]}."
    await _create_topic(kafka_server, prefix)

    def settings(name: str) -> VaultWriterSettings:
        return VaultWriterSettings(kafka_bootstrap_servers=kafka_server, topic_prefix=prefix,
                                   kafka_instance_id=name if static else None,
                                   kafka_session_timeout_ms=SESSION_TIMEOUT_MS)

    def shared_out() -> bool:
        # Each holds some, together all, none twice: a rebalance still under way shows an old assignment.
        mine, theirs = first.assignment(), second.assignment()
        return bool(mine and theirs) and not mine & theirs and len(mine | theirs) == ROUTES[TOPIC].partitions

    first = await Instance(settings("vault-writer-0")).start()
    second = await Instance(settings("vault-writer-1")).start()
    try:
        await _until(shared_out, 90)
        before = first.assignment()
        second.revoked.clear()
        await first.stop()
        restarted_at = time.monotonic()
        first = await Instance(settings("vault-writer-0")).start()
        await _until(shared_out, 90)
        rejoined_s = time.monotonic() - restarted_at
        return second, before, first.assignment(), rejoined_s
    finally:
        await asyncio.gather(first.stop(), second.stop())


async def test_a_static_member_restarts_into_its_own_partitions_and_the_other_keeps_working(kafka_server):
    other, before, after, rejoined_s = await _restart_one_of_two(kafka_server, static=True)

    assert after == before
    assert [revoked for revoked in other.revoked if revoked] == []
    print(f"static member back in {rejoined_s:.1f} s; the other instance lost nothing")


async def test_without_static_membership_a_restart_takes_the_other_instances_partitions_away(kafka_server):
    other, _before, _after, rejoined_s = await _restart_one_of_two(kafka_server, static=False)

    assert [revoked for revoked in other.revoked if revoked] != []
    print(f"dynamic member back in {rejoined_s:.1f} s; the other instance gave up its partitions meanwhile")
