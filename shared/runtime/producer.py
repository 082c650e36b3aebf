"""Publishing to Kafka from a process that is not a FastStream service (the app's BindingClient, trading
engines): one producer, started on first use, each record signed by its party (shared/runtime/provenance.py)
and confirmed by every in-sync replica (acks=all)."""

import asyncio
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.contracts.events import Event, event_headers
from shared.contracts.routing import Topic, route_of
from shared.runtime.config import Settings
from shared.runtime.errors import ClientError
from shared.runtime.kafka_security import SCRAM_REFUSALS, KafkaConnection, kafka_connection
from shared.runtime.provenance import EventSigner, OutgoingRecord
from shared.runtime.tracing import with_trace_context


class BrokerUnavailable(ClientError):
    """Kafka cannot be reached, or refused a publish."""


async def start_kafka_client(client: AIOKafkaConsumer | AIOKafkaProducer, connection: KafkaConnection) -> None:
    servers, credentials = connection.bootstrap_servers, connection.credentials
    try:
        await client.start()
    except KafkaError as exc:
        await client.stop()  # a half-started client still holds sockets and tasks
        # aiokafka reports a login the broker refused as it reports a broker it cannot reach (it logs the cause only).
        refused = f", or refused Kafka user '{credentials.username}' (is its password right?)" if credentials else ""
        raise BrokerUnavailable(f"Kafka is unreachable at {servers}{refused} ({type(exc).__name__})") from None
    except SCRAM_REFUSALS:
        await client.stop()
        if credentials is None:
            raise
        raise BrokerUnavailable(connection.login_refused()) from None


class KafkaPublisher:
    """Sends records to the settings' topics, as the Kafka user of its signer's party. Nothing connects until the
    first send (or `start`)."""

    def __init__(self, settings: Settings, client_id: str, signer: EventSigner) -> None:
        self._settings = settings
        self._client_id = client_id
        self._signer = signer
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        await self._ready_producer()

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, event: Event) -> None:
        """The event on its topic, keyed as the routing table says (shared/contracts/routing.py), with the
        current span's context (shared/runtime/tracing.py)."""
        route = route_of(event, self._signer.producer)
        await self.send(route.topic, route.key_of(event), event.to_bytes(), with_trace_context(event_headers(event)))

    async def send(self, topic: Topic, key: str, value: bytes, headers: Mapping[str, str], *,
                   signed: bool = True) -> None:
        """Publish bytes as they are, signed unless told otherwise (a replay, which sends a record with its
        producer's own proof of origin: deploy/admin/dead_letters.py; tests that forge records); returns once
        the broker confirmed them, or raises BrokerUnavailable."""
        record = OutgoingRecord(topic, key, value, dict(headers))
        if signed:
            [record] = await self._signer.sign([record])
        producer = await self._ready_producer()
        name = self._settings.topic(topic)
        try:
            await producer.send_and_wait(
                name, record.body, key=key.encode(),
                headers=[(header, text.encode()) for header, text in record.headers.items()],
            )
        except KafkaError as exc:
            raise BrokerUnavailable(f"publishing to {name} failed ({type(exc).__name__})") from None

    async def _ready_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                connection = kafka_connection(self._settings, self._signer.producer)
                producer = AIOKafkaProducer(
                    **connection.client_options(),
                    client_id=self._client_id,
                    acks="all",
                    # Tansu has no idempotent producer (shared/runtime/README.md#tansu).
                    enable_idempotence=False,
                )
                await start_kafka_client(producer, connection)
                self._producer = producer
            return self._producer
