"""In-memory Vaults for the handler tests that must tell a Transit key import made from one saved, and what a
delivery that crashed half-way left behind."""

from typing import Any

from pydantic import SecretStr

from shared.adapters.vault.key_import import wrap_for_import
from shared.adapters.vault.layout import exchange_key, key_import_path
from shared.adapters.vault.records import KeyImport, KeyRef
from tests.fakes import WRAPPING_KEY_PEM, InMemoryVault


class ImportCountingVault(InMemoryVault):
    """Records the name of every key import made (a new key or a new version); one refused (the key exists, the
    ciphertext is not wrapped for Vault) changes no key and is not recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.imports: list[str] = []

    async def import_hmac_key(self, key: str, ciphertext: str) -> None:
        await super().import_hmac_key(key, ciphertext)
        self.imports.append(key)

    async def import_hmac_key_version(self, key: str, ciphertext: str) -> None:
        await super().import_hmac_key_version(key, ciphertext)
        self.imports.append(key)


class Crash(Exception):
    """The process died mid-handler: its message is delivered again."""


IMPORT = "import"


class CrashingVault(ImportCountingVault):
    """Dies once at each step asked for, just before it: a key import (IMPORT) or a KV write to a path."""

    def __init__(self) -> None:
        super().__init__()
        self._crash_before: set[str] = set()

    def crash_before(self, step: str) -> None:
        self._crash_before.add(step)

    def _die_at(self, step: str) -> None:
        if step in self._crash_before:
            self._crash_before.remove(step)
            raise Crash(step)

    async def import_hmac_key(self, key: str, ciphertext: str) -> None:
        self._die_at(IMPORT)
        await super().import_hmac_key(key, ciphertext)

    async def import_hmac_key_version(self, key: str, ciphertext: str) -> None:
        self._die_at(IMPORT)
        await super().import_hmac_key_version(key, ciphertext)

    async def write(self, path: str, data: dict[str, Any], cas: int) -> int:
        self._die_at(path)
        return await super().write(path, data, cas)


def wrapped_for_vault(secret: str) -> str:
    """secret as the app sends it to Vault: wrapped with the in-memory Vault's wrapping key."""
    return wrap_for_import(WRAPPING_KEY_PEM, SecretStr(secret))


async def left_behind(vault: InMemoryVault, key: str, secret: str) -> None:
    """What a delivery creating key (a new binding's, a key check's) left when it crashed after the import: the key;
    there, but not counted as an import."""
    await InMemoryVault.import_hmac_key(vault, key, wrapped_for_vault(secret))


async def rotation_left_behind(vault: InMemoryVault, request_id: str, secret: str, user_id: str = "u1",
                               binding_id: str = "b1") -> KeyRef:
    """What a rotation that crashed before storing its record left (shared/adapters/vault/stores.py ExchangeKeys):
    its note, and its secret as the key's next version; there, but not counted as an import."""
    key, path = exchange_key(user_id, binding_id), key_import_path(user_id, binding_id)
    version = (await vault.key_version(key) or 0) + 1
    note = await vault.read(path)
    await vault.write(path, KeyImport(request_id=request_id, version=version).to_vault(),
                      cas=note.version if note else 0)
    await InMemoryVault.import_hmac_key_version(vault, key, wrapped_for_vault(secret))
    return KeyRef(key, version)
