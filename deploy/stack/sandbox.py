"""The exchange sandboxes as child processes of the embedded stack (`make run`), of the benchmarks and of the tests'
pipeline: one program per exchange (deploy/sandbox/<exchange>/), each with its demo scenario."""

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.stack.processes import LineSink, ManagedProcess, port_accepts_connections
from shared.contracts.exchanges import ExchangeName

_SANDBOX_DIR = Path(__file__).resolve().parent.parent / "sandbox"
READY_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class SandboxProgram:
    """One exchange's sandbox: how it is started, and with which demo scenario."""

    exchange: ExchangeName
    module: str
    scenario: Path

    @property
    def process_name(self) -> str:
        return f"{self.exchange.value}-sandbox"


SANDBOXES: Mapping[ExchangeName, SandboxProgram] = {
    ExchangeName.HTX: SandboxProgram(ExchangeName.HTX, "deploy.sandbox.htx.server",
                                     _SANDBOX_DIR / "htx" / "demo-scenario.json"),
    ExchangeName.BYBIT: SandboxProgram(ExchangeName.BYBIT, "deploy.sandbox.bybit.server",
                                       _SANDBOX_DIR / "bybit" / "demo-scenario.json"),
    ExchangeName.OKX: SandboxProgram(ExchangeName.OKX, "deploy.sandbox.okx.server",
                                     _SANDBOX_DIR / "okx" / "demo-scenario.json"),
}


def start_sandbox(program: SandboxProgram, host: str, port: int, log_dir: Path, *,
                  env: Mapping[str, str] | None = None, echo: LineSink | None = None) -> ManagedProcess:
    """Start the sandbox with its demo scenario and return once it accepts connections."""
    sandbox = ManagedProcess(
        program.process_name,
        [sys.executable, "-m", program.module, "--host", host, "--port", str(port),
         "--scenario", str(program.scenario)],
        log_dir / f"{program.process_name}.log",
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
