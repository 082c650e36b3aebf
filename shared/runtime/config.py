"""All settings, from environment variables (prefix HASH7_), one class per service.

Defaults match the embedded stack started by `make run` (deploy/stack), so a service started by hand on
the same machine needs no configuration at all.
"""

from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.contracts.exchanges import ExchangeName
from shared.contracts.routing import Party, Topic

DEFAULT_RUN_DIR = Path(".run")
# Bindings per page of a key-health sweep (VaultWriterSettings.sweep_page_size), unless set otherwise.
SWEEP_PAGE_SIZE = 500
# A key-health sweep's re-checks per second (KeyHealthSettings.health_rechecks_per_s), unless set otherwise.
HEALTH_RECHECKS_PER_S = 5.0


def credentials_dir(run_dir: Path, identity: str) -> Path:
    """The folder holding one workload's credentials (its Vault AppRole, its Kafka user) and nothing else, so that a
    deployment can hand each workload its own folder only (docker-compose.yml, deploy/k8s)."""
    return run_dir / "credentials" / identity


def approle_file(run_dir: Path, role: str) -> Path:
    """Where a role's AppRole credentials live: written 0600 by the bootstrap (deploy/bootstrap/vault_setup.py) and
    by `hash7-admin rotate-secret-id`, read by Settings.approle_credentials."""
    return credentials_dir(run_dir, role) / "approle.json"


def consumer_group_id(topic_prefix: str, party: Party, group_suffix: str, topic: Topic) -> str:
    """The consumer group a service's instances share for one topic (shared/runtime/subscriptions.py); the bootstrap
    grants it (deploy/bootstrap/kafka_acls.py) and reads its lag before it grows the topic
    (deploy/bootstrap/kafka_topics.py). It starts with the topic prefix: two deployments on one cluster, told apart
    by their prefixes, never share a group."""
    return f"{topic_prefix}{party}{group_suffix}.{topic.value}"


class AppRoleCredentials(BaseModel):
    role_id: str
    secret_id: SecretStr
    # The file these were read from, if any: each login reads it again, so that a secret id rotated by
    # `hash7-admin rotate-secret-id` (deploy/admin/approle.py) is used without a restart.
    source: Path | None = Field(default=None, exclude=True)

    @classmethod
    def from_file(cls, path: Path) -> "AppRoleCredentials":
        return cls.model_validate_json(path.read_bytes()).model_copy(update={"source": path})

    def current(self) -> "AppRoleCredentials":
        """These credentials as their file holds them now (the same, when they came from no file)."""
        return self if self.source is None else self.from_file(self.source)


class JwtLogin(BaseModel):
    """A login with a signed JWT, a Kubernetes projected service-account token, to Vault's jwt auth method as `role`
    (deploy/bootstrap/vault_jwt.py makes one role per workload)."""

    role: str
    token_file: Path

    def token(self) -> str:
        """The token as the file holds it now: the kubelet replaces a projected token well before it expires."""
        try:
            return self.token_file.read_text().strip()
        except OSError as error:
            raise RuntimeError(f"cannot read the Vault login token {self.token_file} "
                               f"(HASH7_VAULT_JWT_FILE): {error.strerror}") from None


VaultLogin = AppRoleCredentials | JwtLogin


class VaultConnection(BaseModel):
    """How to reach Vault: every hvac client is built from one (shared.adapters.vault.client.hvac_client)."""

    model_config = ConfigDict(frozen=True)

    addr: str
    timeout_s: float = 5.0
    # Vault Enterprise / HCP / OpenBao namespace, sent as the X-Vault-Namespace header; None = the root namespace.
    namespace: str | None = None
    # A CA bundle (PEM) that Vault's TLS certificate must chain to; None = the system's trust store.
    cacert: Path | None = None
    # A client certificate and its key, for a Vault listener that requires TLS client authentication.
    client_cert: Path | None = None
    client_key: Path | None = None


def exchange_url_variable(exchange: ExchangeName) -> str:
    """The environment variable of an exchange's REST API (Settings.<exchange>_base_url)."""
    return f"HASH7_{exchange.value.upper()}_BASE_URL"


class Settings(BaseSettings):
    """What every process needs: where Kafka, Vault and the exchanges are, and how to log."""

    model_config = SettingsConfigDict(env_prefix="HASH7_", extra="ignore")

    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    # How clients authenticate to Kafka and protect the connection (shared/runtime/kafka_security.py). The embedded
    # broker (Tansu) knows only PLAINTEXT: no authentication, no ACLs, no TLS.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    # The Kafka user and its password. When the password is unset it comes from the workload's kafka.json
    # (credentials_dir, written by the bootstrap: deploy/bootstrap/kafka_acls.py), whose user must then be the one
    # named here, if one is.
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    # The CA that signed the brokers' certificates (unset: the system's CAs), and a client certificate and its key
    # for brokers that require mutual TLS.
    kafka_ssl_cafile: FilePath | None = None
    kafka_ssl_certfile: FilePath | None = None
    kafka_ssl_keyfile: FilePath | None = None
    topic_prefix: str = "hash7."
    # How long the broker may hold a fetch that finds nothing new. Tansu answers a waiting fetch only when
    # this runs out, not when a record arrives, so every hop waits half of it on average (Kafka's 500 ms
    # default would add a quarter second per hop); polling more often costs a little broker CPU.
    kafka_fetch_max_wait_ms: int = Field(50, ge=1)
    # The same for topics off the binding path (`binding_path` in shared/contracts/routing.py): Kafka's default. Their
    # requests wait a quarter second more on average, and their idle consumers poll ten times less.
    kafka_occasional_fetch_max_wait_ms: int = Field(500, ge=1)
    # Consumer group per subscription = consumer_group_id(prefix, service, this suffix, topic); instances in it
    # share the partitions. Here, not only in ServiceSettings: the bootstrap grants these groups and reads their lag
    # before growing a topic.
    kafka_group_suffix: str = ""
    vault_addr: str = "http://127.0.0.1:8200"
    vault_timeout_s: float = 5.0
    vault_namespace: str | None = None
    vault_cacert: FilePath | None = None
    vault_client_cert: FilePath | None = None
    vault_client_key: FilePath | None = None
    # How a service logs in to Vault as its own identity: `approle` (credentials below) or `jwt`, a Kubernetes
    # projected service-account token with audience `vault`, read from vault_jwt_file at each login (deploy/k8s).
    vault_auth_method: Literal["approle", "jwt"] = "approle"
    vault_jwt_file: Path = Path("/var/run/secrets/hash7/vault-token")
    # AppRole credentials: either given directly, or read from <run_dir>/credentials/<role>/approle.json
    # (approle_file, written 0600 by the bootstrap).
    vault_role_id: str | None = None
    vault_secret_id: SecretStr | None = None
    run_dir: Path = DEFAULT_RUN_DIR
    # Each exchange's REST API (the sandboxes of deploy/sandbox/ by default; real ones: README.md#real-exchanges).
    htx_base_url: str = "http://127.0.0.1:8930"
    bybit_base_url: str = "http://127.0.0.1:8931"
    okx_base_url: str = "http://127.0.0.1:8932"
    # Hash7's egress IPs: every bound key must be linked to all of them and to nothing else.
    egress_ips: list[str] = Field(default_factory=lambda: ["203.0.113.10", "203.0.113.11"])
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _client_certificate_paired(self) -> "Settings":
        if (self.vault_client_cert is None) != (self.vault_client_key is None):
            raise ValueError("HASH7_VAULT_CLIENT_CERT and HASH7_VAULT_CLIENT_KEY go together: set both or neither")
        return self

    def exchange_urls(self) -> dict[ExchangeName, str]:
        """Each exchange's REST API, as exchange_url_variable names its setting."""
        return {ExchangeName.HTX: self.htx_base_url, ExchangeName.BYBIT: self.bybit_base_url,
                ExchangeName.OKX: self.okx_base_url}

    def vault_connection(self) -> VaultConnection:
        return VaultConnection(addr=self.vault_addr, timeout_s=self.vault_timeout_s, namespace=self.vault_namespace,
                               cacert=self.vault_cacert, client_cert=self.vault_client_cert,
                               client_key=self.vault_client_key)

    def vault_login(self, identity: str) -> VaultLogin:
        """How the workload `identity` logs in, as HASH7_VAULT_AUTH_METHOD says."""
        if self.vault_auth_method == "jwt":
            return JwtLogin(role=identity, token_file=self.vault_jwt_file)
        return self.approle_credentials(identity)

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> Self:
        """Settings that the chosen protocol would ignore are a mistake in the deployment, not something to drop
        silently: a SASL password meant for a broker that is then reached in plain text, say."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        protocol = f"HASH7_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ValueError(f"HASH7_KAFKA_SASL_USERNAME/PASSWORD are set but {protocol} does not use SASL")
        if self.kafka_sasl_password is not None and self.kafka_sasl_username is None:
            raise ValueError("HASH7_KAFKA_SASL_PASSWORD needs HASH7_KAFKA_SASL_USERNAME (or set neither: the "
                             "workload's kafka.json holds both)")
        if not tls and (self.kafka_ssl_cafile or self.kafka_ssl_certfile or self.kafka_ssl_keyfile):
            raise ValueError(f"HASH7_KAFKA_SSL_* files are set but {protocol} does not use TLS")
        if (self.kafka_ssl_certfile is None) != (self.kafka_ssl_keyfile is None):
            raise ValueError("HASH7_KAFKA_SSL_CERTFILE and HASH7_KAFKA_SSL_KEYFILE go together (mutual TLS)")
        return self

    def topic(self, topic: Topic) -> str:
        return topic.full_name(self.topic_prefix)

    def approle_credentials(self, role: str) -> AppRoleCredentials:
        if self.vault_role_id and self.vault_secret_id:
            return AppRoleCredentials(role_id=self.vault_role_id, secret_id=self.vault_secret_id)
        path = approle_file(self.run_dir, role)
        try:
            return AppRoleCredentials.from_file(path)
        except FileNotFoundError:
            raise RuntimeError(
                f"no AppRole credentials for '{role}': set HASH7_VAULT_ROLE_ID and HASH7_VAULT_SECRET_ID, "
                f"or run the bootstrap so that {path} exists"
            ) from None


class ServiceSettings(Settings):
    """Settings shared by the four Kafka services."""

    # Records a subscription holds at most between fetching and finishing them: handled concurrently across
    # users (in order for one user), they bound the parallelism and what a crash makes the service repeat.
    kafka_max_records_in_hand: int = Field(100, ge=1)
    # The share of those records one key (one user) may hold, so a flood for one user cannot make the others
    # wait for room (shared/runtime/lanes.py).
    kafka_max_share_per_key: float = Field(0.2, gt=0, le=1)
    # A record larger than this is not parsed: it becomes a dead letter holding its start and its digest.
    kafka_max_record_bytes: int = Field(256 * 1024, ge=1024)
    # How much of a refused record a dead letter keeps (its full size and digest travel in its headers).
    dead_letter_max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Static membership (KIP-345), off when unset: a name unique to this instance and kept across its restarts (a
    # StatefulSet pod's or a compose container's hostname). A restarted instance gets its partitions back without
    # the other instances giving theirs up, if it is back within kafka_session_timeout_ms; two live instances with
    # one name fence each other.
    kafka_instance_id: str | None = Field(None, min_length=1)
    # How long the group waits for a silent instance before handing its partitions to the others: with static
    # membership, raise it past a restart's length (45000, Kafka's own default, covers most), at the price of a
    # crashed instance's partitions waiting as long.
    kafka_session_timeout_ms: int = Field(10_000, ge=6000)
    # Transient trouble (Vault down, broker hiccup) is retried in place, with backoff up to this cap.
    retry_backoff_max_s: float = 10.0
    # An unexpected error on the same message this many times sends it to the dead-letter topic.
    max_attempts_before_dead_letter: int = 5
    # A service whose consumers have not all joined their groups by then stops and exits with
    # EXIT_START_TIMED_OUT (shared.runtime.service), for its supervisor to start it again. Its subscriptions join one
    # after another, 5-30 s each on Tansu (the longer ones after a crash), so a start can take over a minute.
    start_timeout_s: float = Field(150.0, gt=0)
    # Liveness, readiness and metrics over HTTP (shared/runtime/health.py): off when unset; 0 takes any free port
    # (the service logs its URL as `health_listening`).
    health_port: int | None = Field(None, ge=0, le=65535)
    health_host: str = "127.0.0.1"
    # Not ready while a record has been in hand this long: its partition's commits are stuck behind it.
    ready_max_record_age_s: float = Field(300.0, gt=0)

    service_name: ClassVar[Party]


class IntakeSettings(ServiceSettings):
    # Per user, counted by the instance holding the user's partition (services/intake/rules.py AttemptLimiter).
    intake_max_attempts_per_minute: int = Field(10, ge=1)
    # intake's replay memory (services/intake/rules.py RequestHistory): requests kept at most, and for how long.
    # A request older than what it keeps is refused `request_expired`, never done twice. The age matches the
    # binding.requested topic's retention (deploy/bootstrap/kafka_topics.py), so a record redelivered from that
    # topic is never older than the memory.
    intake_replay_memory_max_requests: int = Field(200_000, ge=1)
    intake_replay_memory_max_age_s: float = Field(7 * 24 * 3600.0, gt=0)

    service_name: ClassVar[Party] = Party.INTAKE


class KeyHealthSettings(ServiceSettings):
    """What the two services of a key-health sweep read alike: the vault-writer pages through the bindings at the
    pace the validator re-checks them, so a sweep's re-checks never pile up on binding.recheck-requested."""

    # Sweep re-checks are paced to this rate, so a sweep never crowds out users binding keys (and stays
    # far inside HTX's per-UID limits); a sweep lasts its bindings / this many seconds.
    health_rechecks_per_s: float = Field(HEALTH_RECHECKS_PER_S, gt=0)


class ValidatorSettings(KeyHealthSettings):
    exchange_timeout_s: float = 5.0
    # How long transient exchange trouble is retried before the user is told `exchange_unavailable`.
    exchange_retry_budget_s: float = 20.0
    # Keys inspected at an exchange at once (a new key's turn includes unsealing and importing it); the others wait
    # their turn before their retry budget starts.
    # Without a bound, a restart's burst (every record in hand at once) spent the budget queueing behind itself.
    exchange_max_concurrent_inspections: int = 16
    # A key that expires within this many days gets `key_expiring`.
    expiry_warning_days: int = 14

    service_name: ClassVar[Party] = Party.VALIDATOR


class VaultWriterSettings(KeyHealthSettings):
    # A key-health sweep is requested this often (0 = only when asked, e.g. `hash7 sweep`); it starts only when no
    # other sweep is running (services/vault_writer/handlers.py handle_sweep_requested).
    health_sweep_interval_s: float = 6 * 3600.0
    # A sweep pages through the stored bindings: each page's handling holds this many binding ids and their
    # rechecks, so memory and the work a crash repeats stay bounded however many bindings there are.
    sweep_page_size: int = Field(SWEEP_PAGE_SIZE, ge=1, le=10_000)
    service_name: ClassVar[Party] = Party.VAULT_WRITER

    @model_validator(mode="after")
    def _a_page_waits_its_turn_in_hand(self) -> Self:
        """A page waits for its turn (up to page size / pace) holding its record. The subscription keeps polling
        meanwhile (shared/runtime/lanes.py), so max.poll.interval.ms is not at stake, but a record in hand that
        long holds its partition's commits and, past ready_max_record_age_s, makes the service not ready: the
        wait is kept to half of that, the other half left for the page's own Vault calls and their retries."""
        wait_s, bound_s = self.sweep_page_size / self.health_rechecks_per_s, self.ready_max_record_age_s / 2
        if wait_s > bound_s:
            raise ValueError(f"HASH7_SWEEP_PAGE_SIZE / HASH7_HEALTH_RECHECKS_PER_S is a sweep page's wait in hand "
                             f"({wait_s:g} s) and may be at most half HASH7_READY_MAX_RECORD_AGE_S ({bound_s:g} s): "
                             f"lower the page size or raise the pace")
        return self


class WhitelistSettings(ServiceSettings):
    exchange_timeout_s: float = 5.0
    # The symbol list is refreshed in the background this often, never per request.
    symbol_refresh_s: float = 60.0

    service_name: ClassVar[Party] = Party.WHITELIST


class EngineSettings(Settings):
    """A trading engine's settings (shared.clients.trading)."""

    # How long a binding read from Vault is served from memory: a rotation reaches cached reads within this
    # time. Orders do not depend on it: the order gate reads the binding and its whitelist afresh each time.
    engine_cache_ttl_s: float = Field(30.0, ge=0)
    exchange_timeout_s: float = 5.0
