"""vault-writer: stores validated credentials in Vault KV v2, idempotently; rotates and revokes."""

from functools import partial

from faststream import FastStream

from shared.config import VaultWriterSettings
from shared.contracts.events import BindingValidated, RevokeRequested
from shared.contracts.topics import Topic
from shared.kafka import EventPublisher, make_broker, subscribe
from shared.service import run, service_app, vault_client
from shared.vault import VaultPort
from services.vault_writer.handlers import VaultWriterDeps, handle_binding_validated, handle_revoke_requested, on_malformed


def build(settings: VaultWriterSettings, vault: VaultPort | None = None) -> FastStream:
    deps = VaultWriterDeps(vault or vault_client(settings))
    broker = make_broker(settings, settings.service_name)
    publisher = EventPublisher(broker, settings.topic_prefix)
    subscribe(broker, settings, Topic.BINDING_VALIDATED, BindingValidated,
              partial(handle_binding_validated, deps=deps), on_malformed, publisher)
    subscribe(broker, settings, Topic.BINDING_REVOKE_REQUESTED, RevokeRequested,
              partial(handle_revoke_requested, deps=deps), on_malformed, publisher)
    return service_app(broker, settings, __doc__ or "")


def main() -> None:
    run(VaultWriterSettings, build)
