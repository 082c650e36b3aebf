import json
import os
import subprocess
import sys
import uuid

import hvac
import pytest
from hvac import exceptions as hvac_errors
from pydantic import SecretStr

from deploy.bootstrap.private_files import is_private
from deploy.bootstrap.progress import BootstrapError, Outcome, Progress
from deploy.bootstrap.vault_files import VaultFiles
from deploy.bootstrap.vault_setup import POLICIES_DIR, ensure_vault
from deploy.stack.bao import AUDIT_DEVICE_PATH
from shared.adapters.vault.layout import (
    ACCESS_KEY_INDEX_KEY,
    ALL_ROLES,
    BINDING_SECRET_KEY,
    KV_MOUNT,
    TRANSIT_MOUNT,
    binding_path,
)
from shared.runtime.config import AppRoleCredentials, VaultConnection, approle_file, credentials_dir

pytestmark = pytest.mark.stack


def _logs_in(addr: str, path) -> bool:
    credentials = AppRoleCredentials.model_validate_json(path.read_bytes())
    client = hvac.Client(url=addr, token="")
    try:
        client.auth.approle.login(role_id=credentials.role_id, secret_id=credentials.secret_id.get_secret_value())
    except hvac_errors.InvalidRequest:
        return False
    return True


def test_every_role_has_a_policy_file():
    assert sorted(path.stem for path in POLICIES_DIR.glob("*.hcl")) == sorted(ALL_ROLES)


def test_a_rerun_changes_nothing_and_keeps_working_credentials(bootstrapped_stack):
    settings = bootstrapped_stack.settings
    saved = {role: approle_file(settings.run_dir, role).read_bytes() for role in ALL_ROLES}
    progress = Progress()

    ensure_vault(settings.vault_connection(), SecretStr(bootstrapped_stack.root_token), settings.run_dir, progress)

    assert progress.steps and progress.changed == []
    for role in ALL_ROLES:
        path = approle_file(settings.run_dir, role)
        assert path.read_bytes() == saved[role]
        # One folder per role, owner-only: a deployment hands each workload its folder and nothing else.
        assert path.parent == credentials_dir(settings.run_dir, role) and is_private(path.parent)
        assert is_private(path)
        assert _logs_in(settings.vault_addr, path)


def test_credentials_that_stopped_working_or_that_others_can_read_are_fixed(vault_server, bootstrapped_stack, tmp_path):
    admin_token = SecretStr(vault_server.root_token)
    ensure_vault(VaultConnection(addr=vault_server.addr), admin_token, tmp_path, Progress())
    app_file, whitelist_file = approle_file(tmp_path, "app"), approle_file(tmp_path, "whitelist")
    role_id = AppRoleCredentials.model_validate_json(app_file.read_bytes()).role_id
    app_file.write_text(json.dumps({"role_id": role_id, "secret_id": str(uuid.uuid4())}))
    os.chmod(whitelist_file, 0o644)
    progress = Progress()

    ensure_vault(VaultConnection(addr=vault_server.addr), admin_token, tmp_path, progress)

    changed = {step.subject: (step.outcome, step.detail) for step in progress.changed}
    assert changed == {
        f"approle credentials {app_file}": (Outcome.UPDATED, "the saved credentials no longer logged in"),
        f"approle credentials {whitelist_file}": (Outcome.UPDATED, "permissions narrowed to 0600"),
    }
    assert _logs_in(vault_server.addr, app_file)
    assert is_private(app_file) and is_private(whitelist_file)


def test_kv_writes_must_say_which_version_they_expect(bootstrapped_stack, vault_server):
    root = hvac.Client(url=vault_server.addr, token=vault_server.root_token)

    with pytest.raises(hvac_errors.InvalidRequest, match="check-and-set parameter required"):
        root.secrets.kv.v2.create_or_update_secret(f"cas-probe/{uuid.uuid4()}", {"a": "b"}, mount_point=KV_MOUNT)


def _rerun(stack) -> list[tuple[str, Outcome, str]]:
    """Run the bootstrap again; what it changed."""
    progress = Progress()
    ensure_vault(stack.settings.vault_connection(), SecretStr(stack.root_token), stack.settings.run_dir, progress)
    return [(step.subject, step.outcome, step.detail) for step in progress.changed]


def _read_version(root: hvac.Client, path: str, version: int) -> object:
    """A version's data, None when there is none to read (destroyed: a 404, or data None once soft-deleted)."""
    try:
        return root.secrets.kv.v2.read_secret_version(path, version=version, mount_point=KV_MOUNT,
                                                      raise_on_deleted_version=False)["data"]["data"]
    except hvac_errors.InvalidPath:
        return None


def test_kv_keys_keep_one_version_and_a_reset_to_hvacs_defaults_is_put_back(bootstrapped_stack, vault_server):
    root = hvac.Client(url=vault_server.addr, token=vault_server.root_token)
    assert root.secrets.kv.v2.read_configuration(mount_point=KV_MOUNT)["data"]["max_versions"] == 1
    # What an admin's configure() call does unless told otherwise: back to 10 versions per key.
    root.secrets.kv.v2.configure(cas_required=True, mount_point=KV_MOUNT)

    assert _rerun(bootstrapped_stack) == [
        (f"vault {KV_MOUNT}/ requires check-and-set and keeps 1 version per key", Outcome.UPDATED, ""),
    ]
    configuration = root.secrets.kv.v2.read_configuration(mount_point=KV_MOUNT)["data"]
    assert configuration["max_versions"] == 1 and configuration["cas_required"] is True


def test_binding_history_kept_from_before_is_destroyed_and_a_rerun_then_changes_nothing(
        bootstrapped_stack, vault_server):
    root = hvac.Client(url=vault_server.addr, token=vault_server.root_token)
    kv = root.secrets.kv.v2
    path = binding_path("history-user", uuid.uuid4().hex)
    # History as a store from before the setting holds it (an admin's per-key max_versions keeps it here).
    kv.update_metadata(path, max_versions=5, mount_point=KV_MOUNT)
    for version, secret in enumerate(["secret-A", "secret-B", "secret-C"]):
        kv.create_or_update_secret(path, {"secret_key": secret}, cas=version, mount_point=KV_MOUNT)
    kv.delete_secret_versions(path, versions=[2], mount_point=KV_MOUNT)
    assert _read_version(root, path, 1) == {"secret_key": "secret-A"}

    assert _rerun(bootstrapped_stack) == [
        (f"vault {KV_MOUNT}/bindings/ holds no replaced version", Outcome.UPDATED, "2 replaced versions destroyed"),
    ]
    kv.undelete_secret_versions(path, versions=[1, 2], mount_point=KV_MOUNT)
    assert [_read_version(root, path, version) for version in (1, 2, 3)] == [None, None, {"secret_key": "secret-C"}]
    versions = kv.read_secret_metadata(path, mount_point=KV_MOUNT)["data"]["versions"]
    assert [versions[version]["destroyed"] for version in ("1", "2", "3")] == [True, True, False]
    assert _rerun(bootstrapped_stack) == []
    kv.delete_metadata_and_all_versions(path, mount_point=KV_MOUNT)


def test_transit_keys_are_neither_convergent_nor_exportable(bootstrapped_stack, vault_server):
    root = hvac.Client(url=vault_server.addr, token=vault_server.root_token)
    binding_key = root.secrets.transit.read_key(BINDING_SECRET_KEY, mount_point=TRANSIT_MOUNT)["data"]
    index_key = root.secrets.transit.read_key(ACCESS_KEY_INDEX_KEY, mount_point=TRANSIT_MOUNT)["data"]

    assert binding_key["derived"] is True and binding_key["convergent_encryption"] is False
    assert index_key["derived"] is False
    assert not binding_key["exportable"] and not index_key["exportable"]


def test_the_audit_log_records_requests_with_values_hmacd(bootstrapped_stack, vault_server):
    root = hvac.Client(url=vault_server.addr, token=vault_server.root_token)
    marker = f"audit-marker-{uuid.uuid4()}"
    root.secrets.kv.v2.create_or_update_secret(
        f"audit-probe/{uuid.uuid4()}", {"value": marker}, cas=0, mount_point=KV_MOUNT
    )
    marker_hmac = root.sys.calculate_hash(AUDIT_DEVICE_PATH, marker)["data"]["hash"]

    audit_log = VaultFiles(bootstrapped_stack.run_dir).audit_log.read_text()

    assert marker_hmac in audit_log
    assert marker not in audit_log
    assert vault_server.root_token not in audit_log


def test_a_refused_admin_token_is_explained_without_a_traceback(vault_server, tmp_path):
    with pytest.raises(BootstrapError, match="refused the admin token"):
        ensure_vault(VaultConnection(addr=vault_server.addr), SecretStr("not-a-token"), tmp_path, Progress())


def test_the_bootstrap_command_without_a_token_says_how_to_get_one(tmp_path):
    env = {name: value for name, value in os.environ.items() if not name.startswith("HASH7_")}
    env |= {"HASH7_RUN_DIR": str(tmp_path), "HASH7_LOG_FORMAT": "console"}

    result = subprocess.run(
        [sys.executable, "-m", "deploy.bootstrap"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 1
    assert "HASH7_VAULT_TOKEN" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_each_role_logs_in_to_a_renewable_one_hour_token_with_only_its_policy(bootstrapped_stack):
    settings = bootstrapped_stack.settings
    for role in ALL_ROLES:
        credentials = settings.approle_credentials(role)
        client = hvac.Client(url=settings.vault_addr, token="")
        auth = client.auth.approle.login(
            role_id=credentials.role_id, secret_id=credentials.secret_id.get_secret_value()
        )["auth"]

        assert auth["renewable"] is True
        assert auth["lease_duration"] == 3600
        assert sorted(auth["policies"]) == sorted(["default", role])
