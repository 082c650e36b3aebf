"""The signer that signs exchange requests inside Vault, with a binding's Transit key (the port is in
shared/adapters/request_signing.py; shared/adapters/vault/README.md#exchange-keys says what Transit does)."""

from collections.abc import Sequence
from dataclasses import dataclass, field

from shared.adapters.vault.client import VaultPort
from shared.adapters.vault.records import KeyRef


@dataclass
class TransitHmacSigner:
    """Signs exchange requests with one version of a Transit key: the secret never leaves Vault, and each call is
    in Vault's audit log under the request id kept here, which our audit events name (`vault_sign_request_ids`)."""

    vault: VaultPort
    key: KeyRef
    vault_request_ids: list[str] = field(default_factory=list)

    async def sign(self, texts: Sequence[str]) -> list[bytes]:
        batch = await self.vault.hmac_batch(self.key.name, self.key.version, texts)
        self.vault_request_ids.append(batch.request_id)
        return batch.digests
