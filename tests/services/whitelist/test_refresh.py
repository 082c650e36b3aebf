"""The whitelist's symbol refresh treats an exchange's lists as untrusted input and survives what it did not foresee:
a crash is logged and the refresh started again (against the real sandbox); an empty list keeps the last good
catalogue; a symbol listed twice is as tradable as its strictest entry."""

import asyncio

import pytest
from structlog.testing import capture_logs

from services.whitelist.app import refresh_catalog, refresh_symbols
from services.whitelist.catalog import Catalogs, SymbolCatalog
from shared.adapters.exchange.errors import ExchangeError
from shared.adapters.exchange.http import UNEXPECTED_ANSWER
from shared.adapters.exchange.port import TradingPair
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.exchange import HtxExchange, merge_symbol_lists
from shared.adapters.htx.models import MarketSymbol, SymbolV2
from shared.contracts.exchanges import ExchangeName
from shared.contracts.reasons import ReasonCode
from shared.runtime.service import supervised
from tests.adapters.htx.hostile import fixed, hostile_htx


class CrashingOnce(HtxExchange):
    """The real adapter, whose first symbol list fails in a way no one foresaw."""

    crashed = False

    async def trading_pairs(self) -> list[TradingPair]:
        if not self.crashed:
            self.crashed = True
            raise LookupError("a bug nobody foresaw")
        return await super().trading_pairs()


def htx_catalogs() -> Catalogs:
    return Catalogs([ExchangeName.HTX])


async def test_a_crashed_refresh_is_logged_and_started_again_and_then_loads(clean_htx_sandbox):
    catalogs = htx_catalogs()
    catalog = catalogs[ExchangeName.HTX]
    async with HtxClient(clean_htx_sandbox.base_url) as real:
        htx = CrashingOnce(real)
        with capture_logs() as logs:
            task = asyncio.create_task(supervised(lambda: refresh_symbols(htx, catalog, 60.0), "symbol_refresh",
                                                  restart_cap_s=0.05))
            try:
                async with asyncio.timeout(10):
                    while not catalog.loaded:
                        await asyncio.sleep(0.02)
            finally:
                task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    events = [line["event"] for line in logs]
    assert events.index("background_task_crashed") < events.index("symbols_refreshed")
    [crash] = [line for line in logs if line["event"] == "background_task_crashed"]
    assert (crash["task"], crash["error_class"]) == ("symbol_refresh", "LookupError")
    assert catalogs.problems(["btcusdt"], "htx") == []


async def test_an_empty_symbol_list_keeps_the_last_good_catalogue():
    catalogs = htx_catalogs()
    catalogs[ExchangeName.HTX].replace([TradingPair("btcusdt", "btcusdt", tradable=True)])
    empty = fixed(b'{"status":"ok","data":[],"ts":"1","full":1}')
    async with hostile_htx(empty) as server, HtxClient(server.base_url, retry_budget_s=0.0) as htx:
        with pytest.raises(ExchangeError) as caught:
            await refresh_catalog(HtxExchange(htx), catalogs[ExchangeName.HTX])
    assert caught.value.code == UNEXPECTED_ANSWER and caught.value.transient
    assert catalogs.problems(["btcusdt"], "htx") == []


def market(state: str = "online", at: str = "enabled") -> MarketSymbol:
    return MarketSymbol.model_validate({"symbol": "btcusdt", "bc": "btc", "qc": "usdt", "state": state, "at": at})


def v2(te: bool) -> SymbolV2:
    return SymbolV2.model_validate({"sc": "btcusdt", "bc": "btc", "qc": "usdt", "state": "online", "te": te})


@pytest.mark.parametrize(
    ("market_symbols", "symbols_v2"),
    [
        ([market(state="offline"), market()], [v2(True)]),
        ([market(at="disabled"), market()], []),
        ([market()], [v2(False), v2(True)]),
    ],
    ids=["market-state", "market-api-trading", "v2-trade-enabled"],
)
def test_a_symbol_listed_twice_is_as_tradable_as_its_strictest_entry(market_symbols, symbols_v2):
    [pair] = merge_symbol_lists(market_symbols, symbols_v2)
    assert not pair.tradable
    catalogs = htx_catalogs()
    catalogs[ExchangeName.HTX].replace([pair])
    assert [problem.code for problem in catalogs.problems(["btcusdt"], "htx")] == [ReasonCode.PAIR_NOT_TRADABLE]


def test_a_pair_listed_twice_by_an_adapter_is_as_tradable_as_its_stricter_entry():
    catalog = SymbolCatalog()
    catalog.replace([TradingPair("btcusdt", "BTCUSDT", tradable=False), TradingPair("btcusdt", "BTCUSDT", True)])
    assert catalog.tradable("btcusdt") is False and catalog.tradable("ethusdt") is None
