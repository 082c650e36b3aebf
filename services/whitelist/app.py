"""whitelist: keeps per binding the trading pairs the bot may trade, checked against its exchange's live symbols."""

import asyncio
from functools import partial

import structlog
from faststream import FastStream

from services.whitelist.catalog import Catalogs, SymbolCatalog
from services.whitelist.handlers import (
    WhitelistDeps,
    handle_binding_rechecked,
    handle_binding_stored,
    handle_whitelist_requested,
    on_malformed,
)
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, exchange_error
from shared.adapters.exchange.http import UNEXPECTED_ANSWER
from shared.adapters.exchange.port import Exchange
from shared.adapters.exchange.registry import ClientOptions, Exchanges
from shared.adapters.vault.client import VaultPort
from shared.contracts.routing import Topic
from shared.runtime.backoff import retry_while_raising
from shared.runtime.config import WhitelistSettings
from shared.runtime.service import background, run, service_app, vault_client
from shared.runtime.subscriptions import Messaging, Subscriptions

log = structlog.get_logger(__name__)


async def refresh_symbols(exchange: Exchange, catalog: SymbolCatalog, interval_s: float) -> None:
    """Keep one exchange's catalogue fresh in the background, so no request waits on its symbol list; while the
    exchange fails, retry with backoff capped at the refresh interval."""
    while True:
        await retry_while_raising(partial(refresh_catalog, exchange, catalog), ExchangeError, interval_s,
                                  partial(_log_refresh_failure, exchange.name))
        await asyncio.sleep(interval_s)


async def refresh_catalog(exchange: Exchange, catalog: SymbolCatalog) -> None:
    pairs = await exchange.trading_pairs()
    if not pairs:
        # No exchange lists no symbol: a broken (or hostile) answer. Keep the last good list and retry, rather
        # than refuse every pair as unknown.
        raise exchange_error(ExchangeErrorKind.UNAVAILABLE, UNEXPECTED_ANSWER, "the symbol list is empty")
    catalog.replace(pairs)
    log.info("symbols_refreshed", exchange=exchange.name, count=len(pairs))


def _log_refresh_failure(exchange: str, error: ExchangeError, delay_s: float) -> None:
    log.warning("symbols_refresh_failed", exchange=exchange, kind=error.kind, retry_in_s=round(delay_s, 2))


def build(settings: WhitelistSettings, vault: VaultPort | None = None) -> FastStream:
    vault = vault or vault_client(settings)
    exchanges = Exchanges.open(settings.exchange_urls(), ClientOptions(timeout_s=settings.exchange_timeout_s))
    deps = WhitelistDeps(vault, Catalogs(exchanges.names))
    messaging = Messaging.of(settings, vault)
    subscriptions = Subscriptions.of(messaging, settings, on_malformed, {
        Topic.WHITELIST_REQUESTED: partial(handle_whitelist_requested, deps=deps),
        Topic.BINDING_STORED: partial(handle_binding_stored, deps=deps),
        Topic.BINDING_RECHECKED: partial(handle_binding_rechecked, deps=deps),
    })
    app = service_app(messaging.broker, subscriptions, settings, __doc__ or "", vault)
    for name, catalog in deps.catalogs.by_exchange.items():
        background(app, partial(refresh_symbols, exchanges[name], catalog, settings.symbol_refresh_s),
                   f"symbol_refresh_{name}")
    app.after_shutdown(exchanges.aclose)
    return app


def main() -> None:
    run(WhitelistSettings, build)
