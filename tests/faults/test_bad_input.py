"""Bad input on every inbound topic, thousands of messages from a property-based fuzzer, while valid bindings
keep flowing: each bad message ends as a specific rejection or a dead letter, and every valid one ends active."""

import asyncio
from collections import Counter
from contextlib import aclosing

import pytest
from pydantic import SecretStr

from deploy.bench.load import StatusCollector
from deploy.stack.loopback import LoopbackStack
from shared.clients.binding_client import BindingClient
from shared.contracts.events import parse_event
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import ROUTES, Party, Topic
from shared.contracts.states import BindingState
from shared.runtime.config import ServiceSettings
from tests.faults.fuzzing import INBOUND, FuzzMessage, draw_fuzz_messages
from tests.faults.invariants import assert_invariants
from tests.faults.load_run import LoadRuns

pytestmark = pytest.mark.faults
FUZZ_MESSAGES = 2_400
VALID_BINDINGS = 60
# Spread over the time the fuzz messages take to publish.
VALID_PER_S = 5.0
FATES_TIMEOUT_S = 240.0


class DeadLetterKeys:
    """Follows the dead-letter topic from its current end and keeps the Kafka key of every letter."""

    def __init__(self, client: BindingClient) -> None:
        self._client = client
        self.keys: Counter[str] = Counter()
        self._caught_up = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "DeadLetterKeys":
        self._reader = asyncio.create_task(self._follow())
        await asyncio.wait_for(self._caught_up.wait(), 30)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _follow(self) -> None:
        # The topic's earlier letters are counted too; fuzz keys are new to every run, so they do not mix.
        async with aclosing(self._client.dead_letters(follow=True, on_caught_up=self._caught_up.set)) as letters:
            async for letter in letters:
                self.keys[letter.key] += 1


def _subject(message: FuzzMessage) -> tuple[str, str | None]:
    """The user and the request a status about the message would name."""
    malformed = message.malformed
    if malformed is not None:
        return malformed.user_id or message.key, malformed.request_id
    event = parse_event(INBOUND[message.topic], message.body)
    return getattr(event, "user_id", None) or message.key, getattr(event, "request_id", None)


def unaccounted(messages: list[FuzzMessage], dead_letters: DeadLetterKeys, collector: StatusCollector) -> list[str]:
    """The messages whose fate is not (yet) what it must be. The fuzzer publishes as the app: on a topic the app
    does not produce, and above the size a service reads, every message is refused unread (a dead letter, and
    nobody told anything). On the app's own topics, a malformed one is dead-lettered and its user, when one can
    be read, told `malformed_request`; a well-shaped one is rejected or dead-lettered."""
    largest_read = ServiceSettings().kafka_max_record_bytes
    rejected: dict[str, set[ReasonCode]] = {}
    # Who was told about which request: a hostile user id can be drawn for two messages (its random suffix may be
    # empty), so a message refused unread is "told" only if a rejection names its user and its request.
    told_about: set[tuple[str, str | None]] = set()
    for arrived in collector.arrived:
        if arrived.status.state == BindingState.REJECTED:
            rejected.setdefault(arrived.status.user_id, set()).update(arrived.status.reason_codes)
            told_about.add((arrived.status.user_id, arrived.status.request_id))
    missing = []
    for message in messages:
        malformed = message.malformed
        letter = dead_letters.keys[message.key] > 0
        if len(message.body) > largest_read:
            if not letter:
                missing.append(f"{message.key} ({message.topic.value}, {message.kind}): too large, not dead-lettered")
        elif Party.APP not in ROUTES[message.topic].producers:
            told = _subject(message) in told_about
            if told or not letter:
                missing.append(f"{message.key} ({message.topic.value}, {message.kind}): not the app's topic, yet "
                               f"dead letter {letter}, user told {told}")
        elif malformed is not None:
            told = malformed.user_id is None or ReasonCode.MALFORMED_REQUEST in rejected.get(malformed.user_id, set())
            if not (letter and told):
                missing.append(f"{message.key} ({message.topic.value}, {message.kind}): dead letter {letter}, "
                               f"user told {told}")
        elif not (letter or rejected.get(message.key)):
            missing.append(f"{message.key} ({message.topic.value}, {message.kind}): well shaped, neither "
                           "rejected nor dead-lettered")
    return missing


@pytest.mark.timeout(600)
async def test_thousands_of_bad_messages_each_end_as_a_rejection_or_a_dead_letter_while_valid_bindings_go_active(
        fault_stack: LoopbackStack, client: BindingClient, collector: StatusCollector, load_runs: LoadRuns) -> None:
    # A real ciphertext, sealed for someone else: well sealed, wrong user.
    victims = await client.binding_request("fz-victim", "fuzz-access-key-0001", SecretStr("fz-victim-secret-" * 2))
    messages = draw_fuzz_messages(FUZZ_MESSAGES, victims.secret_key_sealed.get_secret_value())
    async with DeadLetterKeys(client) as dead_letters:
        run = await load_runs.start(count=VALID_BINDINGS, rate_per_s=VALID_PER_S)
        for message in messages:
            await client.publish_raw(message.topic, message.key, message.body)
        await run.finish()
        deadline = asyncio.get_running_loop().time() + FATES_TIMEOUT_S
        while (missing := unaccounted(messages, dead_letters, collector)) and \
                asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(2)
        malformed = sum(message.malformed is not None for message in messages)
        lettered = sum(dead_letters.keys[message.key] > 0 for message in messages)
    assert not missing, f"{len(missing)} of {len(messages)} without their fate:\n" + "\n".join(missing[:30])
    assert lettered >= malformed
    published = {m.plaintext_secret: m.topic for m in messages if m.plaintext_secret is not None}
    await assert_invariants(run, fault_stack, published=published)


def test_the_fuzzer_covers_every_inbound_topic_and_every_kind_of_bad_input() -> None:
    messages = draw_fuzz_messages(FUZZ_MESSAGES, "vault:v1:" + "A" * 40)
    assert {message.topic for message in messages} == {
        Topic.BINDING_REQUESTED, Topic.BINDING_ACCEPTED, Topic.BINDING_VALIDATED, Topic.BINDING_STORED,
        Topic.WHITELIST_REQUESTED, Topic.BINDING_REVOKE_REQUESTED}
    assert {message.kind for message in messages} == {"not_json", "not_an_object", "missing", "wrongly_typed",
                                                      "oversized", "unicode_hostile", "wrongly_sealed"}
