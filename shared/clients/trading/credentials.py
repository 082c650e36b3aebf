"""A binding as a trading engine sees it: its access key, the Transit key that signs with its secret, and its
current whitelist, read from Vault with the `trading-engine` AppRole and kept in memory for a bounded time.

An engine never holds a secret key: it asks Vault to sign each request (shared/adapters/vault/stores.py). An OKX key's
passphrase, which OKX wants in clear, it holds sealed, and opened only while one request is sent. The access key
shows only masked in a repr, the passphrase not at all. Token renewal and re-login are VaultClient's.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from pydantic import SecretStr

from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.request_signing import RequestSigner
from shared.adapters.vault.client import VaultClient, VaultPort
from shared.adapters.vault.passphrases import open_passphrase
from shared.adapters.vault.records import KeyHealth, KeyRef
from shared.adapters.vault.stores import Bindings, Whitelists
from shared.adapters.vault.transit_signer import TransitHmacSigner
from shared.contracts.exchanges import ExchangeName, supported_exchange
from shared.contracts.pairs import normalise_pairs
from shared.contracts.secrets import mask_access_key
from shared.runtime.config import EngineSettings
from shared.runtime.errors import ClientError, CredentialsMissing

# The AppRole of trading engines (one of shared.adapters.vault.layout.CLIENT_ROLES): it may only read bindings and
# whitelists, and sign with the bindings' exchange keys.
TRADING_ENGINE_ROLE = "trading-engine"

Clock = Callable[[], float]


class BindingNotFound(ClientError):
    """Vault holds no credentials for the binding: it was revoked, or never stored."""

    def __init__(self, user_id: str, binding_id: str) -> None:
        super().__init__(f"binding {binding_id} of user {user_id} has no credentials in Vault "
                         "(revoked, or never stored)")


@dataclass(frozen=True, repr=False)
class TradingBinding:
    """One binding's credentials and whitelist, as read together from Vault."""

    user_id: str
    binding_id: str
    access_key: str
    # The Transit key version holding the secret.
    signing_key: KeyRef
    exchange: str
    # The exchange's id of the key's owner.
    owner_uid: str
    # The account orders go to, where the exchange needs one named (HTX's spot account).
    trading_account_id: str | None
    # Pairs (normalised, shared/contracts/pairs.py), in the order the user gave them; empty while the binding awaits
    # a whitelist.
    whitelist: tuple[str, ...]
    # None while the whitelist service has said nothing about the key's health.
    health: KeyHealth | None
    # The binding's KV version: a rotation writes the next one.
    version: int
    # Vault's id for the read of the credentials: the same id stands in Vault's audit log.
    vault_request_id: str = ""
    # The W3C context of the span that stored the binding, which its orders' spans link to.
    traceparent: str | None = None
    # The key's passphrase (OKX), still sealed for the user: opened per order, by the gate, only to be sent
    # (README.md#the-passphrases-path). Not in the repr.
    passphrase_sealed: SecretStr | None = None

    @property
    def access_key_masked(self) -> str:
        return mask_access_key(self.access_key)

    @property
    def invalid(self) -> bool:
        """The whitelist service found that the key stopped working at its exchange."""
        return self.health is KeyHealth.INVALID

    def allows(self, symbol: str) -> bool:
        return symbol in self.whitelist

    @property
    def needs_trading_account(self) -> bool:
        """Whether the exchange's orders name an account (HTX's do: shared/adapters/htx/README.md#order-placement)."""
        return self.exchange == ExchangeName.HTX

    @property
    def needs_passphrase(self) -> bool:
        """Whether the exchange wants the key's passphrase with every request (OKX)."""
        supported = supported_exchange(self.exchange)
        return supported is not None and supported.needs_passphrase

    def credentials(self, signer: RequestSigner, passphrase: SecretStr | None = None) -> ExchangeCredentials:
        return ExchangeCredentials(self.access_key, signer, passphrase=passphrase, owner_uid=self.owner_uid)

    def __repr__(self) -> str:
        return (f"TradingBinding(user_id={self.user_id!r}, binding_id={self.binding_id!r}, "
                f"exchange={self.exchange!r}, access_key={self.access_key_masked!r}, owner_uid={self.owner_uid!r}, "
                f"trading_account_id={self.trading_account_id!r}, whitelist={self.whitelist!r}, "
                f"health={self.health!r}, version={self.version!r})")


@dataclass(frozen=True)
class _Cached:
    binding: TradingBinding
    read_at: float


class BindingStore:
    """Reads bindings from Vault and serves each from memory for `ttl_s` seconds after the read, so a
    rotation (a new KV version) is picked up within `ttl_s` without a restart. Absence is never cached: a
    binding stored a moment ago is found on the next call."""

    def __init__(self, vault: VaultPort, ttl_s: float, clock: Clock = time.monotonic) -> None:
        self._vault = vault
        self._bindings = Bindings(vault)
        self._whitelists = Whitelists(vault)
        self._ttl_s = ttl_s
        self._clock = clock
        self._cache: dict[tuple[str, str], _Cached] = {}

    @classmethod
    def from_settings(cls, settings: EngineSettings, vault: VaultPort | None = None) -> Self:
        return cls(vault or engine_vault(settings), settings.engine_cache_ttl_s)

    async def get(self, user_id: str, binding_id: str) -> TradingBinding:
        """The binding as read at most `ttl_s` ago; raises BindingNotFound."""
        self._evict_expired()
        cached = self._cache.get((user_id, binding_id))
        if cached is not None:
            return cached.binding
        return await self.refresh(user_id, binding_id)

    async def refresh(self, user_id: str, binding_id: str) -> TradingBinding:
        """The binding as Vault holds it now (and cached from now on); raises BindingNotFound."""
        read_at = self._clock()
        binding = await self._read(user_id, binding_id)
        if binding is None:
            self._cache.pop((user_id, binding_id), None)
            raise BindingNotFound(user_id, binding_id)
        self._cache[(user_id, binding_id)] = _Cached(binding, read_at)
        return binding

    def signer(self, binding: TradingBinding) -> TransitHmacSigner:
        """What signs the binding's requests, inside Vault; it keeps the ids of its Vault calls."""
        return TransitHmacSigner(self._vault, binding.signing_key)

    async def passphrase(self, binding: TradingBinding) -> SecretStr | None:
        """The binding's passphrase, opened by Vault for this one request, where its exchange wants one (None
        elsewhere, whatever the record holds). Raises UnsealFailed when it does not open for the binding's user."""
        if not binding.needs_passphrase:
            return None
        return await open_passphrase(self._vault, binding.passphrase_sealed, binding.user_id)

    async def _read(self, user_id: str, binding_id: str) -> TradingBinding | None:
        credentials = await self._bindings.read(user_id, binding_id)
        if credentials is None:
            return None
        whitelist = await self._whitelists.read(user_id, binding_id)
        record = credentials.record
        return TradingBinding(
            user_id=user_id,
            binding_id=binding_id,
            access_key=record.access_key,
            signing_key=record.signing_key,
            exchange=record.exchange,
            owner_uid=record.owner_uid,
            trading_account_id=record.trading_account_id,
            whitelist=tuple(normalise_pairs(whitelist.record.pairs)) if whitelist else (),
            health=whitelist.record.health if whitelist else None,
            version=credentials.version,
            vault_request_id=credentials.vault_request_id,
            traceparent=record.traceparent,
            passphrase_sealed=record.passphrase_sealed,
        )

    def _evict_expired(self) -> None:
        # Expired entries go, not only the one asked for: a binding's facts stay in memory no longer than ttl_s.
        now = self._clock()
        for key in [key for key, cached in self._cache.items() if now - cached.read_at >= self._ttl_s]:
            del self._cache[key]


def engine_vault(settings: EngineSettings) -> VaultClient:
    """A trading engine's Vault identity (AppRole `trading-engine`)."""
    try:
        credentials = settings.approle_credentials(TRADING_ENGINE_ROLE)
    except RuntimeError as exc:
        raise CredentialsMissing(str(exc)) from None
    return VaultClient(settings.vault_connection(), credentials)
