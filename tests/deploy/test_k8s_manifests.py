"""The Kubernetes manifests (deploy/k8s), offline: in sync with their generator, valid against the schemas of a pinned
Kubernetes version (kubernetes-validate, strict), clean under checkov, rendered by kustomize (kubectl's), and
checked for what this project promises: each service only its own identity, its probes, its budget, its network."""

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from deploy.bootstrap.run import BootstrapSettings
from deploy.bootstrap.vault_jwt import VAULT_AUDIENCE, service_account_subject
from deploy.k8s.generate import EXCHANGE_CALLERS, K8S_DIR, NAMESPACE, rendered, service_parties
from shared.adapters.vault.layout import SERVICE_ROLES
from shared.contracts.routing import Party
from shared.runtime.config import ServiceSettings, credentials_dir
from tests.deploy.deployed_settings import load_settings, service_settings

REPO = Path(__file__).resolve().parents[2]
# The Kubernetes versions the manifests are validated for: the oldest minor version upstream still supported when this
# was written (December 2026), and the newest kubernetes-validate knows.
K8S_VERSIONS = ("1.35", kubernetes_validate.latest_version())
TOOLS_BIN = REPO / ".venv-tools" / "bin"
HEALTH_PORT = 8080


def _objects() -> list[dict[str, Any]]:
    return [document for path in sorted(K8S_DIR.glob("*.yaml")) if path.name != "kustomization.yaml"
            for document in yaml.safe_load_all(path.read_text())]


def _named(kind: str) -> dict[str, dict[str, Any]]:
    return {item["metadata"]["name"]: item for item in _objects() if item["kind"] == kind}


def _tool(name: str) -> Path:
    path = TOOLS_BIN / name
    if not path.exists():
        pytest.skip(f"{path} is missing: `make test` creates .venv-tools with the manifests' checkers")
    return path


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.get("matchLabels", {}).items())


def test_the_committed_manifests_are_what_the_generator_writes():
    committed = {path.name: path.read_text() for path in K8S_DIR.glob("*.yaml")}
    assert committed == rendered(), "deploy/k8s is out of date: run `python -m deploy.k8s.generate`"


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_is_valid_for_the_pinned_kubernetes_versions_strictly(version):
    objects = _objects()
    assert {item["kind"] for item in objects} >= {"Namespace", "ConfigMap", "ServiceAccount", "Deployment",
                                                 "PodDisruptionBudget", "NetworkPolicy", "Job"}
    for item in objects:
        kubernetes_validate.validate(item, version, strict=True)
    # Strict means an unknown field fails, as a typo would.
    misspelled = json.loads(json.dumps(_named("Deployment")["intake"]))
    misspelled["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(misspelled, version, strict=True)


def test_checkov_finds_nothing():
    started = time.monotonic()
    completed = subprocess.run(
        [_tool("checkov"), "--directory", str(K8S_DIR), "--framework", "kubernetes", "--skip-download",
         "--output", "json"], capture_output=True, text=True, timeout=300, check=False)
    elapsed_s = time.monotonic() - started
    report = json.loads(completed.stdout)
    failed = [(check["check_id"], check["resource"]) for check in report["results"]["failed_checks"]]
    assert failed == [], completed.stdout[-4000:]
    assert report["summary"]["parsing_errors"] == 0
    # Every object was looked at (a checkov that parsed nothing would pass nothing and fail nothing); it counts a
    # workload's pod template as one more.
    assert report["summary"]["resource_count"] >= len(_objects())
    assert report["summary"]["passed"] > 0
    print(f"checkov took {elapsed_s:.1f} s")


def test_kustomize_renders_every_object_and_sets_the_image_digest(tmp_path):
    digest = "sha256:" + "ab" * 32
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        # kustomize takes only relative paths to a base.
        "resources": [os.path.relpath(K8S_DIR, overlay)],
        "images": [{"name": "hash7-binding", "newName": "registry.example/hash7/hash7-binding", "digest": digest}]}))
    built = subprocess.run([_tool("kubectl"), "kustomize", str(overlay)], capture_output=True, text=True, timeout=120,
                           check=True).stdout
    documents = list(yaml.safe_load_all(built))
    assert sorted((item["kind"], item["metadata"]["name"]) for item in documents) == \
        sorted((item["kind"], item["metadata"]["name"]) for item in _objects())
    images = {container["image"] for item in documents if item["kind"] in ("Deployment", "Job")
              for container in item["spec"]["template"]["spec"]["containers"]}
    assert images == {f"registry.example/hash7/hash7-binding@{digest}"}


def test_the_workloads_are_the_bootstraps_service_roles_each_with_its_own_identity():
    deployments = _named("Deployment")
    assert set(deployments) == set(SERVICE_ROLES)
    settings_fields = ServiceSettings.model_fields
    common = _named("ConfigMap")["hash7-common"]["data"]
    # Every setting the ConfigMap gives is one the services read (a misspelt name would be silently ignored).
    known = {f"HASH7_{name.upper()}" for name in settings_fields}
    assert set(common) <= known
    assert common["HASH7_VAULT_AUTH_METHOD"] == "jwt"
    for name, item in deployments.items():
        pod = item["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert pod["serviceAccountName"] == name
        assert pod["automountServiceAccountToken"] is False
        assert _named("ServiceAccount")[name]["automountServiceAccountToken"] is False
        env = {variable["name"]: variable["value"] for variable in container["env"]}
        assert env == {"HASH7_KAFKA_SASL_USERNAME": name}
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
        # Vault: only the projected token, for audience vault, where HASH7_VAULT_JWT_FILE points.
        (token,) = volumes["vault-token"]["projected"]["sources"]
        assert token["serviceAccountToken"]["audience"] == VAULT_AUDIENCE
        assert f"{mounts['vault-token']}/{token['serviceAccountToken']['path']}" == common["HASH7_VAULT_JWT_FILE"]
        # Kafka: its own Secret, as kafka.json in its own credentials folder; no other secret at all.
        secrets = [volume["secret"]["secretName"] for volume in pod["volumes"] if "secret" in volume]
        assert secrets == [f"hash7-kafka-{name}"]
        assert mounts["kafka-credentials"] == str(credentials_dir(Path(common["HASH7_RUN_DIR"]), name))
        # No AppRole anywhere: no credentials folder of the AppRoles, no role id or secret id setting.
        assert not any("approle" in path for path in mounts.values())
        assert not {"HASH7_VAULT_ROLE_ID", "HASH7_VAULT_SECRET_ID"} & (set(env) | set(common))
        assert container["command"] == ["python", "-m", f"services.{name.replace('-', '_')}"]
        # The Vault role a pod logs in to is bound to this service account (deploy/bootstrap/vault_jwt.py).
        assert service_account_subject(item["metadata"]["namespace"], pod["serviceAccountName"]) == \
            f"system:serviceaccount:{NAMESPACE}:{name}"


def test_every_container_accepts_the_environment_its_manifest_gives_it(tmp_path, monkeypatch):
    common = _named("ConfigMap")["hash7-common"]["data"]

    def environment(workload: dict[str, Any]) -> dict[str, str]:
        (container,) = workload["spec"]["template"]["spec"]["containers"]
        return common | {variable["name"]: variable["value"] for variable in container.get("env", [])}

    for name, deployment in _named("Deployment").items():
        settings = load_settings(service_settings(Party(name)), environment(deployment), tmp_path, monkeypatch)
        assert (settings.kafka_sasl_username, settings.vault_auth_method) == (name, "jwt")
    bootstrap = load_settings(BootstrapSettings, environment(_named("Job")["bootstrap"]), tmp_path, monkeypatch)
    assert isinstance(bootstrap, BootstrapSettings)
    assert (bootstrap.kafka_replication_factor, bootstrap.bootstrap_kafka_users) == (3, False)


def test_the_bootstrap_job_sets_only_settings_the_bootstrap_reads():
    (container,) = _named("Job")["bootstrap"]["spec"]["template"]["spec"]["containers"]
    common = _named("ConfigMap")["hash7-common"]["data"]
    own = {variable["name"] for variable in container["env"]}
    known = {f"HASH7_{name.upper()}" for name in BootstrapSettings.model_fields}
    assert own <= known
    # The admin token is read from its Secret's file, never given on a command line or as a plain variable.
    assert "HASH7_VAULT_TOKEN" not in own | set(common)
    assert "HASH7_VAULT_TOKEN=$(cat /etc/hash7/vault-admin/token)" in container["command"][-1]


def test_every_service_has_its_probes_budget_and_network_policy():
    common = _named("ConfigMap")["hash7-common"]["data"]
    assert (common["HASH7_HEALTH_HOST"], common["HASH7_HEALTH_PORT"]) == ("0.0.0.0", str(HEALTH_PORT))
    budgets = list(_named("PodDisruptionBudget").values())
    policies = list(_named("NetworkPolicy").values())
    for name, item in _named("Deployment").items():
        labels = item["spec"]["template"]["metadata"]["labels"]
        (container,) = item["spec"]["template"]["spec"]["containers"]
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        probes = {kind: (container[kind]["httpGet"]["path"], ports[container[kind]["httpGet"]["port"]])
                  for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
        assert probes == {"startupProbe": ("/livez", HEALTH_PORT), "livenessProbe": ("/livez", HEALTH_PORT),
                          "readinessProbe": ("/readyz", HEALTH_PORT)}
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= ServiceSettings.model_fields[
            "start_timeout_s"].default
        assert container["resources"]["requests"] and container["resources"]["limits"]
        own_budgets = [budget for budget in budgets if _selects(budget["spec"]["selector"], labels)]
        assert [budget["metadata"]["name"] for budget in own_budgets] == [name]
        own = [policy for policy in policies
               if policy["spec"]["podSelector"] and _selects(policy["spec"]["podSelector"], labels)]
        assert [policy["metadata"]["name"] for policy in own] == [name]
        (policy,) = own
        ingress_ports = [port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]]
        assert ingress_ports == [HEALTH_PORT]
        internet = [rule for rule in policy["spec"]["egress"] if any("ipBlock" in peer for peer in rule["to"])]
        assert bool(internet) == (Party(name) in EXCHANGE_CALLERS)
    deny = _named("NetworkPolicy")["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_the_exchange_callers_are_the_services_that_use_the_exchange_adapters():
    """The network lets exactly the services that open the exchange adapters reach the internet."""
    importing = {party for party in service_parties()
                 if any("shared.adapters.exchange.registry" in path.read_text()
                        for path in (REPO / "services" / party.value.replace("-", "_")).glob("*.py"))}
    assert importing == EXCHANGE_CALLERS
