from datetime import timedelta

import pytest
from pydantic import SecretStr

from services.vault_writer.handlers import (
    VaultWriterDeps,
    handle_binding_validated,
    handle_revoke_requested,
    handle_sweep_requested,
)
from shared.adapters.vault.layout import binding_path, revocation_path, sweep_marker_path, whitelist_path
from shared.adapters.vault.records import BindingRecord
from shared.adapters.vault.stores import ConcurrentWrite
from shared.contracts.events import RecheckRequested, RevokeRequested, SweepRequested
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from shared.runtime.errors import TransientError
from tests.builders import topic_of, validated
from tests.fakes import AT, InMemoryVault, RacingVault


def statuses(outgoing):
    return [m for m in outgoing if topic_of(m) == Topic.BINDING_STATUS]


def index_paths(vault):
    return [p for p, versions in vault.versions.items() if p.startswith("index/") and versions]


async def test_stores_the_unsealed_secret_once_and_indexes_the_key_without_holding_it():
    vault = InMemoryVault()
    out = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    assert [topic_of(m) for m in out] == [Topic.BINDING_STORED, Topic.BINDING_STATUS, Topic.AUDIT]
    record = vault.versions[binding_path("u1", "b1")]
    assert len(record) == 1 and record[0]["secret_key"] == "s3cret" and record[0]["access_key"] == "ak-000000000001"
    [index] = index_paths(vault)
    assert "ak-000000000001" not in index and "ak-000000000001" not in str(vault.versions[index])
    assert all("s3cret" not in m.model_dump_json() for m in out)


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


async def test_a_key_bound_by_another_user_is_refused():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    out = await handle_binding_validated(validated(user_id="u2", binding_id="b2", request_id="r2"),
                                         VaultWriterDeps(vault), at=AT)
    [status] = statuses(out)
    assert status.state == BindingState.REJECTED and status.reason_codes == [ReasonCode.KEY_ALREADY_BOUND]
    assert binding_path("u2", "b2") not in vault.versions


async def test_a_secret_sealed_for_another_user_is_unreadable():
    vault = InMemoryVault()
    event = validated().model_copy(update={"secret_key_sealed": validated(user_id="u2").secret_key_sealed})
    [status] = statuses(await handle_binding_validated(event, VaultWriterDeps(vault), at=AT))
    assert status.reason_codes == [ReasonCode.SECRET_UNREADABLE] and not vault.versions


async def test_rotation_writes_the_next_version_releases_the_old_key_and_says_to_delete_it():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    [old_index] = index_paths(vault)
    rotation = validated(request_id="r2", access_key="ak-000000000002", secret="n3w", replaces_binding_id="b1")
    out = await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT)
    versions = vault.versions[binding_path("u1", "b1")]
    assert [v["secret_key"] for v in versions] == ["s3cret", "n3w"]
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


async def test_revocation_removes_every_version_the_index_and_the_whitelist_and_is_idempotent():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    await vault.write(whitelist_path("u1", "b1"), {"pairs": ["btcusdt"]}, cas=0)
    revoke = RevokeRequested(request_id="rv1", user_id="u1", binding_id="b1")
    first = statuses(await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT))
    assert first[0].state == BindingState.REVOKED and "Delete the key" in first[0].details["next_step"]
    assert binding_path("u1", "b1") in vault.deleted and whitelist_path("u1", "b1") in vault.deleted
    assert not index_paths(vault) and vault.versions[revocation_path("u1", "b1")]
    second = statuses(await handle_revoke_requested(revoke, VaultWriterDeps(vault), at=AT))
    assert second[0].state == BindingState.REVOKED


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
    rotation = validated(request_id="r2", access_key="ak-000000000002", replaces_binding_id="b1")  # validated later
    vault.race(binding_path("u1", "b1"), BindingRecord.of(rival, SecretStr("th3"), AT).to_vault())
    with pytest.raises(ConcurrentWrite):
        await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT)
    # A TransientError: the runtime retries it in place, and the retry rotates from what the rival wrote.
    assert issubclass(ConcurrentWrite, TransientError)
    [status] = statuses(await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT))
    assert status.details["vault_version"] == 3 and status.details["rotated_from"] == "ak-0…0003"
    assert [v["request_id"] for v in vault.versions[binding_path("u1", "b1")]] == ["r1", "r3", "r2"]


async def test_a_rotation_that_loses_to_its_own_redelivery_says_what_that_one_stored():
    vault = RacingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    rotation = validated(request_id="r2", access_key="ak-000000000002", replaces_binding_id="b1")
    earlier = AT - timedelta(seconds=1)
    vault.race(binding_path("u1", "b1"), BindingRecord.of(rotation, SecretStr("s3cret"), earlier).to_vault())
    [status] = statuses(await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT))
    assert status.details["vault_version"] == 2 and status.occurred_at == earlier
    assert len(vault.versions[binding_path("u1", "b1")]) == 2


async def test_a_new_binding_redelivered_after_its_rotation_is_superseded_and_keeps_the_rotation():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    rotation = validated(request_id="r2", access_key="ak-000000000002", replaces_binding_id="b1")
    await handle_binding_validated(rotation, VaultWriterDeps(vault), at=AT)
    out = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    assert [(m.action, m.outcome) for m in out] == [("store", "superseded")]  # no status, no dead letter
    assert BindingRecord.from_vault(vault.versions[binding_path("u1", "b1")][-1]).access_key == "ak-000000000002"
    # The replaced key's index claim, taken again by the replay, is let go again.
    assert len(index_paths(vault)) == 1


async def test_an_old_rotation_sent_again_does_not_bring_the_older_key_back():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    first = validated(request_id="r2", access_key="ak-000000000002", replaces_binding_id="b1")
    second = validated(request_id="r3", access_key="ak-000000000003", replaces_binding_id="b1")
    await handle_binding_validated(first, VaultWriterDeps(vault), at=AT)
    await handle_binding_validated(second, VaultWriterDeps(vault), at=AT)
    out = await handle_binding_validated(first, VaultWriterDeps(vault), at=AT)  # a genuine old record, replayed
    assert [(m.action, m.outcome) for m in out] == [("store", "superseded")]
    assert BindingRecord.from_vault(vault.versions[binding_path("u1", "b1")][-1]).access_key == "ak-000000000003"


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
