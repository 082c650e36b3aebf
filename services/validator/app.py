"""validator: proves each accepted key against HTX (permissions, IP binding, expiry, account), with Vault signing
every request: services/validator/handlers.py."""

import asyncio
from functools import partial

from faststream import FastStream

from services.validator.handlers import ValidatorDeps, handle_binding_accepted, handle_recheck_requested, on_malformed
from services.validator.inspection import inspect_key
from services.validator.pacing import Pacer
from services.validator.verdict import KeyPolicy
from shared.adapters.htx.client import HtxClient
from shared.adapters.vault.client import VaultPort
from shared.contracts.routing import Topic
from shared.runtime.config import ValidatorSettings
from shared.runtime.service import run, service_app, vault_client
from shared.runtime.subscriptions import Messaging, Subscriptions


def build(settings: ValidatorSettings, vault: VaultPort | None = None) -> FastStream:
    htx = HtxClient(settings.htx_base_url, timeout_s=settings.htx_timeout_s, retry_budget_s=settings.htx_retry_budget_s)
    policy = KeyPolicy(tuple(settings.egress_ips), settings.expiry_warning_days)
    vault = vault or vault_client(settings)
    deps = ValidatorDeps(
        vault=vault,
        inspect=partial(inspect_key, htx, policy=policy),
        htx_deadline_s=settings.htx_retry_budget_s,
        pace_recheck=Pacer(settings.health_rechecks_per_s).wait,
        inspection_turns=asyncio.Semaphore(settings.htx_max_concurrent_inspections),
    )
    messaging = Messaging.of(settings, vault)
    subscriptions = Subscriptions.of(messaging, settings, on_malformed, {
        Topic.BINDING_ACCEPTED: partial(handle_binding_accepted, deps=deps),
        Topic.BINDING_RECHECK_REQUESTED: partial(handle_recheck_requested, deps=deps),
    })
    app = service_app(messaging.broker, subscriptions, settings, __doc__ or "", vault)
    app.after_shutdown(htx.aclose)
    return app


def main() -> None:
    run(ValidatorSettings, build)
