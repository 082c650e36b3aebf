"""Each role, logged in with its own AppRole credentials file, can do exactly what its policy says: every
allowed operation works, and the real Vault refuses the others. Exchange secrets are Transit keys
(shared/adapters/vault/README.md#exchange-keys): no role, and not even root, may read one out of Vault."""

import base64
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import hvac
import pytest
from hvac import exceptions as hvac_errors
from pydantic import SecretStr

from deploy.bootstrap.event_keys import SIGNING_PARTIES
from shared.adapters.vault.client import CasConflict, VaultClient, VaultDenied
from shared.adapters.vault.key_import import wrap_for_import
from shared.adapters.vault.layout import (
    ACCESS_KEY_INDEX_KEY,
    ALL_ROLES,
    BINDING_PASSPHRASE_KEY,
    BINDING_SECRET_KEY,
    EXCHANGE_KEY_PREFIX,
    KEY_CHECK_PREFIX,
    KV_MOUNT,
    TRANSIT_MOUNT,
    access_key_index_path,
    binding_path,
    event_signing_key,
    key_import_path,
    revocation_path,
    sweep_marker_path,
    sweep_progress_path,
    whitelist_path,
)
from shared.contracts.routing import Party
from tests.builders import SECRET as EXCHANGE_SECRET

pytestmark = pytest.mark.stack

USER = "policy-user"
SECRET = "plain-secret-key"
PASSPHRASE = "plain-okx-passphrase"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _put_as_root(root: hvac.Client, path: str) -> str:
    root.secrets.kv.v2.create_or_update_secret(path, {"seeded": "yes"}, cas=0, mount_point=KV_MOUNT)
    return path


@dataclass(frozen=True)
class Seed:
    """Data the root token put in place, so each operation has something real to act on."""

    root: hvac.Client
    binding: str
    whitelist: str
    sealed: str
    wrapping_key: str
    # One imported exchange key and one key-check key, by prefix, that no operation changes.
    transit_keys: dict[str, str]
    # PASSPHRASE, sealed for USER with binding-passphrase.
    sealed_passphrase: str = ""

    def kv_put(self, path: str) -> str:
        return _put_as_root(self.root, path)

    def wrap(self) -> str:
        """A fresh import ciphertext of an exchange secret, as the app makes it."""
        return wrap_for_import(self.wrapping_key, SecretStr(EXCHANGE_SECRET))

    def fresh_key(self, prefix: str) -> str:
        """A key root imported just now, for an operation that changes or deletes it."""
        name = f"{prefix}{uuid.uuid4().hex}"
        _import(self.root, name, self.wrap())
        return name


def _import(client: hvac.Client, name: str, ciphertext: str, **settings: object) -> None:
    client.write_data(f"{TRANSIT_MOUNT}/keys/{name}/import",
                      data={"ciphertext": ciphertext, "type": "hmac", "hash_function": "SHA256", **settings})


Operation = Callable[[hvac.Client, Seed], None]


def _fresh_binding() -> str:
    return binding_path(USER, uuid.uuid4().hex)


def _fresh_whitelist() -> str:
    return whitelist_path(USER, uuid.uuid4().hex)


def _fresh_index() -> str:
    return access_key_index_path(f"vault:v1:{uuid.uuid4().hex}")


def _write_update_read(client: hvac.Client, path: str) -> None:
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path, {"v": "1"}, cas=0, mount_point=KV_MOUNT)
    kv.create_or_update_secret(path, {"v": "2"}, cas=1, mount_point=KV_MOUNT)
    latest = kv.read_secret_version(path, mount_point=KV_MOUNT, raise_on_deleted_version=True)
    assert latest["data"]["data"] == {"v": "2"}


def _create_read_never_update(client: hvac.Client, path: str) -> None:
    """Create-only records (tombstones, sweep markers): written once, read back, never changed."""
    kv = client.secrets.kv.v2
    kv.create_or_update_secret(path, {"v": "1"}, cas=0, mount_point=KV_MOUNT)
    created = kv.read_secret_version(path, mount_point=KV_MOUNT, raise_on_deleted_version=True)
    assert created["data"]["data"] == {"v": "1"}


def _read(client: hvac.Client, path: str) -> None:
    client.secrets.kv.v2.read_secret_version(path, mount_point=KV_MOUNT, raise_on_deleted_version=True)


def _delete_all_versions(client: hvac.Client, path: str) -> None:
    client.secrets.kv.v2.delete_metadata_and_all_versions(path, mount_point=KV_MOUNT)


def encrypt(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.encrypt_data(BINDING_SECRET_KEY, _b64(SECRET), context=_b64(USER), mount_point=TRANSIT_MOUNT)


def decrypt(client: hvac.Client, seed: Seed) -> None:
    opened = client.secrets.transit.decrypt_data(
        BINDING_SECRET_KEY, seed.sealed, context=_b64(USER), mount_point=TRANSIT_MOUNT
    )
    assert base64.b64decode(opened["data"]["plaintext"]).decode() == SECRET


def seal_passphrase(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.encrypt_data(BINDING_PASSPHRASE_KEY, _b64(PASSPHRASE), context=_b64(USER),
                                        mount_point=TRANSIT_MOUNT)


def open_passphrase(client: hvac.Client, seed: Seed) -> None:
    opened = client.secrets.transit.decrypt_data(
        BINDING_PASSPHRASE_KEY, seed.sealed_passphrase, context=_b64(USER), mount_point=TRANSIT_MOUNT
    )
    assert base64.b64decode(opened["data"]["plaintext"]).decode() == PASSPHRASE


def hmac_access_key(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.generate_hmac(ACCESS_KEY_INDEX_KEY, _b64("AKIDEXAMPLE"), mount_point=TRANSIT_MOUNT)


def read_transit_key(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.read_key(BINDING_SECRET_KEY, mount_point=TRANSIT_MOUNT)


def look_up_own_token(client: hvac.Client, seed: Seed) -> None:
    client.auth.token.lookup_self()


def read_binding(client: hvac.Client, seed: Seed) -> None:
    _read(client, seed.binding)


def write_binding(client: hvac.Client, seed: Seed) -> None:
    _write_update_read(client, _fresh_binding())


def read_binding_metadata(client: hvac.Client, seed: Seed) -> None:
    client.secrets.kv.v2.read_secret_metadata(seed.binding, mount_point=KV_MOUNT)


def delete_binding_entirely(client: hvac.Client, seed: Seed) -> None:
    _delete_all_versions(client, seed.kv_put(_fresh_binding()))


def soft_delete_binding(client: hvac.Client, seed: Seed) -> None:
    client.secrets.kv.v2.delete_latest_version_of_secret(seed.binding, mount_point=KV_MOUNT)


def destroy_binding_version(client: hvac.Client, seed: Seed) -> None:
    client.secrets.kv.v2.destroy_secret_versions(seed.binding, versions=[1], mount_point=KV_MOUNT)


def undelete_binding_version(client: hvac.Client, seed: Seed) -> None:
    client.secrets.kv.v2.undelete_secret_versions(seed.binding, versions=[1], mount_point=KV_MOUNT)


def keep_binding_history(client: hvac.Client, seed: Seed) -> None:
    # A key's own max_versions above the mount's 1 would keep replaced secrets (README.md#kv-history).
    client.secrets.kv.v2.update_metadata(seed.binding, max_versions=10, mount_point=KV_MOUNT)


def write_access_key_index(client: hvac.Client, seed: Seed) -> None:
    _write_update_read(client, _fresh_index())


def release_access_key_index(client: hvac.Client, seed: Seed) -> None:
    _delete_all_versions(client, seed.kv_put(_fresh_index()))


def _fresh_key_import() -> str:
    return key_import_path(USER, uuid.uuid4().hex)


def write_key_import_note(client: hvac.Client, seed: Seed) -> None:
    # Create-only for a rotation's first note, check-and-set over an earlier rotation's, read back on redelivery.
    _write_update_read(client, _fresh_key_import())


def read_key_import_note(client: hvac.Client, seed: Seed) -> None:
    _read(client, seed.kv_put(_fresh_key_import()))


def delete_key_import_note(client: hvac.Client, seed: Seed) -> None:
    _delete_all_versions(client, seed.kv_put(_fresh_key_import()))


def read_whitelist(client: hvac.Client, seed: Seed) -> None:
    _read(client, seed.whitelist)


def write_whitelist(client: hvac.Client, seed: Seed) -> None:
    _write_update_read(client, _fresh_whitelist())


def delete_whitelist_entirely(client: hvac.Client, seed: Seed) -> None:
    _delete_all_versions(client, seed.kv_put(_fresh_whitelist()))


def list_bindings(client: hvac.Client, seed: Seed) -> None:
    assert client.secrets.kv.v2.list_secrets("bindings/", mount_point=KV_MOUNT)["data"]["keys"]


def list_one_users_bindings(client: hvac.Client, seed: Seed) -> None:
    user_folder = seed.binding.rsplit("/", 1)[0] + "/"
    assert client.secrets.kv.v2.list_secrets(user_folder, mount_point=KV_MOUNT)["data"]["keys"]


def list_whitelists(client: hvac.Client, seed: Seed) -> None:
    client.secrets.kv.v2.list_secrets("whitelists/", mount_point=KV_MOUNT)


def leave_revocation_tombstone(client: hvac.Client, seed: Seed) -> None:
    _create_read_never_update(client, revocation_path(USER, uuid.uuid4().hex))


def read_revocation_tombstone(client: hvac.Client, seed: Seed) -> None:
    path = seed.kv_put(revocation_path(USER, uuid.uuid4().hex))
    client.secrets.kv.v2.read_secret_version(path, mount_point=KV_MOUNT, raise_on_deleted_version=True)


def change_revocation_tombstone(client: hvac.Client, seed: Seed) -> None:
    path = seed.kv_put(revocation_path(USER, uuid.uuid4().hex))
    client.secrets.kv.v2.create_or_update_secret(path, {"v": "2"}, cas=1, mount_point=KV_MOUNT)


def claim_sweep(client: hvac.Client, seed: Seed) -> None:
    _create_read_never_update(client, sweep_marker_path(uuid.uuid4().hex))


def change_sweep_claim(client: hvac.Client, seed: Seed) -> None:
    path = seed.kv_put(sweep_marker_path(uuid.uuid4().hex))
    client.secrets.kv.v2.create_or_update_secret(path, {"v": "2"}, cas=1, mount_point=KV_MOUNT)


def advance_sweep_progress(client: hvac.Client, seed: Seed) -> None:
    _write_update_read(client, sweep_progress_path(uuid.uuid4().hex))


def _signing_as(party: Party) -> Callable[[hvac.Client, Seed], None]:
    def sign(client: hvac.Client, seed: Seed) -> None:
        client.secrets.transit.sign_data(event_signing_key(party.value), hash_input=_b64("digest"),
                                         mount_point=TRANSIT_MOUNT)

    sign.__name__ = f"sign_as_{party.name.lower()}"
    return sign


SIGN_AS = {party: _signing_as(party) for party in SIGNING_PARTIES}


def read_signing_public_keys(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.read_key(event_signing_key(Party.INTAKE.value), mount_point=TRANSIT_MOUNT)


def take_raft_snapshot(client: hvac.Client, seed: Seed) -> None:
    # The session's Vault is a dev server without raft storage: past the policy it answers "unsupported path", where
    # a refusing policy answers 403 first. tests/deploy/test_admin_vault_backup.py takes real ones as this role.
    try:
        client.sys.take_raft_snapshot().close()
    except hvac_errors.InvalidPath as error:
        if "unsupported path" not in str(error):
            raise


def export_signing_key(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.export_key(event_signing_key(Party.INTAKE.value), key_type="signing-key",
                                      mount_point=TRANSIT_MOUNT)


def back_up_signing_key(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.backup_key(event_signing_key(Party.INTAKE.value), mount_point=TRANSIT_MOUNT)


def rotate_signing_key(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.rotate_key(event_signing_key(Party.INTAKE.value), mount_point=TRANSIT_MOUNT)


def retire_signing_key_versions(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.update_key_configuration(event_signing_key(Party.INTAKE.value), min_decryption_version=1,
                                                    mount_point=TRANSIT_MOUNT)


def read_wrapping_key(client: hvac.Client, seed: Seed) -> None:
    assert "PUBLIC KEY" in client.read(f"{TRANSIT_MOUNT}/wrapping_key")["data"]["public_key"]


def list_transit_keys(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.list_keys(mount_point=TRANSIT_MOUNT)


def restore_a_key(client: hvac.Client, seed: Seed) -> None:
    client.secrets.transit.restore_key(_b64("not a backup"), mount_point=TRANSIT_MOUNT)


def export_one_key_wrapped_for_another(client: hvac.Client, seed: Seed) -> None:
    # Transit's "bring your own key" export: a key's material, wrapped with another Transit key.
    exchange, check = seed.transit_keys[EXCHANGE_KEY_PREFIX], seed.transit_keys[KEY_CHECK_PREFIX]
    client.read(f"{TRANSIT_MOUNT}/byok-export/{check}/{exchange}")


# What may be done with the keys holding exchange secrets, per key prefix (act receives the client, the seed and
# the prefix). Keys an operation would change are fresh ones, so the seeded keys stay as they are.
KEY_PREFIXES = (EXCHANGE_KEY_PREFIX, KEY_CHECK_PREFIX)
EXPORT_TYPES = ("hmac-key", "encryption-key", "signing-key", "public-key")


def _per_prefix(name: str, act: Callable[[hvac.Client, Seed, str], None]) -> dict[str, Operation]:
    def operation_on(prefix: str) -> Operation:
        def operation(client: hvac.Client, seed: Seed) -> None:
            act(client, seed, prefix)

        operation.__name__ = f"{name}_{prefix.rstrip('-').replace('-', '_')}"
        return operation

    return {prefix: operation_on(prefix) for prefix in KEY_PREFIXES}


def _read_key(client: hvac.Client, seed: Seed, prefix: str) -> None:
    assert client.secrets.transit.read_key(seed.transit_keys[prefix], mount_point=TRANSIT_MOUNT)["data"]


def _export(key_type: str, version: str = "") -> Callable[[hvac.Client, Seed, str], None]:
    def export(client: hvac.Client, seed: Seed, prefix: str) -> None:
        exported = client.read(f"{TRANSIT_MOUNT}/export/{key_type}/{seed.transit_keys[prefix]}{version}")
        assert exported is not None and exported["data"]["keys"]

    return export


def _back_up(client: hvac.Client, seed: Seed, prefix: str) -> None:
    client.secrets.transit.backup_key(seed.transit_keys[prefix], mount_point=TRANSIT_MOUNT)


def _hmac(client: hvac.Client, seed: Seed, prefix: str) -> None:
    client.secrets.transit.generate_hmac(seed.transit_keys[prefix], _b64("GET\napi.huobi.pro"), key_version=1,
                                         mount_point=TRANSIT_MOUNT)


def _import_new(client: hvac.Client, seed: Seed, prefix: str) -> None:
    _import(client, f"{prefix}{uuid.uuid4().hex}", seed.wrap())


def _import_new_exportable(client: hvac.Client, seed: Seed, prefix: str) -> None:
    _import(client, f"{prefix}{uuid.uuid4().hex}", seed.wrap(), exportable=True)


def _import_new_with_plaintext_backup(client: hvac.Client, seed: Seed, prefix: str) -> None:
    _import(client, f"{prefix}{uuid.uuid4().hex}", seed.wrap(), allow_plaintext_backup=True)


def _import_version(client: hvac.Client, seed: Seed, prefix: str) -> None:
    client.write_data(f"{TRANSIT_MOUNT}/keys/{seed.fresh_key(prefix)}/import_version", data={"ciphertext": seed.wrap()})


def _configure(**settings: object) -> Callable[[hvac.Client, Seed, str], None]:
    def configure(client: hvac.Client, seed: Seed, prefix: str) -> None:
        client.secrets.transit.update_key_configuration(seed.fresh_key(prefix), mount_point=TRANSIT_MOUNT,
                                                        **settings)

    return configure


def _delete(client: hvac.Client, seed: Seed, prefix: str) -> None:
    name = seed.fresh_key(prefix)
    seed.root.secrets.transit.update_key_configuration(name, deletion_allowed=True, mount_point=TRANSIT_MOUNT)
    client.secrets.transit.delete_key(name, mount_point=TRANSIT_MOUNT)


def _rotate(client: hvac.Client, seed: Seed, prefix: str) -> None:
    client.secrets.transit.rotate_key(seed.fresh_key(prefix), mount_point=TRANSIT_MOUNT)


def _trim(client: hvac.Client, seed: Seed, prefix: str) -> None:
    # Trimming needs a minimum encryption version first (an admin's setting): only the policy may stop it then.
    name = seed.fresh_key(prefix)
    seed.root.secrets.transit.update_key_configuration(name, min_encryption_version=1, mount_point=TRANSIT_MOUNT)
    client.secrets.transit.trim_key(name, min_version=1, mount_point=TRANSIT_MOUNT)


READ_KEY = _per_prefix("read_key", _read_key)
EXPORTS = [_per_prefix(f"export_{key_type.replace('-', '_')}", _export(key_type)) for key_type in EXPORT_TYPES]
EXPORT_VERSION = _per_prefix("export_hmac_key_version_1", _export("hmac-key", "/1"))
BACK_UP = _per_prefix("back_up_key", _back_up)
HMAC = _per_prefix("hmac_with_key", _hmac)
IMPORT = _per_prefix("import_new_key", _import_new)
IMPORT_EXPORTABLE = _per_prefix("import_new_exportable_key", _import_new_exportable)
IMPORT_WITH_PLAINTEXT_BACKUP = _per_prefix("import_new_key_with_plaintext_backup", _import_new_with_plaintext_backup)
IMPORT_VERSION = _per_prefix("import_key_version", _import_version)
MAKE_EXPORTABLE = _per_prefix("make_key_exportable", _configure(exportable=True))
ALLOW_PLAINTEXT_BACKUP = _per_prefix("allow_key_plaintext_backup", _configure(allow_plaintext_backup=True))
ALLOW_DELETION = _per_prefix("allow_key_deletion", _configure(deletion_allowed=True))
DELETE = _per_prefix("delete_key", _delete)
ROTATE = _per_prefix("rotate_key", _rotate)
TRIM = _per_prefix("trim_key", _trim)
KEY_OPERATIONS = [
    READ_KEY, *EXPORTS, EXPORT_VERSION, BACK_UP, HMAC, IMPORT, IMPORT_EXPORTABLE, IMPORT_WITH_PLAINTEXT_BACKUP,
    IMPORT_VERSION, MAKE_EXPORTABLE, ALLOW_PLAINTEXT_BACKUP, ALLOW_DELETION, DELETE, ROTATE, TRIM,
]


def _storing(prefix: str) -> list[Operation]:
    """What the role that imports and deletes a prefix's keys does with them: never sign, export or back up."""
    return [operations[prefix] for operations in (READ_KEY, IMPORT, IMPORT_VERSION, ALLOW_DELETION, DELETE)]


# Every operation the tests know; for each role, whatever it is not allowed must be refused by Vault.
OPERATIONS: list[Operation] = [
    encrypt, decrypt, seal_passphrase, open_passphrase, hmac_access_key, read_transit_key, read_binding, write_binding,
    read_binding_metadata,
    list_bindings, list_one_users_bindings, delete_binding_entirely, soft_delete_binding, destroy_binding_version,
    undelete_binding_version,
    keep_binding_history, write_access_key_index, write_key_import_note, read_key_import_note, delete_key_import_note,
    release_access_key_index, read_whitelist, write_whitelist, list_whitelists, delete_whitelist_entirely,
    leave_revocation_tombstone, read_revocation_tombstone, change_revocation_tombstone, claim_sweep,
    change_sweep_claim, advance_sweep_progress, *SIGN_AS.values(), read_signing_public_keys, export_signing_key,
    back_up_signing_key,
    rotate_signing_key, retire_signing_key_versions, read_wrapping_key, list_transit_keys, restore_a_key,
    export_one_key_wrapped_for_another, take_raft_snapshot,
    *(operations[prefix] for operations in KEY_OPERATIONS for prefix in KEY_PREFIXES),
]
# Every role reads every producer's public keys (to verify what it reads) and signs as itself only.
_EVERY_ROLE = [read_signing_public_keys]
ALLOWED: dict[str, list[Operation]] = {
    # The app can only submit: wrap a secret for import and seal it.
    "app": [encrypt, seal_passphrase, read_wrapping_key, SIGN_AS[Party.APP], *_EVERY_ROLE],
    "intake": [SIGN_AS[Party.INTAKE], *_EVERY_ROLE],
    "validator": [decrypt, open_passphrase, read_binding, SIGN_AS[Party.VALIDATOR], *_storing(KEY_CHECK_PREFIX),
                  HMAC[KEY_CHECK_PREFIX], HMAC[EXCHANGE_KEY_PREFIX], *_EVERY_ROLE],
    "vault-writer": [
        decrypt, hmac_access_key, read_binding, write_binding, read_binding_metadata, list_bindings,
        list_one_users_bindings,
        delete_binding_entirely, write_access_key_index, release_access_key_index, delete_whitelist_entirely,
        write_key_import_note, read_key_import_note, delete_key_import_note,
        leave_revocation_tombstone, read_revocation_tombstone, claim_sweep, advance_sweep_progress,
        SIGN_AS[Party.VAULT_WRITER],
        *_storing(EXCHANGE_KEY_PREFIX), *_EVERY_ROLE,
    ],
    "whitelist": [read_whitelist, write_whitelist, list_whitelists, read_binding_metadata, read_revocation_tombstone,
                  SIGN_AS[Party.WHITELIST], *_EVERY_ROLE],
    # It opens a binding's passphrase (OKX) for each order; the vault-writer only stores it, sealed.
    "trading-engine": [open_passphrase, read_binding, read_whitelist, SIGN_AS[Party.TRADING_ENGINE],
                       HMAC[EXCHANGE_KEY_PREFIX], *_EVERY_ROLE],
    # hash7-admin finds the bindings of a user or an access key, and audits what it does.
    "ops": [hmac_access_key, list_one_users_bindings, SIGN_AS[Party.OPS], *_EVERY_ROLE],
    # The scheduled backup takes raft snapshots and reads nothing else, not even the public signing keys.
    "backup": [take_raft_snapshot],
}
# Past the policy, Transit itself refuses these: an imported key cannot be rotated inside Vault.
REFUSED_BY_TRANSIT: dict[str, list[Operation]] = {
    "validator": [ROTATE[KEY_CHECK_PREFIX]],
    "vault-writer": [ROTATE[EXCHANGE_KEY_PREFIX]],
}


def _cases(allowed: bool) -> list[object]:
    return [
        pytest.param(role, operation, id=f"{role}-{operation.__name__}")
        for role, permitted in ALLOWED.items()
        for operation in OPERATIONS
        if (operation in permitted) == allowed and operation not in REFUSED_BY_TRANSIT.get(role, [])
    ]


@pytest.fixture(scope="module")
def seed(bootstrapped_stack) -> Seed:
    root = hvac.Client(url=bootstrapped_stack.settings.vault_addr, token=bootstrapped_stack.root_token)
    sealed = root.secrets.transit.encrypt_data(
        BINDING_SECRET_KEY, _b64(SECRET), context=_b64(USER), mount_point=TRANSIT_MOUNT
    )["data"]["ciphertext"]
    wrapping_key = root.read(f"{TRANSIT_MOUNT}/wrapping_key")["data"]["public_key"]
    sealed_passphrase = root.secrets.transit.encrypt_data(
        BINDING_PASSPHRASE_KEY, _b64(PASSPHRASE), context=_b64(USER), mount_point=TRANSIT_MOUNT
    )["data"]["ciphertext"]
    seed = Seed(root, _put_as_root(root, _fresh_binding()), _put_as_root(root, _fresh_whitelist()), sealed,
                wrapping_key, {}, sealed_passphrase)
    seed.transit_keys.update({prefix: seed.fresh_key(prefix) for prefix in KEY_PREFIXES})
    return seed


@pytest.fixture(scope="module")
def role_clients(bootstrapped_stack) -> dict[str, hvac.Client]:
    """One client per role, logged in the way services do: AppRole, from the credentials file."""
    settings = bootstrapped_stack.settings
    clients = {}
    for role in ALL_ROLES:
        credentials = settings.approle_credentials(role)
        client = hvac.Client(url=settings.vault_addr, token="")
        client.auth.approle.login(role_id=credentials.role_id, secret_id=credentials.secret_id.get_secret_value())
        clients[role] = client
    return clients


def test_every_role_is_checked():
    assert set(ALLOWED) == set(ALL_ROLES)


def test_every_role_may_look_up_its_own_token(role_clients, seed):
    # From Vault's default policy: the client renews and inspects its own token with it.
    for client in role_clients.values():
        look_up_own_token(client, seed)


@pytest.mark.parametrize(("role", "operation"), _cases(allowed=True))
def test_allowed(role, operation, role_clients, seed):
    operation(role_clients[role], seed)


@pytest.mark.parametrize(("role", "operation"), _cases(allowed=False))
def test_refused(role, operation, role_clients, seed):
    with pytest.raises(hvac_errors.Forbidden):
        operation(role_clients[role], seed)


@pytest.mark.parametrize(("role", "operation"), [
    pytest.param(role, operation, id=f"{role}-{operation.__name__}")
    for role, operations in REFUSED_BY_TRANSIT.items() for operation in operations
])
def test_refused_by_transit(role, operation, role_clients, seed):
    with pytest.raises(hvac_errors.InternalServerError, match="does not allow rotation"):
        operation(role_clients[role], seed)


# Spellings and channels an attacker might try to slip "make it exportable" past the policy's allowed_parameters with.
EXPORTABLE_ATTEMPTS = [
    {"exportable": True}, {"exportable": "true"}, {"exportable": 1}, {"Exportable": True}, {"EXPORTABLE": "1"},
    {"allow_plaintext_backup": True}, {"Allow_Plaintext_Backup": "true"},
]


def _key_settings(seed: Seed, name: str) -> tuple[bool, bool]:
    key = seed.root.secrets.transit.read_key(name, mount_point=TRANSIT_MOUNT)["data"]
    return key["exportable"], key["allow_plaintext_backup"]


@pytest.mark.parametrize(("role", "prefix"), [("validator", KEY_CHECK_PREFIX), ("vault-writer", EXCHANGE_KEY_PREFIX)])
def test_the_role_that_manages_a_key_cannot_make_it_exportable_in_any_spelling(role, prefix, role_clients, seed):
    client, name = role_clients[role], seed.fresh_key(prefix)
    for attempt in EXPORTABLE_ATTEMPTS:
        with pytest.raises(hvac_errors.Forbidden):
            client.write_data(f"{TRANSIT_MOUNT}/keys/{name}/config", data=attempt)
    # A parameter Transit does not know (a stray space) is outside the policy's allow-list; one in the query string
    # of a POST is not read by Transit. Refused or ignored, the key must stay as it was.
    with pytest.raises(hvac_errors.Forbidden):
        client.write_data(f"{TRANSIT_MOUNT}/keys/{name}/config", data={"exportable ": True})
    try:
        client.adapter.post(f"/v1/{TRANSIT_MOUNT}/keys/{name}/config?exportable=true&allow_plaintext_backup=true")
    except hvac_errors.Forbidden:
        pass

    assert _key_settings(seed, name) == (False, False)
    with pytest.raises(hvac_errors.InvalidRequest, match="not exportable"):
        seed.root.read(f"{TRANSIT_MOUNT}/export/hmac-key/{name}")


@pytest.mark.parametrize("prefix", KEY_PREFIXES)
def test_not_even_root_can_export_or_back_up_an_imported_key(prefix, seed):
    name = seed.transit_keys[prefix]
    for key_type in EXPORT_TYPES:
        # "not exportable"; a type an HMAC key has no such half of (public-key) is a 500.
        with pytest.raises((hvac_errors.InvalidRequest, hvac_errors.InternalServerError)):
            seed.root.read(f"{TRANSIT_MOUNT}/export/{key_type}/{name}")
    with pytest.raises(hvac_errors.InternalServerError, match="exporting is disallowed"):
        seed.root.secrets.transit.backup_key(name, mount_point=TRANSIT_MOUNT)
    assert _key_settings(seed, name) == (False, False)


def test_app_may_encrypt_but_not_create_a_missing_key(role_clients):
    capabilities = role_clients["app"].sys.get_capabilities([f"{TRANSIT_MOUNT}/encrypt/{BINDING_SECRET_KEY}"])

    assert capabilities["data"]["capabilities"] == ["update"]


def test_app_may_seal_passphrases_but_not_create_a_missing_passphrase_key(role_clients):
    capabilities = role_clients["app"].sys.get_capabilities([f"{TRANSIT_MOUNT}/encrypt/{BINDING_PASSPHRASE_KEY}"])

    assert capabilities["data"]["capabilities"] == ["update"]


@pytest.mark.parametrize("role", ["validator", "trading-engine"])
def test_a_passphrase_sealed_for_one_user_does_not_open_as_another(role, role_clients, seed):
    with pytest.raises(hvac_errors.InvalidRequest):
        role_clients[role].secrets.transit.decrypt_data(
            BINDING_PASSPHRASE_KEY, seed.sealed_passphrase, context=_b64("another-user"), mount_point=TRANSIT_MOUNT
        )


def test_the_passphrase_key_is_derived_and_not_convergent(seed):
    key = seed.root.secrets.transit.read_key(BINDING_PASSPHRASE_KEY, mount_point=TRANSIT_MOUNT)["data"]

    assert key["derived"] is True and not key.get("convergent_encryption", False)


def test_a_secret_sealed_for_one_user_does_not_unseal_as_another(role_clients, seed):
    with pytest.raises(hvac_errors.InvalidRequest):
        role_clients["validator"].secrets.transit.decrypt_data(
            BINDING_SECRET_KEY, seed.sealed, context=_b64("another-user"), mount_point=TRANSIT_MOUNT
        )


async def test_a_create_only_write_to_a_taken_write_once_path_is_a_conflict_and_an_update_stays_refused(
        bootstrapped_stack):
    # The vault-writer may create a sweep claim but not update one; real Vault refuses the second create-only
    # write as a denial, which the client reports as the conflict it is.
    settings = bootstrapped_stack.settings
    writer = VaultClient(settings.vault_connection(), settings.approle_credentials("vault-writer"))
    path = sweep_marker_path(f"policy-{uuid.uuid4().hex}")
    await writer.write(path, {"request_id": "first"}, cas=0)
    with pytest.raises(CasConflict):
        await writer.write(path, {"request_id": "second"}, cas=0)
    with pytest.raises(VaultDenied):
        await writer.write(path, {"request_id": "second"}, cas=1)
    assert (await writer.read(path)).data == {"request_id": "first"}


def test_the_trading_engine_reads_only_the_latest_binding_and_whitelist_and_no_other_history(role_clients, seed):
    engine = role_clients["trading-engine"].secrets.kv.v2
    rotated, changed = seed.kv_put(_fresh_binding()), seed.kv_put(_fresh_whitelist())
    for path in (rotated, changed):
        seed.root.secrets.kv.v2.create_or_update_secret(path, {"replaced": "no"}, cas=1, mount_point=KV_MOUNT)

    for path in (rotated, changed):
        with pytest.raises(hvac_errors.InvalidPath):
            engine.read_secret_version(path, version=1, mount_point=KV_MOUNT, raise_on_deleted_version=False)
        latest = engine.read_secret_version(path, mount_point=KV_MOUNT, raise_on_deleted_version=True)["data"]
        assert latest["data"] == {"replaced": "no"} and latest["metadata"]["version"] == 2
    elsewhere = (revocation_path(USER, uuid.uuid4().hex), sweep_marker_path(uuid.uuid4().hex), _fresh_index())
    for path in elsewhere:
        seed.kv_put(path)
    for path in (rotated, changed, *elsewhere):
        with pytest.raises(hvac_errors.Forbidden):
            engine.read_secret_metadata(path, mount_point=KV_MOUNT)
    for path in elsewhere:
        with pytest.raises(hvac_errors.Forbidden):
            engine.read_secret_version(path, version=1, mount_point=KV_MOUNT, raise_on_deleted_version=False)
