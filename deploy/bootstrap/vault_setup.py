"""Vault for Hash7: audit, KV v2 and Transit, the Transit keys, one policy and one AppRole per role, and each
role's credentials in a 0600 file. Every step reads the current state first and writes only what differs,
so a re-run changes nothing.
"""

import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import hvac
import requests
from hvac import exceptions as hvac_errors
from pydantic import SecretStr, ValidationError

from deploy.bootstrap.event_keys import ensure_event_signing_keys, signing_policy
from deploy.bootstrap.exchange_key_migration import ensure_exchange_keys_in_transit, stored_bindings
from deploy.bootstrap.key_grants import key_management_policy
from deploy.bootstrap.private_files import OWNER_ONLY_FILE, is_private, write_private_file
from deploy.bootstrap.progress import BootstrapError, Outcome, Progress
from shared.adapters.vault.client import hvac_client, tls_failure
from shared.adapters.vault.layout import (
    ACCESS_KEY_INDEX_KEY,
    ALL_ROLES,
    BINDING_PASSPHRASE_KEY,
    BINDING_SECRET_KEY,
    BINDINGS_FOLDER,
    KV_MOUNT,
    RECORD_ROLES,
    TRANSIT_MOUNT,
    binding_path,
)
from shared.runtime.config import AppRoleCredentials, VaultConnection, approle_file

POLICIES_DIR = Path(__file__).resolve().parent.parent / "vault" / "policies"
APPROLE_MOUNT = "approle"
KV_READY_TIMEOUT_S = 10.0
# Versions each KV key keeps: only the latest, so no replaced secret stays readable
# (shared/adapters/vault/README.md#kv-history).
KV_MAX_VERSIONS = 1
# Transit key name -> derived. The binding-secret and binding-passphrase keys are derived with the user id as context,
# so a secret sealed for one user cannot be unsealed as another's. None is convergent: equal plaintexts must not
# give equal ciphertexts.
TRANSIT_KEYS = {BINDING_SECRET_KEY: True, BINDING_PASSPHRASE_KEY: True, ACCESS_KEY_INDEX_KEY: False}
# Service tokens (renewable, unlike batch tokens) that live 1 h and are renewed up to 24 h, then a new login.
# Secret ids expire after 30 days: `hash7-admin rotate-secret-id` (deploy/admin/approle.py) replaces one before, and
# a bootstrap mints a new one for a role whose saved one no longer logs in. Their uses are not counted: a service
# logs in at every start, every 24 h and after a refused token, so any bound would lock out one that restarts often.
SECRET_ID_TTL_S = 30 * 86400
TOKEN_SETTINGS = {"token_type": "service", "token_ttl": 3600, "token_max_ttl": 86400}
ROLE_TOKEN_SETTINGS = {**TOKEN_SETTINGS, "secret_id_ttl": SECRET_ID_TTL_S, "secret_id_num_uses": 0}


def role_tokens(role: str) -> dict[str, object]:
    """What a token of `role` carries, however it logs in (AppRole, or JWT: deploy/bootstrap/vault_jwt.py): that role's
    policy (and Vault's default policy, which lets a token look itself up and renew itself)."""
    return {"token_policies": [role], **TOKEN_SETTINGS}


def ensure_vault(connection: VaultConnection, admin_token: SecretStr, run_dir: Path, progress: Progress, *,
                 approle_files: bool = True) -> None:
    """approle_files: whether to keep each role's AppRole credentials in a file under run_dir; a bootstrap for pods that
    log in with their service-account tokens (deploy/bootstrap/vault_jwt.py) mints no secret id nobody would hold."""
    with vault_errors_explained(connection.addr):
        client = hvac_client(connection, admin_token)
        ensure_audit_device(client, progress)
        ensure_secrets_engine(client, KV_MOUNT, "kv", {"version": "2"}, progress)
        ensure_kv_configuration(client, progress)
        ensure_binding_history_destroyed(client, progress)
        ensure_secrets_engine(client, TRANSIT_MOUNT, "transit", {}, progress)
        ensure_transit_keys(client, progress)
        ensure_exchange_keys_in_transit(client, progress)
        ensure_event_signing_keys(client, progress)
        ensure_policies(client, POLICIES_DIR, progress)
        ensure_auth_method(client, "approle", APPROLE_MOUNT, progress)
        ensure_roles(client, progress)
        if approle_files:
            ensure_role_credentials(client, connection, run_dir, progress)


@contextmanager
def vault_errors_explained(vault_addr: str) -> Iterator[None]:
    try:
        yield
    except requests.exceptions.SSLError as error:
        raise BootstrapError(f"Vault at {vault_addr}: {tls_failure(error)}") from None
    except requests.ConnectionError:
        raise BootstrapError(f"cannot reach Vault at {vault_addr}: is it running?") from None
    except hvac_errors.VaultDown:
        raise BootstrapError(f"Vault at {vault_addr} is sealed or not ready") from None
    except hvac_errors.Forbidden:
        raise BootstrapError(
            f"Vault at {vault_addr} refused the admin token (HASH7_VAULT_TOKEN, else the root token in the run "
            "folder's vault/init.json): permission denied"
        ) from None
    except hvac_errors.VaultError as error:
        # hvac's message is Vault's error list and the URL: no token, no secret.
        raise BootstrapError(f"Vault at {vault_addr} refused a bootstrap step: {error}") from None


def ensure_audit_device(client: hvac.Client, progress: Progress) -> None:
    """Fail closed without a file audit device. OpenBao only accepts audit devices declared in its server
    configuration (the API answers "cannot enable audit device via API"), so the server start declares it
    (deploy/stack/bao.py) and the bootstrap checks it."""
    devices = client.sys.list_enabled_audit_devices()["data"]
    file_devices = [device for device in devices.values() if device["type"] == "file"]
    if not file_devices:
        raise BootstrapError(
            "Vault has no file audit device. OpenBao accepts only audit devices declared in its server "
            "configuration: declare one there, as deploy/stack/bao.py does for the embedded stack"
        )
    progress.record("vault file audit device", Outcome.PRESENT, file_devices[0]["options"]["file_path"])


def ensure_secrets_engine(
    client: hvac.Client, path: str, engine_type: str, options: dict[str, str], progress: Progress
) -> None:
    mounted = client.sys.list_mounted_secrets_engines()["data"].get(f"{path}/")
    subject = f"vault {engine_type} engine at {path}/"
    if mounted is None:
        client.sys.enable_secrets_engine(engine_type, path=path, options=options or None)
        progress.record(subject, Outcome.CREATED)
        return
    mounted_options = mounted.get("options") or {}
    if mounted["type"] != engine_type or any(mounted_options.get(key) != value for key, value in options.items()):
        raise BootstrapError(
            f"Vault already has a {mounted['type']} engine with options {mounted_options} at {path}/; "
            f"Hash7 needs {engine_type} with {options or 'default options'} there"
        )
    progress.record(subject, Outcome.PRESENT)


def ensure_kv_configuration(client: hvac.Client, progress: Progress) -> None:
    """Every write to the KV mount must say which version it expects, so concurrent writers cannot silently
    overwrite each other; and each key keeps only its latest version, so a rotated-away binding secret leaves
    no copy in KV history (shared/adapters/vault/README.md#kv-history)."""
    subject = f"vault {KV_MOUNT}/ requires check-and-set and keeps {KV_MAX_VERSIONS} version per key"
    current = _kv_configuration(client)
    if current["cas_required"] and current["max_versions"] == KV_MAX_VERSIONS:
        progress.record(subject, Outcome.PRESENT)
        return
    # One call for both: hvac's configure() sends its own max_versions default (10) when not given one.
    client.secrets.kv.v2.configure(max_versions=KV_MAX_VERSIONS, cas_required=True, mount_point=KV_MOUNT)
    progress.record(subject, Outcome.UPDATED)


def ensure_binding_history_destroyed(client: hvac.Client, progress: Progress) -> None:
    """Destroy the replaced versions bindings still hold: Vault prunes history written before the mount kept
    one version per key only at a binding's next write, and never what an admin's per-key max_versions keeps
    (OpenBao keeps the larger of the key's and the mount's)."""
    subject = f"vault {KV_MOUNT}/{BINDINGS_FOLDER} holds no replaced version"
    destroyed = 0
    for path in (binding_path(user_id, binding_id) for user_id, binding_id in stored_bindings(client)):
        older = _readable_older_versions(client, path)
        if older:
            client.secrets.kv.v2.destroy_secret_versions(path, versions=older, mount_point=KV_MOUNT)
            destroyed += len(older)
    if destroyed:
        progress.record(subject, Outcome.UPDATED, f"{destroyed} replaced versions destroyed")
    else:
        progress.record(subject, Outcome.PRESENT)


def _readable_older_versions(client: hvac.Client, path: str) -> list[int]:
    """The versions before the latest whose data Vault still holds (a soft-deleted one included: it can be
    undeleted)."""
    try:
        metadata = client.secrets.kv.v2.read_secret_metadata(path, mount_point=KV_MOUNT)["data"]
    except hvac_errors.InvalidPath:
        return []  # revoked since it was listed
    return sorted(int(version) for version, state in metadata["versions"].items()
                  if int(version) < metadata["current_version"] and not state["destroyed"])


def _kv_configuration(client: hvac.Client) -> dict[str, object]:
    """The KV mount's configuration, waiting out the moments after a new KV v2 mount during which it answers
    400 "Upgrading from non-versioned to versioned data" (seen on raft storage)."""
    deadline = time.monotonic() + KV_READY_TIMEOUT_S
    while True:
        try:
            configuration: dict[str, object] = client.secrets.kv.v2.read_configuration(mount_point=KV_MOUNT)["data"]
            return configuration
        except hvac_errors.InvalidRequest as error:
            if "Upgrading from non-versioned to versioned data" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def ensure_transit_keys(client: hvac.Client, progress: Progress) -> None:
    for name, derived in TRANSIT_KEYS.items():
        subject = f"vault transit key {name}"
        try:
            key = client.secrets.transit.read_key(name, mount_point=TRANSIT_MOUNT)["data"]
        except hvac_errors.InvalidPath:
            client.secrets.transit.create_key(name, derived=derived, mount_point=TRANSIT_MOUNT)
            progress.record(subject, Outcome.CREATED, "derived" if derived else "")
            continue
        # OpenBao reports convergent_encryption only for derived keys.
        convergent = key.get("convergent_encryption", False)
        if key["derived"] != derived or convergent:
            # Derivation is fixed at creation; replacing the key would make every sealed secret unreadable.
            raise BootstrapError(
                f"Transit key {name} exists with derived={key['derived']}, "
                f"convergent={convergent}; Hash7 needs derived={derived}, not convergent. "
                "This cannot be changed in place."
            )
        progress.record(subject, Outcome.PRESENT)


def ensure_policies(client: hvac.Client, policies_dir: Path, progress: Progress) -> None:
    for role in ALL_ROLES:
        policy_file = policies_dir / f"{role}.hcl"
        try:
            # The lines for signing and verifying records follow from the routing table, and those for exchange
            # keys from deploy/bootstrap/key_grants.py, not from the file.
            records = signing_policy(role) if role in RECORD_ROLES else ""
            wanted = policy_file.read_text() + records + key_management_policy(role)
        except FileNotFoundError:
            raise BootstrapError(f"no policy for role {role}: {policy_file} is missing") from None
        try:
            current = client.sys.read_policy(role)["data"]["rules"]
        except hvac_errors.InvalidPath:
            current = None
        subject = f"vault policy {role}"
        if current == wanted:
            progress.record(subject, Outcome.PRESENT)
            continue
        client.sys.create_or_update_policy(role, wanted)
        progress.record(subject, Outcome.CREATED if current is None else Outcome.UPDATED)


def ensure_auth_method(client: hvac.Client, method_type: str, mount: str, progress: Progress) -> None:
    mounted = client.sys.list_auth_methods()["data"].get(f"{mount}/")
    subject = f"vault {method_type} auth at {mount}/"
    if mounted is None:
        client.sys.enable_auth_method(method_type, path=mount)
        progress.record(subject, Outcome.CREATED)
    elif mounted["type"] != method_type:
        raise BootstrapError(f"Vault already has a {mounted['type']} auth method at {mount}/")
    else:
        progress.record(subject, Outcome.PRESENT)


def ensure_roles(client: hvac.Client, progress: Progress) -> None:
    """One AppRole per role, whose tokens carry that role's policy (`role_tokens`)."""
    for role in ALL_ROLES:
        wanted = {**role_tokens(role), **ROLE_TOKEN_SETTINGS}
        try:
            current = client.auth.approle.read_role(role, mount_point=APPROLE_MOUNT)["data"]
        except hvac_errors.InvalidPath:
            current = None
        subject = f"vault approle {role}"
        if current is not None and all(current.get(key) == value for key, value in wanted.items()):
            progress.record(subject, Outcome.PRESENT)
            continue
        client.auth.approle.create_or_update_approle(role, mount_point=APPROLE_MOUNT, **wanted)
        progress.record(subject, Outcome.CREATED if current is None else Outcome.UPDATED)


def ensure_role_credentials(
    client: hvac.Client, connection: VaultConnection, run_dir: Path, progress: Progress
) -> None:
    """Keep each role's credentials file while it still logs in; mint a secret id only when it does not
    (so re-runs do not pile up secret ids)."""
    for role in ALL_ROLES:
        path = approle_file(run_dir, role)
        subject = f"approle credentials {path}"
        role_id = client.auth.approle.read_role_id(role, mount_point=APPROLE_MOUNT)["data"]["role_id"]
        saved = _read_credentials(path)
        if saved is not None and saved.role_id == role_id and logs_in(connection, saved):
            if is_private(path):
                progress.record(subject, Outcome.PRESENT, "still logs in")
            else:
                os.chmod(path, OWNER_ONLY_FILE)
                progress.record(subject, Outcome.UPDATED, "permissions narrowed to 0600")
            continue
        secret_id = client.auth.approle.generate_secret_id(role, mount_point=APPROLE_MOUNT)["data"]["secret_id"]
        write_credentials(path, AppRoleCredentials(role_id=role_id, secret_id=SecretStr(secret_id)))
        if saved is None:
            progress.record(subject, Outcome.CREATED)
        else:
            progress.record(subject, Outcome.UPDATED, "the saved credentials no longer logged in")


def write_credentials(path: Path, credentials: AppRoleCredentials) -> None:
    write_private_file(path, json.dumps({"role_id": credentials.role_id,
                                         "secret_id": credentials.secret_id.get_secret_value()}))


def _read_credentials(path: Path) -> AppRoleCredentials | None:
    try:
        return AppRoleCredentials.model_validate_json(path.read_bytes())
    except (FileNotFoundError, ValidationError):
        return None


def approle_login(connection: VaultConnection, credentials: AppRoleCredentials) -> hvac.Client:
    """A client logged in with credentials (hvac's InvalidRequest when Vault refuses them)."""
    client = hvac_client(connection, SecretStr(""))
    client.auth.approle.login(role_id=credentials.role_id, secret_id=credentials.secret_id.get_secret_value(),
                              mount_point=APPROLE_MOUNT)
    return client


def logs_in(connection: VaultConnection, credentials: AppRoleCredentials) -> bool:
    try:
        client = approle_login(connection, credentials)
    except hvac_errors.InvalidRequest:
        return False
    # The check needed a token, nothing else does: revoke it rather than leave it live for an hour.
    client.auth.token.revoke_self()
    return True
