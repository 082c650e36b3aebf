"""Bindings stored before exchange secrets moved into Transit, as the old vault-writer wrote them, moved by the
bootstrap against a real Vault (deploy/bootstrap/exchange_key_migration.py)."""

import base64
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import hvac
import pytest
from hvac import exceptions as hvac_errors
from pydantic import SecretStr

from deploy.bootstrap.exchange_key_migration import ensure_exchange_keys_in_transit
from deploy.bootstrap.progress import Outcome, Progress
from deploy.bootstrap.vault_setup import ensure_vault
from shared.adapters.htx.signing import pre_sign_text
from shared.adapters.request_signing import LocalHmacSigner
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.layout import BINDING_SECRET_KEY, KV_MOUNT, TRANSIT_MOUNT, binding_path, exchange_key
from shared.adapters.vault.records import BindingRecord
from shared.clients.trading.credentials import BindingStore
from tests.builders import SECRET
from tests.vault_admin import import_secret

pytestmark = pytest.mark.stack

SUBJECT = f"vault {KV_MOUNT}/bindings/ holds no exchange secret (each is a Transit key)"
OTHER_SECRET = "0ther000-hash7tst-00000000-test1"
# What a trading engine signs: an HTX Signature Version 2 text (shared/adapters/htx/README.md#signing).
HTX_TEXT = pre_sign_text("GET", "api.huobi.pro", "/v1/account/accounts",
                         [("AccessKeyId", "ak-legacy"), ("SignatureMethod", "HmacSHA256"),
                          ("SignatureVersion", "2"), ("Timestamp", "2024-01-02T03:04:05")])


@dataclass(frozen=True)
class Legacy:
    user_id: str
    binding_id: str

    @property
    def path(self) -> str:
        return binding_path(self.user_id, self.binding_id)

    @property
    def key(self) -> str:
        return exchange_key(self.user_id, self.binding_id)


@pytest.fixture
def root(bootstrapped_stack, vault_server) -> hvac.Client:
    return hvac.Client(url=vault_server.addr, token=vault_server.root_token)


@pytest.fixture
def legacy(root: hvac.Client) -> Iterator[Legacy]:
    binding = Legacy(f"legacy-user-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}")
    yield binding
    root.secrets.kv.v2.delete_metadata_and_all_versions(binding.path, mount_point=KV_MOUNT)
    if binding.key in root.secrets.transit.list_keys(mount_point=TRANSIT_MOUNT)["data"]["keys"]:
        root.secrets.transit.update_key_configuration(binding.key, deletion_allowed=True, mount_point=TRANSIT_MOUNT)
        root.secrets.transit.delete_key(binding.key, mount_point=TRANSIT_MOUNT)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write_legacy_record(root: hvac.Client, binding: Legacy, secret: str = SECRET) -> dict[str, object]:
    """A binding as the vault-writer stored it before issue 14 (BindingRecord then: the secret in plaintext and
    sealed with the binding-secret key for its user)."""
    sealed = root.secrets.transit.encrypt_data(BINDING_SECRET_KEY, _b64(secret), context=_b64(binding.user_id),
                                               mount_point=TRANSIT_MOUNT)["data"]["ciphertext"]
    stamp = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC).isoformat()
    record = {
        "exchange": "htx", "access_key": "ak-legacy", "secret_key": secret, "secret_key_sealed": sealed,
        "label": "old", "user_id": binding.user_id, "binding_id": binding.binding_id, "request_id": "r-legacy",
        "htx_uid": 7, "spot_account_id": 70, "permissions": ["readOnly", "trade"], "ip_addresses": ["203.0.113.10"],
        "valid_days": -1, "key_status": "normal", "validated_at": stamp, "stored_at": stamp,
    }
    root.secrets.kv.v2.create_or_update_secret(binding.path, record, cas=0, mount_point=KV_MOUNT)
    return record


def _stored(root: hvac.Client, binding: Legacy) -> tuple[int, dict[str, object]]:
    entry = root.secrets.kv.v2.read_secret_version(binding.path, mount_point=KV_MOUNT,
                                                   raise_on_deleted_version=True)["data"]
    return entry["metadata"]["version"], entry["data"]


def _key(root: hvac.Client, binding: Legacy) -> dict[str, object]:
    data: dict[str, object] = root.secrets.transit.read_key(binding.key, mount_point=TRANSIT_MOUNT)["data"]
    return data


def _move(root: hvac.Client) -> list[tuple[str, Outcome, str]]:
    progress = Progress()
    ensure_exchange_keys_in_transit(root, progress)
    return [(step.subject, step.outcome, step.detail) for step in progress.steps]


async def _signs_like(bootstrapped_stack, binding: Legacy, secret: str) -> bool:
    """Whether a trading engine, reading the binding as it does, gets HTX signatures made with secret."""
    settings = bootstrapped_stack.settings
    store = BindingStore(VaultClient(settings.vault_connection(), settings.approle_credentials("trading-engine")),
                         ttl_s=0)
    trading = await store.get(binding.user_id, binding.binding_id)
    return await store.signer(trading).sign([HTX_TEXT]) == await LocalHmacSigner(SecretStr(secret)).sign([HTX_TEXT])


async def test_a_legacy_binding_keeps_working_with_its_secret_only_in_transit(bootstrapped_stack, root, legacy):
    legacy_record = _write_legacy_record(root, legacy)
    settings = bootstrapped_stack.settings

    progress = Progress()
    ensure_vault(settings.vault_connection(), SecretStr(bootstrapped_stack.root_token), settings.run_dir, progress)

    assert [(step.subject, step.outcome, step.detail) for step in progress.changed] == [
        (SUBJECT, Outcome.UPDATED, "moved 1 bindings' secrets into Transit")]
    version, data = _stored(root, legacy)
    assert version == 2
    assert data == {**{name: value for name, value in legacy_record.items()
                       if name not in ("secret_key", "secret_key_sealed")},
                    "exchange_key": legacy.key, "exchange_key_version": 1}
    assert BindingRecord.from_vault(data).signing_key.name == legacy.key
    assert SECRET not in str(data) and SECRET not in str(progress.steps)
    # The version that held the plaintext is gone, not merely hidden.
    with pytest.raises(hvac_errors.InvalidPath):
        root.secrets.kv.v2.read_secret_version(legacy.path, version=1, mount_point=KV_MOUNT,
                                               raise_on_deleted_version=True)
    key = _key(root, legacy)
    assert (key["type"], key["exportable"], key["allow_plaintext_backup"]) == ("hmac", False, False)
    assert await _signs_like(bootstrapped_stack, legacy, SECRET)
    assert not await _signs_like(bootstrapped_stack, legacy, OTHER_SECRET)


def test_the_plaintext_version_is_destroyed_even_where_an_admin_keeps_history(root, legacy):
    # An admin's per-key max_versions: OpenBao keeps the larger of the key's and the mount's.
    root.secrets.kv.v2.update_metadata(legacy.path, max_versions=5, mount_point=KV_MOUNT)
    _write_legacy_record(root, legacy)

    _move(root)

    root.secrets.kv.v2.undelete_secret_versions(legacy.path, versions=[1], mount_point=KV_MOUNT)
    with pytest.raises(hvac_errors.InvalidPath):
        root.secrets.kv.v2.read_secret_version(legacy.path, version=1, mount_point=KV_MOUNT,
                                               raise_on_deleted_version=True)


def test_a_rerun_changes_nothing(root, legacy):
    _write_legacy_record(root, legacy)
    _move(root)
    moved = _stored(root, legacy)

    assert _move(root) == [(SUBJECT, Outcome.PRESENT, "")]
    assert _stored(root, legacy) == moved
    assert _key(root, legacy)["latest_version"] == 1


async def test_a_move_interrupted_after_its_import_completes_without_importing_again(bootstrapped_stack, root,
                                                                                    legacy):
    _write_legacy_record(root, legacy)
    import_secret(root, legacy.key, SECRET)

    assert _move(root) == [(SUBJECT, Outcome.UPDATED, "moved 1 bindings' secrets into Transit")]

    assert _key(root, legacy)["latest_version"] == 1
    assert _stored(root, legacy)[1]["exchange_key_version"] == 1
    assert await _signs_like(bootstrapped_stack, legacy, SECRET)


async def test_a_key_already_holding_another_secret_is_not_taken_for_the_bindings(bootstrapped_stack, root, legacy):
    _write_legacy_record(root, legacy)
    import_secret(root, legacy.key, OTHER_SECRET)

    _move(root)

    assert _stored(root, legacy)[1]["exchange_key_version"] == 2
    assert await _signs_like(bootstrapped_stack, legacy, SECRET)


def test_a_binding_already_in_transit_is_untouched(root, legacy):
    import_secret(root, legacy.key, SECRET)
    record = {name: value for name, value in _write_legacy_record(root, legacy).items()
              if name not in ("secret_key", "secret_key_sealed")}
    root.secrets.kv.v2.create_or_update_secret(
        legacy.path, {**record, "exchange_key": legacy.key, "exchange_key_version": 1}, cas=1, mount_point=KV_MOUNT)
    before = _stored(root, legacy)

    assert _move(root) == [(SUBJECT, Outcome.PRESENT, "")]
    assert _stored(root, legacy) == before
    assert _key(root, legacy)["latest_version"] == 1


@pytest.mark.parametrize("secret, missing, reason", [
    ("short-secret-16b", None, "an exchange secret key is 32 to 512 bytes; this one is 16"),
    (SECRET, "access_key", "fields access_key do not read as a binding"),
])
def test_a_legacy_record_that_cannot_be_moved_is_left_whole_and_named_without_its_secret(
        root, legacy, secret, missing, reason):
    record = _write_legacy_record(root, legacy, secret)
    if missing:
        record.pop(missing)
        root.secrets.kv.v2.create_or_update_secret(legacy.path, record, cas=1, mount_point=KV_MOUNT)
    before = _stored(root, legacy)

    steps = _move(root)

    assert steps == [(SUBJECT, Outcome.PRESENT, f"left 1 records that cannot be moved: {legacy.path} ({reason})")]
    assert _stored(root, legacy) == before
    with pytest.raises(hvac_errors.InvalidPath):
        _key(root, legacy)
