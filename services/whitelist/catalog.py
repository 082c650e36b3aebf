"""The whitelist service's own pure logic: which pairs HTX lets a bot trade right now."""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shared.adapters.htx.models import MarketSymbol, SymbolV2
from shared.contracts.reasons import Reason, ReasonCode, reason


@dataclass(frozen=True)
class SymbolStatus:
    """One HTX spot symbol, merged from the symbol lists (shared/adapters/htx/README.md#tradable-pair-rule)."""

    symbol: str
    state: str
    api_trading: bool
    trade_enabled: bool = True
    country_disabled: bool = False

    @property
    def tradable(self) -> bool:
        return self.state == "online" and self.api_trading and self.trade_enabled and not self.country_disabled


class SymbolCatalog:
    """The latest symbol list; replaced whole by the background refresh, read by every request."""

    def __init__(self) -> None:
        self._symbols: dict[str, SymbolStatus] | None = None

    @property
    def loaded(self) -> bool:
        return self._symbols is not None

    def replace(self, symbols: Iterable[SymbolStatus]) -> None:
        self._symbols = {s.symbol: s for s in symbols}

    def problems(self, pairs: Sequence[str]) -> list[Reason]:
        """Every reason this set of pairs cannot be the whitelist; empty when it can."""
        if self._symbols is None:
            raise RuntimeError("symbol catalogue used before its first load")
        if not pairs:
            return [reason(ReasonCode.WHITELIST_EMPTY)]
        unknown = [p for p in pairs if p not in self._symbols]
        not_tradable = [p for p in pairs if p in self._symbols and not self._symbols[p].tradable]
        found: list[Reason] = []
        if unknown:
            found.append(reason(ReasonCode.PAIR_UNKNOWN, pairs=unknown))
        if not_tradable:
            found.append(reason(ReasonCode.PAIR_NOT_TRADABLE, pairs=not_tradable))
        return found


def merge_symbol_lists(market_symbols: Iterable[MarketSymbol], symbols_v2: Iterable[SymbolV2]) -> list[SymbolStatus]:
    """One status per symbol from HTX's two lists (shared/adapters/htx/README.md#tradable-pair-rule):
    market-symbols carries the API-trading flag, the v2 list the trade-enabled and country-disabled flags. A
    symbol is only as tradable as the stricter of the two says; one missing from the v2 list is judged by
    market-symbols alone. A symbol listed more than once, in either list, is as tradable as its strictest entry:
    the answer is untrusted input, and a duplicate must not make a pair tradable by coming last."""
    flags: dict[str, list[SymbolV2 | None]] = defaultdict(list)
    for v2 in symbols_v2:
        flags[v2.symbol].append(v2)
    merged: dict[str, SymbolStatus] = {}
    for market in market_symbols:
        # None: missing from the v2 list, judged by market-symbols alone.
        for v2_entry in flags.get(market.symbol) or [None]:
            status = _status(market, v2_entry)
            kept = merged.get(status.symbol)
            if kept is None or (kept.tradable and not status.tradable):
                merged[status.symbol] = status
    return list(merged.values())


def _status(market: MarketSymbol, v2: SymbolV2 | None) -> SymbolStatus:
    return SymbolStatus(
        symbol=market.symbol,
        state=market.state if v2 is None or market.state != "online" else v2.state,
        api_trading=market.api_trading == "enabled",
        trade_enabled=True if v2 is None else v2.trade_enabled,
        country_disabled=False if v2 is None else v2.country_disabled,
    )
