"""Bindings stored before exchange secrets moved into Transit (shared/adapters/vault/README.md#exchange-keys) hold
the secret in their KV record (`secret_key`, plaintext, and `secret_key_sealed`), which today's readers refuse. The
bootstrap moves each such secret into the binding's Transit key and rewrites the record in today's shape, so no
accepted binding is lost and no plaintext stays in KV.

Each binding is moved in three steps, any of which a crash may end: import the key (an existing key that already
signs like the secret is reused, so an interrupted move never imports twice), rewrite the record with check-and-set
on the version read, destroy that version (the mount keeps one version per key, so it is usually gone already; an
admin's per-key `max_versions` would keep it). A re-run finds nothing to move and changes nothing.
"""

import base64
import hashlib
import hmac
from collections.abc import Iterator, Mapping
from typing import Any

import hvac
from hvac import exceptions as hvac_errors
from pydantic import SecretStr, ValidationError

from deploy.bootstrap.progress import BootstrapError, Outcome, Progress
from shared.adapters.vault.key_import import HMAC_KEY_IMPORT, NotImportable, wrap_for_import
from shared.adapters.vault.layout import (
    BINDINGS_FOLDER,
    KV_MOUNT,
    TRANSIT_MOUNT,
    binding_path,
    exchange_key,
    user_bindings_folder,
)
from shared.adapters.vault.records import BindingRecord

# What records stored before the move held of the secret (BindingRecord before issue 14).
LEGACY_SECRET_FIELDS = ("secret_key", "secret_key_sealed")
# Signed by a key and by the secret to tell whether the key holds the secret: any text does, none is secret.
KEY_PROBE_TEXT = "hash7: does this Transit key hold this binding's secret?"


class NotMovable(Exception):
    """A legacy record that cannot become a binding (its fields, its secret's size); it is left as it is. The
    message names fields and sizes, never a value."""


def ensure_exchange_keys_in_transit(client: hvac.Client, progress: Progress) -> None:
    subject = f"vault {KV_MOUNT}/{BINDINGS_FOLDER} holds no exchange secret (each is a Transit key)"
    moved, left = 0, []
    for user_id, binding_id in stored_bindings(client):
        try:
            moved += int(_move_secret(client, user_id, binding_id))
        except NotMovable as reason:
            left.append(f"{binding_path(user_id, binding_id)} ({reason})")
    # Records that could not be moved stay as they were, named at every run: no reader accepts them.
    details = ([f"moved {moved} bindings' secrets into Transit"] if moved else []) + (
        [f"left {len(left)} records that cannot be moved: {'; '.join(left)}"] if left else [])
    progress.record(subject, Outcome.UPDATED if moved else Outcome.PRESENT, "; ".join(details))


def stored_bindings(client: hvac.Client) -> Iterator[tuple[str, str]]:
    """(user id, binding id) of every binding record."""
    for user_folder in _kv_keys(client, BINDINGS_FOLDER):
        user_id = user_folder.rstrip("/")
        for binding_id in _kv_keys(client, user_bindings_folder(user_id)):
            yield user_id, binding_id


def _kv_keys(client: hvac.Client, folder: str) -> list[str]:
    try:
        keys: list[str] = client.secrets.kv.v2.list_secrets(folder, mount_point=KV_MOUNT)["data"]["keys"]
        return keys
    except hvac_errors.InvalidPath:
        return []


def _move_secret(client: hvac.Client, user_id: str, binding_id: str) -> bool:
    """Whether this binding's secret was in KV and is now in Transit; NotMovable when it cannot be."""
    path = binding_path(user_id, binding_id)
    try:
        entry = client.secrets.kv.v2.read_secret_version(path, mount_point=KV_MOUNT, raise_on_deleted_version=True)
    except hvac_errors.InvalidPath:
        return False  # revoked since it was listed
    data, read_version = entry["data"]["data"], entry["data"]["metadata"]["version"]
    if "exchange_key" in data or "secret_key" not in data:
        return False
    kept = {name: value for name, value in data.items() if name not in LEGACY_SECRET_FIELDS}
    key_name = exchange_key(user_id, binding_id)
    _check_reads_as_binding({**kept, "exchange_key": key_name, "exchange_key_version": 1}, user_id, binding_id)
    if not isinstance(data["secret_key"], str):
        raise NotMovable("its secret_key is not text")
    key_version = _key_holding(client, key_name, SecretStr(data["secret_key"]))
    client.secrets.kv.v2.create_or_update_secret(
        path, {**kept, "exchange_key": key_name, "exchange_key_version": key_version},
        cas=read_version, mount_point=KV_MOUNT)
    client.secrets.kv.v2.destroy_secret_versions(path, versions=[read_version], mount_point=KV_MOUNT)
    return True


def _check_reads_as_binding(data: Mapping[str, Any], user_id: str, binding_id: str) -> None:
    """Refuse before importing anything a record that would not read as the binding at its path."""
    try:
        record = BindingRecord.from_vault(data)
    except ValidationError as error:
        # Field names only: pydantic's own message quotes the values.
        fields = sorted({".".join(str(part) for part in problem["loc"]) for problem in error.errors()})
        raise NotMovable(f"fields {', '.join(fields)} do not read as a binding") from None
    if (record.user_id, record.binding_id) != (user_id, binding_id):
        raise NotMovable("its user_id or binding_id is not its path's")


def _key_holding(client: hvac.Client, key_name: str, secret: SecretStr) -> int:
    """The version of Transit key key_name that holds secret: the latest one if it already does (a move interrupted
    after its import), else one imported now (the key's first, or a version after whatever it held)."""
    latest = _latest_version(client, key_name)
    if latest is not None and _signs_like(client, key_name, latest, secret):
        return latest
    try:
        ciphertext = wrap_for_import(_wrapping_key(client), secret)
    except NotImportable as error:
        raise NotMovable(str(error)) from None
    # Transit's defaults: not exportable, no plaintext backup (shared/adapters/vault/client.py import_hmac_key).
    if latest is None:
        client.write_data(f"{TRANSIT_MOUNT}/keys/{key_name}/import",
                          data={"ciphertext": ciphertext, **HMAC_KEY_IMPORT})
    else:
        client.write_data(f"{TRANSIT_MOUNT}/keys/{key_name}/import_version", data={"ciphertext": ciphertext})
    imported = _latest_version(client, key_name)
    if imported is None or not _signs_like(client, key_name, imported, secret):
        raise BootstrapError(f"Transit key {key_name} does not sign like the secret just imported into it")
    return imported


def _latest_version(client: hvac.Client, key_name: str) -> int | None:
    try:
        return int(client.secrets.transit.read_key(key_name, mount_point=TRANSIT_MOUNT)["data"]["latest_version"])
    except hvac_errors.InvalidPath:
        return None


def _signs_like(client: hvac.Client, key_name: str, version: int, secret: SecretStr) -> bool:
    answer = client.secrets.transit.generate_hmac(
        key_name, base64.b64encode(KEY_PROBE_TEXT.encode()).decode(), key_version=version, algorithm="sha2-256",
        mount_point=TRANSIT_MOUNT)
    by_vault = base64.b64decode(answer["data"]["hmac"].rsplit(":", 1)[-1])
    by_secret = hmac.new(secret.get_secret_value().encode(), KEY_PROBE_TEXT.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(by_vault, by_secret)


def _wrapping_key(client: hvac.Client) -> str:
    """Vault's public RSA key that wraps a secret for import (shared/adapters/vault/key_import.py)."""
    answer = client.read(f"{TRANSIT_MOUNT}/wrapping_key")
    if not isinstance(answer, dict):
        raise BootstrapError("Vault answered without its wrapping key")
    return str(answer["data"]["public_key"])
