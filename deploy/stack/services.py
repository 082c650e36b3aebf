"""The four services as real processes (`python -m services.<name>`), for the test suite and the benchmark:
started together or one instance at a time, each waited for until its consumers run, killed or stopped
on demand."""

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from deploy.stack.processes import ManagedProcess
from shared.config import Settings

SERVICE_PACKAGES = ("intake", "validator", "vault_writer", "whitelist")
READY_LINE = "FastStream app started successfully"


@dataclass
class ServiceProcesses:
    """The services as child processes, any number of instances each, with their logs in log_dir."""

    settings: Settings
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, list[ManagedProcess]] = field(default_factory=dict)

    def start(self, package: str, instance: int = 0) -> ManagedProcess:
        process = self._launch(package, instance)
        self._wait_started(process)
        return process

    def start_all(self, packages: tuple[str, ...] = SERVICE_PACKAGES) -> None:
        """Launch them together, then wait: consumer-group joins take seconds each, so overlap them."""
        for process in [self._launch(package, 0) for package in packages]:
            self._wait_started(process)

    def _launch(self, package: str, instance: int) -> ManagedProcess:
        log_path = self.log_dir / f"{package}-{instance}-{time.monotonic_ns()}.log"
        process = ManagedProcess(package, [sys.executable, "-m", f"services.{package}"], log_path, env=self.env).start()
        instances = self.processes.setdefault(package, [])
        while len(instances) <= instance:
            instances.append(process)
        instances[instance] = process
        return process

    @staticmethod
    def _wait_started(process: ManagedProcess) -> None:
        process.wait_until_ready(lambda: READY_LINE in _read(process.log_path), "started", timeout_s=90)

    def kill(self, package: str, instance: int = 0) -> None:
        """SIGKILL, as a crash would: nothing in flight gets to finish or commit."""
        self.processes[package][instance].kill()

    def stop_all(self) -> None:
        for instances in self.processes.values():
            for process in instances:
                process.stop()

    def log_text(self) -> str:
        return "\n".join(_read(path) for path in sorted(self.log_dir.glob("*.log")))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def service_environment(settings: Settings, htx_base_url: str) -> dict[str, str]:
    """A service's environment pointed at these servers, logging JSON; every other setting at its default."""
    return dict(os.environ) | {
        "HASH7_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HASH7_TOPIC_PREFIX": settings.topic_prefix,
        "HASH7_VAULT_ADDR": settings.vault_addr,
        "HASH7_RUN_DIR": str(settings.run_dir),
        "HASH7_HTX_BASE_URL": htx_base_url,
        "HASH7_EGRESS_IPS": json.dumps(settings.egress_ips),
        "HASH7_LOG_FORMAT": "json",
        "HASH7_LOG_LEVEL": "INFO",
    }
