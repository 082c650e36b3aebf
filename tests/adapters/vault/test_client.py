"""VaultClient's token lifecycle against a scripted hvac: when it renews and when it logs in again (the real
Vault's side is in tests/clients/trading/test_engine_stack.py)."""

import asyncio
from types import SimpleNamespace

import pytest
from pydantic import SecretStr

from shared.adapters.vault.client import VaultClient
from shared.runtime.config import AppRoleCredentials, VaultConnection

# Short enough to wait out, long enough that a loaded machine still calls before the lease ends.
LOGIN_LEASE_S = 0.6


class ScriptedAuth:
    """hvac's `auth` with an AppRole login and a token renewal that answer the leases they are given."""

    def __init__(self, renewed_lease_s: float) -> None:
        self.calls: list[str] = []
        self._renewed_lease_s = renewed_lease_s
        self.approle = SimpleNamespace(login=self._login)
        self.token = SimpleNamespace(renew_self=self._renew_self)

    def _login(self, **_credentials: object) -> dict:
        self.calls.append("login")
        return {"auth": {"lease_duration": LOGIN_LEASE_S, "policies": ["default", "trading-engine"]}}

    def _renew_self(self) -> dict:
        self.calls.append("renew")
        return {"auth": {"lease_duration": self._renewed_lease_s}}


def client_with(auth: ScriptedAuth) -> VaultClient:
    client = VaultClient(VaultConnection(addr="http://127.0.0.1:1"),
                         AppRoleCredentials(role_id="role", secret_id=SecretStr("secret-id")))
    client._hvac = SimpleNamespace(auth=auth)
    return client


@pytest.mark.parametrize(("renewed_lease_s", "calls"), [
    (LOGIN_LEASE_S, ["login", "renew"]),
    # Capped by the max TTL: renewing again would soon be refused.
    (LOGIN_LEASE_S / 2, ["login", "renew", "login"]),
])
async def test_past_two_thirds_of_its_lease_the_token_is_renewed_and_a_capped_renewal_logs_in_again(
        renewed_lease_s, calls):
    auth = ScriptedAuth(renewed_lease_s)
    client = client_with(auth)
    await client.check()
    await asyncio.sleep(LOGIN_LEASE_S * 0.75)
    await client.check()
    assert auth.calls == calls
