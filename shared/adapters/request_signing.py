"""The port through which exchange requests are signed, and its local implementation.

Every exchange Hash7 supports signs with HMAC-SHA256 over a text the exchange defines (HTX: Signature Version 2,
shared/adapters/htx/README.md#signing). The client builds the text; a `RequestSigner` returns the raw digest, and
the client encodes it as its exchange wants (HTX: Base64). In the running system the secret is a non-exportable
Transit key and the signer is `TransitHmacSigner` (shared/adapters/vault/stores.py): no process of ours
holds the secret. `LocalHmacSigner` holds it in memory, for the sandbox's own tests and for independent checks.
"""

import hashlib
import hmac
from collections.abc import Sequence
from typing import Protocol

from pydantic import SecretStr


class RequestSigner(Protocol):
    """Signs texts with one key: the raw HMAC-SHA256 digest of each, in order."""

    async def sign(self, texts: Sequence[str]) -> list[bytes]: ...


class LocalHmacSigner:
    """A signer holding the secret in this process (never used by a service: see the module docstring)."""

    def __init__(self, secret_key: SecretStr) -> None:
        self._secret_key = secret_key

    async def sign(self, texts: Sequence[str]) -> list[bytes]:
        key = self._secret_key.get_secret_value().encode()
        return [hmac.new(key, text.encode(), hashlib.sha256).digest() for text in texts]

    def __repr__(self) -> str:
        return "LocalHmacSigner(**********)"
