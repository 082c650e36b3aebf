"""Events as they arrive at each service, for handler tests."""

import base64
import hashlib
import time
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared.adapters.vault.layout import event_signing_key
from shared.contracts.events import BindingStored, BindingValidated, Event, KeyFacts, derived_event_id, utc_now
from shared.contracts.provenance import (
    CERTIFICATE_HEADER,
    CERTIFICATE_LIFETIME_S,
    PRODUCED_AT_HEADER,
    PRODUCER_HEADER,
    SIGNATURE_HEADER,
    certificate_body,
    signed_digest,
)
from shared.contracts.reasons import Reason
from shared.contracts.routing import ROUTES, Party, Topic
from tests.fakes import InMemoryVault, fake_seal

# An HTX-shaped secret key: 32 characters, the size Transit imports as an HMAC key.
SECRET = "5ecr3700-hash7tst-00000000-test0"


def validated(user_id: str = "u1", binding_id: str = "b1", request_id: str = "r1",
              access_key: str = "ak-000000000001", secret: str = SECRET, replaces_binding_id: str | None = None,
              pairs: Sequence[str] | None = ("btcusdt",), warnings: Sequence[Reason] = ()) -> BindingValidated:
    return BindingValidated(
        event_id=derived_event_id("validated", user_id, request_id), binding_id=binding_id, request_id=request_id,
        user_id=user_id, exchange="htx", label="", access_key=access_key,
        secret_key_sealed=fake_seal(secret, user_id), trading_pairs=None if pairs is None else list(pairs),
        replaces_binding_id=replaces_binding_id, requested_at=utc_now(), accepted_at=utc_now(),
        key=KeyFacts(owner_uid="1", trading_account_id="10", permissions=["readOnly", "trade"],
                     ip_addresses=["203.0.113.10"], valid_days=None, key_status="normal"),
        warnings=list(warnings), validated_at=utc_now(),
    )


def stored(user_id: str = "u1", binding_id: str = "b1", request_id: str = "r1",
           pairs: Sequence[str] | None = ("btcusdt",), warnings: Sequence[Reason] = ()) -> BindingStored:
    return BindingStored(
        event_id=derived_event_id("stored", user_id, request_id), binding_id=binding_id, request_id=request_id,
        user_id=user_id, exchange="htx", access_key_masked="ak-0…0001", vault_path=f"bindings/{user_id}/{binding_id}",
        vault_version=1, trading_pairs=None if pairs is None else list(pairs), warnings=list(warnings),
        stored_at=utc_now(),
    )


def topic_of(event: Event) -> Topic:
    """The topic the routing table sends an event to."""
    return next(topic for topic, route in ROUTES.items() if route.model is type(event))


def provenance_headers(vault: InMemoryVault, producer: Party, topic: Topic, body: bytes, key: bytes = b"u1",
                       headers: Mapping[str, str] | None = None, produced_at_ms: int | None = None,
                       expires_at: int | None = None) -> list[tuple[str, bytes]]:
    """The headers a record gets when producer publishes it (shared/runtime/provenance.py), by default now: signed
    by a fresh short-lived key that the in-memory Vault's key for producer certified (until expires_at, by
    default a lifetime after the record), as Kafka hands them to a consumer."""
    produced_at_ms = produced_at_ms or int(time.time() * 1000)
    signing = Ed25519PrivateKey.generate()
    body_of_certificate = certificate_body(producer.value,
                                           expires_at or produced_at_ms // 1000 + CERTIFICATE_LIFETIME_S // 2,
                                           signing.public_key().public_bytes_raw())
    certificate = body_of_certificate + vault.signature(event_signing_key(producer.value),
                                                        hashlib.sha256(body_of_certificate.encode()).digest())
    named = {**(headers or {}), PRODUCER_HEADER: producer.value, PRODUCED_AT_HEADER: str(produced_at_ms),
             CERTIFICATE_HEADER: certificate}
    signature = signing.sign(signed_digest(topic.value, producer.value, key, named, body))
    return [(name, value.encode()) for name, value in
            {**named, SIGNATURE_HEADER: base64.b64encode(signature).decode()}.items()]
