"""One record through its handler: size → proof of origin → parse → handle → publish, with at-least-once
semantics. `process` never raises: every record ends with its outcome published or as a dead letter.

- a record larger than the configured maximum is not read: it becomes a dead letter holding its start and its
  digest (shared/runtime/dead_letters.py);
- a record without a valid proof of origin (shared/runtime/provenance.py) is never handled: it becomes a dead
  letter and an `event_rejected` audit event naming the topic and the claimed producer, and nobody is told
  anything else (an attacker must not be able to make us speak to a user);
- transient trouble (shared.runtime.errors.TransientError: Vault down, a broker hiccup) is retried in place with
  capped, jittered backoff (shared/runtime/backoff.py) for as long as it lasts, and never dead-lettered: the
  record's lane waits, the consumer keeps polling;
- a record that cannot be parsed, or whose handler keeps failing for another reason
  (`max_attempts_before_dead_letter` times), goes to the dead-letter topic and the subscription moves on;
- `process` returns only once everything the record produced is confirmed by the broker, and only then may its
  subscription commit past it (shared/runtime/lanes.py).
"""

import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from typing import Generic, Protocol, TypeVar, cast

import structlog
from aiokafka import ConsumerRecord

from shared.adapters.vault.client import vault_request_ids
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import Event, MalformedEvent, parse_event
from shared.contracts.outcomes import audit, naming_vault_calls
from shared.contracts.routing import Route
from shared.runtime.backoff import retry_up_to, retry_while_raising
from shared.runtime.config import ServiceSettings
from shared.runtime.dead_letters import DeadLetter
from shared.runtime.errors import TransientError
from shared.runtime.logging import redact
from shared.runtime.metrics import DEAD_LETTERS, HANDLER_FAILURES, RECORD_SECONDS, RECORDS_HANDLED, RETRIES
from shared.runtime.provenance import EventVerifier, Unauthentic
from shared.runtime.publishing import EventPublisher, PublishRefused
from shared.runtime.tracing import consuming, note_ids, note_outcome

log = structlog.get_logger(__name__)
E = TypeVar("E", bound=Event)
E_contra = TypeVar("E_contra", bound=Event, contravariant=True)
T = TypeVar("T")

# How many completed pipeline events a subscriber remembers, to recognise a second copy (see MessageProcessor).
_COMPLETED_EVENTS_REMEMBERED = 20_000


class Handler(Protocol[E_contra]):
    """A handler: the event and the time of the record that carried it → what to publish."""

    def __call__(self, event: E_contra, *, at: datetime) -> Awaitable[Sequence[Event]]: ...


class MalformedHandler(Protocol):
    def __call__(self, error: MalformedEvent, *, at: datetime) -> Sequence[Event]: ...


class RecordTooLarge(Exception):
    """A record over the configured maximum size: not parsed at all."""


class MessageProcessor(Generic[E]):
    """Size → proof of origin → parse → handle → publish the outcome of one record; its subscription commits
    past it on return.

    Pipeline events carry an event id derived from their cause, so a stage re-run after a crash publishes a
    second copy of the same event. Both copies are recorded on the topic; the second is acknowledged
    without running the handler again when this subscriber completed the first, so a crash upstream does
    not make every later stage repeat its work and its statuses. (Handlers do not rely on this: another
    instance may see the second copy, so each handler is idempotent on its own.)"""

    def __init__(self, route: Route, handle: Handler[E], on_malformed: MalformedHandler,
                 publisher: EventPublisher, verifier: EventVerifier, settings: ServiceSettings) -> None:
        self._route = route
        # The routing table names the topic's model at run time; the caller passes the handler of that model.
        self._model = cast(type[E], route.event_model)
        self._handle = handle
        self._on_malformed = on_malformed
        self._publisher = publisher
        self._verifier = verifier
        self._settings = settings
        self._completed: OrderedDict[uuid.UUID, None] = OrderedDict()
        # Metrics name the topic as the broker does, as the subscriptions' load does (shared/runtime/metrics.py).
        self._topic = topic = settings.topic(route.topic)
        self._record_seconds = RECORD_SECONDS.labels(topic)
        self._handled, self._duplicates, self._dead_lettered = (
            RECORDS_HANDLED.labels(topic, result) for result in ("handled", "duplicate", "dead_lettered"))

    async def process(self, record: ConsumerRecord) -> None:
        started = time.monotonic()
        with consuming(record, self._route.topic, self._model.__name__):
            await self._process_safely(record)
        self._record_seconds.observe(time.monotonic() - started)

    async def _process_safely(self, record: ConsumerRecord) -> None:
        try:
            await self._process(record)
        except Exception as exc:  # noqa: BLE001 — a bug: the record still must not hold its partition's commits
            log.critical("record_processing_failed", topic=record.topic, partition=record.partition,
                         offset=record.offset, error_class=type(exc).__name__)
            try:
                await self._retry_transient(partial(self._dead_letter, record, exc, []))
            except Exception as failure:  # noqa: BLE001 — the record stays on its topic at the offset logged
                log.critical("dead_letter_failed", topic=record.topic, partition=record.partition,
                             offset=record.offset, error_class=type(failure).__name__)

    async def _process(self, record: ConsumerRecord) -> None:
        body: bytes = record.value or b""
        if len(body) > self._settings.kafka_max_record_bytes:
            too_large = RecordTooLarge(f"{len(body)} bytes, over the maximum of "
                                       f"{self._settings.kafka_max_record_bytes}")
            await self._retry_transient(partial(self._dead_letter, record, too_large, [self._refusal_audit(
                record, AuditOutcome.RECORD_TOO_LARGE, {"size_bytes": len(body)})]))
            return
        try:
            provenance = await self._retry_transient(partial(self._verifier.verify, self._route.topic,
                                                             self._route.producers, record.key,
                                                             record.headers or (), body))
        except Unauthentic as exc:
            log.warning("event_rejected", topic=record.topic, offset=record.offset, problem=exc.problem,
                        claimed_producer=exc.claimed_producer)
            await self._retry_transient(partial(self._dead_letter, record, exc, [self._refusal_audit(
                record, AuditOutcome.EVENT_REJECTED,
                {"claimed_producer": exc.claimed_producer, "problem": exc.problem})]))
            return
        # The record's signed time: handlers stamp what they emit with it, not with the clock, so that a
        # redelivered (or replayed) record yields the very same events, and its facts keep their order.
        at = provenance.produced_at
        try:
            event = parse_event(self._model, body)
        except MalformedEvent as exc:
            log.warning("message_malformed", topic=record.topic, offset=record.offset, problem=exc.problem)
            await self._retry_transient(partial(self._dead_letter, record, exc, self._on_malformed(exc, at=at)))
            return
        with structlog.contextvars.bound_contextvars(
            request_id=getattr(event, "request_id", None),
            binding_id=getattr(event, "binding_id", None),
            user_id=getattr(event, "user_id", None),
        ):
            note_ids(getattr(event, "request_id", None), getattr(event, "binding_id", None))
            event_id: uuid.UUID | None = getattr(event, "event_id", None)
            if event_id in self._completed:
                log.info("duplicate_event_skipped", topic=record.topic, offset=record.offset, event_id=str(event_id))
                self._duplicates.inc()
                note_outcome("duplicate")
                return
            await self._process_event(record, event, at)

    def _refusal_audit(self, record: ConsumerRecord, outcome: AuditOutcome, details: dict[str, object]) -> Event:
        """Ops hear of a record refused before it was read; the user is told nothing (it may not be theirs).
        Unread, it has no signed time: its place and Kafka timestamp are the same on every read of it."""
        return audit(service=self._settings.service_name, action=AuditAction.CONSUME, outcome=outcome,
                     cause=f"{record.topic}/{record.partition}/{record.offset}",
                     at=datetime.fromtimestamp(record.timestamp / 1000, UTC), user_id=None,
                     details={"topic": self._route.topic.value, "partition": record.partition,
                              "offset": record.offset, **details})

    def _remember_completed(self, event: E) -> None:
        event_id: uuid.UUID | None = getattr(event, "event_id", None)
        if event_id is None:
            return  # the app's requests: their replays are the handlers' business (intake's history)
        self._completed[event_id] = None
        if len(self._completed) > _COMPLETED_EVENTS_REMEMBERED:
            self._completed.popitem(last=False)

    async def _process_event(self, record: ConsumerRecord, event: E, at: datetime) -> None:
        try:
            await retry_up_to(partial(self._retry_transient, partial(self._handle_and_publish, event, at)),
                              self._settings.max_attempts_before_dead_letter, self._settings.retry_backoff_max_s,
                              partial(_log_handler_failure, self._topic))
        except Exception as exc:  # noqa: BLE001 — anything unexpected, after bounded retries: dead letter
            await self._retry_transient(partial(self._dead_letter, record, exc, self._gave_up(event, at, exc)))

    def _gave_up(self, event: E, at: datetime, error: BaseException) -> list[Event]:
        # Ops must hear about a message we stopped trying; the dead letter holds it for a replay.
        return [audit(service=self._settings.service_name, action=AuditAction.CONSUME,
                      outcome=AuditOutcome.DEAD_LETTERED, cause=event, at=at, user_id=getattr(event, "user_id", None),
                      request_id=getattr(event, "request_id", None),
                      binding_id=getattr(event, "binding_id", None),
                      details={"error_class": type(error).__name__, "event_type": type(event).__name__})]

    async def _handle_and_publish(self, event: E, at: datetime) -> None:
        with vault_request_ids() as request_ids:
            outcome = await self._handle(event, at=at)
        await self._publisher.publish(naming_vault_calls(outcome, request_ids))
        self._remember_completed(event)
        self._handled.inc()
        note_outcome("handled")

    async def _dead_letter(self, record: ConsumerRecord, error: BaseException, reports: Sequence[Event]) -> None:
        letter = DeadLetter.of(record.value or b"", record.key, record.topic, record.partition, record.offset,
                               error, self._settings.service_name,
                               max_body_bytes=self._settings.dead_letter_max_body_bytes, headers=record.headers or ())
        try:
            await self._publisher.publish_dead_letter(letter, reports)
        except PublishRefused:
            # The broker takes less than the configured body: the letter without it still says where the
            # record is (its size and digest included), so nothing is lost from sight.
            letter = replace(letter, body=b"")
            await self._publisher.publish_dead_letter(letter, reports)
        log.warning("message_dead_lettered", topic=record.topic, partition=record.partition,
                    offset=record.offset, error_class=letter.error_class)
        DEAD_LETTERS.labels(record.topic, letter.error_class).inc()
        self._dead_lettered.inc()
        note_outcome("dead_lettered", letter.error_class)

    async def _retry_transient(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """Retry transient failures in place for as long as they last: only this record's lane waits."""
        return await retry_while_raising(attempt, TransientError, self._settings.retry_backoff_max_s,
                                         _log_transient_retry)


def _log_handler_failure(topic: str, error: Exception, attempt: int) -> None:
    log.error("handler_failed", attempt=attempt, error=redact(error))
    HANDLER_FAILURES.labels(topic, type(error).__name__).inc()


def _log_transient_retry(error: TransientError, delay_s: float) -> None:
    log.warning("transient_failure_retry", error=redact(error), retry_in_s=round(delay_s, 2))
    RETRIES.labels(type(error).__name__).inc()
