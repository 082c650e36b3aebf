"""Publishing against the real broker: what the broker refuses for good is not retried for ever, and every
record leaves signed by its service."""

import time
import uuid

import pytest

from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import utc_now
from shared.contracts.outcomes import audit
from shared.contracts.routing import ROUTES, Party, Topic
from shared.runtime.broker import make_broker
from shared.runtime.config import IntakeSettings
from shared.runtime.dead_letters import DeadLetter
from shared.runtime.errors import TransientError
from shared.runtime.provenance import EventSigner, EventVerifier
from shared.runtime.publishing import EventPublisher, PublishRefused
from tests.fakes import InMemoryVault
from tests.fixtures.topics import create_topics
from tests.kafka_reading import raw_records

pytestmark = pytest.mark.stack


async def started_publisher(kafka_server: str, vault: InMemoryVault) -> tuple[IntakeSettings, EventPublisher, object]:
    settings = IntakeSettings(kafka_bootstrap_servers=kafka_server, topic_prefix=f"pub-{uuid.uuid4().hex[:8]}.")
    await create_topics(kafka_server, {settings.topic(topic): 1 for topic in (Topic.DEAD_LETTER, Topic.AUDIT)})
    broker = make_broker(settings, "publishing-test")
    await broker.start()
    return settings, EventPublisher(broker, settings.topic_prefix, EventSigner(vault, Party.INTAKE)), broker


async def test_a_record_the_broker_refuses_for_good_is_a_refusal_not_transient_trouble(kafka_server):
    vault = InMemoryVault()
    settings, publisher, broker = await started_publisher(kafka_server, vault)
    try:
        # Past the producer's maximum request: no retry could ever send it.
        letter = DeadLetter.of(b"x" * 3_000_000, b"u1", "t.binding.requested", 0, 1, ValueError("big"), "intake")
        started = time.monotonic()
        with pytest.raises(PublishRefused) as refused:
            await publisher.publish_dead_letter(letter, [])
        assert not isinstance(refused.value, TransientError) and time.monotonic() - started < 5
    finally:
        await broker.stop()


async def test_what_a_service_publishes_verifies_as_that_service(kafka_server):
    vault = InMemoryVault()
    settings, publisher, broker = await started_publisher(kafka_server, vault)
    try:
        event = audit(service="intake", action=AuditAction.CONSUME, outcome=AuditOutcome.EVENT_REJECTED,
                      cause="t.binding.requested/0/1", at=utc_now(), user_id="u1")
        letter = DeadLetter.of(b"{}", b"u1", "t.binding.requested", 0, 1, ValueError("bad"), "intake")
        await publisher.publish_dead_letter(letter, [event])
    finally:
        await broker.stop()
    verifier = EventVerifier(vault)
    for topic in (Topic.DEAD_LETTER, Topic.AUDIT):
        [record] = await raw_records(settings, topic)
        assert await verifier.producer_of(topic, ROUTES[topic].producers, record.key, record.headers,
                                          record.value) is Party.INTAKE
