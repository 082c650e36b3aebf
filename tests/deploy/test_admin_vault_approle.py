"""`hash7-admin rotate-secret-id` (deploy/admin/approle.py) on the session's Vault: the role's credentials file gets a
new secret id, no older one logs in any more, and a client already running takes the new one at its next login."""

import json
from datetime import UTC, datetime, timedelta

import hvac
import pytest
from pydantic import SecretStr

from deploy.bootstrap.private_files import is_private
from deploy.bootstrap.vault_setup import APPROLE_MOUNT, SECRET_ID_TTL_S, logs_in
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.stores import Whitelists
from shared.runtime.config import AppRoleCredentials, approle_file
from tests.clients.hash7_process import hash7_environment, run_hash7

pytestmark = pytest.mark.stack

# A role no test client plays for long: its service, when running, takes the new secret id at its next login.
ROLE = "whitelist"


def revoke_tokens_of(admin: hvac.Client, role: str) -> int:
    """Revoke every token a login to role issued: what makes its holders log in again."""
    revoked = 0
    for accessor in admin.list("auth/token/accessors")["data"]["keys"]:
        try:
            token = admin.auth.token.lookup_accessor(accessor)["data"]
        except hvac.exceptions.InvalidRequest:
            continue  # revoked meanwhile
        if (token.get("meta") or {}).get("role_name") == role:
            admin.auth.token.revoke_accessor(accessor)
            revoked += 1
    return revoked


async def test_a_rotated_secret_id_replaces_every_older_one_and_a_running_client_logs_in_with_it(
        bootstrapped_stack, vault_admin):
    settings = bootstrapped_stack.settings
    path = approle_file(settings.run_dir, ROLE)
    old = AppRoleCredentials.from_file(path)
    # A second secret id lying around (a bootstrap's, say): the hand-off must not leave it valid either.
    stray = vault_admin.auth.approle.generate_secret_id(ROLE, mount_point=APPROLE_MOUNT)["data"]["secret_id"]
    running = VaultClient(settings.vault_connection(), settings.approle_credentials(ROLE))
    await running.check()

    done = run_hash7(["--output", "json", "rotate-secret-id", ROLE],
                     hash7_environment(settings, HASH7_VAULT_TOKEN=bootstrapped_stack.root_token),
                     module="deploy.admin")
    assert done.returncode == 0, done.stderr
    rotation = json.loads(done.stdout)
    new = AppRoleCredentials.from_file(path)
    assert is_private(path)
    assert new.role_id == old.role_id and new.secret_id != old.secret_id
    assert old.secret_id.get_secret_value() not in done.stdout + done.stderr
    assert new.secret_id.get_secret_value() not in done.stdout + done.stderr
    assert rotation["role"] == ROLE and rotation["file"] == str(path) and rotation["destroyed"] >= 2
    expires_at = datetime.fromisoformat(rotation["expires_at"])
    assert abs(expires_at - (datetime.now(UTC) + timedelta(seconds=SECRET_ID_TTL_S))) < timedelta(minutes=5)
    assert vault_admin.auth.approle.list_secret_id_accessors(ROLE, mount_point=APPROLE_MOUNT)["data"]["keys"] == [
        rotation["accessor"]]

    assert not logs_in(settings.vault_connection(), old)
    stray_credentials = AppRoleCredentials(role_id=old.role_id, secret_id=SecretStr(stray))
    assert not logs_in(settings.vault_connection(), stray_credentials)
    assert logs_in(settings.vault_connection(), new)

    # Its token revoked, the running client is refused, logs in again with the file as it is now (with the secret id
    # it read at start, destroyed, it would be denied), and carries on.
    assert revoke_tokens_of(vault_admin, ROLE) >= 1
    assert await Whitelists(running).read("user-approle-rotation", "binding") is None


def test_roles_issue_secret_ids_that_expire(vault_admin, bootstrapped_stack):
    role = vault_admin.auth.approle.read_role(ROLE, mount_point=APPROLE_MOUNT)["data"]
    assert (role["secret_id_ttl"], role["secret_id_num_uses"]) == (SECRET_ID_TTL_S, 0)
