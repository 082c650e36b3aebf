"""The `make run` Vault: raft storage under the run folder, initialised once, unsealed from its init file on
every start, so what was written survives a restart. And the tests' `-dev` Vault keeps its root token to
itself."""

import uuid

import hvac
import pytest

from deploy.bootstrap.private_files import is_private
from deploy.bootstrap.vault_files import VaultFiles
from deploy.stack.bao import start_bao, start_bao_dev
from deploy.stack.processes import ServerStartError, port_is_free
from tests.fixtures.stack import LOOPBACK, free_port

pytestmark = pytest.mark.stack


def test_data_survives_a_restart_and_the_init_file_stays_private(tmp_path):
    port = free_port(next_one_too=True)
    files = VaultFiles(tmp_path)
    path, value = f"restart-probe/{uuid.uuid4()}", str(uuid.uuid4())

    first = start_bao(LOOPBACK, port, tmp_path)
    try:
        root = hvac.Client(url=first.addr, token=first.root_token.get_secret_value())
        # KV v1: a new v2 mount refuses requests for a moment while it "upgrades"; the bootstrap waits that out.
        root.sys.enable_secrets_engine("kv", path="kv", options={"version": "1"})
        root.secrets.kv.v1.create_or_update_secret(path, {"value": value}, mount_point="kv")
    finally:
        first.stop()
    init_file = files.init_file.read_bytes()

    second = start_bao(LOOPBACK, port, tmp_path)
    try:
        root = hvac.Client(url=second.addr, token=second.root_token.get_secret_value())
        stored = root.secrets.kv.v1.read_secret(path, mount_point="kv")
    finally:
        second.stop()

    assert stored["data"] == {"value": value}
    assert files.init_file.read_bytes() == init_file, "a restart must not initialise again"
    assert is_private(files.init_file) and is_private(files.directory)
    assert files.audit_log.exists()
    assert second.root_token.get_secret_value() not in files.server_log.read_text()

    files.init_file.unlink()
    with pytest.raises(ServerStartError, match="cannot be unsealed"):
        start_bao(LOOPBACK, port, tmp_path)
    assert port_is_free(LOOPBACK, port), "a failed start must not leave the server running"


def test_the_dev_server_writes_its_root_token_nowhere(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    root_token = f"dev-root-{uuid.uuid4()}"

    server = start_bao_dev(LOOPBACK, free_port(next_one_too=True), tmp_path, root_token)
    server.stop()

    assert list(home.iterdir()) == [], "bao -dev must not write ~/.vault-token"
    assert root_token not in VaultFiles(tmp_path).server_log.read_text()
