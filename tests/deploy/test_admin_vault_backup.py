"""`hash7-admin backup` and `restore` (deploy/admin/vault_backup.py) against a persistent OpenBao of the test's own:
the session's Vault is an in-memory dev server, which has no raft storage to snapshot, and a restore must not take
other tests' data away. The binding is stored by the vault-writer's own handler, with the roles' own credentials;
the trading engine reads it and signs with it after the restore, as it did before the loss."""

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import hvac
import pytest
from pydantic import SecretStr

from deploy.bootstrap.private_files import is_private
from deploy.bootstrap.progress import Progress
from deploy.bootstrap.vault_files import VaultFiles
from deploy.bootstrap.vault_setup import ensure_vault
from deploy.stack.bao import READY_TIMEOUT_S, BaoServer, start_bao
from deploy.stack.processes import free_port
from services.vault_writer.handlers import VaultWriterDeps, handle_binding_validated
from shared.adapters.htx.signing import pre_sign_text
from shared.adapters.request_signing import LocalHmacSigner
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.key_import import wrap_for_import
from shared.adapters.vault.layout import (
    BACKUP_ROLE,
    BINDING_SECRET_KEY,
    KV_MOUNT,
    TRANSIT_MOUNT,
    binding_path,
    exchange_key,
)
from shared.clients.trading.credentials import BindingNotFound, BindingStore
from shared.contracts.events import BindingStored, utc_now
from shared.runtime.config import Settings, VaultConnection
from tests.builders import SECRET, validated
from tests.clients.hash7_process import hash7_environment, run_hash7
from tests.fixtures.stack import LOOPBACK

pytestmark = pytest.mark.stack

USER, BINDING = "user-backup", "binding-backup"
HTX_TEXT = pre_sign_text("GET", "api.huobi.pro", "/v1/account/accounts",
                         [("AccessKeyId", "ak-backup"), ("SignatureMethod", "HmacSHA256"),
                          ("SignatureVersion", "2"), ("Timestamp", "2024-01-02T03:04:05")])


@pytest.fixture
def own_vault(tmp_path: Path) -> Iterator[tuple[BaoServer, Settings]]:
    """A persistent OpenBao bootstrapped for Hash7 (Vault only), in its own run folder."""
    run_dir = tmp_path / "run"
    server = start_bao(LOOPBACK, free_port(next_one_too=True), run_dir)
    try:
        ensure_vault(VaultConnection(addr=server.addr), server.root_token, run_dir, Progress())
        yield server, Settings(vault_addr=server.addr, run_dir=run_dir)
    finally:
        server.stop()


def admin(*args: str, settings: Settings) -> tuple[int, str, str]:
    # No HASH7_VAULT_TOKEN: the command finds the embedded stack's root token in the run folder, as `make run` has it.
    done = run_hash7(["--output", "json", *args], hash7_environment(settings), module="deploy.admin")
    return done.returncode, done.stdout, done.stderr


async def store_binding(settings: Settings) -> None:
    """What a binding request ends with: the app seals the wrapped secret, the vault-writer stores it."""
    app = VaultClient(settings.vault_connection(), settings.approle_credentials("app"))
    writer = VaultClient(settings.vault_connection(), settings.approle_credentials("vault-writer"))
    wrapped = wrap_for_import(await app.wrapping_key(), SecretStr(SECRET))
    sealed = await app.seal(BINDING_SECRET_KEY, SecretStr(wrapped), USER)
    event = validated(user_id=USER, binding_id=BINDING, request_id=BINDING).model_copy(
        update={"secret_key_sealed": SecretStr(sealed)})
    outcome = await handle_binding_validated(event, VaultWriterDeps(writer), at=utc_now())
    assert any(isinstance(event, BindingStored) for event in outcome), outcome


async def engine_signs(store: BindingStore) -> bool:
    binding = await store.get(USER, BINDING)
    return await store.signer(binding).sign([HTX_TEXT]) == await LocalHmacSigner(SecretStr(SECRET)).sign([HTX_TEXT])


def lose_binding(root: hvac.Client) -> None:
    """The binding's record and its exchange key are gone, as after a mistaken deletion."""
    root.secrets.kv.v2.delete_metadata_and_all_versions(binding_path(USER, BINDING), mount_point=KV_MOUNT)
    root.secrets.transit.update_key_configuration(exchange_key(USER, BINDING), deletion_allowed=True,
                                                  mount_point=TRANSIT_MOUNT)
    root.secrets.transit.delete_key(exchange_key(USER, BINDING), mount_point=TRANSIT_MOUNT)


def wait_until_active(root: hvac.Client) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if root.sys.read_leader_status()["is_self"]:
                return
        except hvac.exceptions.VaultError:
            pass
        time.sleep(0.2)
    raise AssertionError("Vault did not become active after the restore")


async def test_a_backup_restores_a_lost_binding_that_the_engine_then_signs_with(own_vault, tmp_path):
    server, settings = own_vault
    root = hvac.Client(url=server.addr, token=server.root_token.get_secret_value())
    await store_binding(settings)
    engine = BindingStore(VaultClient(settings.vault_connection(), settings.approle_credentials("trading-engine")),
                          ttl_s=0)
    assert await engine_signs(engine)

    snapshot_file = tmp_path / "backups" / "vault.snap"
    code, out, err = admin("backup", "--to", str(snapshot_file), settings=settings)
    assert code == 0, err
    taken = json.loads(out)
    content = snapshot_file.read_bytes()
    assert is_private(snapshot_file)
    assert taken == {"file": str(snapshot_file), "bytes": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    assert SECRET.encode() not in content  # barrier-encrypted

    code, out, err = admin("backup", "--to", str(snapshot_file), settings=settings)
    assert code == 1 and "--force" in err and len(err.strip().splitlines()) == 1
    assert snapshot_file.read_bytes() == content

    lose_binding(root)
    with pytest.raises(BindingNotFound):
        await engine.get(USER, BINDING)

    code, out, err = admin("restore", "--from", str(snapshot_file), "--yes", settings=settings)
    assert code == 0, err
    assert json.loads(out) == {"file": str(snapshot_file), "bytes": len(content),
                               "sha256": hashlib.sha256(content).hexdigest(), "sealed": False}
    wait_until_active(root)
    # The same engine client: its token was issued after the snapshot, so it logs in again on its own.
    assert await engine_signs(engine)


def test_restore_refuses_what_is_not_a_snapshot_in_one_line(own_vault, tmp_path):
    _, settings = own_vault
    not_a_snapshot = tmp_path / "notes.txt"
    not_a_snapshot.write_text("not a snapshot")
    code, _, err = admin("restore", "--from", str(not_a_snapshot), "--yes", settings=settings)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    code, _, err = admin("restore", "--from", str(tmp_path / "missing.snap"), "--yes", settings=settings)
    assert code == 2 and "does not exist" in err and "Traceback" not in err, err


def test_scheduled_backups_run_as_the_backup_role_and_keep_the_newest(own_vault, tmp_path):
    server, settings = own_vault
    folder = tmp_path / "snapshots"
    # The root token is out of reach: the schedule logs in with the backup role's own credentials file.
    VaultFiles(settings.run_dir).init_file.unlink()

    code, out, err = admin("backup-every", "--dir", str(folder), "--interval", "1", "--keep", "2", "--rounds", "3",
                           settings=settings)

    assert code == 0, err
    taken = [json.loads(line) for line in out.splitlines()]
    assert len(taken) == 3 and len({snapshot["file"] for snapshot in taken}) == 3
    kept = sorted(folder.iterdir())
    assert [str(path) for path in kept] == [snapshot["file"] for snapshot in taken[1:]]
    for path, snapshot in zip(kept, taken[1:], strict=True):
        assert is_private(path) and snapshot["bytes"] > 0
        assert hashlib.sha256(path.read_bytes()).hexdigest() == snapshot["sha256"]
    # Each round's token was revoked once its snapshot was whole: none of the backup role's is left live.
    root = hvac.Client(url=server.addr, token=server.root_token.get_secret_value())
    role_tokens = root.list("auth/token/accessors")["data"]["keys"]
    policies = [root.auth.token.lookup_accessor(accessor)["data"]["policies"] for accessor in role_tokens]
    assert not [found for found in policies if BACKUP_ROLE in found]


def test_a_failed_round_says_why_in_one_line_and_the_schedule_goes_on(own_vault, tmp_path):
    _, settings = own_vault
    unreachable = settings.model_copy(update={"vault_addr": f"http://{LOOPBACK}:{free_port()}"})

    code, out, err = admin("backup-every", "--dir", str(tmp_path / "snapshots"), "--interval", "1", "--rounds", "2",
                           settings=unreachable)

    assert code == 0 and out == ""
    lines = err.splitlines()
    assert len(lines) == 2 and all(line.startswith("hash7-admin: no snapshot this round: ") for line in lines), err
    assert "Traceback" not in err
