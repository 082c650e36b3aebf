"""What tests do and read in Vault as root, behind the roles' backs: import an exchange secret as the vault-writer
would, look at a Transit key, check what it signs, and find calls in Vault's audit log."""

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import hvac
from hvac import exceptions as hvac_errors
from pydantic import SecretStr

from deploy.bootstrap.vault_files import VaultFiles
from shared.adapters.vault.key_import import HMAC_KEY_IMPORT, wrap_for_import
from shared.adapters.vault.layout import TRANSIT_MOUNT


def import_secret(admin: hvac.Client, name: str, secret: str) -> None:
    """Import secret as Transit key name, as shared/adapters/vault/client.py import_hmac_key does."""
    wrapping_key = admin.read(f"{TRANSIT_MOUNT}/wrapping_key")["data"]["public_key"]
    admin.write_data(f"{TRANSIT_MOUNT}/keys/{name}/import",
                     data={"ciphertext": wrap_for_import(wrapping_key, SecretStr(secret)), **HMAC_KEY_IMPORT})


def transit_key(admin: hvac.Client, name: str) -> dict[str, Any] | None:
    """Transit's settings of key name (never its material); None when there is no such key."""
    try:
        settings: dict[str, Any] = admin.secrets.transit.read_key(name=name, mount_point=TRANSIT_MOUNT)["data"]
    except hvac_errors.InvalidPath:
        return None
    return settings


def signs_as(admin: hvac.Client, name: str, secret: str, text: str, version: int = 1) -> bool:
    """Whether version `version` of Transit key name signs text as secret does."""
    answer = admin.write_data(f"{TRANSIT_MOUNT}/hmac/{name}/sha2-256", data={
        "key_version": version, "input": base64.b64encode(text.encode()).decode()})
    expected = base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()).decode()
    return bool(answer["data"]["hmac"] == f"vault:v{version}:{expected}")


def audit_responses(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Vault's audit log of the stack in run_dir: each answered request by its request id (the id our audit events
    name). Some entries (a login's, say) carry no request id."""
    lines = VaultFiles(run_dir).audit_log.read_text().splitlines()
    return {entry["request"]["id"]: entry for entry in map(json.loads, filter(None, lines))
            if entry["type"] == "response" and entry.get("request", {}).get("id")}
