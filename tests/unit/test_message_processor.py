"""The message processor's promises beyond parse → handle → publish: what a handler emits is stamped with
the time of the record it came in, so a redelivered record gives identical events; a second copy of a
pipeline event this subscriber already completed is acknowledged without running the handler again."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shared.runtime.config import ValidatorSettings
from shared.contracts.states import BindingState
from shared.runtime.kafka import MessageProcessor, record_time
from shared.contracts.events import Event
from shared.contracts.outcomes import status
from tests.unit.builders import validated


@dataclass
class Record:
    value: bytes
    timestamp: int
    offset: int
    topic: str = "hash7.binding.validated"
    partition: int = 0
    key: bytes = b"u1"


class RecordingPublisher:
    def __init__(self) -> None:
        self.published: list[Event] = []
        self.dead_letters: list[object] = []

    async def publish(self, messages) -> None:
        self.published += list(messages)

    async def publish_dead_letter(self, letter) -> None:
        self.dead_letters.append(letter)


def processor(handled: list[datetime], publisher: RecordingPublisher) -> MessageProcessor:
    async def handle(event, *, at):
        handled.append(at)
        return [status(user_id=event.user_id, state=BindingState.STORED, request_id=event.request_id,
                       binding_id=event.binding_id, occurred_at=at)]

    def on_malformed(error, *, at):
        return []

    return MessageProcessor(type(validated()), handle, on_malformed, publisher, ValidatorSettings())


def millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def test_the_time_is_the_records_time_to_the_millisecond():
    moment = datetime(2026, 11, 24, 12, 0, 0, 345000, tzinfo=UTC)
    assert record_time(millis(moment)) == moment


def test_a_record_without_a_timestamp_gets_the_current_time():
    assert abs(record_time(-1) - datetime.now(UTC)) < timedelta(seconds=5)


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

