"""Which adapter serves which exchange: the one table that adding an exchange extends (with its name in
shared/contracts/exchanges.py and its hints in shared/contracts/reasons.py)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from shared.adapters.bybit.client import BybitExchange
from shared.adapters.exchange.port import Exchange
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.exchange import HtxExchange
from shared.adapters.okx.client import OkxExchange
from shared.contracts.exchanges import ExchangeName


@dataclass(frozen=True)
class ClientOptions:
    """How a service talks to exchanges: per call (`timeout_s`) and how long transient trouble is retried."""

    timeout_s: float = 5.0
    retry_budget_s: float = 20.0


def _htx(base_url: str, options: ClientOptions) -> Exchange:
    return HtxExchange(HtxClient(base_url, timeout_s=options.timeout_s, retry_budget_s=options.retry_budget_s))


def _bybit(base_url: str, options: ClientOptions) -> Exchange:
    return BybitExchange(base_url, timeout_s=options.timeout_s, retry_budget_s=options.retry_budget_s)


def _okx(base_url: str, options: ClientOptions) -> Exchange:
    return OkxExchange(base_url, timeout_s=options.timeout_s, retry_budget_s=options.retry_budget_s)


ADAPTERS: Final[Mapping[ExchangeName, Callable[[str, ClientOptions], Exchange]]] = {
    ExchangeName.HTX: _htx,
    ExchangeName.BYBIT: _bybit,
    ExchangeName.OKX: _okx,
}


class UnsupportedExchange(LookupError):
    """An exchange Hash7 has no adapter for."""


class Exchanges:
    """One client per supported exchange, chosen by an event's `exchange`."""

    def __init__(self, exchanges: Mapping[ExchangeName, Exchange]) -> None:
        self._exchanges = dict(exchanges)

    @classmethod
    def open(cls, base_urls: Mapping[ExchangeName, str], options: ClientOptions) -> "Exchanges":
        return cls({name: adapter(base_urls[name], options) for name, adapter in ADAPTERS.items()})

    def __getitem__(self, name: str) -> Exchange:
        try:
            return self._exchanges[ExchangeName(name)]
        except (KeyError, ValueError):
            raise UnsupportedExchange(f"no adapter for the exchange {name[:32]!r}") from None

    @property
    def names(self) -> list[ExchangeName]:
        return list(self._exchanges)

    async def aclose(self) -> None:
        for exchange in self._exchanges.values():
            await exchange.aclose()
