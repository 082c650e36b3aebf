"""Reading a whole topic with plain aiokafka, independently of the code under test (as the broker's super user, the
bootstrap's identity, where Kafka asks for one: tests/runtime/test_kafka_security.py)."""

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from deploy.bootstrap.run import BOOTSTRAP_IDENTITY
from shared.contracts.routing import Topic
from shared.runtime.config import Settings
from shared.runtime.kafka_security import kafka_connection


async def raw_records(settings: Settings, topic: Topic) -> list[ConsumerRecord]:
    """Everything on the topic, read with plain aiokafka (not the client under test)."""
    name = settings.topic(topic)
    consumer = AIOKafkaConsumer(**kafka_connection(settings, BOOTSTRAP_IDENTITY).client_options(), group_id=None,
                                enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(name, partition) for partition in await _partitions(consumer, name)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord] = []
        while any([await consumer.position(tp) < ends[tp] for tp in partitions]):
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, name: str) -> set[int]:
    await consumer.topics()
    return consumer.partitions_for_topic(name) or set()


async def topic_bytes(settings: Settings) -> dict[Topic, bytes]:
    """Every value and header on every topic, per topic (for scans of what must never be there)."""
    found = {}
    for topic in Topic:
        chunks = []
        for record in await raw_records(settings, topic):
            chunks.append(record.value or b"")
            chunks.extend(value for _, value in record.headers)
        found[topic] = b"\n".join(chunks)
    return found
