"""Signing what a party publishes and verifying what it reads (the format: shared/contracts/provenance.py).

The private keys stay in Vault Transit: a producer asks Vault to sign (one call for all the records of one
handler's outcome), so a party's key can be used only with that party's Vault identity and is never in a
process. Verification is local, with the public keys read from Vault and kept in memory: a version not yet
seen (a rotation under way) makes the verifier read them again, at most once a second, so a flood of records
naming unknown versions cannot make it hammer Vault; they are also re-read every minute, so a retirement
(shared/contracts/provenance.py) takes effect without a restart.
"""

import asyncio
import base64
import binascii
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.adapters.vault.client import SigningKeys, VaultPort
from shared.adapters.vault.layout import event_signing_key
from shared.contracts.provenance import PRODUCER_HEADER, SIGNATURE_HEADER, is_signed_header, signed_digest
from shared.contracts.routing import Party, Topic

log = structlog.get_logger(__name__)

_SIGNATURE = re.compile(r"vault:v([0-9]{1,9}):([A-Za-z0-9+/]{86}==)")
# How long public keys are trusted before they are read again (a retirement takes effect within it), and how
# soon an unknown version may make the verifier read them again.
KEYS_REFRESH_S = 60.0
UNKNOWN_VERSION_REFRESH_S = 1.0
# Digests signed in one Transit call at most (a bound on one request's size).
_MAX_BATCH = 256


@dataclass(frozen=True)
class OutgoingRecord:
    """A record as a party sends it: the logical topic (the deployment's prefix is added when sending)."""

    topic: Topic
    key: str
    body: bytes
    headers: dict[str, str]


class EventSigner:
    """Signs a party's outgoing records with its Transit key.

    One Vault call at a time: what concurrent handlers ask for while a call is under way is signed together in
    the next one. Idle, a record is signed at once; under load, a service makes far fewer calls than it has
    records (Vault is what bounds the system's throughput, README.md#benchmark)."""

    def __init__(self, vault: VaultPort, producer: Party) -> None:
        self._vault = vault
        self.producer = producer
        self._waiting: list[tuple[bytes, asyncio.Future[str]]] = []
        self._signing: asyncio.Task[None] | None = None

    async def sign(self, records: Sequence[OutgoingRecord]) -> list[OutgoingRecord]:
        """The records with the producer and signature headers added."""
        if not records:
            return []
        named = [replace(record, headers={**record.headers, PRODUCER_HEADER: self.producer.value})
                 for record in records]
        digests = [signed_digest(record.topic.value, self.producer.value, record.key.encode(), record.headers,
                                 record.body) for record in named]
        signatures = await self._signatures(digests)
        return [replace(record, headers={**record.headers, SIGNATURE_HEADER: signature})
                for record, signature in zip(named, signatures, strict=True)]

    async def _signatures(self, digests: list[bytes]) -> list[str]:
        loop = asyncio.get_running_loop()
        asked = [(digest, loop.create_future()) for digest in digests]
        self._waiting.extend(asked)
        if self._signing is None or self._signing.done():
            self._signing = asyncio.create_task(self._sign_while_waiting())
        return list(await asyncio.gather(*(answer for _, answer in asked)))

    async def _sign_while_waiting(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:_MAX_BATCH], self._waiting[_MAX_BATCH:]
            try:
                signatures = await self._vault.sign(event_signing_key(self.producer.value),
                                                    [digest for digest, _ in batch])
            except Exception as exc:  # noqa: BLE001 — each caller gets the failure (transient or not) to handle
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(exc)
                continue
            for (_, answer), signature in zip(batch, signatures, strict=True):
                if not answer.done():  # its caller may have been cancelled meanwhile
                    answer.set_result(signature)


class Unauthentic(Exception):
    """A record without a valid proof of origin. The message says what is wrong, never quotes the record."""

    def __init__(self, problem: str, claimed_producer: str | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.claimed_producer = claimed_producer


class EventVerifier:
    """Checks that a record was produced by a party the routing table allows on its topic."""

    def __init__(self, vault: VaultPort, clock: Callable[[], float] = time.monotonic) -> None:
        self._vault = vault
        self._clock = clock
        self._keys: dict[Party, tuple[SigningKeys, float]] = {}
        self._reading: dict[Party, asyncio.Lock] = {}

    async def producer_of(self, topic: Topic, allowed: frozenset[Party], key: bytes | None,
                          headers: Sequence[tuple[str, bytes]], body: bytes) -> Party:
        """The verified producer of the record, or Unauthentic."""
        texts = _header_texts(headers)
        claimed = texts.get(PRODUCER_HEADER)
        producer = _allowed_producer(topic, allowed, claimed)
        version, signature = _parsed_signature(texts.get(SIGNATURE_HEADER), claimed)
        public_key = await self._public_key(producer, version)
        if public_key is None:
            raise Unauthentic(f"signed with version {version} of the {producer} key, which Vault does not hold "
                              "or has retired", claimed)
        digest = signed_digest(topic.value, producer.value, key or b"", texts, body)
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, digest)
        except InvalidSignature:
            raise Unauthentic(f"the signature does not verify with the {producer} key", claimed) from None
        return producer

    async def _public_key(self, producer: Party, version: int) -> bytes | None:
        cached = self._keys.get(producer)
        now = self._clock()
        if cached is not None:
            keys, read_at = cached
            fresh = now - read_at < KEYS_REFRESH_S
            known = version in keys.public_keys or now - read_at < UNKNOWN_VERSION_REFRESH_S
            if fresh and known:
                return keys.usable(version)
        async with self._reading.setdefault(producer, asyncio.Lock()):
            if self._keys.get(producer, (None, -1.0))[1] < now:  # nobody read them while this waited
                keys = await self._vault.signing_keys(event_signing_key(producer.value))
                self._keys[producer] = (keys, self._clock())
                log.info("signing_keys_read", producer=producer.value, versions=sorted(keys.public_keys),
                         min_version=keys.min_version)
        return self._keys[producer][0].usable(version)


def _header_texts(headers: Sequence[tuple[str, bytes]]) -> dict[str, str]:
    """The contract's headers (shared.contracts.provenance.is_signed_header, and the signature); what client
    libraries add besides is neither signed nor read."""
    ours = [(name, value) for name, value in headers if is_signed_header(name) or name == SIGNATURE_HEADER]
    if len({name for name, _ in ours}) != len(ours):
        # Two producer headers (say) would let a reader believe one while the signature covers the other.
        raise Unauthentic("a header name appears twice", None)
    try:
        return {name: value.decode() for name, value in ours}
    except UnicodeDecodeError:
        raise Unauthentic("a header value is not UTF-8", None) from None


def _allowed_producer(topic: Topic, allowed: frozenset[Party], claimed: str | None) -> Party:
    if claimed is None:
        raise Unauthentic(f"no {PRODUCER_HEADER} header", None)
    try:
        producer = Party(claimed)
    except ValueError:
        raise Unauthentic("the claimed producer is not a party of the routing table", claimed[:64]) from None
    if producer not in allowed:
        raise Unauthentic(f"{producer} may not produce {topic}", claimed)
    return producer


def _parsed_signature(text: str | None, claimed: str | None) -> tuple[int, bytes]:
    match = _SIGNATURE.fullmatch(text or "")
    if match is None:
        raise Unauthentic(f"no {SIGNATURE_HEADER} header of the form vault:v<N>:<base64 Ed25519 signature>", claimed)
    try:
        return int(match[1]), base64.b64decode(match[2], validate=True)
    except binascii.Error:
        raise Unauthentic("the signature is not valid base64", claimed) from None
