"""`hash7-admin`'s own identity: the `ops` AppRole (deploy/vault/policies/ops.hcl). It signs the audit events of
what the tool does (the routing table has ops produce `audit`), verifies what it reads, and finds the bindings an
emergency revocation ends; nothing else. Its credentials are found as every client's are
(shared.runtime.config.Settings.approle_credentials)."""

from deploy.admin import PROGRAM
from shared.adapters.vault.client import VaultClient
from shared.clients.console import load_program_settings
from shared.contracts.routing import Party
from shared.runtime.config import Settings
from shared.runtime.errors import CredentialsMissing
from shared.runtime.producer import KafkaPublisher
from shared.runtime.provenance import EventSigner


def load_settings() -> Settings:
    return load_program_settings(Settings, PROGRAM, Party.OPS)


def ops_vault(settings: Settings) -> VaultClient:
    try:
        credentials = settings.approle_credentials(Party.OPS.value)
    except RuntimeError as exc:
        raise CredentialsMissing(str(exc)) from None
    return VaultClient(settings.vault_connection(), credentials)


def ops_publisher(settings: Settings, vault: VaultClient) -> KafkaPublisher:
    """Publishes as ops: its audit events signed with the ops key. Close it."""
    return KafkaPublisher(settings, PROGRAM, EventSigner(vault, Party.OPS))
