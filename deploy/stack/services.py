"""The four services as real processes (`python -m services.<name>`), for the test suite and the benchmark:
started together or one instance at a time, each waited for until its consumers run, killed or stopped
on demand."""

import json
import os
import sys
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from deploy.stack.processes import ManagedProcess, ServerStartError
from shared.contracts.exchanges import ExchangeName
from shared.runtime.config import ServiceSettings, Settings, exchange_url_variable
from shared.runtime.service import EXIT_START_TIMED_OUT

SERVICE_PACKAGES = ("intake", "validator", "vault_writer", "whitelist")
READY_LINE = "FastStream app started successfully"
START_ATTEMPTS = 3


@dataclass
class ServiceProcesses:
    """The services as child processes, any number of instances each, with their logs in log_dir."""

    settings: Settings
    env: dict[str, str]
    log_dir: Path
    processes: dict[str, list[ManagedProcess]] = field(default_factory=dict)

    def start(self, package: str, instance: int = 0) -> ManagedProcess:
        return self._started(self._launch(package, instance), package, instance)

    def start_all(self, packages: tuple[str, ...] = SERVICE_PACKAGES) -> None:
        """Launch them together, then wait: consumer-group joins take seconds each, so overlap them."""
        for package, process in [(package, self._launch(package, 0)) for package in packages]:
            self._started(process, package, 0)

    def _started(self, process: ManagedProcess, package: str, instance: int) -> ManagedProcess:
        """Wait until it runs. One that gave up joining its consumer groups in time is started again, as a
        supervisor (compose's restart policy) would, with a warning that says so."""
        retries = START_ATTEMPTS - 1
        while not self._started_in_time(process):
            if retries == 0:
                raise ServerStartError(f"{package}-{instance} did not start in time, {START_ATTEMPTS} times; "
                                       f"see {process.log_path}")
            retries -= 1
            warnings.warn(f"{package}-{instance} did not start in time and was started again; see {process.log_path}",
                          stacklevel=3)
            process = self._launch(package, instance)
        return process

    def _started_in_time(self, process: ManagedProcess) -> bool:
        """True once it runs, False when it exited because it could not start in time; raises otherwise."""
        # Past the service's own start deadline, so that one fires first.
        default_s = ServiceSettings.model_fields["start_timeout_s"].default
        deadline_s = float(self.env.get("HASH7_START_TIMEOUT_S", default_s)) + 30
        try:
            process.wait_until_ready(lambda: READY_LINE in _read(process.log_path), "started", timeout_s=deadline_s)
        except ServerStartError:
            if process.returncode == EXIT_START_TIMED_OUT:
                return False
            raise
        return True

    def _launch(self, package: str, instance: int) -> ManagedProcess:
        log_path = self.log_dir / f"{package}-{instance}-{time.monotonic_ns()}.log"
        # Any free port for its health and metrics: instances of one service run side by side (health_url).
        env = self.env | {"HASH7_HEALTH_PORT": "0"}
        process = ManagedProcess(package, [sys.executable, "-m", f"services.{package}"], log_path, env=env).start()
        instances = self.processes.setdefault(package, [])
        while len(instances) <= instance:
            instances.append(process)
        instances[instance] = process
        return process

    def kill(self, package: str, instance: int = 0) -> None:
        """SIGKILL, as a crash would: nothing in flight gets to finish or commit."""
        self.processes[package][instance].kill()

    def stop_all(self) -> None:
        for instances in self.processes.values():
            for process in instances:
                process.stop()

    def health_url(self, package: str, instance: int = 0) -> str:
        """Where the instance serves /livez, /readyz and /metrics: the URL it logged on taking its port."""
        for line in _read(self.processes[package][instance].log_path).splitlines():
            if '"health_listening"' in line:
                return str(json.loads(line)["url"])
        raise LookupError(f"{package}-{instance} has not logged its health URL")

    def log_text(self) -> str:
        return "\n".join(_read(path) for path in sorted(self.log_dir.glob("*.log")))


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def service_environment(settings: Settings, exchange_urls: Mapping[ExchangeName, str]) -> dict[str, str]:
    """A service's environment pointed at these servers and exchanges (their sandboxes), logging JSON; every other
    setting at its default."""
    return dict(os.environ) | {
        "HASH7_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "HASH7_TOPIC_PREFIX": settings.topic_prefix,
        "HASH7_VAULT_ADDR": settings.vault_addr,
        "HASH7_RUN_DIR": str(settings.run_dir),
        **{exchange_url_variable(exchange): url for exchange, url in exchange_urls.items()},
        "HASH7_EGRESS_IPS": json.dumps(settings.egress_ips),
        "HASH7_LOG_FORMAT": "json",
        "HASH7_LOG_LEVEL": "INFO",
    }
