"""How every Hash7 Kafka client connects: the one place that turns the HASH7_KAFKA_* settings into what aiokafka,
FastStream and the bootstrap's admin client (kafka-python) take.

Each workload connects as its own Kafka user (one per party of the routing table, `User:<party>`), whose ACLs the
bootstrap derives from the routing table (deploy/bootstrap/kafka_acls.py). Its password comes from
HASH7_KAFKA_SASL_PASSWORD, or else from the workload's own kafka.json (credentials_dir), which the bootstrap writes.
"""

from dataclasses import dataclass
from pathlib import Path
from ssl import SSLContext
from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import BaseModel, SecretStr, ValidationError

from shared.runtime.config import Settings, credentials_dir
from shared.runtime.errors import CredentialsMissing

KAFKA_CREDENTIALS_FILE = "kafka.json"

# Besides its KafkaErrors, aiokafka's SCRAM client lets out a KeyError when the server ends the exchange with an error
# (RFC 5802's "e=", as Tansu does for an unknown user or a wrong password) and a ValueError on a wrong server signature.
SCRAM_REFUSALS = (KeyError, ValueError)


class KafkaUserCredentials(BaseModel):
    """A workload's Kafka user, as its kafka.json holds it (written 0600 by the bootstrap)."""

    username: str
    password: SecretStr


def kafka_credentials_file(run_dir: Path, identity: str) -> Path:
    return credentials_dir(run_dir, identity) / KAFKA_CREDENTIALS_FILE


@dataclass(frozen=True)
class KafkaConnection:
    """Where Kafka is and how to reach it as one identity."""

    bootstrap_servers: str
    security_protocol: str
    ssl_context: SSLContext | None = None
    sasl_mechanism: str | None = None
    credentials: KafkaUserCredentials | None = None

    def client_options(self) -> dict[str, Any]:
        """For aiokafka's producer, consumer and admin client, and kafka-python's KafkaAdminClient (the bootstrap's
        ACLs and users), which name these options alike."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers,
                                   "security_protocol": self.security_protocol}
        if self.ssl_context is not None:
            options["ssl_context"] = self.ssl_context
        if self.credentials is not None:
            options |= {"sasl_mechanism": self.sasl_mechanism,
                        "sasl_plain_username": self.credentials.username,
                        "sasl_plain_password": self.credentials.password.get_secret_value()}
        return options

    def login_refused(self) -> str:
        """What to say when the broker refused this connection's login (one of SCRAM_REFUSALS, with credentials)."""
        username = self.credentials.username if self.credentials else ""
        return f"Kafka at {self.bootstrap_servers} refused Kafka user '{username}' (is its password right?)"

    def faststream_security(self) -> BaseSecurity | None:
        """For KafkaBroker(security=...): FastStream turns it back into the same aiokafka options."""
        tls = self.security_protocol.endswith("SSL")
        if self.credentials is not None:
            scram = SASLScram512 if self.sasl_mechanism == "SCRAM-SHA-512" else SASLScram256
            return scram(self.credentials.username, self.credentials.password.get_secret_value(),
                         ssl_context=self.ssl_context, use_ssl=tls)
        if tls:
            return BaseSecurity(ssl_context=self.ssl_context, use_ssl=True)
        return None


def kafka_connection(settings: Settings, identity: str) -> KafkaConnection:
    """How identity (a party of the routing table, or the bootstrap) reaches the settings' Kafka. Raises
    CredentialsMissing, in one line, when SASL is on and no password can be found for it."""
    protocol = settings.kafka_security_protocol
    ssl_context = None
    if protocol.endswith("SSL"):
        ssl_context = create_ssl_context(cafile=settings.kafka_ssl_cafile, certfile=settings.kafka_ssl_certfile,
                                         keyfile=settings.kafka_ssl_keyfile)
    if not protocol.startswith("SASL_"):
        return KafkaConnection(settings.kafka_bootstrap_servers, protocol, ssl_context)
    return KafkaConnection(settings.kafka_bootstrap_servers, protocol, ssl_context, settings.kafka_sasl_mechanism,
                           _sasl_credentials(settings, identity))


def _sasl_credentials(settings: Settings, identity: str) -> KafkaUserCredentials:
    named = settings.kafka_sasl_username
    if named and settings.kafka_sasl_password:
        return KafkaUserCredentials(username=named, password=settings.kafka_sasl_password)
    path = kafka_credentials_file(settings.run_dir, identity)
    try:
        stored = KafkaUserCredentials.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        raise CredentialsMissing(
            f"no Kafka credentials for '{identity}': set HASH7_KAFKA_SASL_USERNAME and HASH7_KAFKA_SASL_PASSWORD, "
            f"or run the bootstrap so that {path} exists"
        ) from None
    except (OSError, ValidationError) as exc:
        problem = exc.strerror if isinstance(exc, OSError) else "not a JSON object with username and password"
        raise CredentialsMissing(f"cannot read Kafka credentials for '{identity}' from {path}: {problem}") from None
    if named and stored.username != named:
        # A folder mounted for the wrong workload: say so rather than log in as whoever the file names.
        raise CredentialsMissing(f"{path} holds Kafka user '{stored.username}', but HASH7_KAFKA_SASL_USERNAME is "
                                 f"'{named}'")
    return stored
