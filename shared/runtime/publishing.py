"""Publishing a handler's outcome from a service: each event on its topic and key from the routing table
(shared/contracts/routing.py), signed by the service (shared/runtime/provenance.py), reports before the events
that move the work on, all confirmed (acks=all)."""

import asyncio
from collections.abc import Iterable, Sequence

from aiokafka import errors as kafka_errors
from faststream.kafka import KafkaBroker

from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import AuditEvent, BindingStatus, Event, event_headers
from shared.contracts.routing import Topic, route_of
from shared.runtime.dead_letters import DeadLetter
from shared.runtime.errors import TransientError
from shared.runtime.metrics import (
    AUDIT_EVENTS,
    STATUSES,
    SWEEP_AGE,
    SWEEP_BINDINGS_FOUND,
    SWEEP_BINDINGS_SO_FAR,
    SWEEP_PAGES,
)
from shared.runtime.provenance import EventSigner, OutgoingRecord
from shared.runtime.tracing import with_trace_context

# What the broker says about a record that no retry will get through: too large, a topic that is not there or
# not ours to write. Everything else (timeouts, leaders moving, the broker away) passes.
_REFUSALS = (kafka_errors.MessageSizeTooLargeError, kafka_errors.RecordTooLargeError,
             kafka_errors.RecordListTooLargeError, kafka_errors.InvalidTopicError, kafka_errors.CorruptRecordException,
             kafka_errors.InvalidMessageError, kafka_errors.PolicyViolationError,
             kafka_errors.TopicAuthorizationFailedError, kafka_errors.UnsupportedVersionError)


class PublishRefused(Exception):
    """The broker refused a record for good: not transient, so the runtime's bounded attempts end it."""


# What reports on the work rather than moving it on.
_REPORT_TOPICS = frozenset({Topic.BINDING_STATUS, Topic.AUDIT})


class EventPublisher:
    """Publishes a handler's outgoing events, all confirmed by the broker before it returns.

    Reports (status, audit) go first, and the events that move the work on only once the reports are
    confirmed: otherwise the next stage could publish its status before ours, and the app would see
    `active` before `stored`."""

    def __init__(self, broker: KafkaBroker, topic_prefix: str, signer: EventSigner) -> None:
        self._broker = broker
        self._prefix = topic_prefix
        self._signer = signer

    async def publish(self, events: Iterable[Event]) -> None:
        """Each event on its topic, keyed as the routing table says; an event this service may not produce is
        a programming error (RouteViolation), raised before anything is sent."""
        events = list(events)
        records = await self._signer.sign(self._records_of(events))
        await self._send([r for r in records if r.topic in _REPORT_TOPICS])
        await self._send([r for r in records if r.topic not in _REPORT_TOPICS])
        _count(events)

    async def publish_dead_letter(self, letter: DeadLetter, reports: Iterable[Event]) -> None:
        """The dead letter, then the reports about it, signed in one Vault call (a flood of bad records costs
        one signature call each)."""
        letter_record = OutgoingRecord(Topic.DEAD_LETTER, letter.key, letter.body,
                                       with_trace_context(letter.headers()))
        signed = await self._signer.sign([letter_record, *self._records_of(reports)])
        await self._send(signed[:1])
        await self._send(signed[1:])

    def _records_of(self, events: Iterable[Event]) -> list[OutgoingRecord]:
        routes = [(route_of(event, self._signer.producer), event) for event in events]
        # Each carries the context of the span handling the record it answers (shared/runtime/tracing.py).
        return [OutgoingRecord(route.topic, route.key_of(event), event.to_bytes(),
                               with_trace_context(event_headers(event)))
                for route, event in routes]

    async def _send(self, records: Sequence[OutgoingRecord]) -> None:
        """Hand every record to the producer in order (which keeps their order per partition), then wait for
        all confirmations at once: one round trip to the broker rather than one per record. A refusal for good
        is PublishRefused; any other broker error is a TransientError: the caller retries in place
        (shared/runtime/processing.py)."""
        try:
            confirmations = [
                await self._broker.publish(record.body, topic=record.topic.full_name(self._prefix),
                                           key=record.key.encode(), headers=record.headers, no_confirm=True)
                for record in records
            ]
            await asyncio.gather(*confirmations)
        except _REFUSALS as exc:
            raise PublishRefused(f"the broker refused a record for {_topics(records)}: {type(exc).__name__}") from exc
        except kafka_errors.KafkaError as exc:
            raise TransientError(f"publish to {_topics(records)} failed: {type(exc).__name__}") from exc


def _count(events: Iterable[Event]) -> None:
    """The metrics read off what was published: statuses by state and reason, audit events by action and outcome,
    a sweep's progress from its audit events. Handlers stay plain functions of their input."""
    for event in events:
        if isinstance(event, BindingStatus):
            for code in [code.value for code in event.reason_codes] or ["none"]:
                STATUSES.labels(event.state.value, code).inc()
        elif isinstance(event, AuditEvent):
            AUDIT_EVENTS.labels(event.action.value, event.outcome.value).inc()
            if event.action is AuditAction.HEALTH_SWEEP:
                _count_sweep(event)


def _count_sweep(event: AuditEvent) -> None:
    """A sweep's progress, from the audit event of each page and of its end."""
    if event.outcome is AuditOutcome.PAGE_REQUESTED:
        SWEEP_PAGES.inc()
        SWEEP_BINDINGS_SO_FAR.set(event.details["bindings_so_far"])
        SWEEP_AGE.set(event.details["age_s"])
    elif event.outcome is AuditOutcome.FINISHED:
        SWEEP_BINDINGS_FOUND.set(event.details["bindings"])


def _topics(records: Sequence[OutgoingRecord]) -> str:
    return ", ".join(sorted({record.topic.value for record in records}))
