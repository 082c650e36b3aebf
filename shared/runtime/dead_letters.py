"""Dead letters: a record a service gave up on, kept on the dead-letter topic as it arrived (secrets scrubbed, at
most a given number of bytes), with the headers of shared/contracts/dead_letters.py saying where it came from,
why it failed and how large the original was, and the original's signed headers (its proof of origin), so that
a replay can send it back as its producer signed it (deploy/admin/dead_letters.py)."""

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError

from shared.contracts import dead_letters
from shared.contracts.events import AccessKey, utc_now
from shared.contracts.provenance import (
    CERTIFICATE_HEADER,
    SIGNATURE_HEADER,
    Certificate,
    is_signed_header,
)
from shared.contracts.secrets import is_sealed
from shared.runtime.logging import (
    REDACTED,
    access_key_field,
    redact,
    scrub_secret_shapes,
    secret_field,
    terminal_safe,
)

_MESSAGE_LIMIT = 1000
# How far past the kept start of an oversized body the scrubber reads, so that a secret cut by the end of what
# is kept is still recognised whole (every secret shape but a PEM key or a quoted value is far shorter; those
# two are matched to the end of the text when their end is missing).
_SCRUB_MARGIN_BYTES = 8 * 1024


_ACCESS_KEY: TypeAdapter[str] = TypeAdapter(AccessKey)
_ED25519_SIGNATURE_BYTES = 64


@dataclass(frozen=True)
class DeadLetter:
    """The original bytes (secrets scrubbed, perhaps only their start) with headers naming where they came from,
    why they failed, and the original's size and digest."""

    body: bytes
    key: str
    source_topic: str
    partition: int
    offset: int
    error_class: str
    error_message: str
    service: str
    failed_at: datetime
    original_size: int
    original_sha256: str
    truncated: bool
    # The original's signed headers by name, those that cannot hold a secret (original_headers).
    original_headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, raw: bytes, key: bytes | None, record_topic: str, partition: int, offset: int,
           error: BaseException, service: str, *, max_body_bytes: int | None = None,
           headers: Sequence[tuple[str, bytes]] = ()) -> "DeadLetter":
        """The dead letter of raw, a record with headers; with max_body_bytes, of at most that many bytes of it
        (scrubbed)."""
        truncated = max_body_bytes is not None and len(raw) > max_body_bytes
        if max_body_bytes is not None and truncated:
            body = scrub_plaintext_secrets(raw[: max_body_bytes + _SCRUB_MARGIN_BYTES])[:max_body_bytes]
        else:
            body = scrub_plaintext_secrets(raw)
        return cls(
            body=body,
            key=(key or b"").decode(errors="replace"),
            source_topic=record_topic,
            partition=partition,
            offset=offset,
            error_class=type(error).__name__,
            # Escaped too: a header is read by tools that print it as it is (kcat, the broker's console).
            error_message=terminal_safe(str(redact(str(error))))[:_MESSAGE_LIMIT],
            service=service,
            failed_at=utc_now(),
            original_size=len(raw),
            original_sha256=hashlib.sha256(raw).hexdigest(),
            truncated=truncated,
            original_headers=original_headers(headers),
        )

    def headers(self) -> dict[str, str]:
        return {
            dead_letters.ORIGINAL_TOPIC: self.source_topic,
            dead_letters.ORIGINAL_PARTITION: str(self.partition),
            dead_letters.ORIGINAL_OFFSET: str(self.offset),
            dead_letters.EXCEPTION_TYPE: self.error_class,
            dead_letters.EXCEPTION_MESSAGE: self.error_message,
            dead_letters.SERVICE: self.service,
            dead_letters.FAILED_AT: self.failed_at.isoformat(),
            dead_letters.ORIGINAL_SIZE: str(self.original_size),
            dead_letters.ORIGINAL_SHA256: self.original_sha256,
            dead_letters.TRUNCATED: "true" if self.truncated else "false",
            **{dead_letters.ORIGINAL_HEADER_PREFIX + name: value for name, value in self.original_headers.items()},
        }


def original_headers(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """The signed headers of a record (what its signature covers, and the signature), each only when it cannot
    carry a secret onto the dead-letter topic: a record that failed its proof of origin may hold anything there.
    The certificate and the signature are base64 of fixed sizes (shared/contracts/provenance.py), which the
    secret scrubber would take for secrets; every other value must pass the scrubber unchanged. A header left
    out makes the letter fail its proof of origin at a replay, which then refuses it."""
    kept: dict[str, str] = {}
    for name, raw in headers:
        if not (is_signed_header(name) or name == SIGNATURE_HEADER):
            continue
        try:
            value = raw.decode()
        except UnicodeDecodeError:
            continue
        if _public(name, value):
            kept[name] = value
    return kept


def _public(name: str, value: str) -> bool:
    if name == CERTIFICATE_HEADER:
        try:
            certificate = Certificate.parse(value)
        except ValueError:
            return False
        return _unchanged_by_scrubbing(certificate.producer) and _unchanged_by_scrubbing(
            certificate.transit_signature)
    if name == SIGNATURE_HEADER:
        try:
            return len(base64.b64decode(value, validate=True)) == _ED25519_SIGNATURE_BYTES
        except binascii.Error:
            return False
    return _unchanged_by_scrubbing(name) and _unchanged_by_scrubbing(value)


def _unchanged_by_scrubbing(text: str) -> bool:
    # Sealed values (Transit ciphertext, a certificate's Transit signature) are Vault's, not secrets.
    return scrub_secret_shapes(text, keep_sealed=True) == text


class _DuplicateField(ValueError):
    """A JSON object names a field twice: parsers disagree on which value counts, so the body is scrubbed
    as text, where both values are seen."""


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        raise _DuplicateField
    return document


def scrub_plaintext_secrets(raw: bytes) -> bytes:
    """raw without anything secret-shaped, and byte for byte as it was when it holds nothing of the kind (a
    dead letter must not become a secret's copy, and should otherwise replay as it was).

    A JSON body is walked to any depth: the value of any secret-named field that is not Transit ciphertext,
    and secret-shaped text in any string or field name (shared/runtime/logging.py), is replaced. A body that
    is not JSON (or not UTF-8, or JSON that names a field twice) is scrubbed as text by the same shapes."""
    try:
        document = json.loads(raw.decode(), object_pairs_hook=_refuse_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError):  # JSONDecodeError and _DuplicateField are ValueErrors
        return _scrub_text(raw)
    holder = [document]
    if not _scrub_document(holder):
        return raw
    try:
        # ASCII with escapes: the document may hold a lone surrogate ("\ud800" in the JSON), which has no UTF-8.
        return json.dumps(holder[0]).encode()
    except RecursionError:
        return _scrub_text(raw)


def _scrub_text(raw: bytes) -> bytes:
    # surrogateescape: bytes that are not UTF-8 pass through untouched, the text between them is scrubbed.
    text = raw.decode(errors="surrogateescape")
    scrubbed = scrub_secret_shapes(text, keep_sealed=True)
    return raw if scrubbed == text else scrubbed.encode(errors="surrogateescape")


def _scrub_document(holder: list[Any]) -> bool:
    """Scrub a parsed JSON document in place, without recursion (nesting is as deep as the parser allowed);
    whether anything changed."""
    changed = False
    # Each container with whether it sits under a secret-named field (then only ciphertext and emptiness stay).
    pending: list[tuple[dict[str, Any] | list[Any], bool]] = [(holder, False)]
    while pending:
        container, under_secret = pending.pop()
        if isinstance(container, dict):
            changed = _scrub_names(container) or changed
        for slot, name, value in _items(container):
            secret = under_secret or (name is not None and secret_field(name))
            if isinstance(value, (dict, list)):
                pending.append((value, secret))
            elif (clean := _clean_value(value, secret, named_access_key=name is not None and access_key_field(name))
                  ) is not value:
                container[slot] = clean
                changed = True
    return changed


def _items(container: dict[str, Any] | list[Any]) -> list[tuple[Any, str | None, Any]]:
    """(slot, field name or None, value) of each item, as a list: the container may change meanwhile."""
    if isinstance(container, dict):
        return [(name, name, value) for name, value in container.items()]
    return [(index, None, value) for index, value in enumerate(container)]


def _scrub_names(document: dict[str, Any]) -> bool:
    """Scrub secret-shaped field names in place, keeping the fields' order; whether any changed."""
    names = {name: scrub_secret_shapes(name, keep_sealed=True) for name in document}
    if all(clean == name for name, clean in names.items()):
        return False
    # A clash with another field keeps the later value, as JSON parsers do with a repeated name.
    items = [(names[name], value) for name, value in document.items()]
    document.clear()
    document.update(items)
    return True


def _clean_value(value: Any, secret: bool, *, named_access_key: bool) -> Any:
    """value, or [REDACTED] in its place: the same object when it stays, so the caller sees no change."""
    if secret:
        kept = value is None or value == "" or (isinstance(value, str) and is_sealed(value))
        return value if kept else REDACTED
    if not isinstance(value, str) or (named_access_key and _is_access_key(value)):
        # An access key is not a secret but has the shape of one (shared/adapters/htx/README.md): a field that
        # names it keeps it, so an ordinary request's dead letter stays byte for byte the original.
        return value
    clean = scrub_secret_shapes(value, keep_sealed=True)
    return value if clean == value else clean


def _is_access_key(value: str) -> bool:
    try:
        _ACCESS_KEY.validate_python(value)
    except ValidationError:
        return False
    return True
