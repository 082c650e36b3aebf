"""The Kafka edge every service shares: broker factory, publishing, dead letters, and the message
processor that gives each handler at-least-once semantics.

Delivery rules (engineering notes §0, §3):
- a subscription is one consumer whose records are handled as they arrive, in order for one message key (a
  user) and concurrently across keys (shared.runtime.lanes);
- a partition's offset is committed only up to its first record whose handler has not returned with
  everything it produced confirmed by the broker (acks=all), so a crash anywhere redelivers, never loses;
- transient trouble (Vault down, broker hiccup) is retried in place with capped, jittered backoff, for as
  long as it lasts, and never dead-lettered: the record's lane waits, the consumer keeps polling;
- a message that cannot be parsed, or that keeps failing for another reason, goes to the dead-letter
  topic with headers saying where it came from and why, and the consumer moves on.
"""

import asyncio
import json
import logging
import random
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Generic, Protocol, TypeVar
from weakref import WeakKeyDictionary

import structlog
from aiokafka import ConsumerRecord
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage

from shared.runtime.config import ServiceSettings, Settings
from shared.contracts.events import Event, MalformedEvent, parse_event, utc_now
from shared.contracts.routing import Party, Topic, route_of, subscribed_route
from shared.runtime.errors import TransientError
from shared.runtime.lanes import LanedSubscription
from shared.runtime.logging import redact
from shared.contracts.outcomes import audit
from shared.contracts.secrets import is_sealed

log = structlog.get_logger(__name__)
E = TypeVar("E", bound=Event)
E_contra = TypeVar("E_contra", bound=Event, contravariant=True)

_DEAD_LETTER_MESSAGE_LIMIT = 1000
# How many completed pipeline events a subscriber remembers, to recognise a second copy (see MessageProcessor).
_COMPLETED_EVENTS_REMEMBERED = 20_000
# FastStream's batch loop waits this long for records and, when none came, sleeps as long again: a record
# landing during the sleep waits it out. Short where a user waits for `active`; idle polls stay in-process.
_BATCH_WAIT_MS_BINDING_PATH = 10
_BATCH_WAIT_MS_OCCASIONAL = 100
# Every subscription of a broker, for close_subscriptions at shutdown.
_SUBSCRIPTIONS: WeakKeyDictionary[KafkaBroker, list[LanedSubscription]] = WeakKeyDictionary()


def make_broker(settings: Settings, client_id: str) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=client_id,
        acks="all",
        # Tansu has no idempotent producer or transactions; we rely on idempotent consumers instead.
        enable_idempotence=False,
        # For a subscriber that names no policy: commit after its handler succeeded, not before (FastStream's
        # Kafka default). `subscribe` names its own: the lanes commit, FastStream nothing.
        ack_policy=AckPolicy.NACK_ON_ERROR,
        # A plain stdlib logger: its records reach the root handler that shared.runtime.logging configured.
        logger=logging.getLogger("hash7.kafka"),
        # FastStream logs every message received/processed; keep that for debugging only.
        log_level=logging.DEBUG,
        graceful_timeout=15.0,
        # No dependency injection: resolving a `message: KafkaMessage` parameter from FastStream's context
        # costs a worker-thread round trip per message (Context.use is synchronous), about a seventh of the
        # intake's CPU. Subscribers get the message itself from `_whole_message` instead.
        apply_types=False,
    )


async def _whole_message(message: KafkaMessage) -> KafkaMessage:
    """The subscribers' decoder: without dependency injection a handler is called with what the decoder
    returns, and ours need the record (key, offset, timestamp), not only the body, which they parse."""
    return message


# What reports on the work rather than moving it on.
_REPORT_TOPICS = frozenset({Topic.BINDING_STATUS, Topic.AUDIT})
_EVENT_HEADERS = {"content-type": "application/json"}


@dataclass(frozen=True)
class _Record:
    topic: Topic
    key: str
    body: bytes
    headers: dict[str, str]


class EventPublisher:
    """Publishes a handler's outgoing events, all confirmed by the broker before it returns.

    Reports (status, audit) go first, and the events that move the work on only once the reports are
    confirmed: otherwise the next stage could publish its status before ours, and the app would see
    `active` before `stored`."""

    def __init__(self, broker: KafkaBroker, topic_prefix: str, producer: Party) -> None:
        self._broker = broker
        self._prefix = topic_prefix
        self._producer = producer

    async def publish(self, events: Iterable[Event]) -> None:
        """Each event on its topic, keyed as the routing table says; an event this service may not produce is
        a programming error (RouteViolation), raised before anything is sent."""
        routes = [(route_of(event, self._producer), event) for event in events]
        records = [_Record(route.topic, route.key_of(event), event.to_bytes(),
                           _EVENT_HEADERS | {"event-type": type(event).__name__}) for route, event in routes]
        await self._send([r for r in records if r.topic in _REPORT_TOPICS])
        await self._send([r for r in records if r.topic not in _REPORT_TOPICS])

    async def publish_dead_letter(self, letter: "DeadLetter") -> None:
        await self._send([_Record(Topic.DEAD_LETTER, letter.key, letter.body, letter.headers())])

    async def _send(self, records: Sequence[_Record]) -> None:
        """Hand every record to the producer in order (which keeps their order per partition), then wait for
        all confirmations at once: one round trip to the broker rather than one per record."""
        try:
            confirmations = [
                await self._broker.publish(record.body, topic=record.topic.full_name(self._prefix),
                                           key=record.key.encode(), headers=record.headers, no_confirm=True)
                for record in records
            ]
            await asyncio.gather(*confirmations)
        except KafkaError as exc:
            topics = ", ".join(sorted({record.topic.value for record in records}))
            raise TransientError(f"publish to {topics} failed: {type(exc).__name__}") from exc


@dataclass(frozen=True)
class DeadLetter:
    """The original bytes (secrets scrubbed) with headers naming where they came from and why they failed."""

    body: bytes
    key: str
    source_topic: str
    partition: int
    offset: int
    error_class: str
    error_message: str
    service: str
    failed_at: datetime

    @classmethod
    def of(cls, raw: bytes, key: bytes | None, record_topic: str, partition: int, offset: int,
           error: BaseException, service: str) -> "DeadLetter":
        return cls(
            body=scrub_plaintext_secrets(raw),
            key=(key or b"").decode(errors="replace"),
            source_topic=record_topic,
            partition=partition,
            offset=offset,
            error_class=type(error).__name__,
            error_message=str(redact(str(error)))[:_DEAD_LETTER_MESSAGE_LIMIT],
            service=service,
            failed_at=utc_now(),
        )

    def headers(self) -> dict[str, str]:
        return {
            "x-dlq-original-topic": self.source_topic,
            "x-dlq-original-partition": str(self.partition),
            "x-dlq-original-offset": str(self.offset),
            "x-dlq-exception-type": self.error_class,
            "x-dlq-exception-message": self.error_message,
            "x-dlq-service": self.service,
            "x-dlq-failed-at": self.failed_at.isoformat(),
        }


def scrub_plaintext_secrets(raw: bytes) -> bytes:
    """The original bytes, except that a JSON field meant to hold a sealed secret but holding anything else
    (a plaintext secret pasted by a broken app) is blanked: a dead letter must not become a secret's copy."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw
    if not isinstance(document, dict):
        return raw
    suspicious = [
        name for name, value in document.items()
        if "secret" in name.lower() and not (isinstance(value, str) and is_sealed(value))
    ]
    if not suspicious:
        return raw
    for name in suspicious:
        document[name] = "[REDACTED]"
    # ASCII with escapes: the document may hold a lone surrogate ("\ud800" in the JSON), which has no UTF-8.
    return json.dumps(document).encode()


class Backoff:
    """Capped exponential backoff with full jitter."""

    def __init__(self, base_s: float = 0.2, cap_s: float = 10.0) -> None:
        self._base = base_s
        self._cap = cap_s
        self._attempt = 0

    def next_delay(self) -> float:
        delay = random.uniform(0, min(self._cap, self._base * 2 ** self._attempt))
        self._attempt += 1
        return delay


class Handler(Protocol[E_contra]):
    """A handler: the event and the time of the record that carried it → what to publish."""

    def __call__(self, event: E_contra, *, at: datetime) -> Awaitable[Sequence[Event]]: ...


class MalformedHandler(Protocol):
    def __call__(self, error: MalformedEvent, *, at: datetime) -> Sequence[Event]: ...


def record_time(timestamp_ms: int | None) -> datetime:
    """The time a Kafka record was produced. Handlers stamp what they emit with it, not with the clock,
    so that a redelivered record yields the very same events (engineering notes: idempotent consumers)."""
    if timestamp_ms is None or timestamp_ms < 0:
        return utc_now()  # a record without a timestamp (pre-0.10 format): nothing stable to reuse
    return datetime.fromtimestamp(timestamp_ms / 1000, UTC)


class MessageProcessor(Generic[E]):
    """Parse → handle → publish the outcome of one record; its subscription commits past it on return.

    Pipeline events carry an event id derived from their cause, so a stage re-run after a crash publishes a
    second copy of the same event. Both copies are recorded on the topic; the second is acknowledged
    without running the handler again when this subscriber completed the first, so a crash upstream does
    not make every later stage repeat its work and its statuses."""

    def __init__(self, model: type[E], handle: Handler[E], on_malformed: MalformedHandler,
                 publisher: EventPublisher, settings: ServiceSettings) -> None:
        self._model = model
        self._handle = handle
        self._on_malformed = on_malformed
        self._publisher = publisher
        self._settings = settings
        self._completed: OrderedDict[uuid.UUID, None] = OrderedDict()

    async def process(self, record: ConsumerRecord) -> None:
        at = record_time(record.timestamp)
        try:
            event = parse_event(self._model, record.value or b"")
        except MalformedEvent as exc:
            log.warning("message_malformed", topic=record.topic, offset=record.offset, problem=exc.problem)
            await self._retry_transient(partial(self._dead_letter, record, exc, self._on_malformed(exc, at=at)))
            return
        with structlog.contextvars.bound_contextvars(
            request_id=getattr(event, "request_id", None),
            binding_id=getattr(event, "binding_id", None),
            user_id=getattr(event, "user_id", None),
        ):
            event_id: uuid.UUID | None = getattr(event, "event_id", None)
            if event_id in self._completed:
                log.info("duplicate_event_skipped", topic=record.topic, offset=record.offset, event_id=str(event_id))
                return
            await self._process_event(record, event, at)

    def _remember_completed(self, event: E) -> None:
        event_id: uuid.UUID | None = getattr(event, "event_id", None)
        if event_id is None:
            return  # the app's requests: their replays are the handlers' business (intake's history)
        self._completed[event_id] = None
        if len(self._completed) > _COMPLETED_EVENTS_REMEMBERED:
            self._completed.popitem(last=False)

    async def _process_event(self, record: ConsumerRecord, event: E, at: datetime) -> None:
        backoff = Backoff(cap_s=self._settings.retry_backoff_max_s)
        failures = 0
        while True:
            try:
                await self._retry_transient(lambda: self._handle_and_publish(event, at))
                return
            except Exception as exc:  # noqa: BLE001 — anything unexpected: bounded retries, then dead letter
                failures += 1
                log.error("handler_failed", attempt=failures, error=redact(exc))
                if failures >= self._settings.max_attempts_before_dead_letter:
                    await self._retry_transient(partial(self._dead_letter, record, exc, self._gave_up(event, exc)))
                    return
                await asyncio.sleep(backoff.next_delay())

    def _gave_up(self, event: E, error: BaseException) -> list[Event]:
        # Ops must hear about a message we stopped trying; the dead letter holds it for a replay.
        return [audit(service=self._settings.service_name, action="consume", outcome="dead_lettered",
                      user_id=getattr(event, "user_id", None), request_id=getattr(event, "request_id", None),
                      binding_id=getattr(event, "binding_id", None),
                      details={"error_class": type(error).__name__, "event_type": type(event).__name__})]

    async def _handle_and_publish(self, event: E, at: datetime) -> None:
        outcome = await self._handle(event, at=at)
        await self._publisher.publish(outcome)
        self._remember_completed(event)

    async def _dead_letter(self, record: ConsumerRecord, error: BaseException, also: Sequence[Event]) -> None:
        letter = DeadLetter.of(record.value or b"", record.key, record.topic, record.partition, record.offset,
                               error, self._settings.service_name)
        await self._publisher.publish_dead_letter(letter)
        await self._publisher.publish(also)
        log.warning("message_dead_lettered", topic=record.topic, partition=record.partition,
                    offset=record.offset, error_class=letter.error_class)

    async def _retry_transient(self, attempt: Callable[[], Awaitable[None]]) -> None:
        """Retry transient failures in place for as long as they last: only this record's lane waits."""
        backoff = Backoff(cap_s=self._settings.retry_backoff_max_s)
        while True:
            try:
                await attempt()
                return
            except TransientError as exc:
                delay = backoff.next_delay()
                log.warning("transient_failure_retry", error=redact(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)


def subscribe(broker: KafkaBroker, settings: ServiceSettings, topic: Topic, handle: Handler[E],
              on_malformed: MalformedHandler, publisher: EventPublisher) -> None:
    """Attach handle to topic in the service's consumer group for it, with the rules in this module's
    docstring. One group per subscription, not per service: a join or leave rebalances only the consumers of
    that topic, so an instance starting or dying does not stop every other subscription of the service.

    One consumer per subscription, taking each poll's records as a batch and handing them to their lanes
    (shared.runtime.lanes), which commit behind them: FastStream commits nothing itself (AckPolicy.MANUAL)."""
    route = subscribed_route(topic, Party(settings.service_name))
    processor = MessageProcessor(route.event_model, handle, on_malformed, publisher, settings)
    subscription = LanedSubscription(processor.process, settings.kafka_max_records_in_hand)
    _SUBSCRIPTIONS.setdefault(broker, []).append(subscription)

    async def consume(batch: KafkaMessage) -> None:
        await subscription.admit(batch.raw_message, batch.consumer)

    consume.__name__ = f"on_{topic.name.lower()}"
    on_binding_path = route.binding_path
    broker.subscriber(
        settings.topic(topic),
        group_id=f"{settings.service_name}{settings.kafka_group_suffix}.{topic.value}",
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
        decoder=_whole_message,
    )(consume)


async def close_subscriptions(broker: KafkaBroker) -> None:
    """Before the broker stops: let each subscription finish its records in hand and commit them."""
    await asyncio.gather(*(subscription.close() for subscription in _SUBSCRIPTIONS.get(broker, [])))


def follow(broker: KafkaBroker, settings: ServiceSettings, topic: Topic, on_event: Callable[[Any], None]) -> None:
    """Feed every event of topic, from the beginning and without a consumer group, into an in-memory view
    (each instance sees all partitions; nothing is committed, the view is rebuilt on every start)."""

    model = subscribed_route(topic, Party(settings.service_name)).event_model

    async def consume(message: KafkaMessage) -> None:
        try:
            on_event(parse_event(model, message.body))
        except MalformedEvent as exc:
            # Not this service's input: another producer's bug, visible in its own dead letters.
            log.warning("view_event_malformed", topic=message.raw_message.topic, problem=exc.problem)

    consume.__name__ = f"view_{topic.name.lower()}"
    broker.subscriber(
        settings.topic(topic), auto_offset_reset="earliest", ack_policy=AckPolicy.ACK_FIRST,
        # As fresh as the subscribers: intake answers a replay from this view, which must not trail them.
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
        title=f"{settings.service_name}:view:{topic.value}",
        decoder=_whole_message,
    )(consume)
