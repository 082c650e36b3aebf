"""whitelist: keeps per binding the trading pairs the bot may trade, checked against HTX's live symbols."""

import asyncio
from functools import partial

import structlog
from faststream import FastStream

from shared.runtime.config import WhitelistSettings
from shared.contracts.routing import Party, Topic
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.errors import HtxError
from shared.runtime.kafka import Backoff, EventPublisher, make_broker, subscribe
from shared.runtime.service import background, run, service_app, vault_client
from shared.adapters.vault.client import VaultPort
from services.whitelist.catalog import SymbolCatalog, merge_symbol_lists
from services.whitelist.handlers import (
    WhitelistDeps, handle_binding_rechecked, handle_binding_stored, handle_whitelist_requested, on_malformed,
)

log = structlog.get_logger(__name__)


async def refresh_symbols(htx: HtxClient, catalog: SymbolCatalog, interval_s: float) -> None:
    """Keep the catalogue fresh in the background, so no request waits on HTX's symbol lists."""
    backoff = Backoff(cap_s=interval_s)
    while True:
        try:
            market, v2 = await asyncio.gather(htx.market_symbols(), htx.symbols_v2())
            catalog.replace(merge_symbol_lists(market, v2))
            log.info("symbols_refreshed", count=len(market))
            backoff = Backoff(cap_s=interval_s)
            await asyncio.sleep(interval_s)
        except HtxError as exc:
            delay = backoff.next_delay()
            log.warning("symbols_refresh_failed", kind=exc.kind, retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)


def build(settings: WhitelistSettings, vault: VaultPort | None = None) -> FastStream:
    htx = HtxClient(settings.htx_base_url, timeout_s=settings.htx_timeout_s)
    deps = WhitelistDeps(vault or vault_client(settings), SymbolCatalog())
    broker = make_broker(settings, settings.service_name)
    publisher = EventPublisher(broker, settings.topic_prefix, Party(settings.service_name))
    subscribe(broker, settings, Topic.WHITELIST_REQUESTED,
              partial(handle_whitelist_requested, deps=deps), on_malformed, publisher)
    subscribe(broker, settings, Topic.BINDING_STORED,
              partial(handle_binding_stored, deps=deps), on_malformed, publisher)
    subscribe(broker, settings, Topic.BINDING_RECHECKED,
              partial(handle_binding_rechecked, deps=deps), on_malformed, publisher)
    app = service_app(broker, settings, __doc__ or "")
    background(app, lambda: refresh_symbols(htx, deps.catalog, settings.symbol_refresh_s))
    app.after_shutdown(htx.aclose)
    return app


def main() -> None:
    run(WhitelistSettings, build)
