"""`make run`: the whole system on loopback, each part its own process, stopped cleanly by Ctrl-C.

Start order: Vault, Kafka, the exchange sandboxes (HTX, Bybit, OKX), the bootstrap, then the services. Stop order:
the services first, then the rest. Every child runs in its own process group, so none is left behind.
"""

import argparse
import asyncio
import fcntl
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psutil
from rich.console import Console
from rich.table import Table
from rich.text import Text

from deploy.bootstrap.errors import StackError
from deploy.bootstrap.private_files import make_private_dir
from deploy.bootstrap.run import BootstrapSettings, run_bootstrap
from deploy.bootstrap.vault_files import VaultFiles
from deploy.stack.bao import CLUSTER_PORT_OFFSET, start_bao
from deploy.stack.demo import bind_demo_keys
from deploy.stack.processes import LineSink, ManagedProcess, Supervisor, port_is_free
from deploy.stack.sandbox import SANDBOXES, start_sandbox
from deploy.stack.tansu import start_tansu
from shared.contracts.exchanges import ExchangeName
from shared.runtime.config import Settings, credentials_dir, exchange_url_variable
from shared.runtime.logging import configure_logging, redact, terminal_safe
from shared.runtime.program import BadSettings, settings_from_environment, version_line
from shared.runtime.service import EXIT_START_TIMED_OUT

PROGRAM = "hash7-stack"
console = Console(soft_wrap=True, highlight=False)
error_console = Console(stderr=True, highlight=False)

# Python package -> process name. FastStream waits up to 15 s for in-flight messages on SIGTERM.
SERVICES = {"intake": "intake", "validator": "validator", "vault_writer": "vault-writer", "whitelist": "whitelist"}
SERVICE_STOP_TIMEOUT_S = 20.0
# Each service serves /livez, /readyz and /metrics (shared/runtime/health.py) on HASH7_HEALTH_PORT + its index.
HEALTH_PORT_BASE_DEFAULT = 8181
# Ctrl-C, `kill`, and the terminal closing: the children live in their own sessions and would outlive us.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LINE_PREFIX_STYLES = ("cyan", "magenta", "green", "yellow", "blue")
# Children get their own identity: never the admin token, nor one AppRole's credentials for all services.
WITHHELD_FROM_CHILDREN = (
    "HASH7_VAULT_TOKEN",
    "VAULT_TOKEN",
    "BAO_TOKEN",
    "HASH7_VAULT_ROLE_ID",
    "HASH7_VAULT_SECRET_ID",
)


class StopRequested(Exception):
    """A stop signal arrived while the stack was starting."""


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class StackEndpoints:
    kafka: Endpoint
    vault: Endpoint
    sandboxes: dict[ExchangeName, Endpoint]
    # Service process name -> where it serves its health and metrics.
    health: dict[str, Endpoint]

    @classmethod
    def from_settings(cls, settings: Settings) -> "StackEndpoints":
        base = os.environ.get("HASH7_HEALTH_PORT", str(HEALTH_PORT_BASE_DEFAULT))
        if not base.isdigit() or not 0 < int(base) <= 65535 - len(SERVICES):
            raise StackError(f"HASH7_HEALTH_PORT={base}: expected the first of {len(SERVICES)} free ports, e.g. "
                             f"{HEALTH_PORT_BASE_DEFAULT}")
        return cls(
            kafka=_kafka_endpoint(settings.kafka_bootstrap_servers),
            vault=_http_endpoint(settings.vault_addr, "HASH7_VAULT_ADDR"),
            sandboxes={exchange: _http_endpoint(url, exchange_url_variable(exchange))
                       for exchange, url in settings.exchange_urls().items()},
            health={name: Endpoint("127.0.0.1", int(base) + index) for index, name in enumerate(SERVICES.values())},
        )


def _kafka_endpoint(bootstrap_servers: str) -> Endpoint:
    # The embedded broker is a single node: it listens on the first address given.
    host, _, port = bootstrap_servers.split(",")[0].strip().rpartition(":")
    if not host or not port.isdigit():
        raise StackError(f"HASH7_KAFKA_BOOTSTRAP_SERVERS={bootstrap_servers}: expected host:port, e.g. 127.0.0.1:9092")
    return Endpoint(host, int(port))


def _http_endpoint(url: str, variable: str) -> Endpoint:
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None or parts.port is None:
        raise StackError(
            f"{variable}={url}: the embedded stack serves plain http on loopback, e.g. http://127.0.0.1:8200"
        )
    return Endpoint(parts.hostname, parts.port)


def after_startup(settings: Settings) -> None:
    """Once everything is up: bind the demo keys and show their timelines. A failure here is reported and
    the stack keeps running: the demo is a convenience, the system is what matters."""
    try:
        asyncio.run(bind_demo_keys(settings, console))
    except Exception as error:  # noqa: BLE001 — shown as one line; the services' own logs say more
        error_console.print(f"The demo bindings did not complete: {redact(error)}", markup=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Configuration comes from HASH7_* environment variables (ports, run folder); see the README.",
    )
    parser.add_argument("--version", action="version", version=version_line(PROGRAM))
    parser.parse_args(argv)
    try:
        settings = settings_from_environment(Settings)
    except BadSettings as error:
        error_console.print(f"{error}; the stack was not started", markup=False, soft_wrap=True)
        return 1
    configure_logging("stack", settings.log_format, settings.log_level)
    try:
        return run_stack(settings)
    except StackError as error:
        error_console.print(str(error), markup=False)
        return 1


def run_stack(settings: Settings) -> int:
    endpoints = StackEndpoints.from_settings(settings)
    run_dir = make_private_dir(settings.run_dir.resolve())
    with _stack_lock(run_dir / "stack.lock"):
        _check_ports_free(endpoints)
        stop = threading.Event()
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda *_: stop.set())
        services, infrastructure = Supervisor(), Supervisor()
        try:
            _start_infrastructure(infrastructure, endpoints, run_dir, stop)
            run_bootstrap(BootstrapSettings(run_dir=run_dir))
            _raise_if_stopping(stop)
            _start_services(services, run_dir, endpoints.health)
            _print_summary(endpoints, run_dir, services)
            after_startup(settings.model_copy(update={"run_dir": run_dir}))
            return _supervise(stop, services, infrastructure)
        except StopRequested:
            return 0
        finally:
            # A second Ctrl-C must not cut the shutdown short and leave children behind.
            for signum in STOP_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)
            console.print("Stopping the stack…")
            services.stop_all()
            infrastructure.stop_all()
            console.print("Stopped.")


def _start_infrastructure(
    infrastructure: Supervisor, endpoints: StackEndpoints, run_dir: Path, stop: threading.Event
) -> None:
    infrastructure.adopt(start_bao(endpoints.vault.host, endpoints.vault.port, run_dir).process)
    _raise_if_stopping(stop)
    infrastructure.adopt(start_tansu(endpoints.kafka.host, endpoints.kafka.port, run_dir / "logs" / "kafka.log"))
    _raise_if_stopping(stop)
    for index, (exchange, endpoint) in enumerate(endpoints.sandboxes.items()):
        infrastructure.adopt(start_sandbox(exchange, endpoint.host, endpoint.port, run_dir / "logs",
                                           env=_child_environment(run_dir),
                                           echo=_terminal_echo(SANDBOXES[exchange].name, len(SERVICES) + index)))
        _raise_if_stopping(stop)


def _start_services(services: Supervisor, run_dir: Path, health: dict[str, Endpoint]) -> None:
    for index, (package, name) in enumerate(SERVICES.items()):
        services.start(
            ManagedProcess(
                name,
                [sys.executable, "-m", f"services.{package}"],
                run_dir / "logs" / f"{name}.log",
                env=_child_environment(run_dir) | {"HASH7_HEALTH_HOST": health[name].host,
                                                   "HASH7_HEALTH_PORT": str(health[name].port)},
                echo=_terminal_echo(name, index),
                stop_timeout_s=SERVICE_STOP_TIMEOUT_S,
            )
        )


def _supervise(stop: threading.Event, *supervisors: Supervisor) -> int:
    """Wait for a stop signal (exit 0) or for a child to die on its own (exit 1)."""
    while not stop.wait(0.5):
        for supervisor in supervisors:
            exited = supervisor.first_exited()
            if exited is not None:
                why = (" (its consumers did not join their groups within HASH7_START_TIMEOUT_S)"
                       if exited.returncode == EXIT_START_TIMED_OUT else "")
                error_console.print(
                    f"{exited.name} exited unexpectedly with code {exited.returncode}{why}; "
                    f"see {_shown(exited.log_path)}. Stopping the whole stack.",
                    markup=False,
                )
                return 1
    return 0


def _raise_if_stopping(stop: threading.Event) -> None:
    if stop.is_set():
        raise StopRequested


@contextmanager
def _stack_lock(path: Path) -> Iterator[None]:
    """One stack per run folder. flock, not a pid file: the kernel releases it however the holder dies."""
    with open(path, "a+") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            raise StackError(
                f"A Hash7 stack is already running from {path.parent} (pid {holder}); this one was not started. "
                f"Use the running one, or stop it first: Ctrl-C in its terminal, or `kill {holder}`."
            ) from None
        lock_file.truncate(0)
        lock_file.write(f"{os.getpid()}\n")
        lock_file.flush()
        yield


def _check_ports_free(endpoints: StackEndpoints) -> None:
    wanted = [
        (endpoints.kafka, "Kafka", "HASH7_KAFKA_BOOTSTRAP_SERVERS"),
        (endpoints.vault, "Vault", "HASH7_VAULT_ADDR"),
        (
            Endpoint(endpoints.vault.host, endpoints.vault.port + CLUSTER_PORT_OFFSET),
            "Vault's cluster traffic (the Vault port + 1)",
            "HASH7_VAULT_ADDR",
        ),
        *((endpoint, f"the {exchange.display_name} sandbox", exchange_url_variable(exchange))
          for exchange, endpoint in endpoints.sandboxes.items()),
        *((endpoint, f"the {name}'s health and metrics", "HASH7_HEALTH_PORT")
          for name, endpoint in endpoints.health.items()),
    ]
    for endpoint, what, variable in wanted:
        if not port_is_free(endpoint.host, endpoint.port):
            raise StackError(
                f"Port {endpoint.port} on {endpoint.host}, for {what}, is already in use{_port_holder(endpoint.port)}, "
                "so the stack was not started. Another Hash7 stack (from another folder) or another server is "
                f"probably running: stop it, or choose a free port with {variable}."
            )


def _port_holder(port: int) -> str:
    """' by pid N (name)' for the process listening on port, when the OS lets us see it."""
    try:
        for connection in psutil.net_connections(kind="tcp"):
            listening_on = connection.laddr.port if connection.laddr else None
            if connection.status == psutil.CONN_LISTEN and listening_on == port and connection.pid:
                return f" by pid {connection.pid} ({psutil.Process(connection.pid).name()})"
    except (psutil.Error, OSError):
        pass
    return ""


def _child_environment(run_dir: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in WITHHELD_FROM_CHILDREN}
    # Absolute, so children find the AppRole credentials whatever their working directory.
    env["HASH7_RUN_DIR"] = str(run_dir)
    env["PYTHONUNBUFFERED"] = "1"
    # Children write to a pipe, which their logging would take for a machine reader; a person is reading.
    if sys.stdout.isatty():
        env.setdefault("HASH7_LOG_FORMAT", "console")
    return env


def _terminal_echo(name: str, index: int) -> LineSink:
    prefix = Text(f"{name:<13}| ", style=LINE_PREFIX_STYLES[index % len(LINE_PREFIX_STYLES)])

    def echo(line: str) -> None:
        # A child's line may quote a record (a label, an HTX answer): its control characters are shown, not obeyed.
        console.print(Text.assemble(prefix, terminal_safe(line)))

    return echo


def _shown(path: Path) -> str:
    """path relative to the working directory when it is inside it (shorter to read)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _print_summary(endpoints: StackEndpoints, run_dir: Path, services: Supervisor) -> None:
    vault_files = VaultFiles(run_dir)
    table = Table(title="Hash7 stack is up", title_justify="left")
    table.add_column("Part", style="bold")
    table.add_column("Where")
    table.add_column("Notes")
    table.add_row(
        "Kafka (Tansu)", f"{endpoints.kafka.host}:{endpoints.kafka.port}", "in memory: messages are lost when it stops"
    )
    table.add_row(
        "Vault (OpenBao)",
        f"http://{endpoints.vault.host}:{endpoints.vault.port}",
        f"data and audit log in {_shown(vault_files.directory)}",
    )
    table.add_row(
        "Unseal key, root token",
        _shown(vault_files.init_file),
        "0600; a local convenience only: whoever can read it owns this Vault",
    )
    table.add_row("Credentials", _shown(credentials_dir(run_dir, "*")), "a 0700 folder per role; approle.json 0600")
    for exchange, endpoint in endpoints.sandboxes.items():
        table.add_row(f"{exchange.display_name} sandbox", f"http://{endpoint.host}:{endpoint.port}",
                      "demo scenario; admin API under /_sandbox/")
    for process in services.processes:
        health = endpoints.health[process.name]
        url = f"http://{health.host}:{health.port}"
        table.add_row(process.name, f"{url}/readyz", f"pid {process.pid}; {url}/livez, {url}/metrics")
    table.add_row("Logs", _shown(run_dir / "logs"), "one file per part; service output also appears below")
    table.add_row("Run folder", _shown(run_dir), "git-ignored; delete it (stack stopped) to start afresh")
    console.print(table)
    # Also as plain lines, never folded (the console soft-wraps): what a person copies, and what a script reads.
    for name, health in endpoints.health.items():
        console.print(f"{name} health: http://{health.host}:{health.port}/readyz (also /livez, /metrics)",
                      markup=False)
    console.print("Submit a binding: .venv/bin/hash7 bind --user alice --access-key <AK> --pairs btcusdt "
                  "(the secret key is asked for, hidden); all commands: .venv/bin/hash7 --help")
    console.print("Stop everything: Ctrl-C")


if __name__ == "__main__":
    sys.exit(main())
