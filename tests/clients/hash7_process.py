"""`hash7` (or another of the project's command lines, e.g. `hash7-engine`) run as a person runs it: a
separate process, configured only by its environment."""

import os
import subprocess
import sys
from collections.abc import Mapping

from shared.runtime.config import Settings


def hash7_command(*args: str, module: str = "shared.clients.cli") -> list[str]:
    # The console script's own entry point, with this interpreter (the venv's `hash7` may not be on PATH).
    return [sys.executable, "-c", f"from {module} import main; main()", *args]


def hash7_environment(settings: Settings | None = None, **overrides: str) -> dict[str, str]:
    """This process's environment without its HASH7_* settings (a developer's own must not leak in), pointed
    at settings' servers when given, plus overrides (HASH7_*)."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("HASH7_")}
    if settings is not None:
        environment.update({
            "HASH7_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "HASH7_TOPIC_PREFIX": settings.topic_prefix,
            "HASH7_VAULT_ADDR": settings.vault_addr,
            "HASH7_RUN_DIR": str(settings.run_dir),
        })
    environment.update(overrides)
    return environment


def run_hash7(args: list[str], environment: Mapping[str, str], stdin: str = "",
              module: str = "shared.clients.cli") -> subprocess.CompletedProcess[str]:
    return subprocess.run(hash7_command(*args, module=module), input=stdin, capture_output=True, text=True,
                          timeout=120, env=dict(environment))
