import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from deploy.bootstrap.kafka_topics import TOPIC_PARTITIONS, ensure_topics
from deploy.bootstrap.progress import Outcome, Progress
from shared.contracts.routing import Topic
from shared.runtime.kafka_security import KafkaConnection


def test_every_topic_has_a_partition_count():
    assert set(TOPIC_PARTITIONS) == set(Topic)


async def _partition_counts(bootstrap_servers: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        return {entry["topic"]: len(entry["partitions"]) for entry in await admin.describe_topics(names)}
    finally:
        await admin.close()


@pytest.mark.stack
async def test_bootstrap_created_every_topic_with_its_partition_count(bootstrapped_stack):
    settings = bootstrapped_stack.settings
    wanted = {settings.topic(topic): partitions for topic, partitions in TOPIC_PARTITIONS.items()}

    assert await _partition_counts(settings.kafka_bootstrap_servers, list(wanted)) == wanted


@pytest.mark.stack
async def test_topics_are_created_once_and_a_rerun_reports_them_present(kafka_server):
    prefix = f"fresh-{uuid.uuid4().hex[:8]}."
    first, second = Progress(), Progress()

    await ensure_topics(KafkaConnection(kafka_server, "PLAINTEXT"), prefix, 1, first)
    await ensure_topics(KafkaConnection(kafka_server, "PLAINTEXT"), prefix, 1, second)

    assert [step.outcome for step in first.steps] == [Outcome.CREATED] * len(Topic)
    assert [(step.outcome, step.detail) for step in second.steps] == [(Outcome.PRESENT, "")] * len(Topic)
    assert {step.subject for step in second.steps} == {f"kafka topic {topic.full_name(prefix)}" for topic in Topic}


@pytest.mark.stack
async def test_an_existing_topic_with_another_partition_count_is_reported_and_left_alone(kafka_server):
    prefix = f"odd-{uuid.uuid4().hex[:8]}."
    odd_topic = Topic.BINDING_REQUESTED.full_name(prefix)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_server)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(odd_topic, 2, 1)])
    finally:
        await admin.close()
    progress = Progress()

    await ensure_topics(KafkaConnection(kafka_server, "PLAINTEXT"), prefix, 1, progress)

    [odd_step] = [step for step in progress.steps if step.subject == f"kafka topic {odd_topic}"]
    assert odd_step.outcome is Outcome.PRESENT
    assert "has 2 partitions, 6 wanted" in odd_step.detail
    assert await _partition_counts(kafka_server, [odd_topic]) == {odd_topic: 2}
