"""In-memory stand-ins for the I/O edges, for fast handler tests. Real-server tests live beside them."""

import base64
import hashlib
import hmac
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap_with_padding
from pydantic import SecretStr

from shared.adapters.vault.client import (
    CasConflict,
    HmacBatch,
    ImportRefused,
    KeyExists,
    KeyMissing,
    KvEntry,
    SigningKeys,
    UnsealFailed,
    VaultPort,
)
from shared.adapters.vault.key_import import HMAC_KEY_MAX_BYTES, HMAC_KEY_MIN_BYTES, IMPORT_OAEP, wrap_for_import

# The time of the Kafka record a handler is given, in handler tests.
AT = datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC)

_NONCE = "nonce-of-12b"
# The in-memory Vault's wrapping key: 2048 bits to keep tests quick (Vault's is 4096), the same import format.
_WRAPPING_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
WRAPPING_KEY_PEM = _WRAPPING_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def fake_seal_text(text: str, context: str) -> str:
    """Ciphertext-shaped (so intake's shape check passes), bound to its context like a derived Transit key."""
    return "vault:v1:" + base64.b64encode(f"{_NONCE}{context}\x00{text}".encode()).decode()


def fake_seal(secret: str, context: str) -> str:
    """What the app sends for secret: wrapped for the in-memory Vault's import, then sealed for context."""
    return fake_seal_text(wrap_for_import(WRAPPING_KEY_PEM, SecretStr(secret)), context)


def _unwrap(ciphertext: str) -> bytes:
    try:
        wrapped = base64.b64decode(ciphertext, validate=True)
        block = _WRAPPING_KEY.key_size // 8
        ephemeral = _WRAPPING_KEY.decrypt(wrapped[:block], IMPORT_OAEP)
        material = aes_key_unwrap_with_padding(ephemeral, wrapped[block:])
    except (ValueError, InvalidUnwrap):
        raise ImportRefused("not wrapped with the wrapping key") from None
    if not HMAC_KEY_MIN_BYTES <= len(material) <= HMAC_KEY_MAX_BYTES:
        raise ImportRefused("invalid key size")
    return material


class InMemoryVault:
    """KV v2 semantics that matter here: versions, check-and-set, delete-all; Transit seal/HMAC by context, and
    imported HMAC keys (unwrapped with the in-memory wrapping key, signing for real)."""

    def __init__(self) -> None:
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.deleted: set[str] = set()
        # When Vault wrote each version of each path (metadata's created_time).
        self.written_at: dict[str, list[datetime]] = {}
        # Transit signing keys by name, each a list of versions (a rotation appends one).
        self.signing: dict[str, list[Ed25519PrivateKey]] = {}
        self.oldest_accepted: dict[str, int] = {}
        # Imported HMAC keys by name, each a list of versions' key material.
        self.hmac_keys: dict[str, list[bytes]] = {}
        self._request_ids = itertools.count(1)

    async def unseal(self, key: str, ciphertext: str, context: str) -> SecretStr:
        try:
            opened = base64.b64decode(ciphertext.removeprefix("vault:v1:")).decode().removeprefix(_NONCE)
            sealed_context, secret = opened.split("\x00", 1)
        except ValueError:
            raise UnsealFailed("not our ciphertext") from None
        if sealed_context != context:
            raise UnsealFailed("wrong context")
        return SecretStr(secret)

    async def unsealed_problem(self) -> str | None:
        return None

    async def hmac(self, key: str, data: str) -> str:
        return "vault:v1:" + base64.b64encode(f"{key}:{data}".encode()).decode()

    async def hmac_batch(self, key: str, version: int, texts: Sequence[str]) -> HmacBatch:
        versions = self.hmac_keys.get(key, [])
        if not 1 <= version <= len(versions):
            raise KeyMissing(f"{key} has no version {version}")
        return HmacBatch([hmac.new(versions[version - 1], text.encode(), hashlib.sha256).digest() for text in texts],
                         f"in-memory-{next(self._request_ids)}")

    async def import_hmac_key(self, key: str, ciphertext: str) -> None:
        if key in self.hmac_keys:
            raise KeyExists(key)
        self.hmac_keys[key] = [_unwrap(ciphertext)]

    async def import_hmac_key_version(self, key: str, ciphertext: str) -> None:
        if key not in self.hmac_keys:
            raise ImportRefused(f"no key {key}")
        self.hmac_keys[key].append(_unwrap(ciphertext))

    async def key_version(self, key: str) -> int | None:
        return len(self.hmac_keys[key]) if key in self.hmac_keys else None

    async def live_versions(self, key: str) -> range:
        return range(1, len(self.hmac_keys.get(key, [])) + 1)

    async def delete_key(self, key: str) -> None:
        self.hmac_keys.pop(key, None)

    async def sign(self, key: str, digests: Sequence[bytes]) -> list[str]:
        return [self.signature(key, digest) for digest in digests]

    def signature(self, key: str, digest: bytes) -> str:
        """What Transit's sign answers, with the latest version of key (created on first use)."""
        versions = self.signing.setdefault(key, [Ed25519PrivateKey.generate()])
        return f"vault:v{len(versions)}:" + base64.b64encode(versions[-1].sign(digest)).decode()

    async def signing_keys(self, key: str) -> SigningKeys:
        versions = self.signing.setdefault(key, [Ed25519PrivateKey.generate()])
        return SigningKeys({number: private.public_key().public_bytes_raw()
                            for number, private in enumerate(versions, start=1)}, self.oldest_accepted.get(key, 1))

    def rotate(self, key: str) -> None:
        self.signing.setdefault(key, [Ed25519PrivateKey.generate()]).append(Ed25519PrivateKey.generate())

    def retire_below(self, key: str, version: int) -> None:
        self.oldest_accepted[key] = version

    async def read(self, path: str) -> KvEntry | None:
        history = self.versions.get(path)
        if not history:
            return None
        return KvEntry(dict(history[-1]), len(history), {}, written_at=self.written_at[path][-1])

    async def read_metadata(self, path: str) -> dict[str, Any] | None:
        history = self.versions.get(path)
        if not history:
            return None
        return {"current_version": len(history),
                "versions": {str(number): {"created_time": written.isoformat()}
                             for number, written in enumerate(self.written_at[path], start=1)}}

    async def write(self, path: str, data: dict[str, Any], cas: int) -> int:
        history = self.versions.setdefault(path, [])
        if cas != len(history):
            raise CasConflict(path)
        history.append(dict(data))
        self.written_at.setdefault(path, []).append(datetime.now(UTC))
        return len(history)

    async def list(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        below = [p[len(prefix):] for p, versions in self.versions.items() if versions and p.startswith(prefix)]
        return sorted({rest.split("/", 1)[0] + "/" if "/" in rest else rest for rest in below})

    async def delete_all(self, path: str) -> None:
        self.versions.pop(path, None)
        self.written_at.pop(path, None)
        self.deleted.add(path)


class CountingVault(InMemoryVault):
    """Records the KV calls made, in order, to tell a Vault call saved from one made."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    @property
    def reads(self) -> int:
        return self.calls.count("read")

    async def read(self, path: str) -> KvEntry | None:
        self.calls.append("read")
        return await super().read(path)

    async def read_metadata(self, path: str) -> dict[str, Any] | None:
        self.calls.append("read_metadata")
        return await super().read_metadata(path)

    async def write(self, path: str, data: dict[str, Any], cas: int) -> int:
        self.calls.append("write")
        return await super().write(path, data, cas)


class RacingVault(InMemoryVault):
    """Another writer gets in first: before our next write to a path, the record raced there is written."""

    def __init__(self) -> None:
        super().__init__()
        self._rivals: dict[str, dict[str, Any]] = {}

    def race(self, path: str, record: dict[str, Any]) -> None:
        self._rivals[path] = record

    async def write(self, path: str, data: dict[str, Any], cas: int) -> int:
        rival = self._rivals.pop(path, None)
        if rival is not None:
            await super().write(path, rival, cas=len(self.versions.get(path, [])))
        return await super().write(path, data, cas)


if TYPE_CHECKING:  # the type checker holds the fakes to the port they stand in for (make test runs mypy here)
    _vault_port: VaultPort = InMemoryVault()
