"""Hypothesis strategies for bad input on every inbound topic: bytes that are not JSON, JSON that is not an
object, and otherwise well-shaped events with one field missing, wrongly typed, oversized, unicode-hostile
or (for a sealed secret) wrongly sealed.

Each message carries its own fuzz id as Kafka key and, where the mutation leaves it alone, as user_id and
request_id: dead letters keep the key, statuses name the user, so every message's fate can be found.
"""

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.contracts.events import (
    MAX_TRADING_PAIRS,
    BindingAccepted,
    BindingRequested,
    BindingStored,
    BindingValidated,
    Event,
    MalformedEvent,
    RevokeRequested,
    WhitelistRequested,
    parse_event,
)
from shared.contracts.routing import Topic

INBOUND: dict[Topic, type[Event]] = {
    Topic.BINDING_REQUESTED: BindingRequested,
    Topic.BINDING_ACCEPTED: BindingAccepted,
    Topic.BINDING_VALIDATED: BindingValidated,
    Topic.BINDING_STORED: BindingStored,
    Topic.WHITELIST_REQUESTED: WhitelistRequested,
    Topic.BINDING_REVOKE_REQUESTED: RevokeRequested,
}
# Ciphertext-shaped, but sealed by no key of ours.
FORGED_CIPHERTEXT = "vault:v1:" + "Zm9yZ2VkLWNpcGhlcnRleHQtbm90LW91cnM=" * 2
# Strings that have broken parsers, terminals, logs and JSON encoders: a lone surrogate, NUL, direction
# overrides, zero-width and combining characters, a BOM, look-alike letters, astral-plane text.
HOSTILE_TEXT = ["\ud800", "a\x00b", "\u202eevil\u202c", "zero\u200bwidth", "e\u0301\u0301\u0301", "\ufeffbom",
                "раураl", "𝔲𝔫𝔦𝔠𝔬𝔡𝔢", "🔑" * 40, "\\u0000", "'; DROP TABLE --", "../../etc/passwd", "%s%n%x"]
WRONG_TYPES = st.one_of(st.integers(), st.floats(allow_nan=True), st.booleans(), st.none(),
                        st.lists(st.integers(), max_size=3),
                        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _template(topic: Topic, fuzz_id: str, sealed: str) -> dict[str, Any]:
    """A document of topic's event, valid in shape, about user and request fuzz_id."""
    now = "2026-01-01T00:00:00+00:00"
    request = {"schema_version": 2, "request_id": fuzz_id, "user_id": fuzz_id, "exchange": "htx", "label": "fuzz",
               "access_key": "fuzz-access-key-0001", "secret_key_sealed": sealed, "trading_pairs": ["btcusdt"],
               "requested_at": now}
    accepted = request | {"event_id": str(uuid.uuid4()), "binding_id": fuzz_id, "accepted_at": now}
    return {
        Topic.BINDING_REQUESTED: request,
        Topic.BINDING_ACCEPTED: accepted,
        Topic.BINDING_VALIDATED: accepted | {
            "htx": {"uid": 1, "spot_account_id": 1, "permissions": ["readOnly", "trade"],
                    "ip_addresses": ["203.0.113.10"], "valid_days": -1, "key_status": "normal"},
            "warnings": [], "validated_at": now},
        Topic.BINDING_STORED: {"event_id": str(uuid.uuid4()), "binding_id": fuzz_id, "request_id": fuzz_id,
                               "user_id": fuzz_id, "exchange": "htx", "access_key_masked": "fuzz…0001",
                               "vault_path": "bindings/x", "vault_version": 1, "trading_pairs": ["btcusdt"],
                               "stored_at": now},
        # Pairs HTX does not list: a well-shaped whitelist request is refused, never applied.
        Topic.WHITELIST_REQUESTED: {"request_id": fuzz_id, "user_id": fuzz_id, "binding_id": fuzz_id,
                                    "trading_pairs": ["nosuchpair"]},
        Topic.BINDING_REVOKE_REQUESTED: {"request_id": fuzz_id, "user_id": fuzz_id, "binding_id": fuzz_id},
    }[topic]


@dataclass(frozen=True)
class FuzzMessage:
    topic: Topic
    key: str
    body: bytes
    kind: str
    # A plaintext the message put in a secret field, as a broken app would (may be seen on this topic only).
    plaintext_secret: str | None = None

    @property
    def malformed(self) -> MalformedEvent | None:
        """What the consumer's parse makes of it: None when it is a well-shaped event."""
        try:
            parse_event(INBOUND[self.topic], self.body)
        except MalformedEvent as error:
            return error
        return None


def _encoded(document: Any, ascii_only: bool) -> bytes:
    # Non-ASCII output keeps a lone surrogate as it is, which makes the bytes invalid UTF-8: hostile too.
    return json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def fuzz_messages(draw: st.DrawFn, fuzz_id: Callable[[], str], sealed_for_another_user: str) -> FuzzMessage:
    topic = draw(st.sampled_from(sorted(INBOUND)))
    key = fuzz_id()
    document = _template(topic, key, draw(st.sampled_from([FORGED_CIPHERTEXT, sealed_for_another_user])))
    field = draw(st.sampled_from(sorted(document)))
    kind = draw(st.sampled_from(["not_json", "not_an_object", "missing", "wrongly_typed", "oversized",
                                 "unicode_hostile", *(["wrongly_sealed"] if "secret_key_sealed" in document else [])]))
    plaintext = None
    if kind == "not_json":
        return FuzzMessage(topic, key, draw(st.binary(max_size=200)), kind)
    if kind == "not_an_object":
        document = draw(st.one_of(st.lists(st.integers(), max_size=3), st.text(max_size=20), st.integers(),
                                  st.none(), st.booleans()))
    elif kind == "missing":
        del document[field]
    elif kind == "wrongly_typed":
        document[field] = draw(WRONG_TYPES)
    elif kind == "oversized":
        size = draw(st.integers(min_value=200, max_value=60_000))
        document[field] = ["btcusdt"] * (MAX_TRADING_PAIRS + 1 + size // 50) if field == "trading_pairs" \
            else draw(st.sampled_from("aZ9-é🔑")) * size
    elif kind == "unicode_hostile":
        document[field] = draw(st.sampled_from(HOSTILE_TEXT)) + draw(st.text(max_size=8))
    else:  # wrongly_sealed
        plaintext = f"plaintext-secret-{key}"
        document["secret_key_sealed"] = draw(st.sampled_from([plaintext, "vault:v1:short", "vault:v9:" + "A" * 40]))
    # Published as the app: on the internal topics even a well-shaped one is refused unread, as a forgery.
    return FuzzMessage(topic, key, _encoded(document, draw(st.booleans())), kind, plaintext)


def draw_fuzz_messages(count: int, sealed_for_another_user: str) -> list[FuzzMessage]:
    """count messages of the same kinds and contents on every run (derandomised: a fuzzer must not make the suite
    flaky), with ids of their own run (its prefix), so they never meet records an earlier run left on the broker."""
    drawn: list[FuzzMessage] = []
    numbers = iter(range(1_000_000))
    run = uuid.uuid4().hex[:8]

    @settings(max_examples=count, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(fuzz_messages(lambda: f"fz-{run}-{next(numbers):05d}", sealed_for_another_user))
    def collect(message: FuzzMessage) -> None:
        drawn.append(message)

    collect()
    return drawn
