"""The Kafka security settings (shared/runtime/kafka_security.py): what a bad combination says, where a workload's
password comes from, and real connections: TLS (with and without a client certificate) through a TLS proxy in front
of a real broker, and SASL/SCRAM refused by a broker that requires authentication."""

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import SecretStr

from deploy.bootstrap.kafka_topics import TopicLayout, ensure_topics
from deploy.bootstrap.progress import Progress
from deploy.bootstrap.run import BOOTSTRAP_IDENTITY
from deploy.stack.processes import free_port
from deploy.stack.tansu import start_tansu
from shared.adapters.vault.client import VaultClient
from shared.contracts.routing import Party, Topic
from shared.runtime.broker import make_broker
from shared.runtime.config import Settings, VaultWriterSettings, credentials_dir
from shared.runtime.errors import CredentialsMissing
from shared.runtime.kafka_security import kafka_connection, kafka_credentials_file
from shared.runtime.producer import BrokerUnavailable, KafkaPublisher
from shared.runtime.program import BadSettings, settings_from_environment
from shared.runtime.provenance import EventSigner, EventVerifier
from shared.runtime.publishing import EventPublisher
from shared.runtime.service import EXIT_FAILED
from shared.runtime.subscriptions import subscribe
from tests.builders import stored, validated
from tests.clients.hash7_process import hash7_environment, run_hash7
from tests.deploy.test_service_start import start_intake
from tests.fixtures.stack import LOOPBACK, BootstrappedStack, publisher_as
from tests.kafka_reading import raw_records
from tests.tls import CertificateSet, make_certificates, tls_proxy

# ---- settings ----------------------------------------------------------------------------------------------------


@pytest.fixture
def hash7_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in [name for name in os.environ if name.startswith("HASH7_")]:
        monkeypatch.delenv(name)
    yield monkeypatch


@pytest.mark.parametrize(("variables", "complaint"), [
    ({"KAFKA_SASL_USERNAME": "app", "KAFKA_SASL_PASSWORD": "pw-s3cr3t"},
     "HASH7_KAFKA_SASL_USERNAME/PASSWORD are set but HASH7_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does not use SASL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_PASSWORD": "pw-s3cr3t"},
     "HASH7_KAFKA_SASL_PASSWORD needs HASH7_KAFKA_SASL_USERNAME"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SSL_CAFILE": "{ca}"},
     "HASH7_KAFKA_SSL_* files are set but HASH7_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT does not use TLS"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": "{ca}"},
     "HASH7_KAFKA_SSL_CERTFILE and HASH7_KAFKA_SSL_KEYFILE go together"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CAFILE": "{missing}"}, "HASH7_KAFKA_SSL_CAFILE: Path does not"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL"}, "HASH7_KAFKA_SECURITY_PROTOCOL: Input should be 'PLAINTEXT'"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"},
     "HASH7_KAFKA_SASL_MECHANISM: Input should be 'SCRAM-SHA-512' or 'SCRAM-SHA-256'"),
])
def test_a_bad_combination_is_one_line_naming_the_variables(hash7_env, tmp_path, variables, complaint):
    (tmp_path / "ca.pem").write_text("not read here")
    for name, value in variables.items():
        hash7_env.setenv(f"HASH7_{name}", value.format(ca=tmp_path / "ca.pem", missing=tmp_path / "absent.pem"))

    with pytest.raises(BadSettings) as raised:
        settings_from_environment(Settings)

    message = str(raised.value)
    assert complaint in message
    assert "\n" not in message and "s3cr3t" not in message


def test_plaintext_needs_no_credentials_and_sets_no_security(tmp_path):
    connection = kafka_connection(Settings(run_dir=tmp_path), Party.APP)

    assert connection.client_options() == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert connection.faststream_security() is None


def test_sasl_credentials_from_the_environment_win_over_the_workloads_file(tmp_path):
    _write_kafka_json(tmp_path, Party.APP, "app", "from-file")
    settings = Settings(run_dir=tmp_path, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="app-2",
                        kafka_sasl_password=SecretStr("from-env"))

    options = kafka_connection(settings, Party.APP).client_options()

    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("app-2", "from-env")
    assert options["sasl_mechanism"] == "SCRAM-SHA-512" and options["security_protocol"] == "SASL_PLAINTEXT"


def test_sasl_credentials_come_from_the_identitys_own_file(tmp_path):
    _write_kafka_json(tmp_path, Party.INTAKE, "intake", "intake-password")
    _write_kafka_json(tmp_path, Party.VALIDATOR, "validator", "validator-password")
    settings = Settings(run_dir=tmp_path, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256")

    connection = kafka_connection(settings, Party.INTAKE)

    options = connection.client_options()
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("intake", "intake-password")
    assert options["ssl_context"] is not None  # SASL_SSL: the system's CAs, since no CA file is named
    security = connection.faststream_security()
    assert isinstance(security, SASLScram256) and security.use_ssl


def test_a_named_user_takes_its_password_from_its_file_and_a_file_of_another_user_is_refused(tmp_path):
    # As compose and Kubernetes run the services: the user named in the environment, its password in kafka.json.
    _write_kafka_json(tmp_path, Party.INTAKE, "intake", "intake-password")
    _write_kafka_json(tmp_path, Party.VALIDATOR, "whitelist", "whitelist-password")
    named = Settings(run_dir=tmp_path, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="intake")

    options = kafka_connection(named, Party.INTAKE).client_options()

    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("intake", "intake-password")
    with pytest.raises(CredentialsMissing) as raised:
        kafka_connection(named.model_copy(update={"kafka_sasl_username": "validator"}), Party.VALIDATOR)
    assert str(raised.value) == (f"{kafka_credentials_file(tmp_path, Party.VALIDATOR)} holds Kafka user 'whitelist', "
                                 "but HASH7_KAFKA_SASL_USERNAME is 'validator'")
    assert "password" not in str(raised.value)


def test_a_workload_without_its_file_is_told_where_it_should_be(tmp_path):
    _write_kafka_json(tmp_path, Party.APP, "app", "app-password")  # another workload's file is no answer
    settings = Settings(run_dir=tmp_path, kafka_security_protocol="SASL_PLAINTEXT")

    with pytest.raises(CredentialsMissing) as raised:
        kafka_connection(settings, Party.WHITELIST)

    assert str(raised.value) == (
        "no Kafka credentials for 'whitelist': set HASH7_KAFKA_SASL_USERNAME and HASH7_KAFKA_SASL_PASSWORD, or run "
        f"the bootstrap so that {kafka_credentials_file(tmp_path, 'whitelist')} exists")


def test_a_malformed_file_is_one_line_without_its_content(tmp_path):
    path = kafka_credentials_file(tmp_path, Party.OPS)
    path.parent.mkdir(parents=True)
    path.write_text('{"user": "ops", "secret": "s3cr3t-value"}')
    settings = Settings(run_dir=tmp_path, kafka_security_protocol="SASL_PLAINTEXT")

    with pytest.raises(CredentialsMissing) as raised:
        kafka_connection(settings, Party.OPS)

    assert "not a JSON object with username and password" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def test_the_faststream_security_matches_the_protocol(tmp_path):
    certificates = make_certificates(tmp_path / "tls")
    sasl = Settings(run_dir=tmp_path, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="intake",
                    kafka_sasl_password=SecretStr("pw"))
    tls = Settings(run_dir=tmp_path, kafka_security_protocol="SSL", kafka_ssl_cafile=certificates.cafile)

    sasl_security = kafka_connection(sasl, Party.INTAKE).faststream_security()
    tls_security = kafka_connection(tls, Party.INTAKE).faststream_security()

    assert isinstance(sasl_security, SASLScram512) and not sasl_security.use_ssl
    assert type(tls_security) is BaseSecurity and tls_security.use_ssl and tls_security.ssl_context is not None


def _write_kafka_json(run_dir: Path, party: Party, username: str, password: str) -> None:
    folder = credentials_dir(run_dir, party)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kafka.json").write_text(json.dumps({"username": username, "password": password}))


# ---- TLS against a real broker -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsKafka:
    """A broker reached only through TLS: `address` serves any client trusting the CA, `mutual_address` only
    those that also show a client certificate of the CA."""

    address: str
    mutual_address: str
    certificates: CertificateSet


@pytest.fixture(scope="module")
async def tls_kafka(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[TlsKafka]:
    folder = tmp_path_factory.mktemp("tls-kafka")
    certificates = make_certificates(folder / "certificates")
    # One broker per proxy: a broker advertises one address, and its clients must come back through that proxy.
    proxy_port, mutual_proxy_port, broker_port, mutual_broker_port = (free_port() for _ in range(4))
    brokers = []
    try:
        for name, port, advertised in (("plain", broker_port, proxy_port),
                                       ("mutual", mutual_broker_port, mutual_proxy_port)):
            brokers.append(start_tansu(LOOPBACK, port, folder / f"{name}.log", advertised_port=advertised))
        async with (
            tls_proxy(LOOPBACK, proxy_port, f"{LOOPBACK}:{broker_port}", certificates,
                      require_client_certificate=False),
            tls_proxy(LOOPBACK, mutual_proxy_port, f"{LOOPBACK}:{mutual_broker_port}", certificates,
                      require_client_certificate=True),
        ):
            yield TlsKafka(f"{LOOPBACK}:{proxy_port}", f"{LOOPBACK}:{mutual_proxy_port}", certificates)
    finally:
        for broker in brokers:
            broker.stop()


def _tls_settings(stack: BootstrappedStack, address: str, cafile: Path, **more) -> Settings:
    return Settings(**{**stack.settings.model_dump(), "kafka_bootstrap_servers": address,
                       "topic_prefix": f"tls-{uuid.uuid4().hex[:6]}.", "kafka_security_protocol": "SSL",
                       "kafka_ssl_cafile": cafile, **more})


@pytest.mark.stack
async def test_the_bootstrap_the_app_and_a_service_publish_through_tls(tls_kafka, bootstrapped_stack):
    settings = _tls_settings(bootstrapped_stack, tls_kafka.address, tls_kafka.certificates.cafile)
    await ensure_topics(kafka_connection(settings, BOOTSTRAP_IDENTITY), settings.topic_prefix, TopicLayout(),
                        Progress())
    request_key = f"user-{uuid.uuid4().hex[:8]}"
    vault_writer_vault = VaultClient(settings.vault_connection(),
                                     settings.approle_credentials(Party.VAULT_WRITER))
    app = KafkaPublisher(settings, "tls-test-app", EventSigner(_unused_vault(settings), Party.APP))
    broker = make_broker(settings, Party.VAULT_WRITER)
    try:
        await app.send(Topic.BINDING_REQUESTED, request_key, b"{}", {}, signed=False)
        await broker.start()
        event = stored(user_id=request_key)
        await EventPublisher(broker, settings.topic_prefix, EventSigner(vault_writer_vault, Party.VAULT_WRITER)
                             ).publish([event])
    finally:
        await app.close()
        await broker.stop()

    assert [record.key for record in await raw_records(settings, Topic.BINDING_REQUESTED)] == [request_key.encode()]
    [record] = await raw_records(settings, Topic.BINDING_STORED)
    assert record.key == request_key.encode() and json.loads(record.value)["binding_id"] == event.binding_id


@pytest.mark.stack
async def test_a_service_subscription_verifies_and_handles_a_record_sent_through_tls(tls_kafka, bootstrapped_stack):
    settings = VaultWriterSettings(**_tls_settings(bootstrapped_stack, tls_kafka.address,
                                                   tls_kafka.certificates.cafile).model_dump())
    await ensure_topics(kafka_connection(settings, BOOTSTRAP_IDENTITY), settings.topic_prefix, TopicLayout(),
                        Progress())
    user, handled = f"user-{uuid.uuid4().hex[:8]}", asyncio.Event()

    async def handle(event, *, at):
        assert event.user_id == user
        handled.set()
        return []

    vault = VaultClient(settings.vault_connection(), settings.approle_credentials(Party.VAULT_WRITER))
    broker = make_broker(settings, settings.service_name)
    subscription = subscribe(broker, settings, Topic.BINDING_VALIDATED, handle, lambda error, *, at: [],
                             EventPublisher(broker, settings.topic_prefix, EventSigner(vault, Party.VAULT_WRITER)),
                             EventVerifier(vault))
    validator = publisher_as(settings, Party.VALIDATOR)
    await broker.start()
    try:
        await validator.publish(validated(user_id=user, request_id=f"r-{user}"))
        await asyncio.wait_for(handled.wait(), timeout=60)
    finally:
        await validator.close()
        await subscription.close()
        await broker.stop()


@pytest.mark.stack
async def test_a_broker_whose_certificate_the_ca_did_not_sign_is_refused_in_one_line(tls_kafka, bootstrapped_stack,
                                                                                     tmp_path):
    stranger = make_certificates(tmp_path / "other", ca_name="another CA")
    settings = _tls_settings(bootstrapped_stack, tls_kafka.address, stranger.cafile)
    publisher = KafkaPublisher(settings, "tls-test", EventSigner(_unused_vault(settings), Party.APP))

    with pytest.raises(BrokerUnavailable) as raised:
        await publisher.start()

    assert str(raised.value) == f"Kafka is unreachable at {tls_kafka.address} (KafkaConnectionError)"


@pytest.mark.stack
async def test_mutual_tls_lets_in_only_a_client_with_a_certificate(tls_kafka, bootstrapped_stack):
    certificates = tls_kafka.certificates
    without = _tls_settings(bootstrapped_stack, tls_kafka.mutual_address, certificates.cafile)
    with_certificate = _tls_settings(bootstrapped_stack, tls_kafka.mutual_address, certificates.cafile,
                                     kafka_ssl_certfile=certificates.client.certfile,
                                     kafka_ssl_keyfile=certificates.client.keyfile)

    with pytest.raises(BrokerUnavailable):
        await KafkaPublisher(without, "mtls-test", EventSigner(_unused_vault(without), Party.APP)).start()
    await ensure_topics(kafka_connection(with_certificate, BOOTSTRAP_IDENTITY), with_certificate.topic_prefix,
                        TopicLayout(), Progress())
    publisher = KafkaPublisher(with_certificate, "mtls-test", EventSigner(_unused_vault(with_certificate), Party.APP))
    try:
        await publisher.send(Topic.BINDING_REQUESTED, "u1", b"{}", {}, signed=False)
    finally:
        await publisher.close()

    assert len(await raw_records(with_certificate, Topic.BINDING_REQUESTED)) == 1


def _unused_vault(settings: Settings) -> VaultClient:
    """A Vault client for a publisher that signs nothing (signed=False, or never connected)."""
    return VaultClient(settings.vault_connection(), settings.approle_credentials(Party.APP))


# ---- SASL against a real broker ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authenticating_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A broker that refuses every client that does not log in with SASL/SCRAM (it knows no user)."""
    port = free_port()
    broker = start_tansu(LOOPBACK, port, tmp_path_factory.mktemp("sasl-kafka") / "kafka.log", authentication=True)
    try:
        yield f"{LOOPBACK}:{port}"
    finally:
        broker.stop()


@pytest.mark.stack
def test_a_refused_login_is_one_line_from_the_cli_without_the_password(authenticating_kafka, bootstrapped_stack):
    password = f"wrong-{uuid.uuid4().hex}"
    environment = hash7_environment(bootstrapped_stack.settings, HASH7_KAFKA_BOOTSTRAP_SERVERS=authenticating_kafka,
                                    HASH7_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", HASH7_KAFKA_SASL_USERNAME="app",
                                    HASH7_KAFKA_SASL_PASSWORD=password)

    result = run_hash7(["timeline", "--user", "u1"], environment)

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: Kafka at {authenticating_kafka} refused Kafka user 'app' (is its password right?)"]
    assert password not in result.stdout + result.stderr


@pytest.mark.stack
@pytest.mark.parametrize(("command", "party"), [(["audit"], Party.OPS), (["timeline", "--user", "u1"], Party.APP)])
def test_the_cli_logs_in_with_the_reading_partys_own_file(authenticating_kafka, bootstrapped_stack, tmp_path,
                                                          command, party):
    for each in (Party.APP, Party.OPS):
        _write_kafka_json(tmp_path, each, f"{each.value}-user", f"{each.value}-password")
    environment = hash7_environment(bootstrapped_stack.settings, HASH7_KAFKA_BOOTSTRAP_SERVERS=authenticating_kafka,
                                    HASH7_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", HASH7_RUN_DIR=str(tmp_path))

    result = run_hash7(command, environment)

    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: Kafka at {authenticating_kafka} refused Kafka user '{party.value}-user' (is its password right?)")


@pytest.mark.stack
async def test_a_trading_engine_publishes_as_its_own_kafka_user(authenticating_kafka, bootstrapped_stack, tmp_path):
    _write_kafka_json(tmp_path, Party.TRADING_ENGINE, "engine-7", "engine-password")
    settings = Settings(**{**bootstrapped_stack.settings.model_dump(), "run_dir": tmp_path,
                           "kafka_bootstrap_servers": authenticating_kafka,
                           "kafka_security_protocol": "SASL_PLAINTEXT"})
    vault = VaultClient(settings.vault_connection(),
                        bootstrapped_stack.settings.approle_credentials(Party.TRADING_ENGINE))

    with pytest.raises(BrokerUnavailable) as raised:
        await KafkaPublisher(settings, "engine-test", EventSigner(vault, Party.TRADING_ENGINE)).start()

    assert str(raised.value) == (
        f"Kafka at {authenticating_kafka} refused Kafka user 'engine-7' (is its password right?)")


@pytest.mark.stack
def test_the_bootstrap_whose_login_is_refused_says_so_in_one_line(authenticating_kafka, tmp_path):
    password = f"wrong-{uuid.uuid4().hex}"
    environment = hash7_environment(HASH7_RUN_DIR=str(tmp_path), HASH7_VAULT_TOKEN="unused",
                                    HASH7_KAFKA_BOOTSTRAP_SERVERS=authenticating_kafka,
                                    HASH7_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", HASH7_KAFKA_SASL_USERNAME="admin",
                                    HASH7_KAFKA_SASL_PASSWORD=password, HASH7_LOG_FORMAT="json")

    result = subprocess.run([sys.executable, "-m", "deploy.bootstrap"], capture_output=True, text=True, timeout=60,
                            env=environment)

    assert result.returncode == 1
    [line] = (result.stdout + result.stderr).strip().splitlines()
    assert json.loads(line)["reason"] == (
        f"Kafka at {authenticating_kafka} refused Kafka user 'admin' (is its password right?)")
    assert password not in line


def test_the_bootstrap_without_kafka_credentials_says_so_in_one_line(tmp_path):
    environment = hash7_environment(HASH7_RUN_DIR=str(tmp_path), HASH7_VAULT_TOKEN="unused",
                                    HASH7_KAFKA_SECURITY_PROTOCOL="SASL_SSL", HASH7_LOG_FORMAT="json")

    result = subprocess.run([sys.executable, "-m", "deploy.bootstrap"], capture_output=True, text=True, timeout=60,
                            env=environment)

    assert result.returncode == 1
    [line] = (result.stdout + result.stderr).strip().splitlines()
    assert json.loads(line)["reason"] == (
        "no Kafka credentials for 'bootstrap': set HASH7_KAFKA_SASL_USERNAME and HASH7_KAFKA_SASL_PASSWORD, or run "
        f"the bootstrap so that {kafka_credentials_file(tmp_path, BOOTSTRAP_IDENTITY)} exists")


@pytest.mark.stack
def test_a_service_whose_login_is_refused_says_so_in_one_line_and_leaves_nothing_open(authenticating_kafka,
                                                                                       tmp_path):
    password = f"wrong-{uuid.uuid4().hex}"

    returncode, lines = start_intake(
        HASH7_KAFKA_BOOTSTRAP_SERVERS=authenticating_kafka, HASH7_RUN_DIR=str(tmp_path),
        HASH7_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT", HASH7_KAFKA_SASL_USERNAME="intake",
        HASH7_KAFKA_SASL_PASSWORD=password, HASH7_VAULT_ROLE_ID="never-used", HASH7_VAULT_SECRET_ID="never-used")

    assert returncode == EXIT_FAILED
    [failed] = [line for line in lines if line["level"] in {"error", "critical"}]  # no unclosed producer either
    assert (failed["event"], failed["error_class"], failed["error"]) == (
        "service_failed", "BrokerUnavailable",
        f"Kafka at {authenticating_kafka} refused Kafka user 'intake' (is its password right?)")
    assert password not in json.dumps(lines)


def test_a_service_without_its_kafka_credentials_says_where_they_should_be(tmp_path):
    returncode, lines = start_intake(HASH7_RUN_DIR=str(tmp_path), HASH7_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                                     HASH7_VAULT_ROLE_ID="never-used", HASH7_VAULT_SECRET_ID="never-used")

    assert returncode == EXIT_FAILED
    [line] = lines
    assert (line["event"], line["error_class"]) == ("service_failed", "CredentialsMissing")
    assert line["error"].startswith("no Kafka credentials for 'intake'")
    assert str(kafka_credentials_file(tmp_path, "intake")) in line["error"]
