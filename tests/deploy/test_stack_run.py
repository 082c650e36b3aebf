"""`make run`: refuses clearly, without a traceback, when a stack already runs or a port is taken; otherwise
comes up, and on Ctrl-C stops every child it started."""

import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.fixtures.stack import LOOPBACK, free_port

READY_LINE = "Stop everything: Ctrl-C"


def _stack_environment(run_dir: Path, kafka_port: int, health_port: int = 0) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("HASH7_")}
    return env | {
        "HASH7_RUN_DIR": str(run_dir),
        "HASH7_KAFKA_BOOTSTRAP_SERVERS": f"{LOOPBACK}:{kafka_port}",
        "HASH7_VAULT_ADDR": f"http://{LOOPBACK}:{free_port(next_one_too=True)}",
        "HASH7_HTX_BASE_URL": f"http://{LOOPBACK}:{free_port()}",
        "HASH7_HEALTH_PORT": str(health_port or free_port()),
    }


def _run_stack(run_dir: Path, kafka_port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "deploy.stack.run"],
        env=_stack_environment(run_dir, kafka_port),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_stack_on_the_same_run_folder_says_one_is_running(tmp_path):
    with open(tmp_path / "stack.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242\n")
        lock.flush()

        result = _run_stack(tmp_path, free_port())

    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "already running" in message and "kill 4242" in message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "vault").exists(), "nothing may be started"


def test_a_busy_port_is_named_with_the_variable_that_moves_it(tmp_path):
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        busy_port = squatter.getsockname()[1]

        result = _run_stack(tmp_path, busy_port)

    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert f"Port {busy_port}" in message and "HASH7_KAFKA_BOOTSTRAP_SERVERS" in message
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "vault").exists(), "nothing may be started"


@pytest.mark.stack
def test_the_stack_comes_up_serves_each_services_health_and_ctrl_c_stops_every_child(tmp_path):
    health_port = free_port()
    stack = subprocess.Popen(
        [sys.executable, "-m", "deploy.stack.run"],
        env=_stack_environment(tmp_path, free_port(), health_port),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert stack.stdout is not None
        output = []
        for line in stack.stdout:
            output.append(line)
            if line.startswith(READY_LINE):
                break
        children = psutil.Process(stack.pid).children(recursive=True)
        started = " ".join(child.name() for child in children)
        # The four services, on HASH7_HEALTH_PORT and the next three ports, live within moments of their start.
        live = [_status_once_listening(f"http://{LOOPBACK}:{health_port + index}/livez") for index in range(4)]
        stack.send_signal(signal.SIGINT)
        output.append(stack.communicate(timeout=60)[0])
    finally:
        stack.kill()
    transcript = "".join(output)

    assert stack.returncode == 0, transcript
    assert "Hash7 stack is up" in transcript
    assert live == [200] * 4
    assert all(f"http://127.0.0.1:{health_port + index}/readyz" in transcript for index in range(4))
    assert "tansu" in started and "bao" in started
    _gone, alive = psutil.wait_procs(children, timeout=5)
    assert alive == [], f"left behind: {alive}"


def _status_once_listening(url: str, timeout_s: float = 60) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return int(answer.status)
        except urllib.error.HTTPError as refused:
            return refused.code
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
