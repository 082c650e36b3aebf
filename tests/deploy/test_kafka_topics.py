import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.structs import OffsetAndMetadata
from pydantic import ValidationError

from deploy.bootstrap.kafka_topics import RETENTION_MS, TOPIC_PARTITIONS, TopicLayout, ensure_topics
from deploy.bootstrap.progress import BootstrapError, Outcome, Progress
from deploy.bootstrap.run import BootstrapSettings
from shared.contracts.routing import ROUTES, Party, Retention, Topic
from shared.runtime.config import consumer_group_id
from shared.runtime.kafka_security import KafkaConnection


def plain(bootstrap_servers: str) -> KafkaConnection:
    """The embedded broker, which has no authentication."""
    return KafkaConnection(bootstrap_servers, "PLAINTEXT")


def test_every_topic_has_a_partition_count_and_every_retention_class_a_broker_retention():
    assert set(TOPIC_PARTITIONS) == set(Topic)
    assert set(RETENTION_MS) == set(Retention)


def test_the_layout_takes_a_grown_partition_count_and_never_one_below_the_routing_table():
    layout = TopicLayout(partitions={Topic.BINDING_ACCEPTED: 12, Topic.BINDING_STORED: 2})

    assert layout.partitions_of(Topic.BINDING_ACCEPTED) == 12
    assert layout.partitions_of(Topic.BINDING_STORED) == TOPIC_PARTITIONS[Topic.BINDING_STORED]


@pytest.mark.parametrize(("replication_factor", "min_insync"), [(1, "1"), (2, "1"), (3, "2"), (5, "2")])
def test_with_three_replicas_two_must_hold_a_record(replication_factor, min_insync):
    configs = TopicLayout(replication_factor).configs_of(Topic.AUDIT)

    assert configs == {"cleanup.policy": "delete", "retention.ms": str(RETENTION_MS[Retention.HISTORY]),
                       "min.insync.replicas": min_insync}


def test_partition_and_replication_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("HASH7_KAFKA_REPLICATION_FACTOR", "3")
    monkeypatch.setenv("HASH7_KAFKA_PARTITIONS", '{"binding.requested": 12}')
    monkeypatch.setenv("HASH7_KAFKA_GROUP_SUFFIX", "-blue")

    layout = BootstrapSettings().topic_layout()

    assert layout == TopicLayout(3, {Topic.BINDING_REQUESTED: 12}, "-blue")


@pytest.mark.parametrize("partitions", ['{"binding.requested": 0}', '{"no.such.topic": 12}', "12"])
def test_a_bad_partition_setting_is_refused(monkeypatch, partitions):
    monkeypatch.setenv("HASH7_KAFKA_PARTITIONS", partitions)

    with pytest.raises(ValidationError):
        BootstrapSettings()


async def _partition_counts(bootstrap_servers: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        return {entry["topic"]: len(entry["partitions"]) for entry in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def _topic_configs(bootstrap_servers: str, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        responses = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        await admin.close()
    return {resource[3]: {entry[0]: entry[1] for entry in resource[4]}
            for response in responses for resource in response.resources}


async def _create_topic(bootstrap_servers: str, name: str, partitions: int, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()


@pytest.mark.stack
async def test_bootstrap_created_every_topic_with_its_partition_count(bootstrapped_stack):
    settings = bootstrapped_stack.settings
    wanted = {settings.topic(topic): partitions for topic, partitions in TOPIC_PARTITIONS.items()}

    assert await _partition_counts(settings.kafka_bootstrap_servers, list(wanted)) == wanted


@pytest.mark.stack
async def test_every_topic_is_created_with_the_retention_of_its_class(kafka_server):
    prefix = f"kept-{uuid.uuid4().hex[:8]}."

    await ensure_topics(plain(kafka_server), prefix, TopicLayout(), Progress())

    configs = await _topic_configs(kafka_server, [topic.full_name(prefix) for topic in Topic])
    assert {name: (config["retention.ms"], config["cleanup.policy"]) for name, config in configs.items()} == {
        topic.full_name(prefix): (str(RETENTION_MS[route.retention]), "delete") for topic, route in ROUTES.items()}
    assert configs[Topic.AUDIT.full_name(prefix)]["retention.ms"] == str(90 * 24 * 3600 * 1000)


@pytest.mark.stack
async def test_topics_are_created_once_and_a_rerun_reports_them_present(kafka_server):
    prefix = f"fresh-{uuid.uuid4().hex[:8]}."
    first, second = Progress(), Progress()

    await ensure_topics(plain(kafka_server), prefix, TopicLayout(), first)
    await ensure_topics(plain(kafka_server), prefix, TopicLayout(), second)

    assert [step.outcome for step in first.steps] == [Outcome.CREATED] * len(Topic)
    assert [(step.outcome, step.detail) for step in second.steps] == [(Outcome.PRESENT, "")] * len(Topic)
    assert {step.subject for step in second.steps} == {f"kafka topic {topic.full_name(prefix)}" for topic in Topic}


@pytest.mark.stack
async def test_drifted_settings_and_replication_are_reported_where_the_broker_cannot_change_them(kafka_server):
    # Tansu takes a topic's settings at creation but has no AlterConfigs: the drift is reported, not repaired.
    prefix = f"drift-{uuid.uuid4().hex[:8]}."
    await ensure_topics(plain(kafka_server), prefix, TopicLayout(), Progress())
    drifted = Topic.AUDIT.full_name(prefix)
    await _create_topic(kafka_server, f"{prefix}unrelated", 1, {})
    progress = Progress()

    await ensure_topics(plain(kafka_server), prefix, TopicLayout(replication_factor=3), progress)

    [step] = [step for step in progress.steps if step.subject == f"kafka topic {drifted}"]
    assert step.outcome is Outcome.PRESENT
    assert step.detail == ("settings differ (min.insync.replicas 1 -> 2); this broker cannot change them "
                           "(no AlterConfigs): left as is; replication factor 1, 3 wanted: left as is")


@pytest.mark.stack
async def test_a_topic_with_more_partitions_than_wanted_is_never_shrunk(kafka_server):
    prefix = f"wide-{uuid.uuid4().hex[:8]}."
    wide = Topic.BINDING_REQUESTED.full_name(prefix)
    await _create_topic(kafka_server, wide, 8, TopicLayout().configs_of(Topic.BINDING_REQUESTED))
    progress = Progress()

    await ensure_topics(plain(kafka_server), prefix, TopicLayout(), progress)
    with pytest.raises(BootstrapError) as refused:
        await ensure_topics(plain(kafka_server), prefix, TopicLayout(partitions={Topic.BINDING_REQUESTED: 7}),
                            Progress())

    refusal = "has 8 partitions, 6 wanted: Kafka cannot remove partitions; set HASH7_KAFKA_PARTITIONS to at least 8"
    # Grown earlier and the setting since dropped: said, and the bootstrap goes on.
    [step] = [step for step in progress.steps if step.subject == f"kafka topic {wide}"]
    assert (step.outcome, step.detail) == (Outcome.PRESENT, f"{refusal} for binding.requested")
    # Asked for explicitly: stopped in one line.
    assert str(refused.value) == (f"topic {wide} has 8 partitions, 7 wanted: Kafka cannot remove partitions; set "
                                  f"HASH7_KAFKA_PARTITIONS to at least 8 for binding.requested")
    assert await _partition_counts(kafka_server, [wide]) == {wide: 8}


async def _send(bootstrap_servers: str, topic: str, keys: list[str]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers, acks="all")
    await producer.start()
    try:
        for key in keys:
            await producer.send_and_wait(topic, b"{}", key=key.encode())
    finally:
        await producer.stop()


async def _commit_to_the_end(bootstrap_servers: str, group: str, topic: str) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.commit({tp: OffsetAndMetadata(end, "") for tp, end in ends.items() if end})
    finally:
        await consumer.stop()


@pytest.mark.stack
async def test_a_topic_grows_only_once_its_consumers_read_it_to_the_end(kafka_server):
    prefix = f"grow-{uuid.uuid4().hex[:8]}."
    narrow = Topic.BINDING_REQUESTED.full_name(prefix)
    await _create_topic(kafka_server, narrow, 6, {})
    await _send(kafka_server, narrow, [f"user-{n}" for n in range(5)])
    layout = TopicLayout(partitions={Topic.BINDING_REQUESTED: 12})
    group = consumer_group_id(prefix, Party.INTAKE, "", Topic.BINDING_REQUESTED)

    with pytest.raises(BootstrapError) as lagging:
        await ensure_topics(plain(kafka_server), prefix, layout, Progress())
    await _commit_to_the_end(kafka_server, group, narrow)
    with pytest.raises(BootstrapError) as drained:
        await ensure_topics(plain(kafka_server), prefix, layout, Progress())

    assert str(lagging.value) == (f"topic {narrow} not grown from 6 to 12 partitions: {group} has 5 to read; stop "
                                  f"its producers, wait until its consumers read everything, then run the bootstrap "
                                  f"again")
    # Drained, the bootstrap asks for the partitions; Tansu has no CreatePartitions, and says so.
    assert str(drained.value) == (f"topic {narrow} not grown from 6 to 12 partitions: this broker cannot add "
                                  f"partitions (no CreatePartitions)")
    assert await _partition_counts(kafka_server, [narrow]) == {narrow: 6}


@pytest.mark.stack
async def test_a_topic_only_the_app_and_ops_read_has_no_group_to_wait_for(kafka_server):
    prefix = f"grow-audit-{uuid.uuid4().hex[:8]}."
    audit = Topic.AUDIT.full_name(prefix)
    await _create_topic(kafka_server, audit, 6, {})
    await _send(kafka_server, audit, ["user-1"])

    with pytest.raises(BootstrapError) as refused:
        await ensure_topics(plain(kafka_server), prefix, TopicLayout(partitions={Topic.AUDIT: 12}), Progress())

    assert "this broker cannot add partitions" in str(refused.value)
