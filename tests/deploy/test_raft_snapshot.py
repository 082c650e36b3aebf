"""A raft snapshot is the only backup of the exchange keys (shared/adapters/vault/README.md#exchange-keys): Transit
refuses to export or back up an imported HMAC key, even for root. A snapshot taken from one persistent OpenBao and
force-restored into a new one (fresh init: its own unseal key and root token) brings the key back, non-exportable
still and signing as before, once that server is unsealed with the first one's unseal key.

What OpenBao 2.7.2 does, asserted here:
- A plain restore is refused: the snapshot was sealed with other keys. Only `snapshot-force` installs it.
- The forced restore replaces the keyring, so the server seals itself; the new server's own unseal key no longer
  opens it, nor does its root token work: the snapshot's unseal key and root token do.
- The ports may differ from the source's.
Measured once, not repeated here (it costs a 30 s timeout): the snapshot carries the audit device the source's
configuration declared, with its file path, and a server declaring another path never becomes active after the
restore ("modifications to audit devices are not allowed"). deploy/stack/bao.py puts the audit log in the run
folder, so the restore goes into the same run folder.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hvac
import pytest
from hvac import exceptions as hvac_errors
from pydantic import SecretStr

from deploy.bootstrap.vault_files import InitKeys, VaultFiles, read_init_keys
from deploy.stack.bao import READY_TIMEOUT_S, BaoServer, start_bao
from deploy.stack.processes import free_port
from shared.adapters.htx.signing import pre_sign_text
from shared.adapters.vault.layout import TRANSIT_MOUNT, exchange_key
from tests.builders import SECRET
from tests.fixtures.stack import LOOPBACK
from tests.vault_admin import import_secret, signs_as

pytestmark = pytest.mark.stack

KEY = exchange_key("u", "b")
# What a trading engine signs: an HTX Signature Version 2 text (shared/adapters/htx/README.md#signing).
HTX_TEXT = pre_sign_text("GET", "api.huobi.pro", "/v1/account/accounts",
                         [("AccessKeyId", "ak-snapshot"), ("SignatureMethod", "HmacSHA256"),
                          ("SignatureVersion", "2"), ("Timestamp", "2024-01-02T03:04:05")])
KV_MOUNT = "kv"
KV_PROBE_PATH, KV_PROBE = "snapshot-probe", {"value": "written-before-the-snapshot"}


@contextmanager
def _bao(run_dir: Path) -> Iterator[BaoServer]:
    # A new port each time: the restored data does not tie the server to its source's address.
    server = start_bao(LOOPBACK, free_port(next_one_too=True), run_dir)
    try:
        yield server
    finally:
        server.stop()


def _root(server: BaoServer, token: SecretStr) -> hvac.Client:
    return hvac.Client(url=server.addr, token=token.get_secret_value())


def _store_exchange_key(root: hvac.Client) -> None:
    """What the vault-writer does (shared/adapters/vault/client.py import_hmac_key), plus KV data to compare."""
    root.sys.enable_secrets_engine("transit", path=TRANSIT_MOUNT)
    root.sys.enable_secrets_engine("kv", path=KV_MOUNT, options={"version": "1"})
    root.secrets.kv.v1.create_or_update_secret(KV_PROBE_PATH, KV_PROBE, mount_point=KV_MOUNT)
    import_secret(root, KEY, SECRET)


def _read(root: hvac.Client, path: str) -> dict[str, Any]:
    answer = root.read(path)
    assert isinstance(answer, dict)
    return dict(answer["data"])


def _assert_key_stays_inside(root: hvac.Client) -> None:
    """Root cannot read the key's material out, by export or by Transit backup."""
    settings = _read(root, f"{TRANSIT_MOUNT}/keys/{KEY}")
    assert (settings["type"], settings["exportable"], settings["allow_plaintext_backup"]) == ("hmac", False, False)
    with pytest.raises(hvac_errors.InvalidRequest, match="not exportable"):
        root.read(f"{TRANSIT_MOUNT}/export/hmac-key/{KEY}")
    with pytest.raises(hvac_errors.InternalServerError, match="exporting is disallowed"):
        root.read(f"{TRANSIT_MOUNT}/backup/{KEY}")


def _take_snapshot(run_dir: Path) -> tuple[bytes, InitKeys]:
    """A snapshot of a fresh server holding the key, and the keys of that server, which the restore needs."""
    with _bao(run_dir) as source:
        root = _root(source, source.root_token)
        _store_exchange_key(root)
        assert signs_as(root, KEY, SECRET, HTX_TEXT)
        _assert_key_stays_inside(root)
        # hvac streams the answer: it is read while the server is still up.
        answer = root.sys.take_raft_snapshot()
        assert answer.status_code == 200
        snapshot = answer.content
    keys = read_init_keys(VaultFiles(run_dir))
    assert keys is not None
    return snapshot, keys


def _lose_vault(run_dir: Path, saved: Path) -> None:
    """The server's data is gone: what a backup is for. Its init file is kept aside (the snapshot needs its keys)."""
    files = VaultFiles(run_dir)
    shutil.copy(files.init_file, saved)
    shutil.rmtree(files.directory)


def test_a_raft_snapshot_restores_the_exchange_keys_into_a_new_vault(tmp_path: Path) -> None:
    run_dir, saved_init = tmp_path / "run", tmp_path / "init.json.saved"
    snapshot, source_keys = _take_snapshot(run_dir)
    # The snapshot is barrier-encrypted: neither the key nor the KV data is in it in plaintext.
    assert SECRET.encode() not in snapshot and KV_PROBE["value"].encode() not in snapshot
    _lose_vault(run_dir, saved_init)

    with _bao(run_dir) as target:
        fresh_keys = read_init_keys(VaultFiles(run_dir))
        assert fresh_keys is not None and fresh_keys.root_token != source_keys.root_token
        fresh_root = _root(target, fresh_keys.root_token)
        with pytest.raises(hvac_errors.InvalidRequest, match="different set of unseal keys"):
            fresh_root.sys.restore_raft_snapshot(snapshot)
        fresh_root.sys.force_restore_raft_snapshot(snapshot)
        # The restore installs the source's keyring, which the fresh server's unseal key cannot open: it seals.
        target.process.wait_until_ready(fresh_root.sys.is_sealed, "sealed by the restore", READY_TIMEOUT_S)
        with pytest.raises(hvac_errors.InvalidRequest, match="failed to decrypt keys"):
            fresh_root.sys.submit_unseal_key(fresh_keys.unseal_key.get_secret_value())
        assert fresh_root.sys.submit_unseal_key(source_keys.unseal_key.get_secret_value())["sealed"] is False
        target.process.wait_until_ready(lambda: fresh_root.sys.read_leader_status()["is_self"] is True,
                                        "active after the restore", READY_TIMEOUT_S)

        # The token store came back with the rest: only the source's root token is known.
        with pytest.raises(hvac_errors.Forbidden):
            fresh_root.auth.token.lookup_self()
        root = _root(target, source_keys.root_token)
        assert signs_as(root, KEY, SECRET, HTX_TEXT)
        _assert_key_stays_inside(root)
        assert root.secrets.kv.v1.read_secret(KV_PROBE_PATH, mount_point=KV_MOUNT)["data"] == KV_PROBE

    # `make run` unseals from the init file (deploy/stack/bao.py): the saved one goes back in place for good.
    shutil.copy(saved_init, VaultFiles(run_dir).init_file)
    with _bao(run_dir) as restarted:
        assert signs_as(_root(restarted, source_keys.root_token), KEY, SECRET, HTX_TEXT)
