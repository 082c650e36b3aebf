"""The exchange sandboxes as child processes of the embedded stack (`make run`), of the benchmarks and of the tests'
pipeline: each exchange's program (deploy/sandbox/<exchange>/server.py), with its demo scenario."""

import sys
from collections.abc import Mapping
from pathlib import Path

from deploy.sandbox.bybit.server import SANDBOX as BYBIT_SANDBOX
from deploy.sandbox.common.program import SandboxProgram
from deploy.sandbox.htx.server import SANDBOX as HTX_SANDBOX
from deploy.sandbox.okx.server import SANDBOX as OKX_SANDBOX
from deploy.stack.processes import LineSink, ManagedProcess, port_accepts_connections
from shared.contracts.exchanges import ExchangeName

READY_TIMEOUT_S = 15.0

SANDBOXES: Mapping[ExchangeName, SandboxProgram] = {
    ExchangeName.HTX: HTX_SANDBOX,
    ExchangeName.BYBIT: BYBIT_SANDBOX,
    ExchangeName.OKX: OKX_SANDBOX,
}


def sandbox_command(exchange: ExchangeName, host: str, port: int, *options: str) -> list[str]:
    """The command line that runs the exchange's sandbox on host:port with its demo scenario, and any other options."""
    return [sys.executable, "-m", f"deploy.sandbox.{exchange.value}.server", "--host", host, "--port", str(port),
            "--scenario", str(SANDBOXES[exchange].demo_scenario), *options]


def start_sandbox(exchange: ExchangeName, host: str, port: int, log_dir: Path, *,
                  env: Mapping[str, str] | None = None, echo: LineSink | None = None) -> ManagedProcess:
    """Start the exchange's sandbox with its demo scenario and return once it accepts connections."""
    program = SANDBOXES[exchange]
    sandbox = ManagedProcess(
        program.name,
        sandbox_command(exchange, host, port),
        log_dir / f"{program.name}.log",
        env=env,
        echo=echo,
    ).start()
    try:
        sandbox.wait_until_ready(
            lambda: port_accepts_connections(host, port), f"listening on {host}:{port}", READY_TIMEOUT_S
        )
    except BaseException:
        sandbox.stop()
        raise
    return sandbox
