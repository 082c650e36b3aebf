"""The HTX sandbox as a child process of the embedded stack (`make run`) and of the benchmark."""

import sys
from collections.abc import Mapping
from pathlib import Path

from deploy.stack.processes import LineSink, ManagedProcess, port_accepts_connections

SANDBOX_MODULE = "deploy.sandbox.server"
SANDBOX_SCENARIO = Path(__file__).resolve().parent.parent / "sandbox" / "demo-scenario.json"
READY_TIMEOUT_S = 15.0


def start_sandbox(host: str, port: int, log_path: Path, *, env: Mapping[str, str] | None = None,
                  echo: LineSink | None = None) -> ManagedProcess:
    """Start the sandbox with the demo scenario and return once it accepts connections."""
    sandbox = ManagedProcess(
        "htx-sandbox",
        [sys.executable, "-m", SANDBOX_MODULE, "--host", host, "--port", str(port),
         "--scenario", str(SANDBOX_SCENARIO)],
        log_path,
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
