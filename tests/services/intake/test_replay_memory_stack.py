"""intake's bounded replay memory as a real process on the real broker and Vault: with room for one request, a
replay of a request pushed out of memory is refused `request_expired`, while one still in memory is answered
from it. Requests for an unsupported exchange end at intake, so no other service is needed."""

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from deploy.bootstrap.kafka_topics import TopicLayout, ensure_topics
from deploy.bootstrap.progress import Progress
from deploy.bootstrap.run import BOOTSTRAP_IDENTITY
from deploy.stack.services import ServiceProcesses, service_environment
from shared.contracts.events import BindingRequested, BindingStatus, parse_event, utc_now
from shared.contracts.exchanges import ExchangeName
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import Party, Topic
from shared.contracts.states import BindingState
from shared.runtime.config import Settings
from shared.runtime.kafka_security import kafka_connection
from tests.builders import SECRET
from tests.fakes import fake_seal
from tests.fixtures.stack import publisher_as
from tests.kafka_reading import raw_records

pytestmark = pytest.mark.stack


@pytest.fixture
def intake_with_room_for_one(bootstrapped_stack, tmp_path) -> Iterator[Settings]:
    settings = bootstrapped_stack.settings.model_copy(update={"topic_prefix": f"memory-{uuid.uuid4().hex[:8]}."})
    asyncio.run(ensure_topics(kafka_connection(settings, BOOTSTRAP_IDENTITY), settings.topic_prefix, TopicLayout(),
                              Progress()))
    env = (service_environment(settings, {ExchangeName.HTX: "http://127.0.0.1:9"})
           | {"HASH7_INTAKE_REPLAY_MEMORY_MAX_REQUESTS": "1"})
    intake = ServiceProcesses(settings=settings, env=env, log_dir=tmp_path)
    try:
        intake.start("intake")
        yield settings
    finally:
        intake.stop_all()


async def statuses_of(settings: Settings, request_id: str, count: int) -> list[BindingStatus]:
    """The request's statuses, in order, once there are count of them."""
    async with asyncio.timeout(60):
        while True:
            found = [parse_event(BindingStatus, record.value or b"")
                     for record in await raw_records(settings, Topic.BINDING_STATUS)]
            mine = sorted((status for status in found if status.request_id == request_id),
                          key=lambda status: status.occurred_at)
            if len(mine) >= count:
                return mine
            await asyncio.sleep(0.2)


async def test_a_replay_pushed_out_of_memory_is_refused_and_one_in_memory_answered_from_it(intake_with_room_for_one):
    settings = intake_with_room_for_one
    app = publisher_as(settings, Party.APP)
    user = f"u-{uuid.uuid4().hex[:8]}"

    def bind(request_id: str) -> BindingRequested:
        return BindingRequested(request_id=request_id, user_id=user, exchange="nope", access_key="ak-000000000001",
                                secret_key_sealed=fake_seal(SECRET, user), trading_pairs=None,
                                requested_at=utc_now())

    first, second = bind("r1"), bind("r2")
    try:
        await app.publish(first)
        await statuses_of(settings, "r1", 1)
        await app.publish(second)
        await statuses_of(settings, "r2", 1)
        # intake's view read r2's status back, which pushed r1's out: room for one.
        await asyncio.sleep(2)
        # r2 again first, answered before r1 is: r1's refusal, read back, would take r2's place in memory.
        await app.publish(second)
        second_answers = await statuses_of(settings, "r2", 2)
        await app.publish(first)
        first_answers = await statuses_of(settings, "r1", 2)
    finally:
        await app.close()

    assert [(status.state, status.reason_codes) for status in first_answers] == [
        (BindingState.REJECTED, [ReasonCode.UNSUPPORTED_EXCHANGE]),
        (BindingState.REJECTED, [ReasonCode.REQUEST_EXPIRED])]
    assert first_answers[1].binding_id is None
    # Still in memory: answered with the very status it got the first time.
    assert second_answers[1] == second_answers[0]
