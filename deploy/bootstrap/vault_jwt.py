"""Vault's jwt auth method for workloads on Kubernetes (deploy/k8s): a pod logs in with its projected
service-account token (audience `vault`), to the role named after its workload, whose tokens carry the same policy as
that workload's AppRole (`role_tokens`). Optional: the bootstrap sets it up only when told how to check the tokens.

Vault checks a token's signature against the cluster's service-account signing keys (given as PEM public keys, or
found through the cluster's OIDC discovery document), its issuer, its audience, and its subject, which names the
namespace and the service account: `system:serviceaccount:<namespace>:<workload>`.
"""

import re
from pathlib import Path

import hvac
from hvac import exceptions as hvac_errors
from pydantic import BaseModel, ConfigDict, SecretStr

from deploy.bootstrap.progress import BootstrapError, Outcome, Progress
from deploy.bootstrap.vault_setup import ensure_auth_method, role_tokens, vault_errors_explained
from shared.adapters.vault.client import hvac_client
from shared.adapters.vault.layout import JWT_AUTH_MOUNT, SERVICE_ROLES
from shared.runtime.config import VaultConnection

# The audience of the projected token each pod mounts (deploy/k8s/generate.py): a token minted for Vault only,
# useless against the Kubernetes API or anything else.
VAULT_AUDIENCE = "vault"
PEM_PUBLIC_KEY = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.DOTALL)


class JwtAuthConfig(BaseModel):
    """How Vault checks the workloads' tokens; exactly one of pubkeys_file and discovery_url."""

    model_config = ConfigDict(frozen=True)

    issuer: str
    k8s_namespace: str
    audience: str = VAULT_AUDIENCE
    # PEM public keys (the cluster's service-account signing keys), one or more in one file.
    pubkeys_file: Path | None = None
    # Or the cluster's OIDC issuer URL, whose discovery document names its keys; its CA when not publicly trusted.
    discovery_url: str | None = None
    discovery_ca_file: Path | None = None

    def method_config(self) -> dict[str, object]:
        if self.pubkeys_file is not None:
            return {"jwt_validation_pubkeys": _pem_blocks(self.pubkeys_file), "bound_issuer": self.issuer}
        config: dict[str, object] = {"oidc_discovery_url": self.discovery_url, "bound_issuer": self.issuer}
        if self.discovery_ca_file is not None:
            config["oidc_discovery_ca_pem"] = self.discovery_ca_file.read_text()
        return config


def service_account_subject(k8s_namespace: str, workload: str) -> str:
    """The `sub` claim of a Kubernetes service-account token."""
    return f"system:serviceaccount:{k8s_namespace}:{workload}"


def ensure_jwt_auth(connection: VaultConnection, admin_token: SecretStr, config: JwtAuthConfig,
                    progress: Progress) -> None:
    with vault_errors_explained(connection.addr):
        client = hvac_client(connection, admin_token)
        ensure_auth_method(client, "jwt", JWT_AUTH_MOUNT, progress)
        _ensure(client, f"auth/{JWT_AUTH_MOUNT}/config", config.method_config(),
                f"vault jwt auth config at {JWT_AUTH_MOUNT}/", progress)
        _ensure_roles(client, config, progress)


def _ensure_roles(client: hvac.Client, config: JwtAuthConfig, progress: Progress) -> None:
    # The workloads deployed on Kubernetes: the four services (the clients log in with their AppRoles).
    for role in SERVICE_ROLES:
        wanted = {
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_subject": service_account_subject(config.k8s_namespace, role),
            "bound_audiences": [config.audience],
            **role_tokens(role),
        }
        _ensure(client, f"auth/{JWT_AUTH_MOUNT}/role/{role}", wanted, f"vault jwt role {role}", progress)


def _ensure(client: hvac.Client, path: str, wanted: dict[str, object], subject: str, progress: Progress) -> None:
    try:
        current = client.read(path)
    except hvac_errors.InvalidPath:
        current = None
    current_data = current["data"] if isinstance(current, dict) else None
    if current_data is not None and all(_same(current_data.get(key), value) for key, value in wanted.items()):
        progress.record(subject, Outcome.PRESENT)
        return
    client.write_data(path, data=wanted)
    progress.record(subject, Outcome.CREATED if current_data is None else Outcome.UPDATED)


def _same(current: object, wanted: object) -> bool:
    # Vault answers PEM blocks and strings as it stored them, but may trim their trailing newlines.
    if isinstance(current, list) and isinstance(wanted, list):
        return len(current) == len(wanted) and all(_same(a, b) for a, b in zip(current, wanted, strict=True))
    if isinstance(current, str) and isinstance(wanted, str):
        return current.strip() == wanted.strip()
    return current == wanted


def _pem_blocks(path: Path) -> list[str]:
    """Each PEM public key of the file: Vault takes one per list item (and checks each itself)."""
    blocks = PEM_PUBLIC_KEY.findall(path.read_text())
    if not blocks:
        raise BootstrapError(f"{path} (HASH7_BOOTSTRAP_JWT_PUBKEYS_FILE) holds no PEM public key")
    return blocks
