"""The stores' edges that the handlers' tests do not reach: a record that does not read as its type, a path
that refuses a create-only write yet reads as empty, and the plaintext secret kept out of every dump but the
Vault write and out of reprs."""

from typing import Any

import pytest
from pydantic import SecretStr

from shared.adapters.vault.client import CasConflict
from shared.adapters.vault.layout import binding_path
from shared.adapters.vault.records import BindingRecord, Tombstone
from shared.adapters.vault.stores import Bindings, ConcurrentWrite, Tombstones, UnreadableRecord, VanishedRecord
from shared.contracts.events import utc_now
from shared.runtime.errors import TransientError
from tests.builders import validated
from tests.fakes import InMemoryVault

ACCESS_KEY = "a1b2c3d4-e5f6a7b8-c9d0e1f2-3a4b5c"
SECRET_KEY = "store-secret-0d9c8b7a-never-shown"


class DeletedLatestVersion(InMemoryVault):
    """A path whose latest version was deleted: create-only writes conflict, reads find nothing."""

    async def write(self, path: str, data: dict[str, Any], cas: int) -> int:
        raise CasConflict(f"{path} is not at version {cas}")


def record() -> BindingRecord:
    return BindingRecord.of(validated(access_key=ACCESS_KEY), SecretStr(SECRET_KEY), utc_now())


async def test_a_record_that_does_not_read_as_its_type_is_named_by_its_fields_never_its_values():
    vault = InMemoryVault()
    broken = record().to_vault() | {"htx_uid": "not a number"}
    del broken["stored_at"]
    await vault.write(binding_path("u1", "b1"), broken, cas=0)
    with pytest.raises(UnreadableRecord) as raised:
        await Bindings(vault).read("u1", "b1")
    message = str(raised.value)
    assert "htx_uid" in message and "stored_at" in message
    assert ACCESS_KEY[:6] not in message and SECRET_KEY[:6] not in message


async def test_a_path_that_refuses_creation_yet_reads_empty_is_a_failure_not_a_conflict_to_wait_out():
    with pytest.raises(VanishedRecord) as raised:
        await Tombstones(DeletedLatestVersion()).leave_once(
            "u1", "b1", Tombstone(request_id="r1", access_key_masked="a1b2…3a4b5c", revoked_at=utc_now()))
    assert not isinstance(raised.value, TransientError)
    assert issubclass(ConcurrentWrite, TransientError)


def test_the_plaintext_secret_is_dumped_only_for_the_vault_write_and_the_keys_stay_out_of_the_repr():
    binding = record()
    assert binding.to_vault()["secret_key"] == SECRET_KEY
    with pytest.raises(ValueError, match="only for a Vault write"):
        binding.model_dump_json()
    assert SECRET_KEY not in repr(binding) and ACCESS_KEY not in repr(binding)
