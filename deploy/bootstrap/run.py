"""The whole bootstrap: Kafka topics, users and ACLs, then Vault. Idempotent; safe to run on every start of the
stack."""

import argparse
import asyncio
import sys

import structlog
from pydantic import Field, FilePath, PositiveInt, SecretStr, model_validator

from deploy.bootstrap.errors import StackError
from deploy.bootstrap.kafka_acls import ensure_kafka_security
from deploy.bootstrap.kafka_topics import TopicLayout, ensure_topics
from deploy.bootstrap.progress import BootstrapError, Progress
from deploy.bootstrap.vault_files import VaultFiles, read_init_keys
from deploy.bootstrap.vault_jwt import VAULT_AUDIENCE, JwtAuthConfig, ensure_jwt_auth
from deploy.bootstrap.vault_setup import ensure_vault
from shared.contracts.routing import Topic
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
    # HASH7_KAFKA_REPLICATION_FACTOR: 1 for the embedded stack's one broker; 3 in production (min.insync.replicas
    # is then 2, deploy/bootstrap/kafka_topics.py). Applies to topics the bootstrap creates, not to existing ones.
    kafka_replication_factor: int = Field(1, ge=1)
    # HASH7_KAFKA_PARTITIONS, e.g. '{"binding.requested": 12}': topics to grow past the routing table's count.
    # Growing is done only while the topic is drained (README, "Growing past one machine"); never lowered.
    kafka_partitions: dict[Topic, PositiveInt] = Field(default_factory=dict)
    # Vault's jwt auth method for pods (deploy/bootstrap/vault_jwt.py), set up when one way of checking the
    # service-account tokens is given: the cluster's signing public keys (PEM file) or its OIDC discovery URL.
    bootstrap_jwt_pubkeys_file: FilePath | None = None
    bootstrap_jwt_discovery_url: str | None = None
    bootstrap_jwt_discovery_ca_file: FilePath | None = None
    # The `iss` of the cluster's service-account tokens (`kubectl get --raw /.well-known/openid-configuration`).
    bootstrap_jwt_issuer: str | None = None
    bootstrap_jwt_audience: str = VAULT_AUDIENCE
    # The namespace the services run in: a token binds a role only for its own service account there.
    bootstrap_k8s_namespace: str = "hash7"
    # Off where every workload logs in another way (the Kubernetes Job, deploy/k8s): no AppRole secret id is minted.
    bootstrap_approle_files: bool = True
    # Off where the Kafka users and their passwords are the operator's (the Kubernetes Job: one Secret per workload,
    # deploy/k8s): the bootstrap then applies the ACLs only, and writes no kafka.json.
    bootstrap_kafka_users: bool = True

    @model_validator(mode="after")
    def _one_jwt_key_source(self) -> "BootstrapSettings":
        if self.bootstrap_jwt_pubkeys_file is not None and self.bootstrap_jwt_discovery_url is not None:
            raise ValueError("set HASH7_BOOTSTRAP_JWT_PUBKEYS_FILE or HASH7_BOOTSTRAP_JWT_DISCOVERY_URL, not both")
        key_source = self.bootstrap_jwt_pubkeys_file is not None or self.bootstrap_jwt_discovery_url is not None
        if key_source and not self.bootstrap_jwt_issuer:
            raise ValueError("Vault's jwt auth needs HASH7_BOOTSTRAP_JWT_ISSUER, the issuer of the cluster's tokens")
        return self

    def jwt_auth(self) -> JwtAuthConfig | None:
        """How Vault checks the pods' tokens; None when no key source is set (no jwt auth method then)."""
        if self.bootstrap_jwt_issuer is None or (self.bootstrap_jwt_pubkeys_file is None
                                                 and self.bootstrap_jwt_discovery_url is None):
            return None
        return JwtAuthConfig(issuer=self.bootstrap_jwt_issuer, k8s_namespace=self.bootstrap_k8s_namespace,
                             audience=self.bootstrap_jwt_audience, pubkeys_file=self.bootstrap_jwt_pubkeys_file,
                             discovery_url=self.bootstrap_jwt_discovery_url,
                             discovery_ca_file=self.bootstrap_jwt_discovery_ca_file)

    def topic_layout(self) -> TopicLayout:
        return TopicLayout(self.kafka_replication_factor, self.kafka_partitions, self.kafka_group_suffix)


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
    asyncio.run(ensure_topics(kafka, settings.topic_prefix, settings.topic_layout(), progress))
    ensure_kafka_security(kafka, settings, progress, manage_users=settings.bootstrap_kafka_users)
    ensure_vault(settings.vault_connection(), token, settings.run_dir, progress,
                 approle_files=settings.bootstrap_approle_files)
    jwt_auth = settings.jwt_auth()
    if jwt_auth is not None:
        ensure_jwt_auth(settings.vault_connection(), token, jwt_auth, progress)
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
