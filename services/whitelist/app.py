"""whitelist: keeps per binding the trading pairs the bot may trade, checked against HTX's live symbols."""

import asyncio
from functools import partial

import structlog
from faststream import FastStream

from services.whitelist.catalog import SymbolCatalog, merge_symbol_lists
from services.whitelist.handlers import (
    WhitelistDeps,
    handle_binding_rechecked,
    handle_binding_stored,
    handle_whitelist_requested,
    on_malformed,
)
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, exchange_error
from shared.adapters.exchange.http import UNEXPECTED_ANSWER
from shared.adapters.htx.client import HtxClient
from shared.adapters.vault.client import VaultPort
from shared.contracts.routing import Topic
from shared.runtime.backoff import retry_while_raising
from shared.runtime.config import WhitelistSettings
from shared.runtime.service import background, run, service_app, vault_client
from shared.runtime.subscriptions import Messaging, Subscriptions

log = structlog.get_logger(__name__)


async def refresh_symbols(htx: HtxClient, catalog: SymbolCatalog, interval_s: float) -> None:
    """Keep the catalogue fresh in the background, so no request waits on HTX's symbol lists; while HTX fails,
    retry with backoff capped at the refresh interval."""
    while True:
        await retry_while_raising(partial(refresh_catalog, htx, catalog), ExchangeError, interval_s,
                                  _log_refresh_failure)
        await asyncio.sleep(interval_s)


async def refresh_catalog(htx: HtxClient, catalog: SymbolCatalog) -> None:
    market, v2 = await asyncio.gather(htx.market_symbols(), htx.symbols_v2())
    if not market:
        # No exchange lists no symbol: a broken (or hostile) answer. Keep the last good list and retry, rather
        # than refuse every pair as unknown.
        raise exchange_error(ExchangeErrorKind.UNAVAILABLE, UNEXPECTED_ANSWER, "the market-symbols list is empty")
    catalog.replace(merge_symbol_lists(market, v2))
    log.info("symbols_refreshed", count=len(market))


def _log_refresh_failure(error: ExchangeError, delay_s: float) -> None:
    log.warning("symbols_refresh_failed", kind=error.kind, retry_in_s=round(delay_s, 2))


def build(settings: WhitelistSettings, vault: VaultPort | None = None) -> FastStream:
    vault = vault or vault_client(settings)
    htx = HtxClient(settings.htx_base_url, timeout_s=settings.htx_timeout_s)
    deps = WhitelistDeps(vault, SymbolCatalog())
    messaging = Messaging.of(settings, vault)
    subscriptions = Subscriptions.of(messaging, settings, on_malformed, {
        Topic.WHITELIST_REQUESTED: partial(handle_whitelist_requested, deps=deps),
        Topic.BINDING_STORED: partial(handle_binding_stored, deps=deps),
        Topic.BINDING_RECHECKED: partial(handle_binding_rechecked, deps=deps),
    })
    app = service_app(messaging.broker, subscriptions, settings, __doc__ or "", vault)
    background(app, lambda: refresh_symbols(htx, deps.catalog, settings.symbol_refresh_s), "symbol_refresh")
    app.after_shutdown(htx.aclose)
    return app


def main() -> None:
    run(WhitelistSettings, build)
