"""The whitelist service's own pure logic: which pairs each exchange lets a bot trade right now."""

from collections.abc import Iterable, Mapping, Sequence

from shared.adapters.exchange.port import TradingPair
from shared.contracts.exchanges import ExchangeName
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.runtime.errors import TransientError


class CatalogNotLoaded(TransientError):
    """An exchange's symbol list has not been loaded yet: wait rather than judge pairs blind."""


class SymbolCatalog:
    """One exchange's latest symbol list; replaced whole by the background refresh, read by every request."""

    def __init__(self) -> None:
        self._pairs: dict[str, bool] | None = None

    @classmethod
    def empty(cls) -> "SymbolCatalog":
        """A loaded catalogue that lists nothing."""
        catalog = cls()
        catalog.replace(())
        return catalog

    @property
    def loaded(self) -> bool:
        return self._pairs is not None

    def replace(self, pairs: Iterable[TradingPair]) -> None:
        """The list as the adapter read it; a pair listed twice is as tradable as its stricter entry, so a duplicate
        in an untrusted answer cannot make a pair tradable by coming last."""
        tradable: dict[str, bool] = {}
        for pair in pairs:
            tradable[pair.pair] = tradable.get(pair.pair, True) and pair.tradable
        self._pairs = tradable

    def tradable(self, pair: str) -> bool | None:
        """Whether the pair is tradable now; None when the exchange does not list it."""
        if self._pairs is None:
            raise CatalogNotLoaded("an exchange's symbol list is not loaded yet")
        return self._pairs.get(pair)


class Catalogs:
    """Every supported exchange's catalogue."""

    def __init__(self, exchanges: Iterable[ExchangeName]) -> None:
        self.by_exchange: Mapping[ExchangeName, SymbolCatalog] = {name: SymbolCatalog() for name in exchanges}

    def __getitem__(self, exchange: ExchangeName) -> SymbolCatalog:
        return self.by_exchange[exchange]

    def problems(self, pairs: Sequence[str], exchange: str | None) -> list[Reason]:
        """Every reason this set of pairs cannot be the whitelist of a binding on exchange; empty when it can.

        exchange None: the binding is not stored yet, so its exchange is not known here. A pair is then refused
        only when no exchange whose list is loaded could take it; the binding's own exchange judges the pairs again
        once it is stored (services/whitelist/handlers.py handle_binding_stored)."""
        if not pairs:
            return [reason(ReasonCode.WHITELIST_EMPTY, exchange)]
        catalogs = self._judging(exchange)
        states = {pair: [catalog.tradable(pair) for catalog in catalogs] for pair in pairs}
        unknown = [pair for pair, state in states.items() if all(s is None for s in state)]
        not_tradable = [pair for pair, state in states.items() if pair not in unknown and True not in state]
        found: list[Reason] = []
        if unknown:
            found.append(reason(ReasonCode.PAIR_UNKNOWN, exchange, pairs=unknown))
        if not_tradable:
            found.append(reason(ReasonCode.PAIR_NOT_TRADABLE, exchange, pairs=not_tradable))
        return found

    def _judging(self, exchange: str | None) -> list[SymbolCatalog]:
        if exchange is None:
            loaded = [catalog for catalog in self.by_exchange.values() if catalog.loaded]
            if not loaded:
                raise CatalogNotLoaded("no exchange's symbol list is loaded yet")
            return loaded
        try:
            return [self.by_exchange[ExchangeName(exchange)]]
        except (KeyError, ValueError):
            # A binding of an exchange no longer supported: none of its pairs can be traded here.
            return [SymbolCatalog.empty()]
