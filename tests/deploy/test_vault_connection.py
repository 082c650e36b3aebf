"""The Vault connection settings (HASH7_VAULT_CACERT, HASH7_VAULT_CLIENT_CERT/KEY, HASH7_VAULT_NAMESPACE) against a
real OpenBao serving TLS with a CA made here, and OpenBao's namespaces."""

import datetime
import ipaddress
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import hvac
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hvac import exceptions as hvac_errors
from pydantic import SecretStr

from deploy.bootstrap.progress import BootstrapError, Progress
from deploy.bootstrap.vault_setup import ensure_vault
from deploy.stack.bao import start_bao_dev
from deploy.stack.processes import free_port
from shared.adapters.vault.client import VaultClient, VaultUnavailable, hvac_client
from shared.adapters.vault.layout import KV_MOUNT
from shared.runtime.config import AppRoleCredentials, Settings, VaultConnection
from shared.runtime.program import BadSettings, settings_from_environment

LOOPBACK = "127.0.0.1"
PROBE_PATH = "probe"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    client_cert: Path
    client_key: Path
    # Another CA, that signed nothing the server shows.
    stranger_ca: Path


@dataclass(frozen=True)
class TlsVault:
    server_tls_addr: str
    # A listener that also requires a client certificate signed by the CA.
    client_tls_addr: str
    root_token: SecretStr
    files: TlsFiles


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 issuer_key: ec.EllipticCurvePrivateKey, usage: ExtendedKeyUsageOID | None) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.subject if issuer is not None else name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True))
    if usage is ExtendedKeyUsageOID.SERVER_AUTH:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write_certificate_authority(directory: Path) -> tuple[TlsFiles, Path, Path]:
    """A CA, a server certificate for the loopback address and a client certificate, both signed by it."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("hash7 test CA", ca_key, None, ca_key, None)
    pem = serialization.Encoding.PEM
    written: dict[str, bytes] = {"ca.pem": ca.public_bytes(pem)}
    for role, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH), ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        written[f"{role}.pem"] = _certificate(f"hash7 test {role}", key, ca, ca_key, usage).public_bytes(pem)
        written[f"{role}-key.pem"] = _key_pem(key)
    stranger_key = ec.generate_private_key(ec.SECP256R1())
    written["stranger-ca.pem"] = _certificate("stranger CA", stranger_key, None, stranger_key, None).public_bytes(pem)
    for name, content in written.items():
        (directory / name).write_bytes(content)
    files = TlsFiles(directory / "ca.pem", directory / "client.pem", directory / "client-key.pem",
                     directory / "stranger-ca.pem")
    return files, directory / "server.pem", directory / "server-key.pem"


def _tls_listeners(files: TlsFiles, server_cert: Path, server_key: Path, server_port: int, client_port: int) -> str:
    def listener(port: int, extra: str) -> str:
        return f"""
listener "tcp" {{
  address       = "{LOOPBACK}:{port}"
  tls_cert_file = "{server_cert}"
  tls_key_file  = "{server_key}"
{extra}}}
"""
    return listener(server_port, "") + listener(client_port, f"""  tls_require_and_verify_client_cert = true
  tls_client_ca_file = "{files.ca}"
""")


@pytest.fixture(scope="module")
def tls_vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsVault]:
    directory = tmp_path_factory.mktemp("vault-tls")
    files, server_cert, server_key = _write_certificate_authority(directory)
    server_port, client_port = free_port(), free_port()
    root_token = f"test-root-{secrets.token_urlsafe(16)}"
    server = start_bao_dev(LOOPBACK, free_port(next_one_too=True), directory, root_token,
                           extra_config=_tls_listeners(files, server_cert, server_key, server_port, client_port))
    try:
        yield TlsVault(f"https://{LOOPBACK}:{server_port}", f"https://{LOOPBACK}:{client_port}",
                       SecretStr(root_token), files)
    finally:
        server.stop()


def _probe_identity(root: hvac.Client, secret: str) -> AppRoleCredentials:
    """In root's namespace: a KV secret at PROBE_PATH and an AppRole allowed to read only it."""
    if f"{KV_MOUNT}/" not in root.sys.list_mounted_secrets_engines()["data"]:
        root.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "2"})
    if "approle/" not in root.sys.list_auth_methods()["data"]:
        root.sys.enable_auth_method("approle")
    root.secrets.kv.v2.create_or_update_secret(path=PROBE_PATH, secret={"value": secret}, mount_point=KV_MOUNT)
    root.sys.create_or_update_policy("probe", f'path "{KV_MOUNT}/data/{PROBE_PATH}" {{ capabilities = ["read"] }}')
    root.auth.approle.create_or_update_approle("probe", token_policies=["probe"])
    role_id = root.auth.approle.read_role_id("probe")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id("probe")["data"]["secret_id"]
    return AppRoleCredentials(role_id=role_id, secret_id=SecretStr(secret_id))


async def _read_probe(connection: VaultConnection, credentials: AppRoleCredentials) -> str:
    entry = await VaultClient(connection, credentials).read(PROBE_PATH)
    assert entry is not None
    return str(entry.data["value"])


def _settings(monkeypatch: pytest.MonkeyPatch, **variables: str) -> Settings:
    for name, value in variables.items():
        monkeypatch.setenv(f"HASH7_{name}", value)
    return settings_from_environment(Settings)


async def test_a_client_given_the_ca_connects_and_one_without_it_is_refused_in_one_line(tls_vault, monkeypatch):
    trusting = _settings(monkeypatch, VAULT_ADDR=tls_vault.server_tls_addr, VAULT_CACERT=str(tls_vault.files.ca))
    credentials = _probe_identity(hvac_client(trusting.vault_connection(), tls_vault.root_token), "over tls")
    assert await _read_probe(trusting.vault_connection(), credentials) == "over tls"

    for untrusting in (VaultConnection(addr=tls_vault.server_tls_addr),
                       VaultConnection(addr=tls_vault.server_tls_addr, cacert=tls_vault.files.stranger_ca)):
        with pytest.raises(VaultUnavailable) as refused:
            await _read_probe(untrusting, credentials)
        assert str(refused.value) == ("Vault's TLS certificate is not trusted: "
                                      "set HASH7_VAULT_CACERT to the CA bundle that signed it")
        with pytest.raises(BootstrapError, match=r"^Vault at https://\S+: Vault's TLS certificate is not trusted: set "
                                                 r"HASH7_VAULT_CACERT to the CA bundle that signed it$"):
            ensure_vault(untrusting, tls_vault.root_token, Path("unused"), Progress())


async def test_a_client_certificate_is_presented_when_vault_requires_one(tls_vault, monkeypatch):
    with_certificate = _settings(monkeypatch, VAULT_ADDR=tls_vault.client_tls_addr,
                                 VAULT_CACERT=str(tls_vault.files.ca),
                                 VAULT_CLIENT_CERT=str(tls_vault.files.client_cert),
                                 VAULT_CLIENT_KEY=str(tls_vault.files.client_key))
    credentials = _probe_identity(hvac_client(with_certificate.vault_connection(), tls_vault.root_token),
                                  "with a client certificate")
    assert await _read_probe(with_certificate.vault_connection(), credentials) == "with a client certificate"

    without_certificate = VaultConnection(addr=tls_vault.client_tls_addr, cacert=tls_vault.files.ca)
    with pytest.raises(VaultUnavailable) as refused:
        await _read_probe(without_certificate, credentials)
    assert str(refused.value) == ("Vault refused the TLS handshake: if it requires a client certificate, set "
                                  "HASH7_VAULT_CLIENT_CERT and HASH7_VAULT_CLIENT_KEY")


def test_bad_connection_settings_are_one_line_naming_the_variable(tmp_path, monkeypatch):
    with pytest.raises(BadSettings, match=r"^bad configuration: HASH7_VAULT_CACERT: Path does not point to a file$"):
        _settings(monkeypatch, VAULT_CACERT=str(tmp_path / "missing.pem"))
    monkeypatch.delenv("HASH7_VAULT_CACERT")
    certificate = tmp_path / "client.pem"
    certificate.write_text("not read before the settings are whole")
    with pytest.raises(BadSettings, match=r"^bad configuration: HASH7_VAULT_CLIENT_CERT and "
                                          r"HASH7_VAULT_CLIENT_KEY go together: set both or neither$"):
        _settings(monkeypatch, VAULT_CLIENT_CERT=str(certificate))


async def test_a_client_in_a_namespace_logs_in_and_reads_there(tls_vault, monkeypatch):
    root_connection = VaultConnection(addr=tls_vault.server_tls_addr, cacert=tls_vault.files.ca)
    root = hvac_client(root_connection, tls_vault.root_token)
    namespace = f"team-{secrets.token_hex(4)}"
    root.write_data(f"sys/namespaces/{namespace}", data={})
    _probe_identity(root, "in the root namespace")

    in_namespace = _settings(monkeypatch, VAULT_ADDR=tls_vault.server_tls_addr, VAULT_CACERT=str(tls_vault.files.ca),
                             VAULT_NAMESPACE=namespace).vault_connection()
    credentials = _probe_identity(hvac_client(in_namespace, tls_vault.root_token), f"in {namespace}")
    assert await _read_probe(in_namespace, credentials) == f"in {namespace}"
    # The namespace's AppRole does not exist outside it: the header is what placed the login and the read.
    with pytest.raises(hvac_errors.InvalidRequest):
        await _read_probe(root_connection, credentials)
