"""A service that cannot start in time says so and exits with EXIT_START_TIMED_OUT instead of idling; the
process harness starts it again, as a supervisor would, a bounded number of times."""

import os
import socket
import time
from collections.abc import Iterator

import pytest

from deploy.stack.processes import ServerStartError
from deploy.stack.services import START_ATTEMPTS, ServiceProcesses
from shared.runtime.config import Settings
from shared.runtime.service import EXIT_START_TIMED_OUT


@pytest.fixture
def silent_broker() -> Iterator[str]:
    """A port that takes connections and never answers: the client's requests wait, as a consumer waits
    for a group join that never completes."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"127.0.0.1:{listener.getsockname()[1]}"


def intake_processes(tmp_path, bootstrap_servers: str) -> ServiceProcesses:
    settings = Settings(kafka_bootstrap_servers=bootstrap_servers, run_dir=tmp_path)
    env = {"HASH7_KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers, "HASH7_RUN_DIR": str(tmp_path),
           "HASH7_LOG_FORMAT": "json", "HASH7_START_TIMEOUT_S": "1",
           # Vault is never reached (no record arrives), but intake needs a credential to sign with at all.
           "HASH7_VAULT_ROLE_ID": "never-used", "HASH7_VAULT_SECRET_ID": "never-used"}
    return ServiceProcesses(settings=settings, env=dict(os.environ) | env, log_dir=tmp_path / "logs")


def test_a_service_that_cannot_start_in_time_says_so_and_exits_for_a_restart(tmp_path, silent_broker):
    services = intake_processes(tmp_path, silent_broker)
    started = time.monotonic()
    with pytest.warns(UserWarning, match="intake-0 did not start in time and was started again"):
        with pytest.raises(ServerStartError, match=f"intake-0 did not start in time, {START_ATTEMPTS} times"):
            services.start("intake")
    # Each attempt gave up after its 1 s deadline, not after aiokafka's 40 s request timeout.
    assert time.monotonic() - started < 20 * START_ATTEMPTS
    logs = sorted((tmp_path / "logs").glob("intake-0-*.log"))
    assert len(logs) == START_ATTEMPTS
    assert all('"event": "start_timed_out"' in log.read_text() for log in logs)
    assert services.processes["intake"][0].returncode == EXIT_START_TIMED_OUT
