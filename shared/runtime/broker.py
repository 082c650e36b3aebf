"""The FastStream Kafka broker every service runs on, and the decoder its subscribers share."""

import logging

from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaMessage
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY

from shared.runtime.config import Settings
from shared.runtime.kafka_security import kafka_connection


def make_broker(settings: Settings, client_id: str) -> KafkaBroker:
    """A broker connecting as the Kafka user of client_id, a service's name (shared/runtime/kafka_security.py)."""
    connection = kafka_connection(settings, client_id)
    return KafkaBroker(
        connection.bootstrap_servers,
        security=connection.faststream_security(),
        client_id=client_id,
        acks="all",
        # Tansu has no idempotent producer or transactions; we rely on idempotent consumers instead.
        enable_idempotence=False,
        # Topics are the bootstrap's (deploy/bootstrap/kafka_topics.py), with their partition counts; a subscriber
        # creating a missing one would give it one partition, and would need a right to create topics.
        allow_auto_create_topics=False,
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
        # intake's CPU. Subscribers get the message itself from `whole_message` instead.
        apply_types=False,
        # FastStream's own message metrics (faststream_*), beside ours (shared/runtime/metrics.py). Our subscribers
        # take a poll's records as one batch, so its "received" counts batches; hash7_records_handled counts records.
        middlewares=[KafkaPrometheusMiddleware(registry=REGISTRY, app_name=client_id)],
    )


async def whole_message(message: KafkaMessage) -> KafkaMessage:
    """The subscribers' decoder: without dependency injection a handler is called with what the decoder
    returns, and ours need the record (key, offset, timestamp), not only the body, which they parse."""
    return message
