"""intake: takes binding requests from the app, checks their shape and sealing, and passes them on."""

from datetime import timedelta
from functools import partial

from faststream import FastStream

from services.intake.handlers import IntakeDeps, handle_binding_requested, on_malformed
from services.intake.rules import AttemptLimiter, RequestHistory
from shared.adapters.vault.client import VaultPort
from shared.contracts.routing import Topic
from shared.runtime.config import IntakeSettings
from shared.runtime.service import run, service_app, vault_client
from shared.runtime.subscriptions import Messaging, Subscriptions, follow


def build(settings: IntakeSettings, deps: IntakeDeps | None = None, vault: VaultPort | None = None) -> FastStream:
    deps = deps or IntakeDeps(
        RequestHistory(settings.intake_replay_memory_max_requests,
                       timedelta(seconds=settings.intake_replay_memory_max_age_s)),
        AttemptLimiter(settings.intake_max_attempts_per_minute))
    # Vault only signs intake's events and holds the producers' public keys: intake never sees a secret.
    vault = vault or vault_client(settings)
    messaging = Messaging.of(settings, vault)
    subscriptions = Subscriptions.of(messaging, settings, on_malformed, {
        Topic.BINDING_REQUESTED: partial(handle_binding_requested, deps=deps),
    })
    # Replays are answered from the latest status each request reached, read back from the status topic, from
    # as far back as the memory keeps: older statuses it would drop on reading.
    follow(messaging.broker, settings, Topic.BINDING_STATUS, deps.history.record, messaging.verifier,
           deps.history.max_age)
    return service_app(messaging.broker, subscriptions, settings, __doc__ or "", vault)


def main() -> None:
    run(IntakeSettings, build)
