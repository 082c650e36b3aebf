"""The stores' edges that the handlers' tests do not reach: a record that does not read as its type, a path
that refuses a create-only write yet reads as empty, a binding record that holds no secret and keeps the access
key out of its repr, and (on the real OpenBao) a rotation that leaves no readable copy of the old record, a
sweep's pages and progress as the vault-writer's role lists and writes them, and the running sweep it names."""

import json
import uuid
from typing import Any

import hvac
import pytest
from hvac import exceptions as hvac_errors
from pydantic import ValidationError

from shared.adapters.vault.client import CasConflict, VaultClient
from shared.adapters.vault.layout import KV_MOUNT, binding_path, exchange_key
from shared.adapters.vault.records import BindingRecord, KeyRef, RunningSweep, SweepProgress, Tombstone
from shared.adapters.vault.stores import (
    Bindings,
    ConcurrentWrite,
    SweepClaims,
    Tombstones,
    UnreadableRecord,
    VanishedRecord,
)
from shared.clients.trading.credentials import BindingStore
from shared.contracts.events import utc_now
from shared.runtime.errors import TransientError
from tests.builders import validated
from tests.fakes import InMemoryVault

ACCESS_KEY = "a1b2c3d4-e5f6a7b8-c9d0e1f2-3a4b5c"


class DeletedLatestVersion(InMemoryVault):
    """A path whose latest version was deleted: create-only writes conflict, reads find nothing."""

    async def write(self, path: str, data: dict[str, Any], cas: int) -> int:
        raise CasConflict(f"{path} is not at version {cas}")


def record(user_id: str = "u1", binding_id: str = "b1", request_id: str = "r1", access_key: str = ACCESS_KEY,
           key_version: int = 1) -> BindingRecord:
    event = validated(user_id=user_id, binding_id=binding_id, request_id=request_id, access_key=access_key)
    return BindingRecord.of(event, KeyRef(exchange_key(user_id, binding_id), key_version), utc_now())


async def test_a_record_that_does_not_read_as_its_type_is_named_by_its_fields_never_its_values():
    vault = InMemoryVault()
    broken = record().to_vault() | {"owner_uid": ["not", "text"]}
    del broken["stored_at"]
    await vault.write(binding_path("u1", "b1"), broken, cas=0)
    with pytest.raises(UnreadableRecord) as raised:
        await Bindings(vault).read("u1", "b1")
    message = str(raised.value)
    assert "owner_uid" in message and "stored_at" in message
    assert ACCESS_KEY[:6] not in message


async def test_a_path_that_refuses_creation_yet_reads_empty_is_a_failure_not_a_conflict_to_wait_out():
    with pytest.raises(VanishedRecord) as raised:
        await Tombstones(DeletedLatestVersion()).leave_once(
            "u1", "b1", Tombstone(request_id="r1", access_key_masked="a1b2…3a4b5c", revoked_at=utc_now()))
    assert not isinstance(raised.value, TransientError)
    assert issubclass(ConcurrentWrite, TransientError)


@pytest.mark.parametrize("named", [exchange_key("u2", "b1"), exchange_key("u1", "b2"), "exchange-key-anything"],
                         ids=["another user's", "another binding's of the same user", "one no binding has"])
async def test_a_binding_record_naming_a_key_not_its_own_is_read_by_no_one_so_nothing_signs_with_that_key(named):
    vault = InMemoryVault()
    await vault.write(binding_path("u1", "b1"), record().to_vault() | {"exchange_key": named}, cas=0)

    with pytest.raises(UnreadableRecord, match="is not a BindingRecord") as raised:
        await Bindings(vault).read("u1", "b1")
    assert ACCESS_KEY[:6] not in str(raised.value)
    # A trading engine gets no credentials to sign an order with, and a key-health recheck skips the binding.
    with pytest.raises(UnreadableRecord):
        await BindingStore(vault, ttl_s=30).get("u1", "b1")
    assert await Bindings(vault).recheckable("u1", "b1") is None
    with pytest.raises(ValidationError):
        BindingRecord.of(validated(), KeyRef(named, 1), utc_now())


TRACE_ID, SPAN_ID = "a" * 32, "b" * 16


@pytest.mark.parametrize("stored", [None, 42, "", "not a context", f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",
                                    f"01-{TRACE_ID}-{SPAN_ID}-01", f"00-{TRACE_ID}-{SPAN_ID}-01\n"])
async def test_a_binding_with_no_valid_trace_context_reads_with_none_and_still_trades(stored):
    vault = InMemoryVault()
    await vault.write(binding_path("u1", "b1"), record().to_vault() | {"traceparent": stored}, cas=0)
    binding = await BindingStore(vault, ttl_s=30).get("u1", "b1")
    assert binding.traceparent is None and binding.access_key == ACCESS_KEY


def test_a_binding_record_keeps_the_trace_context_it_was_stored_in_and_writes_none_when_untraced():
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    event = validated()
    traced = BindingRecord.of(event, KeyRef(exchange_key("u1", "b1"), 1), utc_now(), traceparent)
    assert BindingRecord.from_vault(traced.to_vault()).traceparent == traceparent
    assert "traceparent" not in record().to_vault()


def test_a_binding_record_names_its_transit_key_holds_no_secret_and_keeps_the_access_key_out_of_its_repr():
    binding = record()
    stored = binding.to_vault()
    assert (stored["exchange_key"], stored["exchange_key_version"]) == (exchange_key("u1", "b1"), 1)
    assert not {"secret_key", "secret_key_sealed"} & set(stored)
    assert ACCESS_KEY not in repr(binding)


OLD_ACCESS_KEY = "0ld0ld00-acce55ke-y0ld0ld0-0ld0ld"


def _read_version_as_root(root: hvac.Client, path: str, version: int) -> dict[str, Any] | None:
    answer = root.secrets.kv.v2.read_secret_version(path, version=version, mount_point=KV_MOUNT,
                                                    raise_on_deleted_version=False)
    data: dict[str, Any] | None = answer["data"]["data"]
    return data


@pytest.mark.stack
async def test_a_rotated_away_binding_leaves_no_readable_copy_in_kv_history_not_even_for_root(bootstrapped_stack):
    settings = bootstrapped_stack.settings
    bindings = Bindings(VaultClient(settings.vault_connection(), settings.approle_credentials("vault-writer")))
    user_id, binding_id = "history-user", uuid.uuid4().hex
    path = binding_path(user_id, binding_id)
    first = await bindings.create_or_read(record(user_id, binding_id, "r1", OLD_ACCESS_KEY))
    rotated = await bindings.save(record(user_id, binding_id, "r2", key_version=2), first)
    assert (first.version, rotated.version) == (1, 2)

    root = hvac.Client(url=settings.vault_addr, token=bootstrapped_stack.root_token)
    with pytest.raises(hvac_errors.InvalidPath):
        _read_version_as_root(root, path, 1)
    root.secrets.kv.v2.undelete_secret_versions(path, versions=[1], mount_point=KV_MOUNT)
    with pytest.raises(hvac_errors.InvalidPath):
        _read_version_as_root(root, path, 1)
    metadata = root.secrets.kv.v2.read_secret_metadata(path, mount_point=KV_MOUNT)["data"]
    assert list(metadata["versions"]) == ["2"] and metadata["oldest_version"] == 2
    latest = json.dumps(_read_version_as_root(root, path, 2)) + json.dumps(metadata)
    assert OLD_ACCESS_KEY not in latest
    assert (await bindings.read(user_id, binding_id)).record.exchange_key_version == 2


@pytest.mark.stack
async def test_check_and_set_still_tells_a_stale_rotation_from_a_redelivered_one_once_history_is_gone(
        bootstrapped_stack):
    settings = bootstrapped_stack.settings
    bindings = Bindings(VaultClient(settings.vault_connection(), settings.approle_credentials("vault-writer")))
    user_id, binding_id = "history-user", uuid.uuid4().hex
    first = await bindings.create_or_read(record(user_id, binding_id, "r1", OLD_ACCESS_KEY))
    rotated = await bindings.save(record(user_id, binding_id, "r2"), first)

    redelivered = await bindings.save(record(user_id, binding_id, "r2"), first)
    with pytest.raises(ConcurrentWrite):
        await bindings.save(record(user_id, binding_id, "r3"), first)
    again = await bindings.save(record(user_id, binding_id, "r3"), rotated)

    assert (redelivered.version, again.version) == (2, 3)


@pytest.mark.stack
async def test_a_sweep_pages_through_real_vault_as_the_vault_writer_and_its_progress_is_check_and_set(
        bootstrapped_stack):
    settings = bootstrapped_stack.settings
    writer = VaultClient(settings.vault_connection(), settings.approle_credentials("vault-writer"))
    bindings, sweeps = Bindings(writer), SweepClaims(writer)
    # Users with one to three bindings, under names that sort among whatever else the session stored.
    prefix = f"pages-{uuid.uuid4().hex[:8]}"
    ours = [(f"{prefix}-{u}", f"b{b}") for u in range(5) for b in range(1 + u % 3)]
    for user_id, binding_id in ours:
        await bindings.create_or_read(record(user_id, binding_id, f"r-{user_id}-{binding_id}"))

    pages, after = [], None
    while not pages or len(pages[-1]) == 3:
        pages.append(await bindings.ids_after(after, 3))
        after = pages[-1][-1] if pages[-1] else after
    swept = [(binding.user_id, binding.binding_id) for page in pages for binding in page]
    assert swept == sorted(set(swept))  # each once, in order, across pages of the real LIST
    assert [binding for binding in swept if binding[0].startswith(prefix)] == ours

    sweep_id = uuid.uuid4().hex
    first = SweepProgress(request_id="s1", pages=1, bindings=3, updated_at=utc_now())
    await sweeps.advance(sweep_id, first, None)
    started = await sweeps.progress(sweep_id)
    second = first.model_copy(update={"after": pages[0][-1], "pages": 2, "bindings": 6})
    await sweeps.advance(sweep_id, second, started)
    with pytest.raises(ConcurrentWrite):
        await sweeps.advance(sweep_id, second, started)  # another instance moved it on meanwhile
    assert (await sweeps.progress(sweep_id)).record == second


@pytest.mark.stack
async def test_the_running_sweep_is_named_with_check_and_set_as_the_vault_writer(bootstrapped_stack):
    settings = bootstrapped_stack.settings
    sweeps = SweepClaims(VaultClient(settings.vault_connection(), settings.approle_credentials("vault-writer")))
    sweep_id = f"charge-{uuid.uuid4().hex}"
    # Finished: left in charge, it holds no later sweep of the session back.
    await sweeps.advance(sweep_id, SweepProgress(request_id="c1", pages=1, bindings=0, finished=True,
                                                 updated_at=utc_now()), None)
    before = await sweeps.in_charge()
    ours = RunningSweep(sweep_id=sweep_id, request_id="c1", taken_at=utc_now())

    assert await sweeps.take_charge(ours, before) == ours
    assert await sweeps.take_charge(ours, before) == ours  # our write landed unseen (a retry): found as ours
    with pytest.raises(ConcurrentWrite):  # another sweep, from what it read before ours took charge
        await sweeps.take_charge(RunningSweep(sweep_id="late", request_id="l1", taken_at=utc_now()), before)
    now = await sweeps.in_charge()
    assert now is not None and now.entry.record == ours and now.finished
