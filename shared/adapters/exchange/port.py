"""The exchange seam: what Hash7 asks of any exchange, in the same terms for each.

An adapter per exchange (shared/adapters/htx/, shared/adapters/bybit/, shared/adapters/okx/) implements `Exchange`:
it signs and sends that exchange's requests, reads its answers into the neutral values below, and raises
`ExchangeError` (shared/adapters/exchange/errors.py) for every refusal. The validator's verdict, the whitelist's
pair check and the order gate decide on these values only; which adapter serves an event is chosen by the event's
`exchange` (shared/adapters/exchange/registry.py).
"""

import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Literal, Protocol, Self

from pydantic import SecretStr

from shared.adapters.request_signing import RequestSigner
from shared.contracts.secrets import mask_access_key


class Permission(StrEnum):
    """What a key may do, as the verdict needs it; each adapter maps its exchange's permission names onto these."""

    READ = "read"
    TRADE = "trade"
    # Moving funds off the exchange.
    WITHDRAW = "withdraw"
    # Moving funds between accounts (Bybit's Wallet transfers); refused like withdrawal.
    TRANSFER = "transfer"


class KeyStatus(StrEnum):
    NORMAL = "normal"
    EXPIRED = "expired"
    # Frozen, banned or otherwise not usable, by the exchange's say.
    DISABLED = "disabled"


@dataclass(frozen=True)
class ExchangeCredentials:
    """One user's API key on an exchange: the access key, what signs with its secret, and the passphrase some
    exchanges require with every request (OKX). `owner_uid`, once known, keys the client's rate limiter the way
    the exchange counts (per user). Neither the signer nor the passphrase shows in a repr."""

    access_key: str
    # Out of comparisons too: a signer is a service (a Vault client, a call log), not a value.
    signer: RequestSigner = field(repr=False, compare=False)
    passphrase: SecretStr | None = field(default=None, repr=False, compare=False)
    owner_uid: str | None = None

    def with_owner(self, owner_uid: str) -> Self:
        return replace(self, owner_uid=owner_uid)

    def __repr__(self) -> str:
        return f"ExchangeCredentials(access_key={mask_access_key(self.access_key)!r}, owner_uid={self.owner_uid!r})"


@dataclass(frozen=True)
class KeyEntry:
    """The key as the exchange lists it."""

    permissions: frozenset[Permission]
    # The exchange's own permission names, as listed (kept for the binding's facts and the audit).
    listed_permissions: tuple[str, ...]
    # Hosts and networks the key is bound to, as listed; empty when it is bound to none (an exchange's "*" or "").
    bound_ips: tuple[str, ...]
    # Days until the key stops working; None when it does not expire.
    valid_days: int | None
    status: KeyStatus
    # The exchange's own word for the status, for the user's message.
    status_text: str


@dataclass(frozen=True)
class KeyDescription:
    """What an exchange says about the key that called it."""

    # The exchange's id of the key's owner (HTX's UID, Bybit's userID, OKX's uid).
    owner_uid: str
    sub_account: bool
    # None when the exchange would not describe the key (HTX refuses a sub-account key so).
    key: KeyEntry | None
    # The account orders are placed in, where the exchange needs one named (HTX's spot account id); None when the
    # exchange needs none, or lists none (`needs_trading_account` tells which).
    trading_account_id: str | None
    needs_trading_account: bool
    # Why the account cannot trade, in the exchange's words (HTX's spot account `lock`, a frozen or banned
    # account); None when it can.
    account_problem: str | None


@dataclass(frozen=True)
class TradingPair:
    """One spot pair of the exchange's live list. `pair` is Hash7's name for it (shared/contracts/pairs.py:
    base and quote, lower case, no separator), `symbol` the exchange's."""

    pair: str
    symbol: str
    tradable: bool


@dataclass(frozen=True)
class SpotOrder:
    """An order as the gate sends it, in any exchange's terms."""

    pair: str
    side: Literal["buy", "sell"]
    kind: Literal["limit", "market"]
    amount: Decimal
    price: Decimal | None = None
    client_order_id: str | None = None


@dataclass(frozen=True)
class PlacedOrder:
    order_id: str
    client_order_id: str | None = None


@dataclass(frozen=True)
class ClientOrderIdRule:
    """Which client order ids an exchange takes: a whole match of pattern, told to a person as described (e.g.
    "1 to 32 letters or digits"). The gate asks before it signs anything (shared/clients/trading/gate.py)."""

    pattern: str
    described: str

    def problem(self, exchange: str, client_order_id: str) -> str | None:
        """None when client_order_id is taken; else why not, in our words (never the id: it is the caller's text)."""
        if re.fullmatch(self.pattern, client_order_id, flags=re.ASCII):
            return None
        return f"{exchange} takes client order ids of {self.described} only"


class Exchange(Protocol):
    """One exchange, as every part of Hash7 uses it. Every method raises `ExchangeError` for the exchange's
    refusals and `ExchangeTransientError` for trouble worth retrying, once the adapter's retry budget is spent."""

    name: str

    async def describe_key(self, credentials: ExchangeCredentials) -> KeyDescription:
        """The calling key and its account; proves the key, its signature and its IP binding valid on the way."""
        ...

    async def trading_pairs(self) -> list[TradingPair]:
        """Every spot pair the exchange lists now, tradable or not."""
        ...

    async def place_order(self, credentials: ExchangeCredentials, order: SpotOrder,
                          trading_account_id: str | None) -> PlacedOrder:
        ...

    def client_order_id_problem(self, client_order_id: str) -> str | None:
        """None when the exchange takes client_order_id as an order's own id; else why not, in a person's words."""
        ...

    async def aclose(self) -> None: ...
