"""The schema_version policy (shared/contracts/events.py): an event of a major this consumer does not read is
malformed, named as such, with the user and request it is about, so the service dead-letters it and tells the
user `malformed_request`; it is never read as a version it is not."""

import json
import re
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from services.intake.handlers import on_malformed
from shared.contracts.asyncapi import asyncapi_document
from shared.contracts.events import (
    SCHEMA_VERSION,
    BindingAccepted,
    BindingRequested,
    BindingStatus,
    BindingValidated,
    MalformedEvent,
    RevokeRequested,
    parse_event,
)
from shared.contracts.provenance import CERTIFICATE_HEADER, PRODUCED_AT_HEADER, PRODUCER_HEADER, SIGNATURE_HEADER
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import ROUTES, Topic
from shared.contracts.states import BindingState
from shared.runtime.config import IntakeSettings
from shared.runtime.processing import MessageProcessor
from shared.runtime.provenance import EventVerifier
from tests.builders import SECRET, validated
from tests.fakes import fake_seal
from tests.runtime.test_processing import VAULT, Record, RecordingPublisher


def request_body(**changes: object) -> bytes:
    request = BindingRequested(request_id="r1", user_id="u1", exchange="htx", access_key="ak-000000000001",
                               secret_key_sealed=SecretStr(fake_seal(SECRET, "u1")), requested_at=datetime.now(UTC))
    return json.dumps(request.model_dump(mode="json") | changes).encode()


def test_binding_requested_version_2_is_read():
    assert parse_event(BindingRequested, request_body(schema_version=2)).schema_version == 2


def test_an_event_without_a_version_is_version_1():
    assert SCHEMA_VERSION == 1
    document = RevokeRequested(request_id="r1", user_id="u1", binding_id="b1").model_dump(mode="json")
    del document["schema_version"]
    assert parse_event(RevokeRequested, json.dumps(document).encode()).schema_version == 1


def test_a_version_1_binding_request_is_refused_never_read_as_version_2():
    # Version 1 sealed the plaintext secret: read as version 2, its secret would go to Vault as if wrapped.
    with pytest.raises(MalformedEvent) as raised:
        parse_event(BindingRequested, request_body(schema_version=1))
    assert raised.value.problem == "schema_version 1 is not understood (this consumer reads 2)"
    assert (raised.value.user_id, raised.value.request_id) == ("u1", "r1")


@pytest.mark.parametrize("model", [BindingAccepted, BindingValidated])
def test_the_pipeline_events_carrying_the_sealed_secret_read_only_version_2(model):
    document = validated().model_dump(mode="json") | {"schema_version": 1}
    with pytest.raises(MalformedEvent, match=r"^schema_version 1 is not understood \(this consumer reads 2\)$"):
        parse_event(model, json.dumps(document).encode())


@pytest.mark.parametrize("version", [1, 3, 999, 0, -1])
def test_a_major_this_consumer_does_not_read_is_malformed_and_says_so(version):
    with pytest.raises(MalformedEvent) as raised:
        parse_event(BindingRequested, request_body(schema_version=version))
    error = raised.value
    assert error.problem == f"schema_version {version} is not understood (this consumer reads 2)"
    assert (error.user_id, error.request_id) == ("u1", "r1")


def test_an_unknown_major_is_named_alone_even_when_its_fields_differ():
    # Another major may well have renamed fields: the version is the problem, not what v2 would expect.
    with pytest.raises(MalformedEvent) as raised:
        parse_event(BindingRequested, request_body(schema_version=3, access_key=None, exchange_id="htx"))
    assert raised.value.problem == "schema_version 3 is not understood (this consumer reads 2)"


@pytest.mark.parametrize("version", ["1", True, 1.0])
def test_a_version_that_is_no_integer_is_malformed(version):
    with pytest.raises(MalformedEvent, match="^schema_version: Input should be a valid integer"):
        parse_event(BindingRequested, request_body(schema_version=version))


async def unreachable(event: BindingRequested, *, at: datetime) -> list[BindingStatus]:
    raise AssertionError("a malformed record reached its handler")


async def test_an_unknown_major_is_dead_lettered_and_the_user_told_never_handled():
    publisher = RecordingPublisher()
    processor = MessageProcessor(ROUTES[Topic.BINDING_REQUESTED], unreachable, on_malformed, publisher,
                                 EventVerifier(VAULT), IntakeSettings())
    # An app not yet upgraded: its secret is sealed in plaintext.
    await processor.process(Record(request_body(schema_version=1), timestamp=0, offset=3,
                                   topic="hash7.binding.requested"))

    [letter] = publisher.dead_letters
    assert (letter.error_class, letter.offset) == ("MalformedEvent", 3)
    assert "schema_version 1 is not understood" in letter.error_message
    [status] = [event for event in publisher.published if isinstance(event, BindingStatus)]
    assert (status.user_id, status.request_id, status.state) == ("u1", "r1", BindingState.REJECTED)
    assert status.reason_codes == [ReasonCode.MALFORMED_REQUEST]


async def test_a_dead_letter_carries_the_headers_the_contract_publishes():
    publisher = RecordingPublisher()
    processor = MessageProcessor(ROUTES[Topic.BINDING_REQUESTED], unreachable, on_malformed, publisher,
                                 EventVerifier(VAULT), IntakeSettings())
    await processor.process(Record(b"not json", timestamp=0, offset=4, topic="hash7.binding.requested"))
    [letter] = publisher.dead_letters
    published = asyncapi_document()["components"]["messages"]["DeadLetter"]["headers"]
    # Its proof of origin is added when it is signed (shared/runtime/provenance.py).
    signed = set(letter.headers()) | {PRODUCER_HEADER, PRODUCED_AT_HEADER, CERTIFICATE_HEADER, SIGNATURE_HEADER}
    # The original record's proof of origin, kept for a replay, under names the contract gives as a pattern.
    [originals] = published["patternProperties"]
    kept = {name for name in signed if re.match(originals, name)}
    assert kept == {f"x-dlq-original-header-{name}" for name in (PRODUCER_HEADER, PRODUCED_AT_HEADER,
                                                                 CERTIFICATE_HEADER, SIGNATURE_HEADER)}
    assert signed - kept == set(published["properties"]) == set(published["required"])
