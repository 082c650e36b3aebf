import json
from datetime import timedelta

import pytest
from pydantic import SecretStr

from services.vault_writer.handlers import (
    ImportInterrupted,
    VaultWriterDeps,
    handle_binding_validated,
    handle_revoke_requested,
    handle_sweep_requested,
)
from shared.adapters.vault.layout import (
    BINDING_PASSPHRASE_KEY,
    BINDING_SECRET_KEY,
    binding_path,
    exchange_key,
    key_import_path,
    revocation_path,
    sweep_marker_path,
    whitelist_path,
)
from shared.adapters.vault.records import BindingRecord, KeyImport, KeyRef
from shared.adapters.vault.stores import ConcurrentWrite
from shared.contracts.events import RecheckRequested, RevokeRequested, SweepRequested
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from shared.runtime.errors import TransientError
from tests.builders import SECRET, topic_of, validated
from tests.fakes import AT, InMemoryVault, RacingVault, fake_seal_text
from tests.services.vaults import IMPORT, Crash, CrashingVault, ImportCountingVault, left_behind, rotation_left_behind

KEY = exchange_key("u1", "b1")
NEW_SECRET = "n3w5ecr3-hash7tst-22222222-test2"
RIVAL_SECRET = "r1va15ec-hash7tst-33333333-test3"
# Sealed for u1, but not wrapped with Vault's wrapping key: Vault refuses to import it.
NOT_WRAPPED = SecretStr(fake_seal_text("x" * 40, "u1"))


def statuses(outgoing):
    return [m for m in outgoing if topic_of(m) == Topic.BINDING_STATUS]


def index_paths(vault):
    return [p for p, versions in vault.versions.items() if p.startswith("index/") and versions]


def import_note(vault):
    """Which rotation imports which version of u1/b1's key."""
    return KeyImport.from_vault(vault.versions[key_import_path("u1", "b1")][-1])


async def secret_forms(vault, event):
    """Every form the secret of event takes: plain, wrapped for Vault, and sealed for its user."""
    sealed = event.secret_key_sealed.get_secret_value()
    wrapped = (await vault.unseal(BINDING_SECRET_KEY, sealed, event.user_id)).get_secret_value()
    return [SECRET, wrapped, sealed]


async def test_the_secret_goes_into_a_transit_key_and_the_record_only_names_it():
    vault, event = ImportCountingVault(), validated()
    out = await handle_binding_validated(event, VaultWriterDeps(vault), at=AT)
    assert [topic_of(m) for m in out] == [Topic.BINDING_STORED, Topic.BINDING_STATUS, Topic.AUDIT]
    [record] = vault.versions[binding_path("u1", "b1")]
    assert (record["exchange_key"], record["exchange_key_version"], record["access_key"]) == (KEY, 1,
                                                                                               "ak-000000000001")
    assert vault.imports == [KEY] and vault.hmac_keys[KEY] == [SECRET.encode()]
    # No secret in any form anywhere in KV, nor in what is published.
    kv = json.dumps(vault.versions)
    assert not {"secret_key", "secret_key_sealed"} & set(record)
    assert all(form not in kv and all(form not in m.model_dump_json() for m in out)
               for form in await secret_forms(vault, event))
    [index] = index_paths(vault)
    assert "ak-000000000001" not in index and "ak-000000000001" not in str(vault.versions[index])


async def test_a_redelivery_of_a_stored_binding_imports_nothing_more():
    vault = ImportCountingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    again = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    assert statuses(again)[0].state == BindingState.STORED
    assert vault.imports == [KEY] and vault.hmac_keys[KEY] == [SECRET.encode()]


async def test_a_redelivery_after_a_crash_between_import_and_record_reuses_the_imported_key():
    vault = ImportCountingVault()
    await left_behind(vault, KEY, SECRET)
    [status] = statuses(await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT))
    assert status.state == BindingState.STORED and vault.imports == []
    assert BindingRecord.from_vault(vault.versions[binding_path("u1", "b1")][-1]).signing_key == KeyRef(KEY, 1)
    assert vault.hmac_keys[KEY] == [SECRET.encode()]


async def test_redelivery_creates_no_second_version_and_repeats_the_same_outcome():
    vault = InMemoryVault()
    first = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    again = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    assert len(vault.versions[binding_path("u1", "b1")]) == 1
    assert statuses(first)[0].event_id == statuses(again)[0].event_id
    assert statuses(first)[0].details == statuses(again)[0].details


async def test_a_second_copy_arriving_later_repeats_byte_identical_events_with_the_time_recorded_in_vault():
    vault = InMemoryVault()
    first = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    # The validator ran again after a crash: the same event, in a record written seconds later.
    again = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT + timedelta(seconds=5))
    assert [m.to_bytes() for m in again][:2] == [m.to_bytes() for m in first][:2]
    assert statuses(again)[0].occurred_at == AT


async def test_a_revocation_repeated_later_says_revoked_at_the_same_time():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    revoke = RevokeRequested(request_id="rv1", user_id="u1", binding_id="b1")
    first = statuses(await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT + timedelta(seconds=1)))
    again = statuses(await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT + timedelta(seconds=9)))
    assert again == first and first[0].occurred_at == AT + timedelta(seconds=1)


async def test_a_key_bound_by_another_user_is_refused_and_no_key_is_made_for_them():
    vault = ImportCountingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    out = await handle_binding_validated(validated(user_id="u2", binding_id="b2", request_id="r2"),
                                         VaultWriterDeps(vault), at=AT)
    [status] = statuses(out)
    assert status.state == BindingState.REJECTED and status.reason_codes == [ReasonCode.KEY_ALREADY_BOUND]
    assert binding_path("u2", "b2") not in vault.versions
    assert vault.imports == [KEY] and list(vault.hmac_keys) == [KEY]


async def test_a_secret_sealed_for_another_user_is_unreadable_and_no_key_is_made():
    vault = ImportCountingVault()
    event = validated().model_copy(update={"secret_key_sealed": validated(user_id="u2").secret_key_sealed})
    [status] = statuses(await handle_binding_validated(event, VaultWriterDeps(vault), at=AT))
    assert status.reason_codes == [ReasonCode.SECRET_UNREADABLE] and not vault.versions
    assert vault.imports == [] and vault.hmac_keys == {}


async def test_an_import_vault_refuses_is_waited_out_never_told_and_the_access_key_stays_claimed():
    vault = InMemoryVault()
    event = validated().model_copy(update={"secret_key_sealed": NOT_WRAPPED})
    # The validator imported these very bytes: a refusal now is Vault's trouble, retried in place, not the key's.
    with pytest.raises(ImportInterrupted):
        await handle_binding_validated(event, VaultWriterDeps(vault), at=AT)
    assert issubclass(ImportInterrupted, TransientError)
    assert vault.hmac_keys == {} and len(index_paths(vault)) == 1 and binding_path("u1", "b1") not in vault.versions
    # Still this binding's while it is retried: another user cannot take the access key meanwhile.
    [other] = statuses(await handle_binding_validated(validated(user_id="u2", binding_id="b2", request_id="r2"),
                                                      VaultWriterDeps(vault), at=AT))
    assert other.reason_codes == [ReasonCode.KEY_ALREADY_BOUND]


async def test_a_rotation_vault_refuses_to_import_is_waited_out_and_keeps_the_stored_key_and_both_claims():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    [held] = index_paths(vault)
    for access_key in ("ak-000000000002", "ak-000000000001"):  # to another access key, and a new secret for the same
        rotation = validated(request_id=f"r-{access_key}", access_key=access_key, replaces_binding_id="b1")
        rotation = rotation.model_copy(update={"secret_key_sealed": NOT_WRAPPED})
        with pytest.raises(ImportInterrupted):
            await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT)
        assert held in index_paths(vault) and len(index_paths(vault)) == 2
        assert vault.hmac_keys[KEY] == [SECRET.encode()]
        assert BindingRecord.from_vault(vault.versions[binding_path("u1", "b1")][-1]).request_id == "r1"


async def test_rotation_writes_the_next_version_releases_the_old_key_and_says_to_delete_it():
    vault = ImportCountingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    [old_index] = index_paths(vault)
    rotation = validated(request_id="r2", access_key="ak-000000000002", secret=NEW_SECRET, replaces_binding_id="b1")
    out = await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT)
    versions = vault.versions[binding_path("u1", "b1")]
    assert [(v["exchange_key"], v["exchange_key_version"]) for v in versions] == [(KEY, 1), (KEY, 2)]
    # A version added: requests signed with the old one a moment ago still verify.
    assert vault.imports == [KEY, KEY] and vault.hmac_keys[KEY] == [SECRET.encode(), NEW_SECRET.encode()]
    assert all(form not in json.dumps(vault.versions) for form in await secret_forms(vault, rotation))
    assert old_index not in index_paths(vault) and len(index_paths(vault)) == 1
    [status] = statuses(out)
    assert status.details["rotated_from"] == "ak-0…0001" and "Delete the key ak-0…0001" in status.details["next_step"]
    # the old key is free again for anyone
    reuse = await handle_binding_validated(validated(user_id="u3", binding_id="b3", request_id="r3"),
                                           VaultWriterDeps(vault), at=AT)
    assert statuses(reuse)[0].state == BindingState.STORED


async def test_rotation_of_an_unknown_binding_is_refused():
    out = await handle_binding_validated(validated(binding_id="nope", replaces_binding_id="nope"),
                                         VaultWriterDeps(InMemoryVault()), at=AT)
    assert statuses(out)[0].reason_codes == [ReasonCode.BINDING_UNKNOWN]


async def test_revocation_removes_the_transit_key_every_version_the_index_and_the_whitelist_and_is_idempotent():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    await handle_binding_validated(validated(request_id="r2", access_key="ak-000000000002", secret=NEW_SECRET,
                                             replaces_binding_id="b1"), VaultWriterDeps(vault), at=AT)
    await vault.write(whitelist_path("u1", "b1"), {"pairs": ["btcusdt"]}, cas=0)
    revoke = RevokeRequested(request_id="rv1", user_id="u1", binding_id="b1")
    first = statuses(await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT))
    assert first[0].state == BindingState.REVOKED and "Delete the key" in first[0].details["next_step"]
    assert vault.hmac_keys == {} and await vault.key_version(KEY) is None
    assert binding_path("u1", "b1") in vault.deleted and whitelist_path("u1", "b1") in vault.deleted
    assert not index_paths(vault) and vault.versions[revocation_path("u1", "b1")]
    second = statuses(await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT))
    assert second == first and vault.hmac_keys == {}


async def test_a_revoke_redelivered_after_a_crash_between_key_and_record_deletion_finishes_the_job():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    revoke = RevokeRequested(request_id="rv1", user_id="u1", binding_id="b1")
    await vault.delete_key(KEY)  # the first delivery got this far
    [status] = statuses(await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT))
    assert status.state == BindingState.REVOKED and binding_path("u1", "b1") in vault.deleted
    assert vault.hmac_keys == {} and not index_paths(vault)


async def test_a_validation_redelivered_after_its_binding_was_revoked_does_not_store_it_again():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    revoke = RevokeRequested(request_id="rv1", user_id="u1", binding_id="b1")
    await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT)
    again = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    assert [(topic_of(m), m.outcome) for m in again] == [(Topic.AUDIT, "already_revoked")]
    assert binding_path("u1", "b1") not in vault.versions and not index_paths(vault)


async def test_rotating_a_revoked_binding_is_refused_as_unknown_not_left_unanswered():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    await handle_revoke_requested(RevokeRequested(request_id="rv1", user_id="u1", binding_id="b1"),
                                  VaultWriterDeps(vault), at=AT)
    rotation = validated(request_id="r2", access_key="ak-000000000002", replaces_binding_id="b1")
    [status] = statuses(await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT))
    assert status.state == BindingState.REJECTED and status.reason_codes == [ReasonCode.BINDING_UNKNOWN]


async def test_revoking_an_unknown_binding_is_refused():
    out = await handle_revoke_requested(RevokeRequested(request_id="x", user_id="u1", binding_id="ghost"),
                                        VaultWriterDeps(InMemoryVault()), at=AT)
    assert statuses(out)[0].reason_codes == [ReasonCode.BINDING_UNKNOWN]


async def test_a_rotation_that_loses_to_another_write_is_tried_again_from_a_fresh_read():
    vault = RacingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    rival = validated(request_id="r3", access_key="ak-000000000003", replaces_binding_id="b1")
    rotation = validated(request_id="r2", access_key="ak-000000000002", secret=NEW_SECRET,
                         replaces_binding_id="b1")  # validated later
    # The rival imported its secret as version 2, and writes its record first.
    await rotation_left_behind(vault, "r3", RIVAL_SECRET)
    vault.race(binding_path("u1", "b1"), BindingRecord.of(rival, KeyRef(KEY, 2), AT).to_vault())
    with pytest.raises(ConcurrentWrite):
        await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT)
    # A TransientError: the runtime retries it in place, and the retry rotates from what the rival wrote.
    assert issubclass(ConcurrentWrite, TransientError)
    [status] = statuses(await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT))
    assert status.details["vault_version"] == 3 and status.details["rotated_from"] == "ak-0…0003"
    assert [v["request_id"] for v in vault.versions[binding_path("u1", "b1")]] == ["r1", "r3", "r2"]
    # Its own secret, in a version of its own: not the rival's version 2.
    assert vault.versions[binding_path("u1", "b1")][-1]["exchange_key_version"] == 3
    assert vault.hmac_keys[KEY][2] == NEW_SECRET.encode()


async def test_a_rotation_that_loses_to_its_own_redelivery_says_what_that_one_stored():
    vault = RacingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    rotation = validated(request_id="r2", access_key="ak-000000000002", secret=NEW_SECRET, replaces_binding_id="b1")
    earlier = AT - timedelta(seconds=1)
    await rotation_left_behind(vault, "r2", NEW_SECRET)  # by that redelivery
    vault.race(binding_path("u1", "b1"), BindingRecord.of(rotation, KeyRef(KEY, 2), earlier).to_vault())
    [status] = statuses(await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT))
    assert status.details["vault_version"] == 2 and status.occurred_at == earlier
    assert len(vault.versions[binding_path("u1", "b1")]) == 2
    assert vault.hmac_keys[KEY] == [SECRET.encode(), NEW_SECRET.encode()]


@pytest.mark.parametrize("crash_before", [IMPORT, binding_path("u1", "b1")],
                         ids=["between its note and its import", "between its import and its record"])
async def test_a_rotation_redelivered_after_a_crash_imports_its_secret_exactly_once(crash_before):
    vault = CrashingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    rotation = validated(request_id="r2", access_key="ak-000000000002", secret=NEW_SECRET, replaces_binding_id="b1")
    vault.crash_before(crash_before)
    with pytest.raises(Crash):
        await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT)
    assert import_note(vault) == KeyImport(request_id="r2", version=2)  # noted before anything else
    [status] = statuses(await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT))
    again = await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT)  # and once more, once stored
    assert status.state == BindingState.STORED and statuses(again) == [status]
    assert vault.imports == [KEY, KEY] and vault.hmac_keys[KEY] == [SECRET.encode(), NEW_SECRET.encode()]
    assert BindingRecord.from_vault(vault.versions[binding_path("u1", "b1")][-1]).signing_key == KeyRef(KEY, 2)


async def test_a_new_binding_redelivered_after_its_rotation_is_superseded_and_keeps_the_rotation():
    vault = ImportCountingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    rotation = validated(request_id="r2", access_key="ak-000000000002", replaces_binding_id="b1")
    await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT)
    out = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    assert [(m.action, m.outcome) for m in out] == [("store", "superseded")]  # no status, no dead letter
    assert BindingRecord.from_vault(vault.versions[binding_path("u1", "b1")][-1]).access_key == "ak-000000000002"
    # The replaced key's index claim, taken again by the replay, is let go again.
    assert len(index_paths(vault)) == 1
    assert vault.imports == [KEY, KEY] and len(vault.hmac_keys[KEY]) == 2


async def test_an_old_rotation_sent_again_does_not_bring_the_older_key_back_nor_import_it():
    vault = ImportCountingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    first = validated(request_id="r2", access_key="ak-000000000002", secret=NEW_SECRET, replaces_binding_id="b1")
    second = validated(request_id="r3", access_key="ak-000000000003", replaces_binding_id="b1")
    await handle_binding_validated(first, VaultWriterDeps(vault), at=AT)
    await handle_binding_validated(second, VaultWriterDeps(vault), at=AT)
    keys_then, imports_then = {k: list(v) for k, v in vault.hmac_keys.items()}, list(vault.imports)
    out = await handle_binding_validated(first, VaultWriterDeps(vault), at=AT)  # a genuine old record, replayed
    assert [(m.action, m.outcome) for m in out] == [("store", "superseded")]
    stored = BindingRecord.from_vault(vault.versions[binding_path("u1", "b1")][-1])
    assert (stored.access_key, stored.signing_key) == ("ak-000000000003", KeyRef(KEY, 3))
    assert vault.hmac_keys == keys_then and vault.imports == imports_then


async def test_a_sweep_names_every_stored_binding_and_carries_no_key():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    await vault.write(binding_path("u9", "b9"), {"seeded": "yes"}, cas=0)  # e.g. written by hand, or long ago
    out = await handle_sweep_requested(SweepRequested(request_id="s1", sweep_id="k1", requested_at=AT),
                                       VaultWriterDeps(vault), at=AT)
    rechecks = [m for m in out if isinstance(m, RecheckRequested)]
    assert [(m.user_id, m.binding_id) for m in rechecks] == [("u1", "b1"), ("u9", "b9")]
    # The validator reads each key itself; the time Vault wrote the sweep's claim orders what it finds.
    claimed = vault.written_at[sweep_marker_path("k1")][0]
    assert all(m.sweep_started_at == claimed and "secret" not in m.model_dump_json() for m in rechecks)


async def test_a_redelivered_validation_or_revocation_is_audited_again_as_the_very_same_event():
    vault = InMemoryVault()
    stored_first = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    stored_again = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    revoke = RevokeRequested(request_id="rv1", user_id="u1", binding_id="b1")
    revoked_first = await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT)
    revoked_again = await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT)

    for first, again in ((stored_first, stored_again), (revoked_first, revoked_again)):
        assert [topic_of(event) for event in first] == [topic_of(event) for event in again]
        [audit] = [event for event in first if topic_of(event) == Topic.AUDIT]
        assert [event for event in again if topic_of(event) == Topic.AUDIT] == [audit]
        assert audit.occurred_at == AT


# ---- an OKX key's passphrase: stored as the ciphertext that came ------------------------------------------------

PASSPHRASE = "Okx-Passphrase-7!"


class UnsealRecordingVault(InMemoryVault):
    def __init__(self) -> None:
        super().__init__()
        self.unsealed_with: list[str] = []

    async def unseal(self, key, ciphertext, context):
        self.unsealed_with.append(key)
        return await super().unseal(key, ciphertext, context)


async def test_an_okx_bindings_passphrase_is_stored_as_the_ciphertext_that_came_and_never_opened():
    vault = UnsealRecordingVault()
    sealed = fake_seal_text(PASSPHRASE, "u1")
    event = validated().model_copy(update={"exchange": "okx", "passphrase_sealed": SecretStr(sealed)})
    out = await handle_binding_validated(event, VaultWriterDeps(vault), at=AT)
    assert statuses(out)[-1].state in (BindingState.STORED, BindingState.AWAITING_WHITELIST, BindingState.ACTIVE)
    stored = (await vault.read(binding_path("u1", "b1"))).data
    assert stored["passphrase_sealed"] == sealed and PASSPHRASE not in json.dumps(stored)
    assert BINDING_PASSPHRASE_KEY not in vault.unsealed_with
    assert BindingRecord.from_vault(stored).passphrase_sealed.get_secret_value() == sealed
    assert "vault:v1" not in repr(BindingRecord.from_vault(stored))
    assert all(sealed not in m.model_dump_json() for m in out)


async def test_a_binding_without_a_passphrase_stores_no_passphrase_field():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    assert "passphrase_sealed" not in (await vault.read(binding_path("u1", "b1"))).data
