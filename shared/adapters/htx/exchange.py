"""HTX behind the exchange seam (shared/adapters/exchange/port.py): its answers read into the neutral key
description, symbol list and order.

Describing a key takes HTX four calls (shared/adapters/htx/README.md):
1. `GET /v1/common/timestamp` (at most once a minute): measure clock skew and sign with HTX's time, so our
   clock cannot fail keys.
2. `GET /v2/user/uid`: proves access key, signature and IP binding valid; gives the UID.
3. `GET /v2/user/api-key?uid=…&accessKey=…`: permissions, bound IPs, validity, status. Parent keys only:
   HTX refuses a sub-account key with HTTP 403, which itself says the key is a sub-account's.
4. `GET /v1/account/accounts`: the spot account and whether it is locked.
"""

import asyncio
from typing import Final

import structlog

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.exchange.port import (
    ClientOrderIdRule,
    ExchangeCredentials,
    KeyDescription,
    KeyEntry,
    KeyStatus,
    Permission,
    PlacedOrder,
    SpotOrder,
    TradingPair,
)
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.models import Account, ApiKeyInfo, MarketSymbol, NewOrder, SymbolV2

log = structlog.get_logger()

NAME: Final = "htx"
# shared/adapters/htx/README.md#order-placement: `client-order-id` is optional; HTX's API FAQ gives 64 characters as
# its most (not yet in that README). Which characters is our choice: those of Hash7's own identifiers.
CLIENT_ORDER_IDS: Final = ClientOrderIdRule(r"[A-Za-z0-9._:-]{1,64}", "1 to 64 letters, digits, '.', '_', ':' or '-'")
# Beyond this, our clock is worth an operator's look even though signing corrects for it.
NOTABLE_CLOCK_SKEW_S: Final = 5.0
# Clocks drift slowly and HTX accepts ±5 min, so one measurement serves a minute of calls. Measuring for every key
# would cap validation at HTX's 10 unsigned requests a second per IP.
CLOCK_SYNC_MAX_AGE_S: Final = 60.0

# The permission names of HTX's /v2/user/api-key (shared/adapters/htx/README.md#api-key-query), compared lower-case.
_PERMISSIONS: Final = {"readonly": Permission.READ, "trade": Permission.TRADE, "withdraw": Permission.WITHDRAW}
# /v2/user/api-key's validDays -1 means permanently valid.
_NEVER_EXPIRES: Final = -1

class HtxExchange:
    """HTX as the `Exchange` port describes it."""

    name = NAME

    def __init__(self, client: HtxClient) -> None:
        self.client = client

    def client_order_id_problem(self, client_order_id: str) -> str | None:
        return CLIENT_ORDER_IDS.problem("HTX", client_order_id)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def describe_key(self, credentials: ExchangeCredentials) -> KeyDescription:
        skew_s = await self.client.sync_clock_if_older_than(CLOCK_SYNC_MAX_AGE_S)
        if skew_s is not None and abs(skew_s) > NOTABLE_CLOCK_SKEW_S:
            log.warning("exchange.clock_skew", exchange=NAME, skew_s=round(skew_s, 3))
        uid = await self.client.uid(credentials)
        credentials = credentials.with_owner(str(uid))
        entry, sub_account = await self._key_entry(credentials, uid)
        if entry is None and not sub_account:
            # HTX knows the key (it answered /v2/user/uid) but does not list it under its own UID.
            raise ExchangeError(ExchangeErrorKind.UNKNOWN_ACCESS_KEY, "key-not-listed",
                                "HTX does not list the key under its own UID")
        return key_description(uid, entry, await self.client.accounts(credentials), sub_account=sub_account)

    async def _key_entry(self, credentials: ExchangeCredentials, uid: int) -> tuple[ApiKeyInfo | None, bool]:
        """(the key's entry, whether it is a sub-account key)."""
        try:
            return await self.client.api_key(credentials, uid), False
        except ExchangeError as error:
            # The endpoint is parent-only: a sub-user key gets HTTP 403.
            if error.kind is ExchangeErrorKind.FORBIDDEN:
                return None, True
            raise

    async def trading_pairs(self) -> list[TradingPair]:
        market, v2 = await asyncio.gather(self.client.market_symbols(), self.client.symbols_v2())
        return merge_symbol_lists(market, v2)

    async def place_order(self, credentials: ExchangeCredentials, order: SpotOrder,
                          trading_account_id: str | None) -> PlacedOrder:
        if trading_account_id is None:
            raise ValueError("an HTX order needs the key's spot account")
        order_id = await self.client.place_order(credentials, NewOrder(
            account_id=int(trading_account_id), symbol=order.pair, type=f"{order.side}-{order.kind}",
            amount=order.amount, price=order.price, client_order_id=order.client_order_id))
        return PlacedOrder(order_id=str(order_id), client_order_id=order.client_order_id)

def key_description(uid: int, entry: ApiKeyInfo | None, accounts: list[Account], *,
                    sub_account: bool) -> KeyDescription:
    """HTX's answers about a key, in the seam's terms. entry may be None only for a sub-account key, which the
    parent-only key endpoint refuses to describe."""
    if entry is None and not sub_account:
        raise ValueError("a key that is not a sub-account key must come with its /v2/user/api-key entry")
    spot = next((a for a in accounts if a.type == "spot"), None)
    return KeyDescription(
        owner_uid=str(uid), sub_account=sub_account, key=_key_entry(entry) if entry else None,
        trading_account_id=str(spot.id) if spot else None, needs_trading_account=True,
        account_problem=_spot_problem(accounts),
    )


def _key_entry(entry: ApiKeyInfo) -> KeyEntry:
    listed = tuple(entry.permissions)
    # HTX lists a key's status as `normal` or `expired`; anything else is treated as disabled.
    status = {"normal": KeyStatus.NORMAL, "expired": KeyStatus.EXPIRED}.get(entry.status, KeyStatus.DISABLED)
    return KeyEntry(
        permissions=frozenset(_PERMISSIONS[p.lower()] for p in listed if p.lower() in _PERMISSIONS),
        listed_permissions=listed, bound_ips=tuple(entry.bound_ips),
        valid_days=None if entry.valid_days == _NEVER_EXPIRES else entry.valid_days,
        status=status, status_text=entry.status,
    )

def _spot_problem(accounts: list[Account]) -> str | None:
    # HTX lists an account's state as `working` or `lock`; the bot trades on spot only. Our own words: HTX's state
    # is untrusted text of any length, and this reaches the user.
    return next(("spot account locked" for a in accounts if a.type == "spot" and a.state != "working"), None)

def merge_symbol_lists(market_symbols: list[MarketSymbol], symbols_v2: list[SymbolV2]) -> list[TradingPair]:
    """One pair per symbol from HTX's two lists (shared/adapters/htx/README.md#tradable-pair-rule):
    market-symbols carries the API-trading flag, the v2 list the trade-enabled and country-disabled flags. A
    symbol is only as tradable as the stricter of the two says; one missing from the v2 list is judged by
    market-symbols alone. A symbol listed more than once, in either list, is as tradable as its strictest entry:
    the answer is untrusted input, and a duplicate must not make a pair tradable by coming last."""
    flags: dict[str, list[SymbolV2]] = {}
    for v2 in symbols_v2:
        flags.setdefault(v2.symbol, []).append(v2)
    tradable: dict[str, bool] = {}
    for market in market_symbols:
        entries: list[SymbolV2 | None] = [*flags.get(market.symbol, [])] or [None]
        for entry in entries:
            tradable[market.symbol] = tradable.get(market.symbol, True) and _tradable(market, entry)
    return [TradingPair(pair=symbol, symbol=symbol, tradable=ok) for symbol, ok in tradable.items()]

def _tradable(market: MarketSymbol, v2: SymbolV2 | None) -> bool:
    state = market.state if v2 is None or market.state != "online" else v2.state
    return (state == "online" and market.api_trading == "enabled"
            and (v2 is None or (v2.trade_enabled and not v2.country_disabled)))
