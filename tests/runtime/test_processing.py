"""The message processor's promises beyond parse → handle → publish: what a handler emits is stamped with
the time of the record it came in, so a redelivered record gives identical events; a second copy of a
pipeline event this subscriber already completed is acknowledged without running the handler again; transient
trouble is retried in place and never dead-lettered, any other failure a bounded number of times and then
dead-lettered; the waits are capped exponential with full jitter."""

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from structlog.testing import capture_logs
from tenacity import RetryCallState

from shared.contracts.events import AuditEvent, BindingStatus, Event
from shared.contracts.outcomes import status
from shared.contracts.routing import ROUTES, Party, Topic
from shared.contracts.states import BindingState, RequestKind
from shared.runtime.backoff import full_jitter
from shared.runtime.config import ValidatorSettings
from shared.runtime.errors import TransientError
from shared.runtime.processing import MessageProcessor
from shared.runtime.provenance import EventVerifier
from shared.runtime.publishing import PublishRefused
from tests.builders import provenance_headers, validated
from tests.fakes import InMemoryVault

# The Vault whose keys sign the records of these tests, and verify them.
VAULT = InMemoryVault()


@dataclass
class Record:
    """A consumer record; unless given headers, signed as the producer the routing table allows on its topic."""

    value: bytes
    timestamp: int
    offset: int
    topic: str = "hash7.binding.validated"
    partition: int = 0
    key: bytes = b"u1"
    headers: list[tuple[str, bytes]] | None = None

    def __post_init__(self) -> None:
        if self.headers is None:
            topic = Topic(self.topic.removeprefix("hash7."))
            [producer] = sorted(ROUTES[topic].producers)[:1]
            # Produced when its Kafka timestamp says (its signed time is what the processor goes by).
            self.headers = provenance_headers(VAULT, producer, topic, self.value, self.key,
                                              produced_at_ms=self.timestamp or None)


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[Event] = []
        self.dead_letters: list[object] = []

    async def publish(self, messages) -> None:
        self.published += list(messages)

    async def publish_dead_letter(self, letter, reports) -> None:
        self.dead_letters.append(letter)
        self.published += list(reports)


def processor(handled: list[datetime], publisher: RecordingPublisher, fail_with: list[Exception] | None = None,
              settings: ValidatorSettings | None = None) -> MessageProcessor:
    """Its handler raises the errors of fail_with, one per call, then succeeds."""
    failures = list(fail_with or [])

    async def handle(event, *, at):
        handled.append(at)
        if failures:
            raise failures.pop(0)
        return [status(exchange="htx", user_id=event.user_id, state=BindingState.STORED, request_id=event.request_id,
                       binding_id=event.binding_id, occurred_at=at, kind=RequestKind.BIND)]

    def on_malformed(error, *, at):
        return []

    return MessageProcessor(ROUTES[Topic.BINDING_VALIDATED], handle, on_malformed, publisher, EventVerifier(VAULT),
                            settings or ValidatorSettings())


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


async def test_the_time_handlers_get_is_the_records_signed_production_time_not_its_kafka_timestamp():
    handled: list[datetime] = []
    produced = datetime(2026, 11, 24, 12, 0, 0, 345000, tzinfo=UTC)
    body = validated().to_bytes()
    headers = provenance_headers(VAULT, Party.VALIDATOR, Topic.BINDING_VALIDATED, body, produced_at_ms=millis(produced))
    # The Kafka timestamp is the sender's to set, signed by no one: a replay may carry any.
    await processor(handled, RecordingPublisher()).process(Record(body, millis(datetime.now(UTC)), offset=1,
                                                                  headers=headers))
    assert handled == [produced]


async def test_a_redelivered_record_gives_byte_identical_events():
    sent = datetime(2026, 11, 24, 12, 0, 1, tzinfo=UTC)
    body = validated().to_bytes()
    first, second = RecordingPublisher(), RecordingPublisher()
    # Two processors: the crashed instance, and the one the record is delivered to again.
    await processor([], first).process(Record(body, millis(sent), offset=7))
    await processor([], second).process(Record(body, millis(sent), offset=7))
    assert [m.to_bytes() for m in first.published] == [m.to_bytes() for m in second.published]
    assert first.published[0].occurred_at == sent


async def test_a_second_copy_of_a_completed_event_is_not_handled_again():
    handled: list[datetime] = []
    publisher = RecordingPublisher()
    subscriber = processor(handled, publisher)
    body = validated().to_bytes()
    await subscriber.process(Record(body, millis(datetime(2026, 11, 24, 12, 0, 1, tzinfo=UTC)), offset=7))
    # The upstream stage ran again after a crash: the same event, in a later record.
    await subscriber.process(Record(body, millis(datetime(2026, 11, 24, 12, 0, 9, tzinfo=UTC)), offset=8))
    assert len(handled) == 1 and len(publisher.published) == 1
    # Another event is handled as usual.
    await subscriber.process(Record(validated(request_id="r2").to_bytes(), millis(datetime.now(UTC)), offset=9))
    assert len(handled) == 2



def events_of(logs: list[dict], name: str) -> list[dict]:
    return [entry for entry in logs if entry["event"] == name]


async def test_transient_trouble_is_retried_in_place_and_never_dead_lettered():
    publisher = RecordingPublisher()
    settings = ValidatorSettings(max_attempts_before_dead_letter=1)
    outage = [TransientError("vault sealed")] * 2  # more than the attempts before a dead letter
    with capture_logs() as logs:
        await processor([], publisher, outage, settings).process(Record(validated().to_bytes(), 0, offset=7))
    retries = events_of(logs, "transient_failure_retry")
    # The 0.2 s base doubling from the first retry on: the first wait under 0.2 s, the second under 0.4 s.
    assert [0 <= retry["retry_in_s"] <= ceiling for retry, ceiling in zip(retries, (0.2, 0.4))] == [True, True]
    assert publisher.dead_letters == [] and not events_of(logs, "handler_failed")
    assert [event.state for event in publisher.published] == [BindingState.STORED]


async def test_a_handler_that_keeps_failing_is_dead_lettered_after_the_attempts_allowed():
    publisher = RecordingPublisher()
    settings = ValidatorSettings(retry_backoff_max_s=0.01, max_attempts_before_dead_letter=3)
    with capture_logs() as logs:
        await processor([], publisher, [RuntimeError("bug")] * 5, settings).process(
            Record(validated().to_bytes(), 0, offset=7))
    assert [failure["attempt"] for failure in events_of(logs, "handler_failed")] == [1, 2, 3]
    [letter] = publisher.dead_letters
    assert (letter.error_class, letter.offset) == ("RuntimeError", 7)
    [audit] = publisher.published
    assert audit.outcome == "dead_lettered"
    assert len(events_of(logs, "message_dead_lettered")) == 1


async def test_a_handler_that_fails_fewer_times_than_allowed_is_not_dead_lettered():
    publisher = RecordingPublisher()
    settings = ValidatorSettings(retry_backoff_max_s=0.01, max_attempts_before_dead_letter=3)
    await processor([], publisher, [RuntimeError("bug")] * 2, settings).process(
        Record(validated().to_bytes(), 0, offset=7))
    assert publisher.dead_letters == [] and len(publisher.published) == 1


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 0.2), (2, 0.4), (3, 0.8), (6, 5.0), (2000, 5.0)])
def test_the_wait_before_a_retry_is_full_jitter_under_a_doubling_ceiling_and_the_cap(attempt, ceiling):
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    waits = [full_jitter(cap_s=5.0)(state) for _ in range(200)]
    assert all(0 <= wait <= ceiling for wait in waits)
    assert max(waits) > ceiling / 2  # spread over the whole window, not a fixed delay


# ---- what never reaches a handler ---------------------------------------------------------------------------


def audits(publisher: RecordingPublisher) -> list[tuple[str, str]]:
    return [(event.action, event.outcome) for event in publisher.published if isinstance(event, AuditEvent)]


@pytest.mark.parametrize("forgery", ["unsigned", "another producer", "altered body", "foreign key"])
async def test_a_record_without_a_valid_proof_of_origin_is_dead_lettered_and_audited_never_handled(forgery):
    handled: list[datetime] = []
    publisher = RecordingPublisher()
    body = validated().to_bytes()
    headers = {
        "unsigned": [],
        "another producer": provenance_headers(VAULT, Party.APP, Topic.BINDING_VALIDATED, body),
        "altered body": provenance_headers(VAULT, Party.VALIDATOR, Topic.BINDING_VALIDATED, body + b" "),
        "foreign key": provenance_headers(InMemoryVault(), Party.VALIDATOR, Topic.BINDING_VALIDATED, body),
    }[forgery]
    await processor(handled, publisher).process(Record(body, 0, offset=7, headers=headers))
    assert handled == []
    [letter] = publisher.dead_letters
    assert (letter.error_class, letter.offset) == ("Unauthentic", 7)
    assert audits(publisher) == [("consume", "event_rejected")]
    [audit] = [event for event in publisher.published if isinstance(event, AuditEvent)]
    assert audit.details["topic"] == "binding.validated" and audit.user_id is None
    # Nobody is told anything: the record may not even be about the user it names.
    assert not [event for event in publisher.published if isinstance(event, BindingStatus)]


async def test_a_record_over_the_maximum_size_is_dead_lettered_cut_short_with_its_digest():
    handled: list[datetime] = []
    publisher = RecordingPublisher()
    settings = ValidatorSettings(kafka_max_record_bytes=4096, dead_letter_max_body_bytes=1024)
    body = b'{"padding": "' + b"x" * 100_000 + b'"}'
    await processor(handled, publisher, settings=settings).process(Record(body, 0, offset=9))
    assert handled == []
    [letter] = publisher.dead_letters
    assert letter.error_class == "RecordTooLarge" and len(letter.body) <= 1024
    assert letter.headers()["x-dlq-original-sha256"] == hashlib.sha256(body).hexdigest()
    assert audits(publisher) == [("consume", "record_too_large")]


@pytest.mark.parametrize("body", [b"[" * 200_000, b'{"user_id": ' + b"9" * 5000 + b"}",
                                  b'{"a":' * 50_000 + b"1" + b"}" * 50_000, b"\xff\xfe\x00"])
async def test_a_record_that_escapes_parsing_is_still_a_dead_letter(body):
    publisher = RecordingPublisher()
    settings = ValidatorSettings(kafka_max_record_bytes=1024 * 1024)
    await processor([], publisher, settings=settings).process(Record(body, 0, offset=3))
    [letter] = publisher.dead_letters
    assert letter.error_class == "MalformedEvent"


async def test_a_publish_the_broker_refuses_for_good_ends_after_the_bounded_attempts():
    publisher = RecordingPublisher()
    settings = ValidatorSettings(retry_backoff_max_s=0.01, max_attempts_before_dead_letter=3)
    refused = [PublishRefused("MessageSizeTooLargeError")] * 10
    with capture_logs() as logs:
        await processor([], publisher, refused, settings).process(Record(validated().to_bytes(), 0, offset=7))
    assert [failure["attempt"] for failure in events_of(logs, "handler_failed")] == [1, 2, 3]
    [letter] = publisher.dead_letters
    assert letter.error_class == "PublishRefused"


async def test_whatever_escapes_the_processor_still_ends_as_a_dead_letter_not_a_stuck_lane():
    publisher = RecordingPublisher()

    def on_malformed(error, *, at):
        raise RuntimeError("a bug in the malformed-input answer")

    broken = MessageProcessor(ROUTES[Topic.BINDING_VALIDATED], lambda event, *, at: [], on_malformed, publisher,
                              EventVerifier(VAULT), ValidatorSettings())
    with capture_logs() as logs:
        await broken.process(Record(b"not json", 0, offset=5))  # returns: the lane may finish the record
    assert events_of(logs, "record_processing_failed")
    [letter] = publisher.dead_letters
    assert letter.error_class == "RuntimeError" and letter.offset == 5


async def test_a_dead_letter_the_broker_refuses_for_its_body_goes_without_it():
    class RefusingBodies(RecordingPublisher):
        async def publish_dead_letter(self, letter, reports) -> None:
            if letter.body:
                raise PublishRefused("MessageSizeTooLargeError")
            await super().publish_dead_letter(letter, reports)

    publisher = RefusingBodies()
    await processor([], publisher).process(Record(b"not json", 0, offset=4))
    [letter] = publisher.dead_letters
    assert letter.body == b"" and letter.headers()["x-dlq-original-sha256"] == hashlib.sha256(b"not json").hexdigest()


@pytest.mark.parametrize("refusal", ["unsigned", "too large", "handler keeps failing"])
async def test_the_audit_of_a_refused_record_is_the_same_on_every_delivery(refusal):
    sent = datetime(2026, 11, 24, 12, 0, 1, tzinfo=UTC)
    settings = ValidatorSettings(kafka_max_record_bytes=4096, retry_backoff_max_s=0.01,
                                 max_attempts_before_dead_letter=1)
    body = b"x" * 5000 if refusal == "too large" else validated().to_bytes()
    headers = [] if refusal == "unsigned" else None
    failures = [RuntimeError("bug")] if refusal == "handler keeps failing" else []
    copies = []
    for _ in range(2):  # the instance that crashed before its commit, and the one the record goes to next
        publisher = RecordingPublisher()
        await processor([], publisher, list(failures), settings).process(
            Record(body, millis(sent), offset=7, headers=headers))
        [audit] = [event for event in publisher.published if isinstance(event, AuditEvent)]
        copies.append(audit)
    assert copies[0].to_bytes() == copies[1].to_bytes()
    # Unread records have no signed time: their Kafka timestamp, the same on every read, stands for it.
    assert copies[0].occurred_at == sent
