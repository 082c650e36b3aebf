"""Publishing a handler's outcome from a service: each event on its topic and key from the routing table
(shared/contracts/routing.py), reports before the events that move the work on, all confirmed (acks=all)."""

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from shared.contracts.events import Event, event_headers
from shared.contracts.routing import Party, Topic, route_of
from shared.runtime.dead_letters import DeadLetter
from shared.runtime.errors import TransientError

# What reports on the work rather than moving it on.
_REPORT_TOPICS = frozenset({Topic.BINDING_STATUS, Topic.AUDIT})


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
        records = [_Record(route.topic, route.key_of(event), event.to_bytes(), event_headers(event))
                   for route, event in routes]
        await self._send([r for r in records if r.topic in _REPORT_TOPICS])
        await self._send([r for r in records if r.topic not in _REPORT_TOPICS])

    async def publish_dead_letter(self, letter: DeadLetter) -> None:
        await self._send([_Record(Topic.DEAD_LETTER, letter.key, letter.body, letter.headers())])

    async def _send(self, records: Sequence[_Record]) -> None:
        """Hand every record to the producer in order (which keeps their order per partition), then wait for
        all confirmations at once: one round trip to the broker rather than one per record. A broker error is
        a TransientError: the caller retries in place (shared/runtime/processing.py)."""
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
