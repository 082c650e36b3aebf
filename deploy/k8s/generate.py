"""Writes the Kubernetes manifests in deploy/k8s from one source: this file. `python -m deploy.k8s.generate` after a
change here; tests/deploy/test_k8s_manifests.py fails while the committed YAML differs from what it writes, and
validates that committed YAML (kubernetes-validate, checkov).

The four services are alike but for their identity, their module and whether they call exchanges, so each one's
ServiceAccount, Deployment, PodDisruptionBudget and NetworkPolicy come from one function rather than four copies.
The identities are the bootstrap's Vault roles for the services (SERVICE_ROLES): each pod logs in to Vault as its own
role with its own service-account token (deploy/bootstrap/vault_jwt.py) and to Kafka as its own user.
"""

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from deploy.bootstrap.run import BOOTSTRAP_IDENTITY
from deploy.bootstrap.vault_jwt import VAULT_AUDIENCE
from shared.adapters.vault.layout import SERVICE_ROLES
from shared.contracts.routing import Party
from shared.runtime.config import credentials_dir

K8S_DIR = Path(__file__).resolve().parent
NAMESPACE = "hash7"
PART_OF = {"app.kubernetes.io/part-of": "hash7"}
# A placeholder digest: kustomization.yaml's `images` sets the real one (README: "Kubernetes").
IMAGE_NAME = "hash7-binding"
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
IMAGE = f"{IMAGE_NAME}@{PLACEHOLDER_DIGEST}"
# Dockerfile's APP_UID / APP_GID.
APP_UID = 10001
RUN_DIR = Path("/var/lib/hash7/run")
HEALTH_PORT = 8080
# The projected service-account token the pod logs in to Vault with (HASH7_VAULT_JWT_FILE): audience `vault` only,
# so it is worth nothing to the Kubernetes API; the kubelet replaces it at 80 % of its lifetime (the least allowed).
VAULT_TOKEN_DIR = Path("/var/run/secrets/hash7")
VAULT_TOKEN_FILE = "vault-token"
VAULT_TOKEN_LIFETIME_S = 600
KAFKA_CA_DIR = Path("/etc/hash7/kafka-ca")
VAULT_CA_DIR = Path("/etc/hash7/vault-ca")
CA_FILE = "ca.crt"
# The services that call exchanges: the validator inspects keys, the whitelist reads the symbol lists.
EXCHANGE_CALLERS = frozenset({Party.VALIDATOR, Party.WHITELIST})
# Where Kafka and Vault run (their namespaces and pods' labels) and their ports; kustomize patches can change them.
KAFKA_PEERS = {"namespace": "kafka", "pod_labels": {"app.kubernetes.io/name": "kafka"}, "port": 9093}
VAULT_PEERS = {"namespace": "vault", "pod_labels": {"app.kubernetes.io/name": "vault"}, "port": 8200}
MONITORING_NAMESPACE = "monitoring"
# The exchanges are on the internet, behind addresses that change: any public address, on HTTPS only.
PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]
# The Kafka user of the bootstrap Job, which creates topics (and the ACLs, where the broker has them).
# A service's start can take up to HASH7_START_TIMEOUT_S (150 s): its consumers join their groups one by one.
STARTUP_PERIOD_S = 5
STARTUP_FAILURES = 36
HEADER = "# Written by `python -m deploy.k8s.generate` (deploy/k8s/generate.py): edit that, not this file.\n"

Manifest = dict[str, Any]


def _labels(name: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": name, **PART_OF}


def _metadata(name: str, **extra: Any) -> Manifest:
    return {"name": name, "namespace": NAMESPACE, "labels": _labels(name), **extra}


def _container_security() -> Manifest:
    return {"runAsNonRoot": True, "runAsUser": APP_UID, "runAsGroup": APP_UID, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "privileged": False, "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"}}


def _pod_security() -> Manifest:
    return {"runAsNonRoot": True, "runAsUser": APP_UID, "runAsGroup": APP_UID, "fsGroup": APP_UID,
            "seccompProfile": {"type": "RuntimeDefault"}}


def _ca_volumes() -> tuple[list[Manifest], list[Manifest]]:
    """The CAs that Kafka's and Vault's certificates chain to: ConfigMaps the operator creates (public, no secret)."""
    volumes = [{"name": name, "configMap": {"name": f"hash7-{name}", "items": [{"key": CA_FILE, "path": CA_FILE}]}}
               for name in ("kafka-ca", "vault-ca")]
    mounts = [{"name": "kafka-ca", "mountPath": str(KAFKA_CA_DIR), "readOnly": True},
              {"name": "vault-ca", "mountPath": str(VAULT_CA_DIR), "readOnly": True}]
    return volumes, mounts


def _kafka_credentials(identity: str) -> tuple[Manifest, Manifest]:
    """The identity's Kafka credentials: its own Secret, as the file kafka.json in its credentials folder."""
    volume = {"name": "kafka-credentials", "secret": {"secretName": f"hash7-kafka-{identity}", "defaultMode": 0o440,
                                                       "items": [{"key": "kafka.json", "path": "kafka.json"}]}}
    mount = {"name": "kafka-credentials", "mountPath": str(credentials_dir(RUN_DIR, identity)), "readOnly": True}
    return volume, mount


def _scratch() -> tuple[Manifest, Manifest]:
    # The root filesystem is read-only; Python and the libraries may still want a temporary folder.
    return ({"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}},
            {"name": "tmp", "mountPath": "/tmp"})


def _resources(cpu_request: str, memory: str, cpu_limit: str) -> Manifest:
    return {"requests": {"cpu": cpu_request, "memory": memory},
            "limits": {"cpu": cpu_limit, "memory": memory, "ephemeral-storage": "64Mi"}}


def service_account(name: str) -> Manifest:
    # No API token is mounted from it: the only token a pod gets is the projected one for Vault.
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(name),
            "automountServiceAccountToken": False}


def deployment(party: Party) -> Manifest:
    identity = party.value
    kafka_volume, kafka_mount = _kafka_credentials(identity)
    ca_volumes, ca_mounts = _ca_volumes()
    tmp_volume, tmp_mount = _scratch()
    vault_token_volume = {"name": "vault-token", "projected": {"defaultMode": 0o440, "sources": [
        {"serviceAccountToken": {"audience": VAULT_AUDIENCE, "expirationSeconds": VAULT_TOKEN_LIFETIME_S,
                                 "path": VAULT_TOKEN_FILE}}]}}
    probe = {"port": "health", "scheme": "HTTP"}
    container = {
        "name": identity,
        "image": IMAGE,
        # Pulled by digest, so "Always" only checks the registry still has it: never another image.
        "imagePullPolicy": "Always",
        "command": ["python", "-m", f"services.{identity.replace('-', '_')}"],
        "envFrom": [{"configMapRef": {"name": "hash7-common"}}],
        "env": [{"name": "HASH7_KAFKA_SASL_USERNAME", "value": identity}],
        "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "startupProbe": {"httpGet": {"path": "/livez", **probe}, "periodSeconds": STARTUP_PERIOD_S,
                         "failureThreshold": STARTUP_FAILURES},
        "livenessProbe": {"httpGet": {"path": "/livez", **probe}, "periodSeconds": 10, "timeoutSeconds": 3,
                          "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", **probe}, "periodSeconds": 10, "timeoutSeconds": 3,
                           "failureThreshold": 3},
        "resources": _resources("100m", "512Mi", "1"),
        "securityContext": _container_security(),
        "volumeMounts": [{"name": "vault-token", "mountPath": str(VAULT_TOKEN_DIR), "readOnly": True},
                         kafka_mount, *ca_mounts, tmp_mount],
    }
    pod = {
        "serviceAccountName": identity,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
        # In-flight records finish or are left uncommitted for redelivery (shared/runtime/service.py).
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": [vault_token_volume, kafka_volume, *ca_volumes, tmp_volume],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(identity),
        "spec": {
            # Two instances, so a node drain or a crash leaves one consuming; each topic's partitions cap how many
            # are useful (README: growth).
            "replicas": 2,
            "selector": {"matchLabels": _labels(identity)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": _labels(identity)}, "spec": pod},
        },
    }


def pod_disruption_budget(name: str) -> Manifest:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _metadata(name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _labels(name)}}}


def _peer(peers: dict[str, Any]) -> Manifest:
    return {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": peers["namespace"]}},
                    "podSelector": {"matchLabels": peers["pod_labels"]}}],
            "ports": [{"protocol": "TCP", "port": peers["port"]}]}


def _dns() -> Manifest:
    return {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
                    "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}


def _internet_https() -> Manifest:
    return {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_RANGES}}],
            "ports": [{"protocol": "TCP", "port": 443}]}


def network_policy(name: str, *, calls_exchanges: bool, scraped: bool) -> Manifest:
    """What the pods of `name` may reach (Kafka, Vault, DNS, and the exchanges for those that call them) and who may
    reach them (the monitoring namespace, on the health port only). Everything else is denied by `default-deny`."""
    egress = [_peer(KAFKA_PEERS), _peer(VAULT_PEERS), _dns(), *([_internet_https()] if calls_exchanges else [])]
    ingress = [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING_NAMESPACE}}}],
                "ports": [{"protocol": "TCP", "port": HEALTH_PORT}]}] if scraped else []
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _metadata(name),
            "spec": {"podSelector": {"matchLabels": _labels(name)}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": ingress, "egress": egress}}


def default_deny() -> Manifest:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": NAMESPACE, "labels": PART_OF},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


def namespace() -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": NAMESPACE, "labels": {**PART_OF, "pod-security.kubernetes.io/enforce": "restricted",
                                                       "pod-security.kubernetes.io/enforce-version": "latest"}}}


def common_settings() -> Manifest:
    """The HASH7_* settings every workload shares (shared/runtime/config.py). The addresses are examples to replace
    (README: "Kubernetes"); the secrets are not here: each workload's own are mounted as files."""
    data = {
        "HASH7_KAFKA_BOOTSTRAP_SERVERS": "kafka-bootstrap.kafka.svc:9093",
        "HASH7_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "HASH7_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "HASH7_KAFKA_SSL_CAFILE": str(KAFKA_CA_DIR / CA_FILE),
        "HASH7_VAULT_ADDR": "https://vault.vault.svc:8200",
        "HASH7_VAULT_CACERT": str(VAULT_CA_DIR / CA_FILE),
        "HASH7_VAULT_AUTH_METHOD": "jwt",
        "HASH7_VAULT_JWT_FILE": str(VAULT_TOKEN_DIR / VAULT_TOKEN_FILE),
        "HASH7_HTX_BASE_URL": "https://api.huobi.pro",
        "HASH7_BYBIT_BASE_URL": "https://api.bybit.com",
        "HASH7_OKX_BASE_URL": "https://www.okx.com",
        "HASH7_EGRESS_IPS": '["203.0.113.10", "203.0.113.11"]',
        "HASH7_RUN_DIR": str(RUN_DIR),
        "HASH7_LOG_FORMAT": "json",
        "HASH7_HEALTH_HOST": "0.0.0.0",
        "HASH7_HEALTH_PORT": str(HEALTH_PORT),
    }
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "hash7-common", "namespace": NAMESPACE, "labels": PART_OF}, "data": data}


def bootstrap_job() -> Manifest:
    """The bootstrap (python -m deploy.bootstrap): topics, then Vault, then the jwt auth method for the pods. It needs
    an admin Vault token (the Secret hash7-bootstrap-vault-token, made for this run and revoked after it) and its own
    Kafka user; the cluster's service-account tokens are checked by Vault through the cluster's OIDC discovery."""
    kafka_volume, kafka_mount = _kafka_credentials(BOOTSTRAP_IDENTITY)
    ca_volumes, ca_mounts = _ca_volumes()
    tmp_volume, tmp_mount = _scratch()
    cluster_ca = Path("/etc/hash7/cluster-ca")
    vault_token = Path("/etc/hash7/vault-admin")
    container = {
        "name": "bootstrap",
        "image": IMAGE,
        "imagePullPolicy": "Always",
        # The admin token is read from its file into the environment of this process only (never on a command line).
        "command": ["sh", "-c", f"set -eu; HASH7_VAULT_TOKEN=$(cat {vault_token}/token); export HASH7_VAULT_TOKEN; "
                                "exec python -m deploy.bootstrap"],
        "envFrom": [{"configMapRef": {"name": "hash7-common"}}],
        "env": [
            {"name": "HASH7_KAFKA_SASL_USERNAME", "value": BOOTSTRAP_IDENTITY},
            {"name": "HASH7_BOOTSTRAP_K8S_NAMESPACE", "value": NAMESPACE},
            {"name": "HASH7_BOOTSTRAP_JWT_ISSUER", "value": "https://kubernetes.default.svc.cluster.local"},
            {"name": "HASH7_BOOTSTRAP_JWT_DISCOVERY_URL", "value": "https://kubernetes.default.svc.cluster.local"},
            {"name": "HASH7_BOOTSTRAP_JWT_DISCOVERY_CA_FILE", "value": str(cluster_ca / CA_FILE)},
            # The pods log in with their service-account tokens: no AppRole secret id for anyone to hold.
            {"name": "HASH7_BOOTSTRAP_APPROLE_FILES", "value": "false"},
            # The workloads' Kafka users are the operator's, with their Secrets: the Job applies the ACLs only.
            {"name": "HASH7_BOOTSTRAP_KAFKA_USERS", "value": "false"},
            # Three replicas of every topic (min.insync.replicas 2): one broker may be down without stopping
            # writes or losing an acknowledged record (deploy/bootstrap/kafka_topics.py).
            {"name": "HASH7_KAFKA_REPLICATION_FACTOR", "value": "3"},
        ],
        "resources": _resources("100m", "256Mi", "1"),
        "securityContext": _container_security(),
        "volumeMounts": [kafka_mount, *ca_mounts, tmp_mount,
                         {"name": "vault-admin-token", "mountPath": str(vault_token), "readOnly": True},
                         {"name": "cluster-ca", "mountPath": str(cluster_ca), "readOnly": True}],
    }
    volumes = [kafka_volume, *ca_volumes, tmp_volume,
               {"name": "vault-admin-token", "secret": {"secretName": "hash7-bootstrap-vault-token",
                                                        "defaultMode": 0o440}},
               # Every namespace has this ConfigMap: the CA of the cluster's API server, which serves the discovery.
               {"name": "cluster-ca", "configMap": {"name": "kube-root-ca.crt"}}]
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": _metadata("bootstrap"),
        "spec": {"backoffLimit": 3, "ttlSecondsAfterFinished": 86400, "template": {
            "metadata": {"labels": _labels("bootstrap")},
            "spec": {"serviceAccountName": "bootstrap", "automountServiceAccountToken": False,
                     "enableServiceLinks": False, "restartPolicy": "Never", "securityContext": _pod_security(),
                     "containers": [container], "volumes": volumes}}},
    }


def service_parties() -> list[Party]:
    """The workloads deployed as services: the bootstrap's service roles."""
    return [Party(role) for role in SERVICE_ROLES]


def manifests() -> Iterator[tuple[str, list[Manifest]]]:
    """Each file of deploy/k8s with its objects."""
    yield "namespace.yaml", [namespace()]
    yield "common-settings.yaml", [common_settings()]
    yield "default-deny.yaml", [default_deny()]
    yield "bootstrap.yaml", [service_account("bootstrap"), bootstrap_job(),
                             network_policy("bootstrap", calls_exchanges=False, scraped=False)]
    for party in service_parties():
        yield f"{party.value}.yaml", [service_account(party.value), deployment(party),
                                      pod_disruption_budget(party.value),
                                      network_policy(party.value, calls_exchanges=party in EXCHANGE_CALLERS,
                                                     scraped=True)]


def kustomization(files: list[str]) -> Manifest:
    return {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": files,
            # `kustomize edit set image hash7-binding=<registry>/hash7-binding@sha256:<digest>` fills this in.
            "images": [{"name": IMAGE_NAME, "newName": IMAGE_NAME, "digest": PLACEHOLDER_DIGEST}]}


def rendered() -> dict[str, str]:
    """File name -> text, for every file this writes."""
    texts = {name: HEADER + yaml.safe_dump_all(objects, sort_keys=False) for name, objects in manifests()}
    texts["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization(list(texts)), sort_keys=False)
    return texts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.k8s.generate", description=__doc__)
    parser.parse_args(argv)
    for name, text in rendered().items():
        (K8S_DIR / name).write_text(text)
    print(f"wrote {len(rendered())} files in {K8S_DIR}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
