"""The whole bootstrap: Kafka topics, users and ACLs, then Vault. Idempotent; safe to run on every start of the
stack."""

import argparse
import asyncio
import sys

import structlog
from pydantic import SecretStr

from deploy.bootstrap.errors import StackError
from deploy.bootstrap.kafka_acls import ensure_kafka_security
from deploy.bootstrap.kafka_topics import ensure_topics
from deploy.bootstrap.progress import BootstrapError, Progress
from deploy.bootstrap.vault_files import VaultFiles, read_init_keys
from deploy.bootstrap.vault_setup import ensure_vault
from shared.runtime.config import Settings
from shared.runtime.errors import CredentialsMissing
from shared.runtime.kafka_security import KafkaConnection, kafka_connection
from shared.runtime.logging import configure_logging
from shared.runtime.program import BadSettings, settings_from_environment, version_line

log = structlog.get_logger(__name__)

# Whose Kafka credentials the bootstrap uses when HASH7_KAFKA_SASL_* are unset: the broker's super user, which
# creates the topics, the parties' users and their ACLs.
BOOTSTRAP_IDENTITY = "bootstrap"


class BootstrapSettings(Settings):
    """The common HASH7_* settings, plus what only the bootstrap needs."""

    # HASH7_VAULT_TOKEN, an admin token; unset means the root token the embedded stack saved at first start.
    vault_token: SecretStr | None = None
    topic_replication_factor: int = 1


def admin_token(settings: BootstrapSettings) -> SecretStr:
    if settings.vault_token is not None:
        return settings.vault_token
    files = VaultFiles(settings.run_dir)
    keys = read_init_keys(files)
    if keys is None:
        raise BootstrapError(
            f"no Vault admin token: set HASH7_VAULT_TOKEN, or start the embedded stack (make run) so that "
            f"{files.init_file} exists"
        )
    return keys.root_token


def admin_kafka(settings: BootstrapSettings) -> KafkaConnection:
    try:
        return kafka_connection(settings, BOOTSTRAP_IDENTITY)
    except CredentialsMissing as error:
        raise BootstrapError(str(error)) from None


def run_bootstrap(settings: BootstrapSettings) -> Progress:
    # Resolved first: missing credentials should stop the bootstrap before it changes anything.
    token = admin_token(settings)
    kafka = admin_kafka(settings)
    progress = Progress()
    asyncio.run(ensure_topics(kafka, settings.topic_prefix, settings.topic_replication_factor, progress))
    ensure_kafka_security(kafka, settings, progress)
    ensure_vault(settings.vault_addr, token, settings.run_dir, progress, timeout_s=settings.vault_timeout_s)
    return progress


PROGRAM = "python -m deploy.bootstrap"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__,
                                     epilog="Configuration comes from HASH7_* environment variables.")
    parser.add_argument("--version", action="version", version=version_line(PROGRAM))
    parser.parse_args(argv)
    try:
        settings = settings_from_environment(BootstrapSettings)
    except BadSettings as error:
        print(f"{PROGRAM}: {error}; nothing was bootstrapped", file=sys.stderr)
        return 1
    configure_logging("bootstrap", settings.log_format, settings.log_level)
    try:
        progress = run_bootstrap(settings)
    except StackError as error:
        log.error("bootstrap failed", reason=str(error))
        return 1
    log.info("bootstrap complete", steps=len(progress.steps), changed=len(progress.changed))
    return 0
