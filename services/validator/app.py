"""validator: proves each accepted key against its exchange (permissions, IP binding, expiry, account), with Vault
signing every request: services/validator/handlers.py."""

import asyncio
from functools import partial

from faststream import FastStream

from services.validator.handlers import ValidatorDeps, handle_binding_accepted, handle_recheck_requested, on_malformed
from services.validator.inspection import KeyInspection, inspect_key
from services.validator.pacing import Pacer
from services.validator.verdict import KeyPolicy
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.exchange.registry import ClientOptions, Exchanges
from shared.adapters.vault.client import VaultPort
from shared.contracts.routing import Topic
from shared.runtime.config import ValidatorSettings
from shared.runtime.service import run, service_app, vault_client
from shared.runtime.subscriptions import Messaging, Subscriptions


def build(settings: ValidatorSettings, vault: VaultPort | None = None) -> FastStream:
    exchanges = Exchanges.open(settings.exchange_urls(), ClientOptions(settings.exchange_timeout_s,
                                                                       settings.exchange_retry_budget_s))
    policy = KeyPolicy(tuple(settings.egress_ips), settings.expiry_warning_days)
    vault = vault or vault_client(settings)

    async def inspect(exchange: str, credentials: ExchangeCredentials) -> KeyInspection:
        return await inspect_key(exchanges[exchange], credentials, policy)

    deps = ValidatorDeps(
        vault=vault,
        inspect=inspect,
        exchange_deadline_s=settings.exchange_retry_budget_s,
        pace_recheck=Pacer(settings.health_rechecks_per_s).wait,
        inspection_turns=asyncio.Semaphore(settings.exchange_max_concurrent_inspections),
    )
    messaging = Messaging.of(settings, vault)
    subscriptions = Subscriptions.of(messaging, settings, on_malformed, {
        Topic.BINDING_ACCEPTED: partial(handle_binding_accepted, deps=deps),
        Topic.BINDING_RECHECK_REQUESTED: partial(handle_recheck_requested, deps=deps),
    })
    app = service_app(messaging.broker, subscriptions, settings, __doc__ or "", vault)
    app.after_shutdown(exchanges.aclose)
    return app


def main() -> None:
    run(ValidatorSettings, build)
