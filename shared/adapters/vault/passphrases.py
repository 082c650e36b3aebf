"""Opening the passphrase a key comes with on some exchanges (OKX), sealed for its user with Transit
`binding-passphrase` (README.md#the-passphrases-path). The validator opens it for a key check and a recheck, a trading
engine for each order; nobody else may (deploy/vault/policies/*.hcl)."""

from pydantic import SecretStr

from shared.adapters.vault.client import VaultPort
from shared.adapters.vault.layout import BINDING_PASSPHRASE_KEY


async def open_passphrase(vault: VaultPort, sealed: SecretStr | None, user_id: str) -> SecretStr | None:
    """The passphrase sealed for user_id, or None when there is none. Raises UnsealFailed when it does not open for
    that user (sealed for another, not Transit's, or not this key's); Vault's own trouble is raised as it is."""
    if sealed is None:
        return None
    return await vault.unseal(BINDING_PASSPHRASE_KEY, sealed.get_secret_value(), user_id)
