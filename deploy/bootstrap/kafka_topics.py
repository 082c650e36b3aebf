"""Every topic of the routing table (shared/contracts/routing.py), created explicitly with its partition count
(FastStream's auto-create would make 1 partition), its replication factor, and the retention of its class.

A topic that exists is checked: settings that drifted from its class are set again (where the broker takes
AlterConfigs, else reported), a replication factor other than the one wanted is reported; a partition count
below the one wanted is raised only once every consumer group of the topic has read it to the end (see
`grow_partitions`), and never lowered (Kafka cannot remove partitions).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import IncompatibleBrokerVersion, KafkaError

from deploy.bootstrap.progress import BootstrapError, Outcome, Progress
from shared.contracts.routing import ROUTES, SERVICES, Retention, Topic
from shared.runtime.config import consumer_group_id
from shared.runtime.kafka_security import SCRAM_REFUSALS, KafkaConnection

TOPIC_PARTITIONS: dict[Topic, int] = {topic: route.partitions for topic, route in ROUTES.items()}

_DAY_MS = 24 * 3600 * 1000
# What each retention class means to the broker. Every class deletes by time: the consumers that need a topic's
# whole history (intake's status view) bound what they keep themselves (services/intake/rules.py), so compaction
# would buy nothing but a second notion of "latest".
RETENTION_MS: Mapping[Retention, int] = {
    Retention.REQUEST: 7 * _DAY_MS,  # a consumer may be down for a long weekend and still find its work
    Retention.HISTORY: 90 * _DAY_MS,  # statuses and audit events ops and users read back
    # Replaying one leaves it in place, and nothing drops them: bounded, but long enough to find and replay any.
    # (A binding request replayed after binding.requested's retention is refused `request_expired` anyway.)
    Retention.DEAD_LETTER: 180 * _DAY_MS,
}

_TOPIC_ALREADY_EXISTS = 36


@dataclass(frozen=True)
class TopicLayout:
    """How the topics are laid out on this cluster: the bootstrap's settings, checked before anything changes."""

    replication_factor: int = 1
    # Partition counts raised above the routing table's (HASH7_KAFKA_PARTITIONS), per topic.
    partitions: Mapping[Topic, int] = field(default_factory=dict)
    # The consumers' group suffix (HASH7_KAFKA_GROUP_SUFFIX): whose lag decides whether a topic may grow.
    group_suffix: str = ""

    def partitions_of(self, topic: Topic) -> int:
        return max(TOPIC_PARTITIONS[topic], self.partitions.get(topic, 0))

    def configs_of(self, topic: Topic) -> dict[str, str]:
        # Writes wait for all in-sync replicas (our producers use acks=all); with 3 replicas, 2 must have a record
        # before it counts, so one broker may be down without stopping writes or losing an acknowledged record.
        min_insync = max(1, min(2, self.replication_factor - 1))
        return {
            "cleanup.policy": "delete",
            "retention.ms": str(RETENTION_MS[ROUTES[topic].retention]),
            "min.insync.replicas": str(min_insync),
        }


async def ensure_topics(connection: KafkaConnection, prefix: str, layout: TopicLayout, progress: Progress) -> None:
    """Create every missing topic; check the existing ones' settings and partitions against the layout."""
    admin = AIOKafkaAdminClient(**connection.client_options(), request_timeout_ms=10_000)
    try:
        await admin.start()
        topics = {topic.full_name(prefix): topic for topic in Topic}
        response = await admin.create_topics([
            NewTopic(name, layout.partitions_of(topic), layout.replication_factor,
                     topic_configs=layout.configs_of(topic))
            for name, topic in topics.items()
        ])
        existing: list[str] = []
        for name, error_code, error_message in response.topic_errors:
            if error_code == 0:
                partitions = layout.partitions_of(topics[name])
                progress.record(f"kafka topic {name}", Outcome.CREATED, f"{partitions} partitions")
            elif error_code == _TOPIC_ALREADY_EXISTS:
                existing.append(name)
            else:
                raise BootstrapError(f"Kafka refused to create topic {name}: error {error_code} {error_message or ''}")
        if existing:
            drifted = await _drifted_configs(admin, {name: layout.configs_of(topics[name]) for name in existing})
            for description in await admin.describe_topics(existing):
                name = description["topic"]
                await _check_existing(admin, connection, prefix, description, topics[name], drifted.get(name, {}),
                                      layout, progress)
    except KafkaError as error:
        raise BootstrapError(f"cannot set up topics on Kafka at {connection.bootstrap_servers}: {error}") from None
    except SCRAM_REFUSALS:
        if connection.credentials is None:
            raise
        raise BootstrapError(connection.login_refused()) from None
    finally:
        await admin.close()


async def _check_existing(admin: AIOKafkaAdminClient, connection: KafkaConnection, prefix: str,
                          description: dict[str, Any],
                          topic: Topic, drifted: dict[str, tuple[str | None, str]], layout: TopicLayout,
                          progress: Progress) -> None:
    name, partitions = description["topic"], len(description["partitions"])
    changed: list[str] = []
    notes: list[str] = []
    if drifted:
        differences = ", ".join(f"{key} {old} -> {new}" for key, (old, new) in sorted(drifted.items()))
        if await _set_configs(admin, name, layout.configs_of(topic)):
            changed.append(differences)
        else:
            notes.append(f"settings differ ({differences}); this broker cannot change them (no AlterConfigs): "
                         f"left as is")
    replicas = {len(entry["replicas"]) for entry in description["partitions"]}
    if replicas != {layout.replication_factor}:
        # Moving replicas is a reassignment (kafka-reassign-partitions.sh), an operator's job with its own pace.
        notes.append(f"replication factor {'/'.join(map(str, sorted(replicas)))}, {layout.replication_factor} "
                     f"wanted: left as is")
    wanted = layout.partitions_of(topic)
    if partitions > wanted:
        refusal = (f"has {partitions} partitions, {wanted} wanted: Kafka cannot remove partitions; set "
                   f"HASH7_KAFKA_PARTITIONS to at least {partitions} for {topic.value}")
        if topic in layout.partitions:
            raise BootstrapError(f"topic {name} {refusal}")  # asked for explicitly: a mistake to stop at
        notes.append(refusal)  # grown earlier, the setting since dropped: the rest of the bootstrap goes on
    if partitions < wanted:
        await grow_partitions(admin, connection, prefix, topic, partitions, wanted, layout.group_suffix)
        changed.append(f"partitions {partitions} -> {wanted}")
    progress.record(f"kafka topic {name}", Outcome.UPDATED if changed else Outcome.PRESENT,
                    "; ".join(changed + notes))


async def _drifted_configs(admin: AIOKafkaAdminClient,
                           wanted: dict[str, dict[str, str]]) -> dict[str, dict[str, tuple[str | None, str]]]:
    """Per topic, the settings whose value differs from the wanted one: {key: (current, wanted)}."""
    responses = await admin.describe_configs(
        # All settings, not only ours: Tansu drops the connection when asked for named ones.
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted])
    drifted: dict[str, dict[str, tuple[str | None, str]]] = {}
    for response in responses:
        for error_code, error_message, _type, name, entries in response.resources:
            if error_code:
                raise BootstrapError(
                    f"Kafka cannot describe topic {name}'s settings: error {error_code} {error_message}")
            current: dict[str, str | None] = {entry[0]: entry[1] for entry in entries}
            differ = {key: (current.get(key), value) for key, value in wanted[name].items()
                      if current.get(key) != value}
            if differ:
                drifted[name] = differ
    return drifted


async def _set_configs(admin: AIOKafkaAdminClient, name: str, configs: dict[str, str]) -> bool:
    """Set name's settings to configs; False if the broker cannot (Tansu has no AlterConfigs)."""
    # AlterConfigs (aiokafka has no IncrementalAlterConfigs) replaces the topic's whole set of overrides: any
    # setting not named here goes back to the broker's default, which is what a topic the bootstrap owns should be.
    try:
        [response] = await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, configs=configs)])
    except IncompatibleBrokerVersion:
        return False
    for error_code, error_message, _type, _name in response.resources:
        if error_code:
            raise BootstrapError(f"Kafka refused to change topic {name}'s settings: error {error_code} {error_message}")
    return True


async def grow_partitions(admin: AIOKafkaAdminClient, connection: KafkaConnection, prefix: str, topic: Topic,
                          partitions: int, wanted: int, group_suffix: str) -> None:
    """Raise topic's partition count to wanted, once every consumer group of it has read it to the end.

    A record's partition is its key's hash modulo the partition count, so adding partitions sends many users'
    NEW records to another partition while their older ones wait in the old one, and the two partitions are
    consumed independently: a user's newer record could be handled before an older one. With nothing left to
    read, no older record is waiting, so order holds. Producers must be stopped first (so that nothing new
    arrives between this check and the growth) and restarted after (each learns the new count only on its next
    metadata refresh, and until then two producers could place one user's records in different partitions)."""
    name = topic.full_name(prefix)
    lagging = await unread_records(admin, connection, prefix, topic, partitions, group_suffix)
    if lagging:
        behind = ", ".join(f"{group} has {unread} to read" for group, unread in sorted(lagging.items()))
        raise BootstrapError(f"topic {name} not grown from {partitions} to {wanted} partitions: {behind}; stop its "
                             f"producers, wait until its consumers read everything, then run the bootstrap again")
    try:
        await admin.create_partitions({name: NewPartitions(wanted)})
    except IncompatibleBrokerVersion:
        raise BootstrapError(f"topic {name} not grown from {partitions} to {wanted} partitions: this broker cannot "
                             f"add partitions (no CreatePartitions)") from None


async def unread_records(admin: AIOKafkaAdminClient, connection: KafkaConnection, prefix: str, topic: Topic,
                          partition_count: int, group_suffix: str) -> dict[str, int]:
    """Per consumer group of topic (its services' groups, from the routing table), the records it has not committed
    yet, if any. The app and ops read without a group (nothing committed to check): what they read is ordered by
    its own time (a status's `occurred_at`), not by its offset."""
    # A topic's partitions are numbered from 0 (the caller has just described it).
    partitions = [TopicPartition(topic.full_name(prefix), number) for number in range(partition_count)]
    starts, ends = await _offset_range(connection, partitions)
    unread: dict[str, int] = {}
    for party in sorted(ROUTES[topic].grouped_consumers & set(SERVICES)):
        group = consumer_group_id(prefix, party, group_suffix, topic)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        # A group that committed nothing on a partition reads it from its first record kept. A commit past the end
        # the broker reports (Tansu's end offset sometimes lags its last record by one) leaves nothing to read.
        behind = sum(max(end - max(starts[tp], committed[tp].offset if tp in committed else -1), 0)
                     for tp, end in ends.items())
        if behind:
            unread[group] = behind
    return unread


async def _offset_range(connection: KafkaConnection, partitions: list[TopicPartition]
                        ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """Each partition's first kept offset and its end offset."""
    # The admin client has no ListOffsets; a consumer outside any group asks for them and commits nothing.
    consumer = AIOKafkaConsumer(**connection.client_options(), enable_auto_commit=False,
                                request_timeout_ms=10_000)
    await consumer.start()
    try:
        return await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
