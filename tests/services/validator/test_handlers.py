import asyncio

import pytest
from pydantic import SecretStr

from services.validator.handlers import (
    KeyCheckInterrupted,
    ValidatorDeps,
    handle_binding_accepted,
    handle_recheck_requested,
)
from services.validator.inspection import KeyInspection
from services.validator.verdict import KeyVerdict
from services.vault_writer.handlers import VaultWriterDeps, handle_binding_validated
from shared.adapters.exchange.errors import ExchangeErrorKind, ExchangeTransientError
from shared.adapters.htx.signing import pre_sign_text
from shared.adapters.request_signing import LocalHmacSigner
from shared.adapters.vault.layout import BINDING_PASSPHRASE_KEY, binding_path, exchange_key, key_check_key
from shared.adapters.vault.records import BindingRecord, KeyRef
from shared.adapters.vault.transit_signer import TransitHmacSigner
from shared.contracts.events import (
    AuditEvent,
    BindingAccepted,
    KeyFacts,
    RecheckRequested,
    derived_event_id,
    utc_now,
)
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from shared.runtime.errors import TransientError
from tests.builders import SECRET, topic_of, validated
from tests.fakes import AT, InMemoryVault, fake_seal, fake_seal_text
from tests.services.vaults import ImportCountingVault, left_behind, rotation_left_behind

FACTS = KeyFacts(owner_uid="7", trading_account_id="10", permissions=["readOnly", "trade"],
                 ip_addresses=["203.0.113.10"], valid_days=None, key_status="normal")
GOOD = KeyInspection(KeyVerdict(), FACTS)
# A request as the HTX client has it signed (shared/adapters/htx/README.md#signing).
TEXT = pre_sign_text("GET", "api.huobi.pro", "/v1/account/accounts",
                     [("AccessKeyId", "ak-000000000001"), ("SignatureMethod", "HmacSHA256"),
                      ("SignatureVersion", "2"), ("Timestamp", "2026-11-24T12:00:00")])
CHECK_KEY = key_check_key("u1", "r1")


def accepted(sealed=None):
    return BindingAccepted(event_id=derived_event_id("accepted", "u1", "r1"), binding_id="b1", request_id="r1",
                           user_id="u1", exchange="htx", label="", access_key="ak-000000000001",
                           secret_key_sealed=sealed or fake_seal(SECRET, "u1"), trading_pairs=["btcusdt"],
                           requested_at=utc_now(), accepted_at=utc_now())


def inspector(result=None, error=None, seen=None, signed=None):
    """Stands in for the inspection at the exchange; signs one request with the credentials it is given, as HTX
    calls do; remembers the exchange asked with the credentials."""
    async def inspect(exchange, credentials):
        if seen is not None:
            seen.append((exchange, credentials))
        if signed is not None:
            signed.extend(await credentials.signer.sign([TEXT]))
        if error:
            raise error
        return result
    return inspect


async def no_wait():
    return None


def deps(vault=None, **kwargs):
    return ValidatorDeps(vault=vault or InMemoryVault(), inspect=inspector(**kwargs), exchange_deadline_s=2.0,
                         pace_recheck=no_wait, inspection_turns=asyncio.Semaphore(4))


def by_topic(outgoing):
    return {topic_of(m): m for m in outgoing}


async def signed_locally(secret):
    return await LocalHmacSigner(SecretStr(secret)).sign([TEXT])


async def test_a_good_key_is_validated_with_htx_facts_and_the_secret_stays_sealed():
    seen = []
    event = accepted()
    out = by_topic(await handle_binding_accepted(event, deps(result=GOOD, seen=seen), at=AT))
    assert seen[0][0] == "htx" and seen[0][1].access_key == "ak-000000000001"
    validated_ = out[Topic.BINDING_VALIDATED]
    assert validated_.key == FACTS and validated_.secret_key_sealed == event.secret_key_sealed
    assert SECRET not in validated_.model_dump_json()
    assert out[Topic.BINDING_STATUS].state == BindingState.VALIDATED


async def test_htx_is_asked_with_a_signer_that_signs_as_the_secret_would_from_a_key_check_key_then_deleted():
    vault, signed, held, signers = ImportCountingVault(), [], [], []

    async def inspect(exchange, credentials):
        held.append(list(vault.hmac_keys.get(CHECK_KEY, [])))
        signers.append(credentials.signer)
        signed.extend(await credentials.signer.sign([TEXT]))
        return GOOD

    checking = ValidatorDeps(vault, inspect, 2.0, no_wait, asyncio.Semaphore(4))
    out = by_topic(await handle_binding_accepted(accepted(), checking, at=AT))
    assert Topic.BINDING_VALIDATED in out
    assert held == [[SECRET.encode()]] and vault.imports == [CHECK_KEY]
    assert signed == await signed_locally(SECRET)
    assert vault.hmac_keys == {}
    # Signed inside Vault: the credentials name the key, they hold no secret.
    assert [(type(signer), signer.key) for signer in signers] == [(TransitHmacSigner, KeyRef(CHECK_KEY, 1))]


async def test_the_audit_names_the_vault_calls_that_signed_for_htx():
    vault = InMemoryVault()
    out = by_topic(await handle_binding_accepted(accepted(), deps(vault, result=GOOD, signed=[]), at=AT))
    audit = out[Topic.AUDIT]
    assert isinstance(audit, AuditEvent) and audit.outcome == "validated"
    assert audit.details["vault_sign_request_ids"] == ["in-memory-1"]


async def test_a_key_htx_rejects_is_reported_its_check_key_deleted_and_its_vault_calls_audited():
    verdict = KeyVerdict(rejections=[reason(ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN, "htx"),
                                      reason(ReasonCode.IP_BINDING_MISSING, "htx")],
                         warnings=[reason(ReasonCode.KEY_EXPIRING, "htx", valid_days=7)])
    vault = InMemoryVault()
    out = by_topic(await handle_binding_accepted(accepted(), deps(vault, result=KeyInspection(verdict, FACTS),
                                                                  signed=[]), at=AT))
    assert Topic.BINDING_VALIDATED not in out
    assert out[Topic.BINDING_STATUS].reason_codes == [
        ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN, ReasonCode.IP_BINDING_MISSING, ReasonCode.KEY_EXPIRING]
    assert out[Topic.AUDIT].details["vault_sign_request_ids"] == ["in-memory-1"]
    assert vault.hmac_keys == {}


async def test_htx_trouble_tells_the_user_to_retry_not_to_fix_the_key_and_leaves_no_key():
    error = ExchangeTransientError(ExchangeErrorKind.UNAVAILABLE, "gateway-internal-error", "Failed to load data.")
    vault = InMemoryVault()
    out = by_topic(await handle_binding_accepted(accepted(), deps(vault, error=error, signed=[]), at=AT))
    assert out[Topic.BINDING_STATUS].reason_codes == [ReasonCode.EXCHANGE_UNAVAILABLE]
    assert "do not need to change the key" in out[Topic.BINDING_STATUS].reasons[0].hint
    assert vault.hmac_keys == {}


async def test_a_check_that_fails_unexpectedly_still_deletes_its_key():
    vault = InMemoryVault()
    with pytest.raises(RuntimeError, match="inspection bug"):
        await handle_binding_accepted(accepted(), deps(vault, error=RuntimeError("inspection bug"), signed=[]), at=AT)
    assert vault.hmac_keys == {}


@pytest.mark.parametrize("sealed", [
    fake_seal(SECRET, "u2"),
    # Vault refuses it: only Vault's wrapping key opens an import.
    fake_seal_text("x" * 40, "u1"),
], ids=["sealed for another user", "sealed but not wrapped for Vault"])
async def test_a_secret_this_user_did_not_wrap_for_vault_is_unreadable_and_no_key_is_made(sealed):
    vault, seen = ImportCountingVault(), []
    out = by_topic(await handle_binding_accepted(accepted(sealed), deps(vault, seen=seen), at=AT))
    assert out[Topic.BINDING_STATUS].reason_codes == [ReasonCode.SECRET_UNREADABLE] and not seen
    assert vault.imports == [] and vault.hmac_keys == {}


async def test_a_redelivery_after_a_crash_reuses_the_key_check_key_left_behind_and_deletes_it():
    vault, signed = ImportCountingVault(), []
    await left_behind(vault, CHECK_KEY, SECRET)
    out = by_topic(await handle_binding_accepted(accepted(), deps(vault, result=GOOD, signed=signed), at=AT))
    assert Topic.BINDING_VALIDATED in out
    assert vault.imports == [] and signed == await signed_locally(SECRET)
    assert vault.hmac_keys == {}


async def test_a_check_whose_key_another_delivery_discarded_meanwhile_is_made_again_not_judged():
    """Two deliveries of one request (a rebalance): the other one's discard lands in the middle of this check."""
    vault = InMemoryVault()

    async def discarded_meanwhile(exchange, credentials):
        await vault.delete_key(CHECK_KEY)
        await credentials.signer.sign([TEXT])
        return GOOD

    checking = ValidatorDeps(vault, discarded_meanwhile, 2.0, no_wait, asyncio.Semaphore(4))
    with pytest.raises(KeyCheckInterrupted):
        await handle_binding_accepted(accepted(), checking, at=AT)
    assert issubclass(KeyCheckInterrupted, TransientError) and vault.hmac_keys == {}


async def test_a_key_waiting_for_its_turn_at_htx_does_not_spend_its_deadline_waiting():
    """A restart's burst: keys beyond the turns wait, and each one's HTX deadline counts from its own turn."""

    async def slow_but_in_time(exchange, credentials):
        await asyncio.sleep(0.3)
        return GOOD

    one_turn = ValidatorDeps(vault=InMemoryVault(), inspect=slow_but_in_time, exchange_deadline_s=0.5,
                             pace_recheck=no_wait, inspection_turns=asyncio.Semaphore(1))
    burst = await asyncio.gather(*(handle_binding_accepted(accepted(), one_turn, at=AT) for _ in range(3)))
    assert all(Topic.BINDING_VALIDATED in by_topic(out) for out in burst)


OTHER_SECRET = "r0tat3d0-hash7tst-11111111-test1"


async def stored_then_rotated(vault):
    """b1 stored with SECRET, then rotated to another key with OTHER_SECRET: its Transit key has two versions."""
    writer = VaultWriterDeps(vault)
    await handle_binding_validated(validated(), writer, at=AT)
    await handle_binding_validated(validated(request_id="r2", access_key="ak-000000000002", secret=OTHER_SECRET,
                                             replaces_binding_id="b1"), writer, at=AT)


def recheck():
    return RecheckRequested(event_id=derived_event_id("recheck", "s1", "u1", "b1"), sweep_request_id="s1",
                            sweep_started_at=utc_now(), user_id="u1", binding_id="b1")


async def test_a_recheck_signs_with_the_version_the_binding_names_and_audits_its_vault_calls():
    vault, signed, seen = InMemoryVault(), [], []
    await stored_then_rotated(vault)
    # A later rotation imported version 3 and crashed before storing its record: the binding still names version 2.
    await rotation_left_behind(vault, "r3", "unst0red-hash7tst-44444444-test4")
    out = by_topic(await handle_recheck_requested(recheck(), deps(vault, result=GOOD, seen=seen, signed=signed),
                                                  at=AT))
    assert seen[0][0] == "htx" and seen[0][1].access_key == "ak-000000000002"
    assert signed == await signed_locally(OTHER_SECRET) != await signed_locally(SECRET)
    assert out[Topic.BINDING_RECHECKED].checked
    assert out[Topic.AUDIT].details["vault_sign_request_ids"] == ["in-memory-1"]
    # The binding's key is the binding's: a recheck neither imports nor deletes.
    assert len(vault.hmac_keys[exchange_key("u1", "b1")]) == 3


async def test_a_recheck_of_a_binding_whose_key_was_deleted_meanwhile_ends_binding_gone():
    vault = InMemoryVault()
    await stored_then_rotated(vault)
    await vault.delete_key(exchange_key("u1", "b1"))  # a revocation, between the read and the signing
    out = await handle_recheck_requested(recheck(), deps(vault, result=GOOD, signed=[]), at=AT)
    assert [(topic_of(m), m.outcome) for m in out] == [(Topic.AUDIT, "binding_gone")]


async def test_a_binding_record_naming_another_bindings_key_is_not_rechecked_and_nothing_signs_with_that_key():
    vault, signed, seen = InMemoryVault(), [], []
    await handle_binding_validated(validated(user_id="u2", binding_id="b2", request_id="r2",
                                             access_key="ak-000000000002", secret=OTHER_SECRET),
                                   VaultWriterDeps(vault), at=AT)
    # u1's record, however it was written, names u2's key, which Vault holds and would sign with.
    own = BindingRecord.of(validated(), KeyRef(exchange_key("u1", "b1"), 1), AT)
    forged = own.to_vault() | {"exchange_key": exchange_key("u2", "b2")}
    await vault.write(binding_path("u1", "b1"), forged, cas=0)
    out = await handle_recheck_requested(recheck(), deps(vault, result=GOOD, seen=seen, signed=signed), at=AT)
    assert [(topic_of(m), getattr(m, "outcome", None)) for m in out] == [(Topic.AUDIT, "binding_gone")]
    assert seen == [] and signed == []


# ---- the passphrase an OKX key comes with ------------------------------------------------------------------------

PASSPHRASE = "Okx-Passphrase-7!"


class UnsealRecordingVault(InMemoryVault):
    """Remembers which Transit key and context each unseal named (the in-memory seal does not tell keys apart)."""

    def __init__(self) -> None:
        super().__init__()
        self.unsealed: list[tuple[str, str]] = []

    async def unseal(self, key, ciphertext, context):
        self.unsealed.append((key, context))
        return await super().unseal(key, ciphertext, context)


def okx_accepted(passphrase_for="u1"):
    return accepted().model_copy(update={"exchange": "okx",
                                         "passphrase_sealed": SecretStr(fake_seal_text(PASSPHRASE, passphrase_for))})


async def test_a_new_okx_key_is_inspected_with_its_passphrase_opened_with_the_passphrase_key_for_its_user():
    vault, seen = UnsealRecordingVault(), []
    event = okx_accepted()
    out = await handle_binding_accepted(event, deps(vault, result=GOOD, seen=seen), at=AT)
    (exchange, credentials), = seen
    assert exchange == "okx" and credentials.passphrase.get_secret_value() == PASSPHRASE
    assert (BINDING_PASSPHRASE_KEY, "u1") in vault.unsealed
    validated_ = by_topic(out)[Topic.BINDING_VALIDATED]
    # It leaves as it came: sealed.
    assert validated_.passphrase_sealed.get_secret_value() == event.passphrase_sealed.get_secret_value()
    assert all(PASSPHRASE not in m.model_dump_json() and PASSPHRASE not in repr(m) for m in out)
    assert PASSPHRASE not in repr(credentials)


async def test_a_passphrase_that_does_not_open_for_the_user_is_secret_unreadable_and_no_key_is_imported():
    vault, seen = ImportCountingVault(), []
    out = by_topic(await handle_binding_accepted(okx_accepted(passphrase_for="someone-else"),
                                                 deps(vault, result=GOOD, seen=seen), at=AT))
    assert out[Topic.BINDING_STATUS].reason_codes == [ReasonCode.SECRET_UNREADABLE]
    assert seen == [] and vault.imports == [] and vault.hmac_keys == {}


async def test_an_htx_key_is_inspected_without_a_passphrase():
    seen = []
    await handle_binding_accepted(accepted(), deps(result=GOOD, seen=seen), at=AT)
    assert seen[0][1].passphrase is None


def okx_validated(passphrase_for="u1"):
    return validated().model_copy(update={"exchange": "okx",
                                          "passphrase_sealed": SecretStr(fake_seal_text(PASSPHRASE, passphrase_for))})


async def test_a_recheck_of_an_okx_binding_opens_the_stored_passphrase():
    vault, seen = UnsealRecordingVault(), []
    await handle_binding_validated(okx_validated(), VaultWriterDeps(vault), at=AT)
    vault.unsealed.clear()
    out = by_topic(await handle_recheck_requested(recheck(), deps(vault, result=GOOD, seen=seen, signed=[]), at=AT))
    assert seen[0][1].passphrase.get_secret_value() == PASSPHRASE
    assert vault.unsealed == [(BINDING_PASSPHRASE_KEY, "u1")]
    assert out[Topic.BINDING_RECHECKED].checked and out[Topic.BINDING_RECHECKED].rejections == []


async def test_a_recheck_whose_stored_passphrase_does_not_open_says_secret_unreadable_without_asking_the_exchange():
    vault, seen = InMemoryVault(), []
    await handle_binding_validated(okx_validated(passphrase_for="someone-else"), VaultWriterDeps(vault), at=AT)
    out = by_topic(await handle_recheck_requested(recheck(), deps(vault, result=GOOD, seen=seen, signed=[]), at=AT))
    assert seen == []
    rechecked = out[Topic.BINDING_RECHECKED]
    assert rechecked.checked and [r.code for r in rechecked.rejections] == [ReasonCode.SECRET_UNREADABLE]
