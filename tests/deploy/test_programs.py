"""Every program of the project, run as a person runs it: `--version` and `--help` answer without starting
anything, a malformed HASH7_* variable is one line naming it and exit code 1, and an unreachable Vault is one
line naming its address; never a traceback."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from shared.runtime.program import version_line
from tests.fixtures.stack import LOOPBACK

SERVICES = ("intake", "validator", "vault_writer", "whitelist")


def console_script(name: str) -> list[str]:
    # The venv's own script, installed next to this interpreter.
    return [str(Path(sys.executable).with_name(name))]


def module(name: str) -> list[str]:
    return [sys.executable, "-m", name]


# Each program's command line, and the arguments of one of its commands that reads the HASH7_* settings
# (None: the program reads none).
PROGRAMS: dict[str, tuple[list[str], list[str] | None]] = {
    "hash7": (console_script("hash7"), ["audit"]),
    "hash7-engine": (console_script("hash7-engine"), ["show", "--user", "user-1", "--binding", "binding-1"]),
    "hash7-keys": (console_script("hash7-keys"), ["list"]),
    "hash7-admin": (console_script("hash7-admin"), ["backup", "--to", "never-written.snap"]),
    "hash7-stack": (console_script("hash7-stack"), []),
    "htx-sandbox": (console_script("htx-sandbox"), None),
    "bybit-sandbox": (console_script("bybit-sandbox"), None),
    "okx-sandbox": (console_script("okx-sandbox"), None),
    "python -m deploy.bootstrap": (module("deploy.bootstrap"), []),
    **{f"python -m services.{name}": (module(f"services.{name}"), []) for name in SERVICES},
}
READING_SETTINGS = [name for name, (_, reading) in PROGRAMS.items() if reading is not None]


def run_program(name: str, args: list[str], cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    """name run with args in cwd, with only these HASH7_* settings; the run folder is cwd's, so nothing can
    touch a developer's own stack."""
    command, _ = PROGRAMS[name]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("HASH7_")}
    environment |= {"HASH7_RUN_DIR": str(cwd / "run")} | settings
    return subprocess.run([*command, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=60)


def assert_one_line(completed: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert "Traceback" not in completed.stderr, completed.stderr
    (line,) = (completed.stdout + completed.stderr).strip().splitlines()
    for text in expected:
        assert text in line, line


@pytest.mark.parametrize("name", PROGRAMS)
def test_version_names_the_program_and_starts_nothing(name: str, tmp_path: Path) -> None:
    completed = run_program(name, ["--version"], tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == version_line(name)
    assert list(tmp_path.iterdir()) == [], "nothing may be started or written"


@pytest.mark.parametrize("name", PROGRAMS)
def test_help_documents_the_program_and_starts_nothing(name: str, tmp_path: Path) -> None:
    completed = run_program(name, ["--help"], tmp_path)

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.lower().startswith("usage:") and "--version" in completed.stdout
    assert completed.stderr == ""
    assert list(tmp_path.iterdir()) == [], "nothing may be started or written"


@pytest.mark.parametrize("name", READING_SETTINGS)
@pytest.mark.parametrize(("variable", "value"), [("HASH7_VAULT_TIMEOUT_S", "abc"),
                                                 ("HASH7_KAFKA_FETCH_MAX_WAIT_MS", "0")])
def test_a_malformed_setting_is_one_line_naming_the_variable(name: str, variable: str, value: str,
                                                            tmp_path: Path) -> None:
    _, args = PROGRAMS[name]

    completed = run_program(name, args or [], tmp_path, **{variable: value})

    assert completed.returncode == 1
    assert_one_line(completed, f"{variable}: ")


@pytest.mark.parametrize("name", [name for name in READING_SETTINGS if name.startswith("python -m services.")])
def test_a_setting_out_of_range_stops_a_service_in_one_line(name: str, tmp_path: Path) -> None:
    completed = run_program(name, [], tmp_path, HASH7_KAFKA_MAX_RECORD_BYTES="-1")

    assert completed.returncode == 1
    assert_one_line(completed, "HASH7_KAFKA_MAX_RECORD_BYTES: ", '"event": "start_failed"')


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("name", ["hash7-engine", "hash7-keys", "hash7-admin"])
def test_an_unreachable_vault_is_one_line_naming_its_address(name: str, tmp_path: Path) -> None:
    vault_addr = f"http://{LOOPBACK}:{closed_port()}"
    _, args = PROGRAMS[name]

    completed = run_program(name, args or [], tmp_path, HASH7_VAULT_ADDR=vault_addr,
                            # An admin token for hash7-keys and hash7-admin, an AppRole for hash7-engine: none
                            # is ever checked, Vault being unreachable.
                            HASH7_VAULT_TOKEN="never-used", HASH7_VAULT_ROLE_ID="never-used",
                            HASH7_VAULT_SECRET_ID="never-used")

    assert completed.returncode == 1
    assert_one_line(completed, vault_addr)
    assert "never-used" not in completed.stderr


@pytest.mark.parametrize(("scenario", "problem"), [
    ("missing.json", "No such file or directory"),
    (".", "Is a directory"),
    ("not-json.json", "not JSON"),
    ("not-a-scenario.json", "Field required"),
])
def test_the_sandbox_refuses_a_scenario_it_cannot_use_in_one_line(scenario: str, problem: str,
                                                                 tmp_path: Path) -> None:
    (tmp_path / "not-json.json").write_text("{")
    (tmp_path / "not-a-scenario.json").write_text('{"unexpected": 1}')

    completed = run_program("htx-sandbox", ["--scenario", scenario, "--port", str(closed_port())], tmp_path)

    assert completed.returncode == 1
    assert_one_line(completed, f"htx-sandbox: cannot load the scenario {scenario}: ", problem)
