"""Pods log in to Vault with their Kubernetes service-account token (deploy/bootstrap/vault_jwt.py), against the
session's real OpenBao: tokens shaped as the kubelet projects them, signed with a key made here whose public half the
bootstrap gives Vault in place of the cluster's."""

import http.server
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hvac import exceptions as hvac_errors
from pydantic import SecretStr

from deploy.bootstrap.progress import BootstrapError, Progress
from deploy.bootstrap.run import BootstrapSettings
from deploy.bootstrap.vault_jwt import JwtAuthConfig, ensure_jwt_auth, service_account_subject
from deploy.bootstrap.vault_setup import ensure_vault
from deploy.stack.bao import start_bao_dev
from deploy.stack.processes import free_port
from shared.adapters.vault.client import VaultClient, VaultDenied, hvac_client
from shared.adapters.vault.layout import JWT_AUTH_MOUNT, SERVICE_ROLES, whitelist_path
from shared.runtime.config import AppRoleCredentials, JwtLogin, VaultConnection, WhitelistSettings, approle_file
from shared.runtime.program import BadSettings, settings_from_environment
from shared.runtime.service import vault_client

pytestmark = pytest.mark.stack

LOOPBACK = "127.0.0.1"
ISSUER = "https://kubernetes.default.svc.cluster.local"
K8S_NAMESPACE = "hash7-test"


@dataclass(frozen=True)
class Cluster:
    """What stands for the cluster: its service-account signing key, and the Vault the bootstrap set up for it."""

    signing_key: rsa.RSAPrivateKey
    config: JwtAuthConfig
    connection: VaultConnection
    root_token: SecretStr
    run_dir: Path

    def token(self, workload: str, *, audience: str = "vault", issuer: str = ISSUER, lifetime_s: int = 600,
              signing_key: rsa.RSAPrivateKey | None = None) -> str:
        """A projected service-account token as the kubelet writes it (claims of Kubernetes' TokenRequest API)."""
        now = int(time.time())
        claims = {
            "iss": issuer, "aud": [audience], "sub": service_account_subject(K8S_NAMESPACE, workload),
            "iat": now, "nbf": now, "exp": now + lifetime_s,
            "kubernetes.io": {"namespace": K8S_NAMESPACE,
                              "serviceaccount": {"name": workload, "uid": secrets.token_hex(8)}},
        }
        return jwt.encode(claims, signing_key or self.signing_key, algorithm="RS256",
                          headers={"kid": "cluster-key"})


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def cluster(vault_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("jwt")
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # Two keys in one file, as a cluster rotating its signing key publishes both.
    pubkeys = directory / "sa-keys.pem"
    retired_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pubkeys.write_bytes(_public_pem(retired_key) + _public_pem(signing_key))
    config = JwtAuthConfig(issuer=ISSUER, k8s_namespace=K8S_NAMESPACE, pubkeys_file=pubkeys)
    connection = VaultConnection(addr=vault_server.addr)
    root_token = SecretStr(vault_server.root_token)
    run_dir = directory / "run"
    ensure_vault(connection, root_token, run_dir, Progress())
    ensure_jwt_auth(connection, root_token, config, Progress())
    yield Cluster(signing_key, config, connection, root_token, run_dir)


def _jwt_login(cluster: Cluster, role: str, token: str) -> list[str]:
    auth = hvac_client(cluster.connection, SecretStr("")).auth.jwt.jwt_login(role=role, jwt=token,
                                                                            path=JWT_AUTH_MOUNT)["auth"]
    return sorted(auth["policies"])


def _approle_policies(cluster: Cluster, role: str) -> list[str]:
    credentials = AppRoleCredentials.from_file(approle_file(cluster.run_dir, role))
    auth = hvac_client(cluster.connection, SecretStr("")).auth.approle.login(
        role_id=credentials.role_id, secret_id=credentials.secret_id.get_secret_value())["auth"]
    return sorted(auth["policies"])


def test_each_workload_logs_in_with_its_own_token_and_gets_exactly_its_approle_policies(cluster):
    for role in SERVICE_ROLES:
        policies = _jwt_login(cluster, role, cluster.token(role))
        assert policies == ["default", role]
        assert policies == _approle_policies(cluster, role)


@pytest.mark.parametrize("refusal", ["another workload's token", "another audience", "expired",
                                     "another issuer", "another signing key", "another namespace"])
def test_a_token_that_is_not_the_workloads_own_is_refused(cluster, refusal):
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = {
        "another workload's token": cluster.token("intake"),
        "another audience": cluster.token("validator", audience="https://kubernetes.default.svc"),
        "expired": cluster.token("validator", lifetime_s=-120),
        "another issuer": cluster.token("validator", issuer="https://another-cluster.example"),
        "another signing key": cluster.token("validator", signing_key=other_key),
        "another namespace": jwt.encode(
            {"iss": ISSUER, "aud": ["vault"], "sub": service_account_subject("default", "validator"),
             "iat": int(time.time()), "exp": int(time.time()) + 600}, cluster.signing_key, algorithm="RS256"),
    }[refusal]
    assert _jwt_login(cluster, "intake", cluster.token("intake")) == ["default", "intake"]
    with pytest.raises(hvac_errors.InvalidRequest):
        _jwt_login(cluster, "validator", token)


def test_a_rerun_changes_nothing(cluster):
    progress = Progress()
    ensure_jwt_auth(cluster.connection, cluster.root_token, cluster.config, progress)
    assert progress.steps and progress.changed == []


async def test_a_service_logs_in_with_the_token_file_it_reads_at_each_login(cluster, tmp_path, monkeypatch):
    token_file = tmp_path / "vault-token"
    token_file.write_text(cluster.token("whitelist", lifetime_s=-120))
    for name, value in {"VAULT_ADDR": cluster.connection.addr, "VAULT_AUTH_METHOD": "jwt",
                        "VAULT_JWT_FILE": str(token_file)}.items():
        monkeypatch.setenv(f"HASH7_{name}", value)
    settings = settings_from_environment(WhitelistSettings)
    whitelist = vault_client(settings)
    with pytest.raises(hvac_errors.InvalidRequest):
        await whitelist.check()
    # The kubelet replaced the token: the same client's next login reads the new one.
    token_file.write_text(cluster.token("whitelist"))
    path = whitelist_path(f"user-{secrets.token_hex(4)}", "binding-1")
    assert await whitelist.write(path, {"pairs": ["btcusdt"]}, cas=0) == 1
    # A token of another workload in the file logs in as that workload, with its policy only.
    token_file.write_text(cluster.token("validator"))
    as_validator = VaultClient(settings.vault_connection(), settings.vault_login("validator"))
    with pytest.raises(VaultDenied):
        await as_validator.write(path, {"pairs": ["ethusdt"]}, cas=1)


def test_the_bootstrap_settings_name_the_key_source_and_issuer(tmp_path, monkeypatch):
    pubkeys = tmp_path / "sa-keys.pem"
    pubkeys.write_bytes(_public_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)))
    assert settings_from_environment(BootstrapSettings).jwt_auth() is None
    monkeypatch.setenv("HASH7_BOOTSTRAP_JWT_PUBKEYS_FILE", str(pubkeys))
    with pytest.raises(BadSettings, match="needs HASH7_BOOTSTRAP_JWT_ISSUER"):
        settings_from_environment(BootstrapSettings)
    monkeypatch.setenv("HASH7_BOOTSTRAP_JWT_ISSUER", ISSUER)
    monkeypatch.setenv("HASH7_BOOTSTRAP_K8S_NAMESPACE", K8S_NAMESPACE)
    assert settings_from_environment(BootstrapSettings).jwt_auth() == JwtAuthConfig(
        issuer=ISSUER, k8s_namespace=K8S_NAMESPACE, pubkeys_file=pubkeys)
    monkeypatch.setenv("HASH7_BOOTSTRAP_JWT_DISCOVERY_URL", ISSUER)
    with pytest.raises(BadSettings, match="not both"):
        settings_from_environment(BootstrapSettings)


def test_a_file_without_a_public_key_is_one_line(cluster, tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("no key here\n")
    with pytest.raises(BootstrapError, match=r"holds no PEM public key$"):
        ensure_jwt_auth(cluster.connection, cluster.root_token,
                        cluster.config.model_copy(update={"pubkeys_file": empty}), Progress())


def test_a_bootstrap_for_pods_alone_mints_no_approle_secret_id(cluster, tmp_path):
    progress = Progress()
    ensure_vault(cluster.connection, cluster.root_token, tmp_path, progress, approle_files=False)
    assert not (tmp_path / "credentials").exists()
    assert not [step for step in progress.steps if step.subject.startswith("approle credentials")]
    assert [step.subject for step in progress.steps if step.subject.startswith("vault approle ")]


async def test_a_missing_token_file_is_one_line_naming_the_setting(cluster, tmp_path):
    missing = tmp_path / "vault-token"
    client = VaultClient(cluster.connection, JwtLogin(role="intake", token_file=missing))
    with pytest.raises(RuntimeError, match=rf"^cannot read the Vault login token {missing} \(HASH7_VAULT_JWT_FILE\): "
                                           r"No such file or directory$"):
        await client.check()


class _DiscoveryHandler(http.server.BaseHTTPRequestHandler):
    """The two documents a Kubernetes API server serves for service-account issuer discovery."""

    documents: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 — the name http.server calls
        body = self.documents.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body or b"{}")

    def log_message(self, *_: object) -> None:
        pass


def test_vault_finds_the_clusters_keys_through_oidc_discovery(tmp_path):
    """The mode the Kubernetes Job uses (HASH7_BOOTSTRAP_JWT_DISCOVERY_URL), on an OpenBao of its own: the jwt mount's
    configuration is Vault-wide."""
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    server = http.server.ThreadingHTTPServer((LOOPBACK, 0), _DiscoveryHandler)
    issuer = f"http://{LOOPBACK}:{server.server_address[1]}"
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    _DiscoveryHandler.documents = {
        "/.well-known/openid-configuration": json.dumps({
            "issuer": issuer, "jwks_uri": f"{issuer}/openid/v1/jwks", "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["RS256"]}).encode(),
        "/openid/v1/jwks": json.dumps({"keys": [jwk | {"kid": "cluster-key", "use": "sig", "alg": "RS256"}]}).encode(),
    }
    threading.Thread(target=server.serve_forever, daemon=True).start()
    root_token = f"test-root-{secrets.token_urlsafe(16)}"
    vault = start_bao_dev(LOOPBACK, free_port(next_one_too=True), tmp_path, root_token)
    try:
        connection = VaultConnection(addr=vault.addr)
        config = JwtAuthConfig(issuer=issuer, k8s_namespace=K8S_NAMESPACE, discovery_url=issuer)
        ensure_jwt_auth(connection, SecretStr(root_token), config, Progress())
        cluster = Cluster(signing_key, config, connection, SecretStr(root_token), tmp_path)
        assert _jwt_login(cluster, "vault-writer", cluster.token("vault-writer", issuer=issuer)) == \
            ["default", "vault-writer"]
        with pytest.raises(hvac_errors.InvalidRequest):
            _jwt_login(cluster, "vault-writer", cluster.token("vault-writer", issuer=issuer,
                                                              signing_key=rsa.generate_private_key(65537, 2048)))
    finally:
        vault.stop()
        server.shutdown()
        server.server_close()
