"""A service that cannot start in time says so and exits with EXIT_START_TIMED_OUT instead of idling; the
process harness starts it again, as a supervisor would, a bounded number of times. A service that cannot start
at all (a bad setting, Kafka or Vault unreachable) says why in one JSON log line and exits 1, never with a
traceback."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from deploy.stack.processes import ServerStartError
from deploy.stack.services import START_ATTEMPTS, ServiceProcesses
from shared.runtime.config import Settings
from shared.runtime.service import EXIT_FAILED, EXIT_START_TIMED_OUT
from tests.fixtures.stack import LOOPBACK


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


def start_intake(**environment: str) -> tuple[int, list[dict[str, Any]]]:
    """Run `python -m services.intake` with only these HASH7_* settings until it exits; its exit code and its
    output, each line parsed as JSON (a line that is not JSON fails the test)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("HASH7_")}
    completed = subprocess.run([sys.executable, "-m", "services.intake"], env=env | environment,
                               capture_output=True, text=True, timeout=120)
    output = (completed.stdout + completed.stderr).splitlines()
    assert "Traceback (most recent call last)" not in completed.stderr
    return completed.returncode, [json.loads(line) for line in output]


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(("variable", "value"), [("HASH7_VAULT_TIMEOUT_S", "abc"),
                                                 ("HASH7_KAFKA_MAX_RECORD_BYTES", "-1")])
def test_a_bad_setting_stops_a_service_with_one_json_line_naming_it(variable: str, value: str) -> None:
    returncode, lines = start_intake(**{variable: value})

    assert returncode == EXIT_FAILED
    (line,) = lines
    assert (line["event"], line["level"], line["service"]) == ("start_failed", "critical", "intake")
    assert line["error"].startswith(f"bad configuration: {variable}: ")
    assert value not in line["error"]


def test_unreachable_kafka_stops_a_service_with_json_lines_naming_the_address(tmp_path: Path) -> None:
    kafka = f"{LOOPBACK}:{closed_port()}"

    returncode, lines = start_intake(HASH7_KAFKA_BOOTSTRAP_SERVERS=kafka, HASH7_RUN_DIR=str(tmp_path),
                                     HASH7_VAULT_ROLE_ID="never-used", HASH7_VAULT_SECRET_ID="never-used")

    assert returncode == EXIT_FAILED
    (failed,) = [line for line in lines if line["event"] == "service_failed"]
    assert (failed["event"], failed["error_class"], failed["kafka_bootstrap_servers"]) == (
        "service_failed", "KafkaConnectionError", kafka)


def test_missing_approle_credentials_stop_a_service_with_one_json_line(tmp_path: Path) -> None:
    # Vault itself being down at start is not fatal: like any transient trouble it is retried in place, and the
    # service reports itself not ready meanwhile (shared/runtime/health.py).
    returncode, lines = start_intake(HASH7_RUN_DIR=str(tmp_path))

    assert returncode == EXIT_FAILED
    (line,) = lines
    assert (line["event"], line["error_class"]) == ("service_failed", "RuntimeError")
    assert line["error"].startswith("no AppRole credentials for 'intake'")
