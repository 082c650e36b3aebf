"""vault-writer: stores validated credentials in Vault KV v2, idempotently; rotates, revokes, and starts
key-health sweeps."""

import asyncio
import time
import uuid
from functools import partial

import structlog
from faststream import FastStream

from services.vault_writer.handlers import (
    VaultWriterDeps,
    handle_binding_validated,
    handle_revoke_requested,
    handle_sweep_requested,
    on_malformed,
)
from shared.adapters.vault.client import VaultPort
from shared.contracts.events import SweepRequested, utc_now
from shared.contracts.routing import Topic
from shared.runtime.config import VaultWriterSettings
from shared.runtime.errors import TransientError
from shared.runtime.publishing import EventPublisher
from shared.runtime.service import background, run, service_app, vault_client
from shared.runtime.subscriptions import Messaging, Subscriptions

log = structlog.get_logger(__name__)


async def request_sweeps(publisher: EventPublisher, interval_s: float) -> None:
    """Ask for a sweep once per interval. Every instance asks with the same sweep id for the same slot of
    time, and only the first to claim it sweeps, so N instances still sweep once; and not while another sweep runs
    (handle_sweep_requested), so a sweep longer than the interval makes the slots in it pass."""
    while True:
        slot = int(time.time() // interval_s)
        sweep = SweepRequested(request_id=f"scheduled-{slot}-{uuid.uuid4().hex[:8]}", sweep_id=f"scheduled-{slot}",
                               requested_at=utc_now())
        try:
            await publisher.publish([sweep])
        except TransientError as exc:
            log.warning("sweep_request_failed", error=str(exc))
        await asyncio.sleep((slot + 1) * interval_s - time.time())


def build(settings: VaultWriterSettings, vault: VaultPort | None = None) -> FastStream:
    vault = vault or vault_client(settings)
    deps = VaultWriterDeps(vault, settings.sweep_page_size, settings.health_rechecks_per_s)
    messaging = Messaging.of(settings, vault)
    subscriptions = Subscriptions.of(messaging, settings, on_malformed, {
        Topic.BINDING_VALIDATED: partial(handle_binding_validated, deps=deps),
        Topic.BINDING_REVOKE_REQUESTED: partial(handle_revoke_requested, deps=deps),
        Topic.HEALTH_SWEEP_REQUESTED: partial(handle_sweep_requested, deps=deps),
    })
    app = service_app(messaging.broker, subscriptions, settings, __doc__ or "", vault)
    if settings.health_sweep_interval_s > 0:
        background(app, lambda: request_sweeps(messaging.publisher, settings.health_sweep_interval_s), "sweep_requests")
    return app


def main() -> None:
    run(VaultWriterSettings, build)
