"""Attaching handlers to topics: `subscribe` (a consumer group, laned, committed behind the work), `follow` (an
in-memory view of a topic, from its beginning or a max age back), and `Subscriptions`, the laned subscriptions a
service closes at shutdown."""

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar, cast

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from shared.adapters.vault.client import VaultPort
from shared.contracts.events import Event, MalformedEvent, parse_event
from shared.contracts.routing import Topic, subscribed_route
from shared.runtime.broker import make_broker, whole_message
from shared.runtime.config import ServiceSettings, consumer_group_id
from shared.runtime.lanes import Consumer, LanedSubscription
from shared.runtime.metrics import PartitionLoad
from shared.runtime.processing import Handler, MalformedHandler, MessageProcessor
from shared.runtime.provenance import EventSigner, EventVerifier, Unauthentic
from shared.runtime.publishing import EventPublisher

log = structlog.get_logger(__name__)
E = TypeVar("E", bound=Event)

# FastStream's batch loop waits this long for records and, when none came, sleeps as long again: a record
# landing during the sleep waits it out. Short where a user waits for `active`; idle polls stay in-process.
_BATCH_WAIT_MS_BINDING_PATH = 10
_BATCH_WAIT_MS_OCCASIONAL = 100

# How much earlier than its max age a view starts reading: a record's timestamp is stamped when it is produced,
# after its event occurred, by the producing client's clock or, where a topic stamps append time, the broker's.
# An hour covers any clock difference between those and the view's own (the repository allows minutes:
# services/intake/rules.py CLOCK_SKEW), for a few hundredths more of a 7-day view to read.
_START_MARGIN_S = 3600


def subscribe(broker: KafkaBroker, settings: ServiceSettings, topic: Topic, handle: Handler[E],
              on_malformed: MalformedHandler, publisher: EventPublisher, verifier: EventVerifier) -> LanedSubscription:
    """Attach handle to topic in the service's consumer group for it; the subscription returned is for the
    service to close at shutdown (Subscriptions). One group per subscription, not per service: a join or leave
    rebalances only the consumers of that topic, so an instance starting or dying does not stop every other
    subscription of the service.

    One consumer per subscription, taking each poll's records as a batch and handing them to their lanes
    (shared/runtime/lanes.py: in order per key, concurrently across keys), which commit behind the records'
    processing (shared/runtime/processing.py): FastStream commits nothing itself (AckPolicy.MANUAL)."""
    route = subscribed_route(topic, settings.service_name)
    processor = MessageProcessor(route, handle, on_malformed, publisher, verifier, settings)
    subscription = LanedSubscription(processor.process, settings.kafka_max_records_in_hand,
                                     settings.kafka_max_share_per_key)

    async def consume(batch: KafkaMessage) -> None:
        # FastStream types the consumer by a protocol of its own; it is aiokafka's AIOKafkaConsumer.
        await subscription.admit(batch.raw_message, cast(Consumer, batch.consumer))

    consume.__name__ = f"on_{topic.name.lower()}"
    on_binding_path = route.binding_path
    broker.subscriber(
        settings.topic(topic),
        group_id=consumer_group_id(settings.topic_prefix, settings.service_name, settings.kafka_group_suffix, topic),
        group_instance_id=settings.kafka_instance_id,
        session_timeout_ms=settings.kafka_session_timeout_ms,
        # A new group must read what was published before it joined (FastStream's default is "latest").
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.MANUAL,
        listener=subscription,
        batch=True,
        max_records=settings.kafka_max_records_in_hand,
        batch_timeout_ms=_BATCH_WAIT_MS_BINDING_PATH if on_binding_path else _BATCH_WAIT_MS_OCCASIONAL,
        fetch_max_wait_ms=(settings.kafka_fetch_max_wait_ms if on_binding_path
                           else settings.kafka_occasional_fetch_max_wait_ms),
        title=f"{settings.service_name}:{topic.value}",
        decoder=whole_message,
    )(consume)
    return subscription


@dataclass(frozen=True)
class Messaging:
    """A service's broker with its publisher, signing as the service, and its verifier: what its subscriptions,
    views and timers share."""

    broker: KafkaBroker
    publisher: EventPublisher
    verifier: EventVerifier

    @classmethod
    def of(cls, settings: ServiceSettings, vault: VaultPort) -> "Messaging":
        broker = make_broker(settings, settings.service_name)
        signer = EventSigner(vault, settings.service_name)
        return cls(broker, EventPublisher(broker, settings.topic_prefix, signer), EventVerifier(vault))


class Subscriptions:
    """A service's laned subscriptions. Its app closes them before the broker stops
    (shared/runtime/service.py), so that the records in hand finish and their offsets are committed."""

    def __init__(self, *subscriptions: LanedSubscription) -> None:
        self._subscriptions = subscriptions

    @classmethod
    def of(cls, messaging: Messaging, settings: ServiceSettings, on_malformed: MalformedHandler,
           handlers: Mapping[Topic, Handler[Any]]) -> "Subscriptions":
        """One subscription per topic, each to its handler, with the service's one malformed-input answer."""
        return cls(*(subscribe(messaging.broker, settings, topic, handle, on_malformed, messaging.publisher,
                               messaging.verifier)
                     for topic, handle in handlers.items()))

    async def close(self) -> None:
        await asyncio.gather(*(subscription.close() for subscription in self._subscriptions))

    def loads(self) -> list[PartitionLoad]:
        return [load for subscription in self._subscriptions for load in subscription.loads()]


class _StartAtAge:
    """Moves each partition of a view, at its first record, to the first record produced within max_age (plus
    _START_MARGIN_S) of now, by the broker's offset for that time (Kafka's ListOffsets). A record produced
    before that holds an event that occurred before it too: nothing the view keeps. Where the broker cannot
    answer by time, the partition is read from where it started, its beginning, as without a max age."""

    def __init__(self, max_age: timedelta) -> None:
        self._max_age_s = max_age.total_seconds()
        self._placed: set[TopicPartition] = set()

    async def skips(self, consumer: AIOKafkaConsumer, record: ConsumerRecord) -> bool:
        """Whether record lies before the partition's start, the partition now moved past it."""
        partition = TopicPartition(record.topic, record.partition)
        if partition in self._placed:
            return False
        self._placed.add(partition)
        since_ms = int((time.time() - self._max_age_s - _START_MARGIN_S) * 1000)
        try:
            found = (await consumer.offsets_for_times({partition: since_ms})).get(partition)
        except KafkaError as exc:
            log.warning("view_start_by_time_unanswered", topic=record.topic, partition=record.partition,
                        error_class=type(exc).__name__)
            return False
        # None: no record that recent yet (or a broker that does not keep timestamps); read on as before.
        if found is None or found.offset <= record.offset:
            return False
        # Records already fetched past the old position are dropped by aiokafka, not delivered.
        consumer.seek(partition, found.offset)
        return True


def follow(broker: KafkaBroker, settings: ServiceSettings, topic: Topic, on_event: Callable[[Any], None],
           verifier: EventVerifier, max_age: timedelta | None = None) -> None:
    """Feed every authentic event of topic, from the beginning and without a consumer group, into an in-memory
    view (each instance sees all partitions; nothing is committed, so nothing to close: the view is rebuilt on
    every start). With max_age, only from the records produced within it (_StartAtAge), for a view that keeps
    no older event."""

    route = subscribed_route(topic, settings.service_name, view=True)
    start = None if max_age is None else _StartAtAge(max_age)

    async def consume(message: KafkaMessage) -> None:
        record = cast(ConsumerRecord, message.raw_message)  # a single subscriber's raw message is one record
        # A group-less consumer calls no rebalance listener, so the view moves its partitions as they first yield.
        if start is not None and await start.skips(cast(AIOKafkaConsumer, message.consumer), record):
            return
        try:
            await verifier.producer_of(topic, route.producers, record.key, record.headers or (), record.value or b"")
            on_event(parse_event(route.event_model, record.value or b""))
        except Unauthentic as exc:
            # Never believed. Not dead-lettered here: every instance reads the whole topic, so each would
            # report the same record; its topic's consumer (the app) reports it instead.
            log.warning("view_event_rejected", topic=settings.topic(topic), problem=exc.problem,
                        claimed_producer=exc.claimed_producer, partition=record.partition, offset=record.offset)
        except MalformedEvent as exc:
            # Not this service's input: another producer's bug, visible in its own dead letters.
            log.warning("view_event_malformed", topic=settings.topic(topic), problem=exc.problem)
        except Exception as exc:  # noqa: BLE001 — Vault away before any key was read: the view goes on without it
            log.error("view_event_unread", topic=settings.topic(topic), error_class=type(exc).__name__,
                      partition=record.partition, offset=record.offset)

    consume.__name__ = f"view_{topic.name.lower()}"
    broker.subscriber(
        settings.topic(topic), auto_offset_reset="earliest", ack_policy=AckPolicy.ACK_FIRST,
        # As fresh as the subscribers: intake answers a replay from this view, which must not trail them.
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        title=f"{settings.service_name}:view:{topic.value}",
        decoder=whole_message,
    )(consume)
