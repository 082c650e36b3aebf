"""Proof of origin: how every record on every topic says which party produced it, in a way no other party
can imitate. Part of the published contract (shared/contracts/published/asyncapi.json), so that a producer
written in another language signs exactly as ours do.

Each record carries two headers:
- `x-hash7-producer`: the party that produced it (a `Party` value: "app", "intake", "validator", ...);
- `x-hash7-signature`: `vault:v<N>:<base64>`, an Ed25519 signature by version N of that party's key in
  Vault Transit (`event-<party>`, shared/adapters/vault/layout.py) over `signed_digest(...)`.

The digest covers the logical topic (without the deployment's prefix, so a record cannot be moved to another
topic), the producer, the record key, the contract's headers (so dead-letter headers cannot be altered) and
the body. A consumer accepts a record only when its producer is one the routing table allows on that topic and
the signature verifies with a version of that producer's key that Vault has not retired.

A signature proves who produced a record, not when: a genuine old record sent again verifies. Facts therefore
carry their own order from their source, and consumers ignore what is older than what they applied
(README.md#security).
"""

import hashlib
import json
from collections.abc import Mapping

PRODUCER_HEADER = "x-hash7-producer"
SIGNATURE_HEADER = "x-hash7-signature"
# Names the digest's layout below; a new layout gets a new name, and verifiers read both during a change.
SIGNED_FORMAT = "hash7-record-signature/1"
# For the published contract (shared/contracts/asyncapi.py).
PRODUCER_DESCRIPTION = "The party that produced the record; only those listed may produce on this channel."
SIGNATURE_DESCRIPTION = (
    "vault:v<N>:<base64>, the Ed25519 signature by version N of the producer's Vault Transit key "
    f"event-<producer> of the SHA-256 digest of the JSON array [\"{SIGNED_FORMAT}\", topic without its prefix, "
    "producer, record key as hex, event-type and every x- header but this one as [name, value] sorted by name, "
    "SHA-256 hex of the body], "
    "serialised with no spaces and ASCII escapes. Records without a valid one are dead letters."
)


def is_signed_header(name: str) -> bool:
    """The headers a signature covers: the contract's own (`event-type` and every `x-` header, the dead-letter
    headers among them), not the signature, and not what client libraries add on their own (FastStream's
    `correlation_id`, its `content-type` on a record of raw bytes)."""
    return (name == "event-type" or name.startswith("x-")) and name != SIGNATURE_HEADER


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
