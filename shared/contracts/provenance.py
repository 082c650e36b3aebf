"""Proof of origin: how every record on every topic says which party produced it, in a way no other party
can imitate. Part of the published contract (shared/contracts/published/asyncapi.json), so that a producer
written in another language signs exactly as ours do.

Each party has a long-term Ed25519 key in Vault Transit (`event-<party>`, shared/adapters/vault/layout.py) that
never leaves Vault. Signing every record through Vault cost a sixth of the system's throughput (README.md#benchmark),
so a producer signs its records with a short-lived Ed25519 key of its own, which Vault certifies: every hour or
so the producer makes a new key pair in memory and asks Transit to sign a certificate naming the party, the
public key and its expiry. Each record then carries three headers:

- `x-hash7-producer`: the party that produced it (a `Party` value: "app", "intake", "validator", ...);
- `x-hash7-produced-at`: when, in Unix milliseconds: within its certificate's lifetime, and not ahead of the
  reader's clock. Signed, unlike the Kafka record's timestamp, so it is the record's time for its consumers
  (a handler stamps what it emits with it: a redelivery, or a replay, gives the very same events);
- `x-hash7-certificate`: `hash7-signing-certificate/1|<party>|<expiry, Unix seconds>|<public key, base64>|`
  followed by `vault:v<N>:<base64>`, the Transit signature, by version N of the party's key, of the SHA-256 of
  everything before that last `|`;
- `x-hash7-signature`: the base64 Ed25519 signature, by the certified key, of `signed_digest(...)`.

The digest covers the logical topic (without the deployment's prefix, so a record cannot be moved to another
topic), the producer, the record key, the contract's headers (the certificate, the dead-letter headers and the W3C
trace context, which therefore cannot be altered) and the body. A consumer accepts a record only when its producer
is one the routing table allows on that topic, its certificate names that producer and verifies with a version of
the producer's key that Vault has not retired, it was produced within the certificate's lifetime, and the record's
signature verifies with the certified key. A record is not refused for being old: a consumer that was away an hour
reads what was produced meanwhile. The lifetime bounds when a certified key may sign, as its records say; what
revokes a stolen key is retiring the version that certified it (deploy/bootstrap/event_keys.py).

A signature proves who produced a record, not when: a genuine old record sent again verifies. Facts therefore
carry their own order from their source, and consumers ignore what is older than what they applied
(README.md#security).
"""

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

PRODUCER_HEADER = "x-hash7-producer"
PRODUCED_AT_HEADER = "x-hash7-produced-at"
CERTIFICATE_HEADER = "x-hash7-certificate"
SIGNATURE_HEADER = "x-hash7-signature"
# W3C trace context (shared/runtime/tracing.py), signed because the vault-writer stores it with a binding. It
# joined the signed headers without a new layout name: a record without it digests exactly as before.
TRACE_CONTEXT_HEADERS = frozenset({"traceparent", "tracestate"})
# Names the layouts below; a new layout gets a new name, and verifiers read both during a change.
SIGNED_FORMAT = "hash7-record-signature/1"
CERTIFICATE_FORMAT = "hash7-signing-certificate/1"
# How long a certified key signs. Producers renew at half of it, so a
# rotated Transit key has certified every producer's key within half of it, and none of the older version's
# certificates is valid after all of it (deploy/bootstrap/event_keys.py waits that long before a retirement).
CERTIFICATE_LIFETIME_S = 3600
# Clocks of producers and consumers may differ by this much.
CLOCK_SKEW_S = 60

# For the published contract (shared/contracts/asyncapi.py).
PRODUCER_DESCRIPTION = "The party that produced the record; only those listed may produce on this channel."
PRODUCED_AT_DESCRIPTION = ("When the record was produced, in Unix milliseconds (decimal): within the certificate's "
                           "lifetime. Its consumers' time for it.")
CERTIFICATE_DESCRIPTION = (
    f"{CERTIFICATE_FORMAT}|<party>|<expiry, Unix seconds>|<Ed25519 public key, base64>|vault:v<N>:<base64>: "
    "the producer's short-lived signing key, certified by version N of its Vault Transit key event-<party> (an "
    "Ed25519 signature of the SHA-256 of everything before the last |)."
)
SIGNATURE_DESCRIPTION = (
    "Base64 Ed25519 signature, by the certified key, of the SHA-256 digest of the JSON array "
    f"[\"{SIGNED_FORMAT}\", topic without its prefix, producer, record key as hex, event-type, traceparent, "
    "tracestate and every x- header but this one as [name, value] sorted by name, SHA-256 hex of the body], "
    "serialised with no spaces and ASCII escapes. Records without a valid one are dead letters."
)


def is_signed_header(name: str) -> bool:
    """The headers a signature covers: the contract's own (`event-type`, the W3C trace context and every `x-`
    header, the certificate and the dead-letter headers among them), not the signature, and not what client
    libraries add on their own (FastStream's `correlation_id`, its `content-type` on a record of raw bytes)."""
    return (name == "event-type" or name in TRACE_CONTEXT_HEADERS or name.startswith("x-")) and name != SIGNATURE_HEADER


def signed_digest(topic: str, producer: str, key: bytes, headers: Mapping[str, str], body: bytes) -> bytes:
    """The SHA-256 digest a producer signs: of the JSON array [format, topic, producer, key as hex, the signed
    headers (is_signed_header) sorted by name as [name, value] pairs, SHA-256 hex of the body], serialised with
    no spaces and ASCII escapes (`json.dumps(..., separators=(",", ":"), ensure_ascii=True)`). JSON, so no
    field can run into the next; the body by its digest, so the signed document stays small."""
    document = [
        SIGNED_FORMAT,
        topic,
        producer,
        key.hex(),
        sorted([name, value] for name, value in headers.items() if is_signed_header(name)),
        hashlib.sha256(body).hexdigest(),
    ]
    return hashlib.sha256(json.dumps(document, separators=(",", ":"), ensure_ascii=True).encode()).digest()


def certificate_body(producer: str, expires_at: int, public_key: bytes) -> str:
    """What Transit signs (its SHA-256) to certify a producer's short-lived key."""
    return f"{CERTIFICATE_FORMAT}|{producer}|{expires_at}|{base64.b64encode(public_key).decode()}|"


@dataclass(frozen=True)
class Certificate:
    producer: str
    expires_at: int
    public_key: bytes
    # `vault:v<N>:<base64>`, over the SHA-256 of `body`.
    transit_signature: str
    body: str

    @classmethod
    def parse(cls, header: str) -> "Certificate":
        """The certificate in a header; ValueError when it is not one (its signature is not checked here)."""
        body, separator, signature = header.rpartition("|")
        fields = body.split("|")
        if not separator or len(fields) != 4 or fields[0] != CERTIFICATE_FORMAT:
            raise ValueError("not a signing certificate")
        try:
            public_key = base64.b64decode(fields[3], validate=True)
        except binascii.Error:
            raise ValueError("the certified key is not base64") from None
        if len(public_key) != 32 or not fields[2].isdigit():
            raise ValueError("not a signing certificate")
        return cls(fields[1], int(fields[2]), public_key, signature, body + "|")

    @property
    def digest(self) -> bytes:
        return hashlib.sha256(self.body.encode()).digest()

    def header(self) -> str:
        return self.body + self.transit_signature
