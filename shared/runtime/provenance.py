"""Signing what a party publishes and verifying what it reads (the format: shared/contracts/provenance.py).

A party's long-term key stays in Vault Transit, usable only with that party's Vault identity. The producer signs
its records with a short-lived key of its own that Transit certified, renewed at half its lifetime (one Vault
call an half hour, none per record); should Vault be away at a renewal, the key in hand serves while it is valid.
Verification is local, with the long-term public keys read from Vault and kept in memory, and each certificate
verified once: a version not yet seen (a rotation under way) makes the verifier read the keys again, at most
once a second, so a flood of records naming unknown versions cannot make it hammer Vault; they are also re-read
every minute, so a retirement (deploy/bootstrap/event_keys.py) revokes the certificates of older versions
without a restart.
"""

import asyncio
import base64
import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.adapters.vault.client import SigningKeys, VaultPort
from shared.adapters.vault.layout import event_signing_key
from shared.contracts.provenance import (
    CERTIFICATE_HEADER,
    CERTIFICATE_LIFETIME_S,
    CLOCK_SKEW_S,
    PRODUCED_AT_HEADER,
    PRODUCER_HEADER,
    SIGNATURE_HEADER,
    Certificate,
    certificate_body,
    is_signed_header,
    signed_digest,
)
from shared.contracts.routing import Party, Topic
from shared.runtime.errors import TransientError

log = structlog.get_logger(__name__)

_TRANSIT_SIGNATURE = re.compile(r"vault:v([0-9]{1,9}):([A-Za-z0-9+/]{86}==)")
_SIGNATURE = re.compile(r"[A-Za-z0-9+/]{86}==")
_MILLISECONDS = re.compile(r"[0-9]{1,15}")
# How long public keys are trusted before they are read again (a retirement takes effect within it), and how
# soon an unknown version may make the verifier read them again.
KEYS_REFRESH_S = 60.0
UNKNOWN_VERSION_REFRESH_S = 1.0
# How soon a producer asks Vault again when a renewal failed while its key was still valid, and a verifier
# when reading the public keys failed while it held them.
_RENEWAL_RETRY_S = _KEYS_RETRY_S = 10.0
# Verified certificates kept: a few per producer instance (one per hour each).
_CERTIFICATES_REMEMBERED = 4096


@dataclass(frozen=True)
class OutgoingRecord:
    """A record as a party sends it: the logical topic (the deployment's prefix is added when sending)."""

    topic: Topic
    key: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True)
class _SigningKey:
    """A short-lived key and its certificate (shared/contracts/provenance.py)."""

    key: Ed25519PrivateKey
    certificate: str
    renew_at: float
    expires_at: float


class EventSigner:
    """Signs a party's outgoing records with a short-lived key that its Transit key certified: one Vault call
    per half-lifetime of a certificate, none per record (shared/contracts/provenance.py says why)."""

    def __init__(self, vault: VaultPort, producer: Party, clock: Callable[[], float] = time.time) -> None:
        self._vault = vault
        self.producer = producer
        self._clock = clock
        self._key: _SigningKey | None = None
        self._renewing = asyncio.Lock()

    async def sign(self, records: Sequence[OutgoingRecord]) -> list[OutgoingRecord]:
        """The records with the producer, certificate and signature headers added."""
        if not records:
            return []
        signing = await self._signing_key()
        produced_at = str(int(self._clock() * 1000))
        signed = []
        for record in records:
            headers = {**record.headers, PRODUCER_HEADER: self.producer.value, PRODUCED_AT_HEADER: produced_at,
                       CERTIFICATE_HEADER: signing.certificate}
            digest = signed_digest(record.topic.value, self.producer.value, record.key.encode(), headers, record.body)
            signature = base64.b64encode(signing.key.sign(digest)).decode()
            signed.append(replace(record, headers={**headers, SIGNATURE_HEADER: signature}))
        return signed

    async def _signing_key(self) -> _SigningKey:
        current = self._key
        if current is not None and self._clock() < current.renew_at:
            return current
        async with self._renewing:
            current = self._key
            if current is not None and self._clock() < current.renew_at:
                return current  # renewed while this waited
            try:
                self._key = await self._certified()
            except TransientError as exc:
                if current is None or self._clock() >= current.expires_at - CLOCK_SKEW_S:
                    raise
                # Vault away: the key in hand is valid a while longer; ask again soon, not for every record.
                log.warning("signing_key_renewal_failed", producer=self.producer.value, error_class=type(exc).__name__,
                            valid_for_s=round(current.expires_at - self._clock()))
                self._key = replace(current, renew_at=self._clock() + _RENEWAL_RETRY_S)
            return self._key

    async def _certified(self) -> _SigningKey:
        now = self._clock()
        key = Ed25519PrivateKey.generate()
        expires_at = int(now) + CERTIFICATE_LIFETIME_S
        body = certificate_body(self.producer.value, expires_at, key.public_key().public_bytes_raw())
        [signature] = await self._vault.sign(event_signing_key(self.producer.value),
                                             [hashlib.sha256(body.encode()).digest()])
        log.info("signing_key_certified", producer=self.producer.value, expires_at=expires_at)
        return _SigningKey(key, body + signature, now + CERTIFICATE_LIFETIME_S / 2, expires_at)


@dataclass(frozen=True)
class Provenance:
    """A record's verified producer, and the time it was produced (signed, unlike the Kafka timestamp)."""

    producer: Party
    produced_at: datetime


class Unauthentic(Exception):
    """A record without a valid proof of origin. The message says what is wrong, never quotes the record."""

    def __init__(self, problem: str, claimed_producer: str | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.claimed_producer = claimed_producer


@dataclass(frozen=True)
class _CertifiedKey:
    producer: Party
    public_key: Ed25519PublicKey
    expires_at: int
    # The version of the producer's Transit key that certified it: retiring that version revokes it.
    version: int


class EventVerifier:
    """Checks that a record was produced by a party the routing table allows on its topic."""

    def __init__(self, vault: VaultPort, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time) -> None:
        self._vault = vault
        self._clock = clock
        self._wall_clock = wall_clock
        self._keys: dict[Party, tuple[SigningKeys, float]] = {}
        self._reading: dict[Party, asyncio.Lock] = {}
        # Certificates already verified, by their header (a forged one is never kept).
        self._certified: OrderedDict[str, _CertifiedKey] = OrderedDict()

    async def producer_of(self, topic: Topic, allowed: frozenset[Party], key: bytes | None,
                          headers: Sequence[tuple[str, bytes]], body: bytes) -> Party:
        """The verified producer of the record, or Unauthentic."""
        return (await self.verify(topic, allowed, key, headers, body)).producer

    async def verify(self, topic: Topic, allowed: frozenset[Party], key: bytes | None,
                     headers: Sequence[tuple[str, bytes]], body: bytes) -> Provenance:
        """Who produced the record and when, both verified; or Unauthentic."""
        texts = _header_texts(headers)
        claimed = texts.get(PRODUCER_HEADER)
        producer = _allowed_producer(topic, allowed, claimed)
        certified = await self._certified_key(producer, texts.get(CERTIFICATE_HEADER), claimed)
        produced_at_s = _parsed_produced_at(texts.get(PRODUCED_AT_HEADER), claimed)
        if not certified.expires_at - CERTIFICATE_LIFETIME_S - CLOCK_SKEW_S <= produced_at_s \
                <= certified.expires_at + CLOCK_SKEW_S:
            raise Unauthentic("produced outside its certificate's lifetime", claimed)
        if produced_at_s > self._wall_clock() + CLOCK_SKEW_S:
            raise Unauthentic("produced ahead of this reader's clock", claimed)
        signature = _parsed_signature(texts.get(SIGNATURE_HEADER), claimed)
        digest = signed_digest(topic.value, producer.value, key or b"", texts, body)
        try:
            certified.public_key.verify(signature, digest)
        except InvalidSignature:
            raise Unauthentic(f"the signature does not verify with the {producer} key certified", claimed) from None
        return Provenance(producer, datetime.fromtimestamp(produced_at_s, UTC))

    async def read_keys_of(self, producers: Iterable[Party]) -> None:
        """Read now the public keys of the producers not read yet. A reader that starts while Vault answers then
        verifies through a later outage with the keys in hand, even the records of a producer it meets only then
        (they are read on first need otherwise, and a first read has nothing to fall back on)."""
        for producer in producers:
            async with self._reading.setdefault(producer, asyncio.Lock()):
                if producer not in self._keys:
                    await self._read_keys(producer, None)

    async def _certified_key(self, producer: Party, header: str | None, claimed: str | None) -> _CertifiedKey:
        if header is None:
            raise Unauthentic(f"no {CERTIFICATE_HEADER} header", claimed)
        certified = self._certified.get(header) or await self._verified_certificate(producer, header, claimed)
        if certified.producer is not producer:
            raise Unauthentic(f"the certificate is not the {producer} key's", claimed)
        if await self._public_key(producer, certified.version) is None:
            raise Unauthentic(f"certified by version {certified.version} of the {producer} key, which Vault does "
                              "not hold or has retired", claimed)
        return certified

    async def _verified_certificate(self, producer: Party, header: str, claimed: str | None) -> _CertifiedKey:
        try:
            certificate = Certificate.parse(header)
        except ValueError as exc:
            raise Unauthentic(f"the certificate is malformed ({exc})", claimed) from None
        if certificate.producer != producer.value:
            raise Unauthentic(f"the certificate is not the {producer} key's", claimed)
        version, signature = _parsed_transit_signature(certificate.transit_signature, claimed)
        public_key = await self._public_key(producer, version)
        if public_key is None:
            raise Unauthentic(f"certified by version {version} of the {producer} key, which Vault does not hold "
                              "or has retired", claimed)
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, certificate.digest)
        except InvalidSignature:
            raise Unauthentic(f"the certificate does not verify with the {producer} key", claimed) from None
        certified = _CertifiedKey(producer, Ed25519PublicKey.from_public_bytes(certificate.public_key),
                                  certificate.expires_at, version)
        self._certified[header] = certified
        if len(self._certified) > _CERTIFICATES_REMEMBERED:
            self._certified.popitem(last=False)
        return certified

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
                await self._read_keys(producer, cached)
        return self._keys[producer][0].usable(version)

    async def _read_keys(self, producer: Party, cached: tuple[SigningKeys, float] | None) -> None:
        try:
            keys = await self._vault.signing_keys(event_signing_key(producer.value))
        except TransientError as exc:
            if cached is None:
                raise  # nothing to verify with: the record waits for Vault
            # Vault away: verifying with the keys in hand beats stopping every consumer; try again shortly.
            log.warning("signing_keys_kept", producer=producer.value, error_class=type(exc).__name__)
            self._keys[producer] = (cached[0], self._clock() - KEYS_REFRESH_S + _KEYS_RETRY_S)
            return
        self._keys[producer] = (keys, self._clock())
        log.info("signing_keys_read", producer=producer.value, versions=sorted(keys.public_keys),
                 min_version=keys.min_version)


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


def _parsed_produced_at(text: str | None, claimed: str | None) -> float:
    if text is None or _MILLISECONDS.fullmatch(text) is None:
        raise Unauthentic(f"no {PRODUCED_AT_HEADER} header holding Unix milliseconds", claimed)
    return int(text) / 1000


def _parsed_transit_signature(text: str, claimed: str | None) -> tuple[int, bytes]:
    match = _TRANSIT_SIGNATURE.fullmatch(text)
    if match is None:
        raise Unauthentic("the certificate's signature is not of the form vault:v<N>:<base64 Ed25519 signature>",
                          claimed)
    return int(match[1]), base64.b64decode(match[2])


def _parsed_signature(text: str | None, claimed: str | None) -> bytes:
    if text is None or _SIGNATURE.fullmatch(text) is None:
        raise Unauthentic(f"no {SIGNATURE_HEADER} header holding a base64 Ed25519 signature", claimed)
    return base64.b64decode(text)
