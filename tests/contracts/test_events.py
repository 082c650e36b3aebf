import json
import uuid

import pytest
from pydantic import SecretStr

from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import (
    AuditEvent,
    BindingAccepted,
    BindingRequested,
    BindingStatus,
    BindingValidated,
    MalformedEvent,
    parse_event,
    utc_now,
)
from shared.contracts.pairs import normalise_pairs
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.routing import Topic
from shared.contracts.secrets import is_sealed, mask_access_key
from shared.contracts.states import BindingState
from tests.builders import validated

SEALED = "vault:v1:QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


def a_request(**overrides):
    fields = dict(request_id="req-1", user_id="user-1", exchange="htx", label="main", access_key="e2xxxxxx-99xxxxxx",
                  secret_key_sealed=SEALED, trading_pairs=["btcusdt"], requested_at=utc_now())
    return BindingRequested(**(fields | overrides))


def test_request_round_trips_through_json_and_keeps_the_ciphertext_on_the_wire():
    request = a_request()
    wire = request.to_bytes()
    assert json.loads(wire)["secret_key_sealed"] == SEALED
    assert parse_event(BindingRequested, wire) == request


def test_secrets_never_show_in_repr_str_or_python_dump():
    request = a_request()
    assert SEALED not in repr(request) and SEALED not in str(request)
    assert SEALED not in str(request.model_dump())
    assert "**********" in repr(SecretStr("plain")) and "plain" not in str(SecretStr("plain"))


def test_plaintext_secretstr_serialises_masked():
    # A plaintext secret in a model serialises as asterisks: it cannot reach a topic by accident.
    from pydantic import BaseModel

    class Carrier(BaseModel):
        secret: SecretStr

    assert "hunter2" not in Carrier(secret=SecretStr("hunter2")).model_dump_json()


def test_unknown_fields_from_newer_producers_are_ignored():
    # An added field does not bump the major (shared/contracts/events.py); an unknown major is refused, see
    # tests/contracts/test_schema_version.py.
    document = json.loads(a_request().to_bytes()) | {"added_later": {"x": 1}}
    parsed = parse_event(BindingRequested, json.dumps(document).encode())
    assert parsed.schema_version == 2 and not hasattr(parsed, "added_later")


def test_missing_and_invalid_fields_are_named_without_echoing_values():
    document = json.loads(a_request().to_bytes())
    del document["access_key"]
    document["requested_at"] = "not a time"
    document["secret_key_sealed"] = 12345
    with pytest.raises(MalformedEvent) as caught:
        parse_event(BindingRequested, json.dumps(document).encode())
    assert "access_key: Field required" in caught.value.problem
    assert "requested_at" in caught.value.problem and "secret_key_sealed" in caught.value.problem
    assert "not a time" not in caught.value.problem and "12345" not in caught.value.problem
    assert caught.value.user_id == "user-1" and caught.value.request_id == "req-1"


@pytest.mark.parametrize("raw", [b"", b"\xff\xfe", b"[1,2]", b"null", b'"text"', b"{"])
def test_non_object_bodies_are_malformed(raw):
    with pytest.raises(MalformedEvent):
        parse_event(BindingRequested, raw)


def test_naive_timestamps_are_refused():
    document = json.loads(a_request().to_bytes()) | {"requested_at": "2026-01-01T00:00:00"}
    with pytest.raises(MalformedEvent, match="requested_at"):
        parse_event(BindingRequested, json.dumps(document).encode())


def test_ids_cannot_escape_a_vault_path():
    document = json.loads(a_request().to_bytes()) | {"user_id": "../other"}
    with pytest.raises(MalformedEvent, match="user_id"):
        parse_event(BindingRequested, json.dumps(document).encode())


def test_every_event_round_trips():
    accepted = BindingAccepted(**a_request().model_dump(), event_id=uuid.uuid4(), binding_id="b-1",
                               accepted_at=utc_now())
    status = BindingStatus(event_id=uuid.uuid4(), request_id="r", binding_id="b", user_id="u", exchange="htx",
                           state=BindingState.REJECTED, reasons=[reason(ReasonCode.KEY_INVALID, "htx")],
                           occurred_at=utc_now())
    audit = AuditEvent(event_id=uuid.uuid4(), occurred_at=utc_now(), service="intake",
                       action=AuditAction.BIND_REQUEST, outcome=AuditOutcome.REJECTED,
                       reason_codes=[ReasonCode.KEY_INVALID])
    for event in (accepted, status, audit):
        assert parse_event(type(event), event.to_bytes()) == event


def test_topic_names_take_the_prefix():
    assert Topic.BINDING_REVOKE_REQUESTED.full_name("hash7.") == "hash7.binding.revoke-requested"


def test_sealed_shape_and_masking():
    assert is_sealed(SEALED)
    assert not is_sealed("c405c550-6fa0583b-fb4bc38e-d317e") and not is_sealed("vault:v1:")
    assert mask_access_key("e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx") == "e2xx…xxxx"
    assert mask_access_key("short") == "****"


def test_pairs_normalise_to_htx_symbols():
    assert normalise_pairs(["BTC/USDT", "btc-usdt", " EthUsdt ", "", "sol_usdt"]) == ["btcusdt", "ethusdt", "solusdt"]


def test_a_validated_event_written_before_bybit_and_okx_reads_as_the_same_facts():
    """In flight across the upgrade: the facts were `htx`, with HTX's integer ids and -1 for a key that never
    expires."""
    new = validated()
    old = new.model_dump(mode="json", exclude={"key"}) | {"htx": {
        "uid": 1, "spot_account_id": 10, "permissions": ["readOnly", "trade"], "ip_addresses": ["203.0.113.10"],
        "valid_days": None, "key_status": "normal"}}
    assert BindingValidated.model_validate(old).key == new.key
