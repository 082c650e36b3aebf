"""The published contract (shared/contracts/published/) is what the code generates, and it holds together:
the CI check that a model change without `python -m shared.contracts.asyncapi` fails the build."""

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from shared.contracts import asyncapi
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import (
    BindingAccepted,
    BindingRechecked,
    BindingRequested,
    BindingStatus,
    BindingValidated,
    Event,
    RecheckRequested,
    RevokeRequested,
    SweepCursor,
    SweepRequested,
    WhitelistRequested,
    utc_now,
)
from shared.contracts.outcomes import audit
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.routing import ROUTES, Topic
from shared.contracts.states import BindingState
from tests.builders import SECRET, stored, validated
from tests.fakes import fake_seal

DOCUMENT = asyncapi.asyncapi_document()
# The events whose consumers read version 2 only (their docstrings say what version 1 was).
VERSION_2 = {RecheckRequested, BindingRequested, BindingAccepted, BindingValidated}
# Read in both majors: a version-1 sweep request is a sweep's first page (shared/contracts/events.py SweepRequested).
VERSIONS_1_AND_2 = {SweepRequested}


def sample_events() -> list[Event]:
    """One real event per topic, with its optional parts filled in."""
    sealed = fake_seal(SECRET, "u1")
    accepted = validated().model_dump(exclude={"htx", "warnings", "validated_at"})
    warning = reason(ReasonCode.KEY_EXPIRING, "htx", days=3)
    return [
        BindingRequested(request_id="r1", user_id="u1", exchange="htx", access_key="ak-000000000001",
                         secret_key_sealed=SecretStr(sealed), trading_pairs=["btcusdt"], requested_at=utc_now()),
        BindingAccepted.model_validate(accepted),
        validated(warnings=[warning]),
        stored(warnings=[warning]),
        WhitelistRequested(request_id="r2", user_id="u1", binding_id="b1", trading_pairs=["ethusdt"]),
        RevokeRequested(request_id="r3", user_id="u1", binding_id="b1"),
        SweepRequested(request_id="r4", sweep_id="sweep-1", requested_at=utc_now(), event_id=uuid.uuid4(),
                       after=SweepCursor(user_id="u1", binding_id="b1")),
        RecheckRequested(event_id=uuid.uuid4(), sweep_request_id="r4", sweep_started_at=utc_now(), user_id="u1",
                         binding_id="b1"),
        BindingRechecked(event_id=uuid.uuid4(), sweep_request_id="r4", user_id="u1", binding_id="b1", exchange="htx",
                         access_key_masked="ak-0…0001", checked=True, warnings=[warning], checked_at=utc_now()),
        BindingStatus(event_id=uuid.uuid4(), request_id="r1", binding_id="b1", user_id="u1", exchange="htx",
                      state=BindingState.ACTIVE, reasons=[warning], details={"pairs": ["btcusdt"]},
                      occurred_at=utc_now()),
        audit(service="intake", action=AuditAction.BIND_REQUEST, outcome=AuditOutcome.ACCEPTED, cause="r1",
              at=utc_now(), user_id="u1", request_id="r1", reasons=[warning], details={"attempt": 1}),
    ]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        yield from ([node["$ref"]] if "$ref" in node else [])
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref} is not local to the document"
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_the_committed_documents_are_what_the_code_generates():
    stale = asyncapi.stale_files(asyncapi.published_documents())
    assert not stale, f"stale: {[str(path) for path in stale]}; run `{asyncapi.REGENERATE}` and commit the result"


def test_the_check_command_passes_on_the_committed_documents(capsys):
    assert asyncapi.main(["--check"]) == 0
    assert capsys.readouterr().out == "published contract is up to date\n"


def test_the_check_command_names_a_stale_document_and_how_to_regenerate(monkeypatch, capsys):
    changed = asyncapi.published_documents() | {asyncapi.ASYNCAPI_FILE: "{}\n"}  # a model changed since
    monkeypatch.setattr(asyncapi, "published_documents", lambda: changed)
    assert asyncapi.main(["--check"]) == 1
    message = capsys.readouterr().err
    assert message.count("\n") == 1
    assert "shared/contracts/published/asyncapi.json" in message and asyncapi.REGENERATE in message


def test_every_reference_resolves():
    for ref in refs(DOCUMENT):
        resolve(DOCUMENT, ref)


def test_every_topic_is_a_channel_with_its_message():
    assert DOCUMENT["asyncapi"] == "3.0.0"
    assert set(DOCUMENT["channels"]) == {topic.value for topic in Topic}
    for name, channel in DOCUMENT["channels"].items():
        [message] = [resolve(DOCUMENT, ref["$ref"]) for ref in channel["messages"].values()]
        if ROUTES[Topic(name)].model is None:
            assert "payload" not in message and "no fixed schema" in message["description"]
        else:
            assert resolve(DOCUMENT, message["payload"]["$ref"])["title"] == ROUTES[Topic(name)].event_model.__name__


def test_every_operation_sends_or_receives_a_message_of_its_own_channel():
    for name, operation in DOCUMENT["operations"].items():
        channel_ref = operation["channel"]["$ref"]
        resolve(DOCUMENT, channel_ref)
        assert all(message["$ref"].startswith(channel_ref + "/messages/") for message in operation["messages"]), name
        assert name == f"{operation['x-party']}.{operation['action']}.{channel_ref.removeprefix('#/channels/')}"


def test_every_producer_sends_and_every_consumer_receives():
    expected = {f"{party.value}.send.{topic.value}" for topic, route in ROUTES.items() for party in route.producers}
    expected |= {f"{party.value}.receive.{topic.value}" for topic, route in ROUTES.items() for party in route.consumers}
    assert set(DOCUMENT["operations"]) == expected


def test_the_schemas_show_sealed_secrets_as_the_strings_they_are_on_the_wire():
    for model in ("BindingRequested", "BindingAccepted", "BindingValidated"):
        sealed = DOCUMENT["components"]["schemas"][model]["properties"]["secret_key_sealed"]
        assert sealed["type"] == "string" and "writeOnly" not in sealed


def test_each_schema_shows_the_versions_its_consumers_read():
    for route in ROUTES.values():
        if route.model is not None:
            expected = [2] if route.model in VERSION_2 else [1, 2] if route.model in VERSIONS_1_AND_2 else [1]
            assert asyncapi.event_schema(route)["properties"]["schema_version"]["enum"] == expected


def test_there_is_a_sample_of_every_event():
    assert {type(event) for event in sample_events()} == {route.model for route in ROUTES.values() if route.model}


@pytest.mark.parametrize("event", sample_events(), ids=lambda event: type(event).__name__)
def test_each_event_schema_is_valid_and_accepts_a_real_event(event):
    jsonschema = pytest.importorskip("jsonschema")
    route = next(route for route in ROUTES.values() if route.model is type(event))
    schema = json.loads((asyncapi.SCHEMAS / f"{route.topic.value}.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    validator.validate(event.model_dump(mode="json"))
    assert not validator.is_valid(event.model_dump(mode="json") | {"schema_version": 999})
