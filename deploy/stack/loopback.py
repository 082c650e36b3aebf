"""The whole system on free loopback ports, in a run folder of its own, for the benchmark and the fault tests:
Tansu, the persistent (raft) OpenBao, the exchange sandboxes, the bootstrap, then one instance of each service.

Unlike `make run` it never touches the default ports or `.run/`, so it can run beside a `make run`, and its
Vault can be stopped and started again on the same port and data (an outage, not a loss).
"""

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from deploy.bootstrap.run import BootstrapSettings, run_bootstrap
from deploy.sandbox.common.admin_client import SandboxAdmin
from deploy.stack.bao import BaoServer, start_bao
from deploy.stack.processes import ManagedProcess, Supervisor, free_port
from deploy.stack.sandbox import SANDBOXES, start_sandbox
from deploy.stack.services import ServiceProcesses, service_environment
from deploy.stack.tansu import start_tansu
from shared.contracts.exchanges import ExchangeName
from shared.runtime.config import Settings

LOOPBACK = "127.0.0.1"


@dataclass
class LoopbackStack:
    settings: Settings
    root_token: SecretStr
    services: ServiceProcesses
    # The HTX sandbox's admin API (the benchmarks provision HTX keys).
    sandbox: SandboxAdmin
    vault: BaoServer
    vault_port: int
    # The broker and the sandboxes' processes, for resource measurements.
    infrastructure: dict[str, ManagedProcess]

    def processes(self) -> dict[str, ManagedProcess]:
        """Every process of the stack by name: kafka, each <exchange>-sandbox, vault and each service instance."""
        named = dict(self.infrastructure) | {"vault": self.vault.process}
        for package, instances in self.services.processes.items():
            named |= {package if index == 0 else f"{package}-{index}": process
                      for index, process in enumerate(instances)}
        return named

    def stop_vault(self) -> None:
        """Stop the Vault server process (its raft data stays): every Vault call now fails to connect."""
        self.vault.stop()

    def start_vault(self) -> None:
        """Start Vault again on the same port and data; returns once it is unsealed and active."""
        self.vault = start_bao(LOOPBACK, self.vault_port, self.settings.run_dir)

    def vault_outage(self, duration_s: float) -> None:
        self.stop_vault()
        time.sleep(duration_s)
        self.start_vault()


@contextmanager
def loopback_stack(run_dir: Path, service_settings: Mapping[str, str] | None = None) -> Iterator[LoopbackStack]:
    """Start everything; stop it all on exit. service_settings are extra HASH7_* variables for the services."""
    run_dir = run_dir.resolve()
    vault_port, kafka_port = free_port(next_one_too=True), free_port()
    vault = start_bao(LOOPBACK, vault_port, run_dir)
    stack: LoopbackStack | None = None
    try:
        with Supervisor() as infrastructure:
            kafka = infrastructure.adopt(start_tansu(LOOPBACK, kafka_port, run_dir / "logs" / "kafka.log"))
            sandboxes, urls = {}, {}
            for exchange, program in SANDBOXES.items():
                port = free_port()
                process = start_sandbox(exchange, LOOPBACK, port, run_dir / "logs")
                sandboxes[program.name] = infrastructure.adopt(process)
                urls[exchange] = f"http://{LOOPBACK}:{port}"
            settings = Settings(kafka_bootstrap_servers=f"{LOOPBACK}:{kafka_port}", vault_addr=vault.addr,
                                run_dir=run_dir, htx_base_url=urls[ExchangeName.HTX],
                                bybit_base_url=urls[ExchangeName.BYBIT], okx_base_url=urls[ExchangeName.OKX])
            run_bootstrap(BootstrapSettings(**settings.model_dump(), vault_token=vault.root_token))
            environment = service_environment(settings, urls) | dict(service_settings or {})
            services = ServiceProcesses(settings, environment, run_dir / "logs")
            stack = LoopbackStack(settings, vault.root_token, services, SandboxAdmin(urls[ExchangeName.HTX]), vault,
                                  vault_port, {"kafka": kafka} | sandboxes)
            try:
                services.start_all()
                yield stack
            finally:
                services.stop_all()
                stack.sandbox.close()
    finally:
        # By itself: a vault outage may have replaced the process started above.
        (stack.vault if stack is not None else vault).stop()
