"""In-memory stand-ins for the I/O edges, for fast handler tests. Real-server tests live beside them."""

import base64
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from shared.adapters.vault.client import CasConflict, KvEntry, SigningKeys, UnsealFailed, VaultPort

# The time of the Kafka record a handler is given, in handler tests.
AT = datetime(2026, 11, 24, 12, 0, 0, 123000, tzinfo=UTC)

_NONCE = "nonce-of-12b"


def fake_seal(secret: str, context: str) -> str:
    """Ciphertext-shaped (so intake's shape check passes), bound to its context like a derived Transit key."""
    return "vault:v1:" + base64.b64encode(f"{_NONCE}{context}\x00{secret}".encode()).decode()


class InMemoryVault:
    """KV v2 semantics that matter here: versions, check-and-set, delete-all; Transit seal/HMAC by context."""

    def __init__(self) -> None:
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self.deleted: set[str] = set()
        # When Vault wrote each version of each path (metadata's created_time).
        self.written_at: dict[str, list[datetime]] = {}
        # Transit signing keys by name, each a list of versions (a rotation appends one).
        self.signing: dict[str, list[Ed25519PrivateKey]] = {}
        self.oldest_accepted: dict[str, int] = {}

    async def unseal(self, key: str, ciphertext: str, context: str) -> SecretStr:
        try:
            opened = base64.b64decode(ciphertext.removeprefix("vault:v1:")).decode().removeprefix(_NONCE)
            sealed_context, secret = opened.split("\x00", 1)
        except ValueError:
            raise UnsealFailed("not our ciphertext") from None
        if sealed_context != context:
            raise UnsealFailed("wrong context")
        return SecretStr(secret)

    async def hmac(self, key: str, data: str) -> str:
        return "vault:v1:" + base64.b64encode(f"{key}:{data}".encode()).decode()

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
