"""The whitelist's symbol refresh treats HTX's lists as untrusted input and survives what it did not foresee:
a crash is logged and the refresh started again (against the real sandbox); an empty list keeps the last good
catalogue; a symbol listed twice is as tradable as its strictest entry."""

import asyncio

import pytest
from structlog.testing import capture_logs

from services.whitelist.app import refresh_catalog, refresh_symbols
from services.whitelist.catalog import SymbolCatalog, SymbolStatus, merge_symbol_lists
from shared.adapters.exchange.errors import ExchangeError
from shared.adapters.exchange.http import UNEXPECTED_ANSWER
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.models import MarketSymbol, SymbolV2
from shared.contracts.reasons import ReasonCode
from shared.runtime.service import supervised
from tests.adapters.htx.hostile import fixed, hostile_htx


class CrashingOnce:
    """The real client, whose first market-symbols call fails in a way no one foresaw."""

    def __init__(self, htx: HtxClient) -> None:
        self._htx = htx
        self.crashed = False

    async def market_symbols(self) -> list[MarketSymbol]:
        if not self.crashed:
            self.crashed = True
            raise LookupError("a bug nobody foresaw")
        return await self._htx.market_symbols()

    async def symbols_v2(self) -> list[SymbolV2]:
        return await self._htx.symbols_v2()


async def test_a_crashed_refresh_is_logged_and_started_again_and_then_loads(clean_htx_sandbox):
    catalog = SymbolCatalog()
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
    assert catalog.problems(["btcusdt"]) == []


async def test_an_empty_symbol_list_keeps_the_last_good_catalogue():
    catalog = SymbolCatalog()
    catalog.replace([SymbolStatus("btcusdt", "online", api_trading=True)])
    empty = fixed(b'{"status":"ok","data":[],"ts":"1","full":1}')
    async with hostile_htx(empty) as server, HtxClient(server.base_url, retry_budget_s=0.0) as htx:
        with pytest.raises(ExchangeError) as caught:
            await refresh_catalog(htx, catalog)
    assert caught.value.code == UNEXPECTED_ANSWER and caught.value.transient
    assert catalog.problems(["btcusdt"]) == []


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
    [status] = merge_symbol_lists(market_symbols, symbols_v2)
    assert not status.tradable
    catalog = SymbolCatalog()
    catalog.replace([status])
    assert [problem.code for problem in catalog.problems(["btcusdt"])] == [ReasonCode.PAIR_NOT_TRADABLE]
