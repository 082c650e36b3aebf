"""Proof of origin (shared/runtime/provenance.py), attacked as someone who can write any record to the broker
would: every record without a valid signature by a producer the routing table allows on its topic is refused,
and a change to any signed part of a genuine record breaks it."""

import base64
import hashlib
import time

import pytest

from shared.adapters.vault.client import SigningKeys, VaultUnavailable
from shared.adapters.vault.layout import event_signing_key
from shared.contracts.provenance import (
    CERTIFICATE_HEADER,
    CERTIFICATE_LIFETIME_S,
    CLOCK_SKEW_S,
    PRODUCER_HEADER,
    SIGNATURE_HEADER,
    certificate_body,
)
from shared.contracts.routing import ROUTES, Party, Topic
from shared.runtime.provenance import EventSigner, EventVerifier, OutgoingRecord, Unauthentic
from tests.builders import provenance_headers
from tests.fakes import InMemoryVault

BODY = b'{"user_id": "u1", "state": "active"}'
STATUS = ROUTES[Topic.BINDING_STATUS]


async def verify(vault, headers, body=BODY, key=b"u1", topic=Topic.BINDING_STATUS, verifier=None):
    verifier = verifier or EventVerifier(vault)
    return await verifier.producer_of(topic, ROUTES[topic].producers, key, headers, body)


def replaced(headers, name, value):
    return [(n, value if n == name else v) for n, v in headers]


async def test_a_record_signed_by_an_allowed_producer_verifies_and_names_it():
    vault = InMemoryVault()
    [signed] = await EventSigner(vault, Party.WHITELIST).sign([OutgoingRecord(Topic.BINDING_STATUS, "u1", BODY, {
        "event-type": "BindingStatus"})])
    headers = [(name, value.encode()) for name, value in signed.headers.items()]
    assert await verify(vault, headers) is Party.WHITELIST


async def test_a_record_without_proof_is_refused():
    with pytest.raises(Unauthentic, match="no x-hash7-producer header"):
        await verify(InMemoryVault(), [("event-type", b"BindingStatus")])


async def test_a_producer_the_table_does_not_allow_on_the_topic_is_refused_even_with_its_own_genuine_key():
    vault = InMemoryVault()
    # The app signs genuinely, but the app does not produce statuses.
    headers = provenance_headers(vault, Party.APP, Topic.BINDING_STATUS, BODY)
    with pytest.raises(Unauthentic, match="app may not produce binding.status"):
        await verify(vault, headers)


@pytest.mark.parametrize("claimed", ["root", "whitelist\x1b[2J", "", "WHITELIST"])
async def test_a_producer_that_is_no_party_is_refused(claimed):
    vault = InMemoryVault()
    headers = replaced(provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY), PRODUCER_HEADER,
                       claimed.encode())
    with pytest.raises(Unauthentic):
        await verify(vault, headers)


async def test_claiming_another_allowed_producer_breaks_the_signature():
    vault = InMemoryVault()
    headers = replaced(provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY), PRODUCER_HEADER,
                       b"intake")
    with pytest.raises(Unauthentic, match="the certificate is not the intake key's"):
        await verify(vault, headers)


@pytest.mark.parametrize("change", ["body", "key", "topic", "signed header", "added header"])
async def test_any_change_to_a_genuine_record_breaks_its_signature(change):
    vault = InMemoryVault()
    headers = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY, headers={"event-type": "S"})
    body, key, topic = BODY, b"u1", Topic.BINDING_STATUS
    if change == "body":
        body = BODY.replace(b"active", b"revoked")
    elif change == "key":
        key = b"u2"
    elif change == "topic":
        topic = Topic.AUDIT  # a topic the whitelist produces as well
    elif change == "signed header":
        headers = replaced(headers, "event-type", b"AuditEvent")
    else:
        headers = [*headers, ("x-dlq-original-topic", b"anything")]
    with pytest.raises(Unauthentic, match="does not verify"):
        await verify(vault, headers, body=body, key=key, topic=topic)


async def test_headers_a_client_library_adds_are_neither_signed_nor_in_the_way():
    vault = InMemoryVault()
    headers = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    assert await verify(vault, [*headers, ("correlation_id", b"\xff\xfe"), ("content-type", b"")]) is Party.WHITELIST


async def test_a_second_producer_or_signature_header_is_refused():
    vault = InMemoryVault()
    genuine = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    for name in (PRODUCER_HEADER, SIGNATURE_HEADER):
        with pytest.raises(Unauthentic, match="appears twice"):
            await verify(vault, [*genuine, (name, dict(genuine)[name])])


@pytest.mark.parametrize("signature", [b"", b"vault:v1:", b"vault:v1:" + b"A" * 86 + b"==x", b"v1:abc",
                                       b"vault:v99999999999:" + b"A" * 86 + b"==", b"\xff\xfe"])
async def test_a_signature_that_is_not_one_is_refused(signature):
    vault = InMemoryVault()
    headers = replaced(provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY), SIGNATURE_HEADER,
                       signature)
    with pytest.raises(Unauthentic):
        await verify(vault, headers)


async def test_a_signature_by_another_key_is_refused():
    vault, elsewhere = InMemoryVault(), InMemoryVault()
    headers = provenance_headers(elsewhere, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    await vault.signing_keys(event_signing_key("whitelist"))  # the real key exists
    with pytest.raises(Unauthentic, match="does not verify"):
        await verify(vault, headers)


class CountingKeys(InMemoryVault):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def signing_keys(self, key: str) -> SigningKeys:
        self.reads += 1
        return await super().signing_keys(key)


async def test_a_rotation_verifies_old_and_new_versions_and_a_retirement_refuses_the_old():
    vault, now = CountingKeys(), [0.0]
    verifier = EventVerifier(vault, clock=lambda: now[0])
    old = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    assert await verify(vault, old, verifier=verifier) is Party.WHITELIST
    vault.rotate(event_signing_key("whitelist"))
    now[0] += 2  # past the wait before an unknown version may make the verifier read the keys again
    new = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    assert new != old
    assert await verify(vault, new, verifier=verifier) is Party.WHITELIST
    assert await verify(vault, old, verifier=verifier) is Party.WHITELIST  # in flight during the rotation
    vault.retire_below(event_signing_key("whitelist"), 2)
    now[0] += 61  # the keys are read again within a minute
    with pytest.raises(Unauthentic, match="version 1 of the whitelist key"):
        await verify(vault, old, verifier=verifier)  # its certificate was verified and kept before
    assert await verify(vault, new, verifier=verifier) is Party.WHITELIST


def with_certificate(headers, certificate: str):
    return replaced(headers, CERTIFICATE_HEADER, certificate.encode())


def forged_certificate(producer: str = "whitelist", version: int = 1, expires_at: int | None = None,
                       signer: InMemoryVault | None = None) -> str:
    """A certificate for a key of the forger's, signed by another Vault (or by none: garbage)."""
    body = certificate_body(producer, expires_at or int(time.time()) + 3600, bytes(32))
    if signer is not None:
        return body + signer.signature(event_signing_key(producer), hashlib.sha256(body.encode()).digest())
    return body + f"vault:v{version}:" + base64.b64encode(hashlib.sha512(b"forged").digest()).decode()


async def test_a_flood_of_unknown_versions_reads_the_keys_at_most_once_a_second():
    vault, now = CountingKeys(), [0.0]
    verifier = EventVerifier(vault, clock=lambda: now[0])
    genuine = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    await verify(vault, genuine, verifier=verifier)
    for _ in range(500):
        with pytest.raises(Unauthentic, match="version 7"):
            await verify(vault, with_certificate(genuine, forged_certificate(version=7)), verifier=verifier)
    assert vault.reads == 1
    now[0] += 1.5
    with pytest.raises(Unauthentic):
        await verify(vault, with_certificate(genuine, forged_certificate(version=7)), verifier=verifier)
    assert vault.reads == 2


@pytest.mark.parametrize("certificate", [
    "", "hash7-signing-certificate/1|whitelist|1|AAAA|vault:v1:x", "a|b|c|d|e|f",
    certificate_body("whitelist", 10**10, bytes(32)),  # no signature at all
])
async def test_a_certificate_that_is_not_one_is_refused(certificate):
    vault = InMemoryVault()
    genuine = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    with pytest.raises(Unauthentic, match="certificate"):
        await verify(vault, with_certificate(genuine, certificate))


async def test_a_certificate_signed_by_another_vault_or_for_another_party_is_refused():
    vault = InMemoryVault()
    await vault.signing_keys(event_signing_key("whitelist"))
    genuine = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    with pytest.raises(Unauthentic, match="the certificate does not verify with the whitelist key"):
        await verify(vault, with_certificate(genuine, forged_certificate(signer=InMemoryVault())))
    # The intake's genuine certificate on a record claiming to be the whitelist's.
    intake = dict(provenance_headers(vault, Party.INTAKE, Topic.BINDING_STATUS, BODY))[CERTIFICATE_HEADER]
    with pytest.raises(Unauthentic, match="not the whitelist key's"):
        await verify(vault, with_certificate(genuine, intake.decode()))


async def test_a_genuine_certificate_on_a_record_its_key_did_not_sign_is_refused():
    vault = InMemoryVault()
    first = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    second = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)  # another certified key
    mixed = with_certificate(first, dict(second)[CERTIFICATE_HEADER].decode())
    with pytest.raises(Unauthentic, match="does not verify"):
        await verify(vault, mixed)


async def test_a_record_is_refused_when_produced_outside_its_certificates_lifetime_or_ahead_of_the_reader():
    vault, wall = InMemoryVault(), [time.time()]
    verifier = EventVerifier(vault, wall_clock=lambda: wall[0])
    now_ms = int(wall[0] * 1000)

    async def produced(at_ms: int, expires_at: int) -> Party:
        headers = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY, produced_at_ms=at_ms,
                                     expires_at=expires_at)
        return await verify(vault, headers, verifier=verifier)

    with pytest.raises(Unauthentic, match="outside its certificate's lifetime"):
        await produced(now_ms, expires_at=now_ms // 1000 - CLOCK_SKEW_S - 1)  # signed after the key expired
    with pytest.raises(Unauthentic, match="outside its certificate's lifetime"):
        await produced(now_ms, expires_at=now_ms // 1000 + CERTIFICATE_LIFETIME_S + CLOCK_SKEW_S + 1)  # before
    with pytest.raises(Unauthentic, match="ahead of this reader's clock"):
        await produced(now_ms + (CLOCK_SKEW_S + 5) * 1000, expires_at=now_ms // 1000 + 600)


async def test_a_record_read_long_after_it_was_produced_is_not_refused_for_its_age():
    # A consumer that was away for hours reads what was produced meanwhile.
    vault, wall = InMemoryVault(), [time.time()]
    verifier = EventVerifier(vault, wall_clock=lambda: wall[0])
    headers = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    wall[0] += 6 * 3600
    provenance = await verifier.verify(Topic.BINDING_STATUS, STATUS.producers, b"u1", headers, BODY)
    assert provenance.producer is Party.WHITELIST and abs(provenance.produced_at.timestamp() - (wall[0] - 6 * 3600)) < 5


class FlakySigning(InMemoryVault):
    """Transit counting its calls, away while `away` says so."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0
        self.away = False

    async def sign(self, key, digests):
        self.calls += 1
        if self.away:
            raise VaultUnavailable("Vault unreachable (ConnectionError)")
        return await super().sign(key, digests)


def outgoing(n: int) -> list[OutgoingRecord]:
    return [OutgoingRecord(Topic.BINDING_STATUS, f"u{n}", BODY, {}), OutgoingRecord(Topic.AUDIT, f"u{n}", BODY, {})]


async def test_records_are_signed_without_vault_until_the_certificate_is_half_spent():
    vault, now = FlakySigning(), [1_000_000.0]
    signer = EventSigner(vault, Party.WHITELIST, clock=lambda: now[0])
    for n in range(50):
        await signer.sign(outgoing(n))
    assert vault.calls == 1
    now[0] += CERTIFICATE_LIFETIME_S / 2
    [renewed, _] = await signer.sign(outgoing(99))
    assert vault.calls == 2
    headers = [(name, value.encode()) for name, value in renewed.headers.items()]
    assert await EventVerifier(vault, wall_clock=lambda: now[0]).producer_of(
        Topic.BINDING_STATUS, STATUS.producers, b"u99", headers, BODY) is Party.WHITELIST


async def test_vault_away_at_a_renewal_keeps_the_valid_key_and_fails_only_once_it_expired():
    vault, now = FlakySigning(), [1_000_000.0]
    signer = EventSigner(vault, Party.WHITELIST, clock=lambda: now[0])
    await signer.sign(outgoing(0))
    vault.away = True
    now[0] += CERTIFICATE_LIFETIME_S * 0.75
    assert len(await signer.sign(outgoing(1))) == 2  # renewal failed, the key in hand is still valid
    calls = vault.calls
    await signer.sign(outgoing(2))
    assert vault.calls == calls  # asked again only after a pause, not for every record
    now[0] += CERTIFICATE_LIFETIME_S * 0.25
    with pytest.raises(VaultUnavailable):
        await signer.sign(outgoing(3))
    vault.away = False
    assert len(await signer.sign(outgoing(4))) == 2





class KeysAway(InMemoryVault):
    def __init__(self) -> None:
        super().__init__()
        self.away = False

    async def signing_keys(self, key: str) -> SigningKeys:
        if self.away:
            raise VaultUnavailable("Vault unreachable (ConnectionError)")
        return await super().signing_keys(key)


async def test_vault_away_keeps_the_public_keys_in_hand_and_fails_only_a_verifier_that_has_none():
    vault, now = KeysAway(), [0.0]
    verifier = EventVerifier(vault, clock=lambda: now[0])
    headers = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    await verify(vault, headers, verifier=verifier)
    vault.away = True
    now[0] += 61  # due for a fresh read, which fails: every consumer would stop without the keys in hand
    assert await verify(vault, headers, verifier=verifier) is Party.WHITELIST
    with pytest.raises(VaultUnavailable):
        await verify(vault, headers, verifier=EventVerifier(vault))  # a fresh start: nothing to verify with


async def test_keys_read_ahead_verify_a_producer_first_met_while_vault_is_away():
    vault = KeysAway()
    verifier = EventVerifier(vault)
    headers = provenance_headers(vault, Party.WHITELIST, Topic.BINDING_STATUS, BODY)
    await verifier.read_keys_of(ROUTES[Topic.BINDING_STATUS].producers)
    vault.away = True
    # The reader never met the whitelist's records before the outage; the keys read ahead verify them.
    assert await verify(vault, headers, verifier=verifier) is Party.WHITELIST
    with pytest.raises(VaultUnavailable):
        await EventVerifier(vault).read_keys_of([Party.WHITELIST])  # read ahead while away: says so at once
