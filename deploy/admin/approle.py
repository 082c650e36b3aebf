"""`hash7-admin rotate-secret-id ROLE`: a new AppRole secret id for a role, handed off so that none of its older
secret ids stays valid. Secret ids expire (deploy/bootstrap/vault_setup.py SECRET_ID_TTL_S); this replaces one
before. The services read their credentials file again at each login (shared/adapters/vault/client.py), so the
running ones keep their tokens and take the new secret id at their next login, without a restart."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import click
from pydantic import SecretStr

from deploy.admin import admin_vault, cli
from deploy.admin.identity import load_settings
from deploy.bootstrap.vault_setup import APPROLE_MOUNT, logs_in, write_credentials
from shared.adapters.vault.layout import ALL_ROLES
from shared.clients.console import JSON, output_format, print_json_line, stdout
from shared.runtime.config import AppRoleCredentials, approle_file


@dataclass(frozen=True)
class SecretIdRotation:
    role: str
    file: str
    # The new secret id's accessor: names it in Vault (its audit log, a lookup) without being one: no login with it.
    accessor: str
    expires_at: datetime | None
    destroyed: int


@cli.command("rotate-secret-id")
@click.argument("role", type=click.Choice(ALL_ROLES))
def rotate_secret_id(role: str) -> None:
    """Give ROLE a new secret id in its credentials file (<run dir>/credentials/ROLE/approle.json, 0600, replaced
    atomically), then destroy every other secret id of ROLE, once the new one has logged in."""
    settings = load_settings()
    vault = admin_vault()
    role_id = vault.auth.approle.read_role_id(role, mount_point=APPROLE_MOUNT)["data"]["role_id"]
    minted = vault.auth.approle.generate_secret_id(role, mount_point=APPROLE_MOUNT)["data"]
    accessor = minted["secret_id_accessor"]
    credentials = AppRoleCredentials(role_id=role_id, secret_id=SecretStr(minted["secret_id"]))
    if not logs_in(settings.vault_connection(), credentials):
        vault.auth.approle.destroy_secret_id_accessor(role, accessor, mount_point=APPROLE_MOUNT)
        raise click.ClickException(f"the new secret id of {role} did not log in; it is destroyed, nothing changed")
    path = approle_file(settings.run_dir, role)
    write_credentials(path, credentials)
    older = [other for other in vault.auth.approle.list_secret_id_accessors(role, mount_point=APPROLE_MOUNT)
             ["data"]["keys"] if other != accessor]
    for other in older:
        vault.auth.approle.destroy_secret_id_accessor(role, other, mount_point=APPROLE_MOUNT)
    ttl_s = int(minted.get("secret_id_ttl") or 0)
    rotation = SecretIdRotation(role, str(path), accessor,
                                datetime.now(UTC) + timedelta(seconds=ttl_s) if ttl_s else None, len(older))
    if output_format() == JSON:
        print_json_line(rotation)
        return
    expiry = f"expires {rotation.expires_at:%Y-%m-%d %H:%M} UTC" if rotation.expires_at else "never expires"
    stdout.print(f"{role}: new secret id (accessor {accessor}) written to {path}; it {expiry}. "
                 f"{len(older)} older secret id(s) destroyed.", markup=False)
