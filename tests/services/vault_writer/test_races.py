"""The vault-writer against what runs beside it or died before it: a rotation dead-lettered after its import, and a
revocation (handled beside validations, not after them) landing in the middle of storing a binding."""

import pytest
from pydantic import SecretStr

from services.vault_writer.handlers import VaultWriterDeps, handle_binding_validated, handle_revoke_requested
from shared.adapters.vault.client import KvEntry
from shared.adapters.vault.layout import binding_path, exchange_key, revocation_path
from shared.adapters.vault.records import BindingRecord, KeyRef
from shared.contracts.events import BindingValidated, Event, RevokeRequested
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from shared.runtime.errors import TransientError
from tests.builders import SECRET, topic_of, validated
from tests.fakes import AT, InMemoryVault
from tests.services.vaults import Crash, CrashingVault

KEY, PATH = exchange_key("u1", "b1"), binding_path("u1", "b1")
DEAD_SECRET = "d3ad1e77-hash7tst-55555555-test5"
LATER_SECRET = "1a7e5ecr-hash7tst-66666666-test6"
# Where a revocation lands in a validation (RevokeLands).
UNSEALED, IMPORTED = "unsealed", "imported"
BEFORE_TOMBSTONE_READ, AFTER_TOMBSTONE_READ = "before the tombstone read", "after the tombstone read"
REVOKE = RevokeRequested(request_id="rv1", user_id="u1", binding_id="b1")


def rotation(request_id: str, access_key: str, secret: str):
    return validated(request_id=request_id, access_key=access_key, secret=secret, replaces_binding_id="b1")


def outcomes(out):
    return [(topic_of(m), getattr(m, "outcome", None)) for m in out]


async def delivered(event: BindingValidated, vault: InMemoryVault) -> list[Event]:
    """What handling event ends with, as the runtime handles it: transient trouble is retried in place
    (shared/runtime/processing.py)."""
    for _ in range(3):
        try:
            return await handle_binding_validated(event, VaultWriterDeps(vault), at=AT)
        except TransientError:
            continue
    raise AssertionError("still failing after 3 attempts")


def index_paths(vault):
    return [p for p, versions in vault.versions.items() if p.startswith("index/") and versions]


async def test_a_rotation_after_one_dead_lettered_past_its_import_stores_its_own_secret_in_a_version_of_its_own():
    vault = CrashingVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    dead = rotation("r2", "ak-000000000002", DEAD_SECRET)
    vault.crash_before(PATH)  # its secret imported as version 2, then dead-lettered before its record was written
    with pytest.raises(Crash):
        await handle_binding_validated(dead, VaultWriterDeps(vault), at=AT)

    later = rotation("r3", "ak-000000000003", LATER_SECRET)
    out = await handle_binding_validated(later, VaultWriterDeps(vault), at=AT)

    assert [topic_of(m) for m in out] == [Topic.BINDING_STORED, Topic.BINDING_STATUS, Topic.AUDIT]
    stored = BindingRecord.from_vault(vault.versions[PATH][-1])
    assert (stored.request_id, stored.signing_key) == ("r3", KeyRef(KEY, 3))
    # What the record names signs as the later rotation's secret, never as the dead one's.
    assert vault.hmac_keys[KEY] == [SECRET.encode(), DEAD_SECRET.encode(), LATER_SECRET.encode()]


class RevokeLands(InMemoryVault):
    """A revocation of u1/b1, handled beside a validation, runs at the validation's next step of one kind
    (land_at): just after it unseals the secret (a new binding has found no tombstone by then), just after its key
    import, or just before or after it reads the tombstone (a rotation reads it only once it has imported). The
    revocation runs to its end, or dies just before it deletes the binding record (its own redelivery would finish
    it)."""

    def __init__(self, *, revoke_finishes: bool) -> None:
        super().__init__()
        self._revoke_finishes = revoke_finishes
        self._step: str | None = None
        self._revoking = False

    def land_at(self, step: str) -> None:
        self._step = step

    async def _revoke_at(self, step: str) -> None:
        if step != self._step:
            return
        self._step, self._revoking = None, True
        try:
            await handle_revoke_requested(REVOKE, VaultWriterDeps(self), at=AT)
        except Crash:
            pass
        finally:
            self._revoking = False

    async def unseal(self, key: str, ciphertext: str, context: str) -> SecretStr:
        opened = await super().unseal(key, ciphertext, context)
        await self._revoke_at(UNSEALED)
        return opened

    async def import_hmac_key(self, key: str, ciphertext: str) -> None:
        await super().import_hmac_key(key, ciphertext)
        await self._revoke_at(IMPORTED)

    async def import_hmac_key_version(self, key: str, ciphertext: str) -> None:
        await super().import_hmac_key_version(key, ciphertext)
        await self._revoke_at(IMPORTED)

    async def read(self, path: str) -> KvEntry | None:
        tombstone = path == revocation_path("u1", "b1")
        if tombstone:
            await self._revoke_at(BEFORE_TOMBSTONE_READ)
        found = await super().read(path)
        if tombstone:
            await self._revoke_at(AFTER_TOMBSTONE_READ)
        return found

    async def delete_all(self, path: str) -> None:
        if self._revoking and not self._revoke_finishes and path == PATH:
            raise Crash(path)
        await super().delete_all(path)


REVOKE_ENDS = pytest.mark.parametrize("revoke_finishes", [True, False],
                                      ids=["revoke finished", "revoke died before deleting the record"])


def nothing_signs_and_nothing_is_claimed(vault: InMemoryVault) -> None:
    assert vault.hmac_keys == {} and not index_paths(vault)
    assert vault.versions[revocation_path("u1", "b1")]


@REVOKE_ENDS
async def test_a_revoke_landing_between_a_rotations_import_and_its_tombstone_check_stands_and_frees_the_new_access_key(
        revoke_finishes):
    vault = RevokeLands(revoke_finishes=revoke_finishes)
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    vault.land_at(BEFORE_TOMBSTONE_READ)
    out = await delivered(rotation("r2", "ak-000000000002", LATER_SECRET), vault)
    assert outcomes(out) == [(Topic.AUDIT, "already_revoked")]
    # No key left to sign with, the rotation's access key free again, and no record of the rotation.
    nothing_signs_and_nothing_is_claimed(vault)
    assert [v["request_id"] for v in vault.versions.get(PATH, [])] == ([] if revoke_finishes else ["r1"])


@pytest.mark.parametrize("lands_at", [IMPORTED, AFTER_TOMBSTONE_READ])
async def test_a_revoke_finishing_anywhere_else_in_a_rotation_leaves_its_access_key_free(lands_at):
    """The rotation, retried (ConcurrentWrite), finds its binding gone: whatever it answers, its claim goes too."""
    vault = RevokeLands(revoke_finishes=True)
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    vault.land_at(lands_at)
    out = await delivered(rotation("r2", "ak-000000000002", LATER_SECRET), vault)
    assert BindingState.STORED not in [m.state for m in out if topic_of(m) == Topic.BINDING_STATUS]
    nothing_signs_and_nothing_is_claimed(vault)
    assert not vault.versions.get(PATH)


@REVOKE_ENDS
async def test_a_new_binding_redelivered_while_it_is_revoked_is_not_brought_back(revoke_finishes):
    vault = RevokeLands(revoke_finishes=revoke_finishes)
    first = await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    assert first[1].state == BindingState.STORED
    # Delivered again (a crash before the commit): it finds no tombstone, then the user's revoke runs.
    vault.land_at(UNSEALED)
    again = await delivered(validated(), vault)
    assert outcomes(again) == [(Topic.AUDIT, "already_revoked")]
    nothing_signs_and_nothing_is_claimed(vault)
