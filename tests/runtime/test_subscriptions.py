"""How shared.runtime.subscriptions.subscribe wires a topic: the delivery rules that would silently break the mission if
FastStream's defaults crept back (commit before processing, a new group starting at `latest`), one consumer
group per subscription whose commits are the lanes' (not FastStream's), the fetch wait of the binding
path versus the occasional topics; the service's own subscriptions, closed by its app before the broker
stops; and where a view with a max age starts each partition (`follow`)."""

import time
from datetime import timedelta

import pytest
from aiokafka import ConsumerRecord, TopicPartition
from aiokafka.errors import UnsupportedVersionError
from aiokafka.structs import OffsetAndTimestamp
from faststream import AckPolicy

from shared.contracts.routing import Topic
from shared.runtime.broker import make_broker
from shared.runtime.config import VaultWriterSettings
from shared.runtime.lanes import LanedSubscription
from shared.runtime.provenance import EventSigner, EventVerifier
from shared.runtime.publishing import EventPublisher
from shared.runtime.service import service_app
from shared.runtime.subscriptions import _START_MARGIN_S, Subscriptions, _StartAtAge, subscribe
from tests.fakes import InMemoryVault

VAULT = InMemoryVault()


async def no_outcome(event, *, at):
    return []


def subscribers_of(settings, *topics):
    broker = make_broker(settings, settings.service_name)
    publisher = EventPublisher(broker, settings.topic_prefix, EventSigner(VAULT, settings.service_name))
    for topic in topics:
        subscribe(broker, settings, topic, no_outcome, no_outcome, publisher, EventVerifier(VAULT))
    return {subscriber.topics[0].name: subscriber for subscriber in broker.subscribers}


def test_each_subscription_has_its_own_group_reads_from_the_beginning_and_leaves_commits_to_its_lanes():
    settings = VaultWriterSettings(kafka_group_suffix="-blue")
    subscribers = subscribers_of(settings, Topic.BINDING_VALIDATED, Topic.BINDING_REVOKE_REQUESTED)
    validated = subscribers["hash7.binding.validated"]
    revoke = subscribers["hash7.binding.revoke-requested"]
    # The prefix first: two deployments on one cluster never share a group.
    assert (validated.group_id, revoke.group_id) == ("hash7.vault-writer-blue.binding.validated",
                                                       "hash7.vault-writer-blue.binding.revoke-requested")
    for subscriber in (validated, revoke):
        assert subscriber._connection_args["auto_offset_reset"] == "earliest"
        assert subscriber._connection_args["enable_auto_commit"] is False
        # FastStream commits nothing (its default commits before handling); the lanes commit behind the work.
        assert subscriber.ack_policy is AckPolicy.MANUAL
        assert isinstance(subscriber._listener, LanedSubscription)
        assert subscriber.max_records == settings.kafka_max_records_in_hand


def test_the_binding_path_is_polled_often_and_occasional_topics_ten_times_less():
    settings = VaultWriterSettings(kafka_fetch_max_wait_ms=40, kafka_occasional_fetch_max_wait_ms=400)
    subscribers = subscribers_of(settings, Topic.BINDING_VALIDATED, Topic.BINDING_REVOKE_REQUESTED)
    assert subscribers["hash7.binding.validated"]._connection_args["fetch_max_wait_ms"] == 40
    assert subscribers["hash7.binding.revoke-requested"]._connection_args["fetch_max_wait_ms"] == 400


class RecordingSubscription:
    def __init__(self, closed: list[str], name: str) -> None:
        self.closed, self.name = closed, name

    async def close(self) -> None:
        self.closed.append(self.name)


def test_subscribe_gives_the_subscription_it_attached_for_the_service_to_close():
    settings = VaultWriterSettings()
    broker = make_broker(settings, settings.service_name)
    publisher = EventPublisher(broker, settings.topic_prefix, EventSigner(VAULT, settings.service_name))
    subscription = subscribe(broker, settings, Topic.BINDING_VALIDATED, no_outcome, no_outcome, publisher,
                             EventVerifier(VAULT))
    assert broker.subscribers[0]._listener is subscription


async def test_the_app_closes_its_subscriptions_before_its_broker_stops():
    settings = VaultWriterSettings()
    broker = make_broker(settings, settings.service_name)
    closed: list[str] = []
    original_stop = broker.stop

    async def stop(*args, **kwargs):
        closed.append("broker")
        await original_stop(*args, **kwargs)

    broker.stop = stop
    subscriptions = Subscriptions(RecordingSubscription(closed, "validated"), RecordingSubscription(closed, "revoke"))
    await service_app(broker, subscriptions, settings, "", VAULT).stop()
    assert closed == ["validated", "revoke", "broker"]


class ByTimeConsumer:
    """An aiokafka consumer's lookup by time and seek, answering with a given offset or error."""

    def __init__(self, answer) -> None:
        self.answer = answer
        self.asked: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def offsets_for_times(self, timestamps):
        self.asked.append(timestamps)
        if isinstance(self.answer, Exception):
            raise self.answer
        return {partition: self.answer for partition in timestamps}

    def seek(self, partition, offset):
        self.seeks.append((partition, offset))


def record_at(offset: int, partition: int = 0) -> ConsumerRecord:
    return ConsumerRecord("t", partition, offset, 0, 0, None, b"", None, 0, 0, [])


async def test_a_view_with_a_max_age_moves_each_partition_once_to_the_brokers_offset_for_it():
    consumer = ByTimeConsumer(OffsetAndTimestamp(5, 0))
    start = _StartAtAge(timedelta(days=7))
    before = time.time()

    # Records 0..4 were produced before the reach: the first one read moves its partition to 5, unread.
    assert await start.skips(consumer, record_at(0)) is True
    assert await start.skips(consumer, record_at(5)) is False
    assert consumer.seeks == [(TopicPartition("t", 0), 5)]
    # Asked once a partition, for now − max age − the margin for clock differences.
    [asked] = consumer.asked
    assert (before - 7 * 86400 - _START_MARGIN_S) * 1000 - 1 <= asked[TopicPartition("t", 0)] \
        <= (time.time() - 7 * 86400 - _START_MARGIN_S) * 1000
    assert await start.skips(consumer, record_at(7, partition=1)) is False  # already past the reach's start


@pytest.mark.parametrize("answer", [None, OffsetAndTimestamp(0, 0), UnsupportedVersionError()],
                         ids=["no-record-that-recent", "reach-starts-at-the-first-record", "cannot-answer-by-time"])
async def test_a_view_reads_a_partition_from_its_beginning_where_the_broker_gives_no_later_start(answer):
    consumer = ByTimeConsumer(answer)
    start = _StartAtAge(timedelta(days=7))

    assert [await start.skips(consumer, record_at(offset)) for offset in range(3)] == [False, False, False]
    assert consumer.seeks == []
    assert len(consumer.asked) == 1

