"""Order audits on their way to Kafka. An order's fate is decided before its audit is published, so a broker
that is down for a while must neither hold up nor refuse the order, nor lose its audit: the gate puts each audit
here and returns; a background task publishes them in order, waiting out an outage (capped, jittered backoff,
shared/runtime/backoff.py), and `close` publishes what is left within a deadline. Whatever cannot be published
(the outbox full, the deadline passed, a refusal that waiting will not cure) is logged as one
`audit_not_published` line holding the whole record, never dropped silently. A record published twice (the
broker took it as the wait was cut short) is the same event: audit ids are deterministic."""

import asyncio
from collections import deque
from contextlib import suppress
from functools import partial
from typing import Protocol

import structlog

from shared.contracts.events import AuditEvent, Event
from shared.runtime.backoff import retry_while_raising
from shared.runtime.errors import TransientError
from shared.runtime.producer import BrokerUnavailable

log = structlog.get_logger(__name__)


class EventSink(Protocol):
    """Where audit events go; KafkaPublisher is the real one. Raises BrokerUnavailable when it cannot."""

    async def publish(self, event: Event) -> None: ...


class AuditOutbox:
    """Audit records published in the order they were put, by one background task; at most `capacity` wait (the
    oldest is logged and let go to make room for a new one)."""

    def __init__(self, events: EventSink, *, capacity: int, retry_cap_s: float) -> None:
        self._events = events
        self._capacity = capacity
        self._retry_cap_s = retry_cap_s
        self._waiting: deque[AuditEvent] = deque()
        self._arrived = asyncio.Event()
        self._publisher: asyncio.Task[None] | None = None

    def put(self, record: AuditEvent) -> None:
        if len(self._waiting) >= self._capacity:
            _not_published(self._waiting.popleft(), "outbox_full")
        self._waiting.append(record)
        self._arrived.set()
        if self._publisher is None or self._publisher.done():
            self._publisher = asyncio.create_task(self._publish_as_they_come())

    async def close(self, deadline_s: float) -> None:
        """Publish every record still waiting, for up to deadline_s; log each one left."""
        if self._publisher is not None:
            self._publisher.cancel()
            with suppress(asyncio.CancelledError):
                await self._publisher
            self._publisher = None
        with suppress(TimeoutError):
            async with asyncio.timeout(deadline_s):
                await self._publish_waiting()
        while self._waiting:
            _not_published(self._waiting.popleft(), "closed_before_published")

    async def _publish_as_they_come(self) -> None:
        while True:
            await self._publish_waiting()
            self._arrived.clear()
            await self._arrived.wait()

    async def _publish_waiting(self) -> None:
        while self._waiting:
            record = self._waiting[0]
            try:
                await retry_while_raising(partial(self._publish, record), BrokerUnavailable, self._retry_cap_s,
                                          partial(_waiting_for_broker, record))
            except Exception as exc:  # noqa: BLE001 — refused, not unreachable: waiting will not cure it
                _not_published(record, type(exc).__name__)
            # Left in place until published, so a wait cut short (close's deadline) still finds it here; unless
            # a full outbox let it go meanwhile (and logged it).
            if self._waiting and self._waiting[0] is record:
                self._waiting.popleft()

    async def _publish(self, record: AuditEvent) -> None:
        try:
            await self._events.publish(record)
        except TransientError as exc:
            # Vault signs each record (shared/runtime/provenance.py): its outage is waited out like Kafka's.
            raise BrokerUnavailable(f"the record could not be signed ({type(exc).__name__})") from None


def _waiting_for_broker(record: AuditEvent, error: BrokerUnavailable, delay_s: float) -> None:
    log.warning("audit_publish_waiting", audit_event_id=str(record.event_id), error=str(error),
                retry_in_s=round(delay_s, 2))


def _not_published(record: AuditEvent, why: str) -> None:
    log.error("audit_not_published", why=why, **record.model_dump(mode="json"))
