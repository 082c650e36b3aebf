"""Child-process supervision shared by `make run` and the test suite.

Every child runs in its own session (so its own process group): a Ctrl-C in the terminal reaches only the
supervisor, which then stops the children in the order it chooses, and stopping a child signals its whole
group, so nothing it spawned is left behind.
"""

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from deploy.bootstrap.errors import StackError
from deploy.bootstrap.private_files import make_private_dir

LineSink = Callable[[str], None]


class ServerStartError(StackError):
    """A child did not come up; the message says which, why, and where its log is."""


def port_accepts_connections(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1", *, next_one_too: bool = False) -> int:
    """A port on host nobody listens on (and the one after it too, if asked: Vault's cluster port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((host, 0))
            port = probe.getsockname()[1]
        if not next_one_too or port_is_free(host, port + 1):
            return int(port)


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on host:port now (a port lingering in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class ManagedProcess:
    """One child process in its own process group, with its output kept in a log file.

    Output goes straight to `log_path`, or, when `echo` is given, through a reader thread that writes each
    line to the log file and hands it to `echo` (the terminal, for `make run`).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        echo: LineSink | None = None,
        discard_stdout: bool = False,
        stop_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.stop_timeout_s = stop_timeout_s
        self._env = dict(env) if env is not None else None
        self._echo = echo
        self._discard_stdout = discard_stdout
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> "ManagedProcess":
        if self._popen is not None:
            raise RuntimeError(f"{self.name} was already started")
        make_private_dir(self.log_path.parent)
        self._log_file = open(self.log_path, "wb")  # noqa: SIM115 - open for the child's whole life
        if self._echo is None:
            stdout: int | IO[bytes] = subprocess.DEVNULL if self._discard_stdout else self._log_file
            stderr: int | IO[bytes] = self._log_file
        else:
            stdout, stderr = subprocess.PIPE, subprocess.STDOUT
        try:
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                env=self._env,
                start_new_session=True,
            )
        except OSError:
            self._close_output()
            raise
        if self._echo is not None:
            self._reader = threading.Thread(target=self._copy_output, name=f"{self.name}-output", daemon=True)
            self._reader.start()
        return self

    def _copy_output(self) -> None:
        assert self._popen is not None and self._popen.stdout is not None and self._log_file is not None
        assert self._echo is not None
        for raw_line in self._popen.stdout:
            self._log_file.write(raw_line)
            self._log_file.flush()
            self._echo(raw_line.decode(errors="replace").rstrip("\r\n"))

    @property
    def pid(self) -> int:
        if self._popen is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); the exit code once it has exited."""
        return None if self._popen is None else self._popen.poll()

    def is_running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def wait_until_ready(self, is_ready: Callable[[], bool], state: str, timeout_s: float) -> None:
        """Poll is_ready until it holds; fail fast if the child exits first. `state` completes
        "<name> was not ...", e.g. "listening on 127.0.0.1:9092"."""
        deadline = time.monotonic() + timeout_s
        while not is_ready():
            if not self.is_running():
                raise ServerStartError(
                    f"{self.name} exited with code {self.returncode} before it was {state}; see {self.log_path}"
                )
            if time.monotonic() > deadline:
                raise ServerStartError(f"{self.name} was not {state} after {timeout_s:.0f} s; see {self.log_path}")
            time.sleep(0.05)

    def terminate(self) -> None:
        """Ask the whole group to stop (SIGTERM); returns at once."""
        if self.is_running():
            self._signal_group(signal.SIGTERM)

    def wait_or_kill(self, timeout_s: float) -> None:
        """Wait up to timeout_s for the child to exit, then SIGKILL its group; always sweeps leftovers."""
        if self._popen is None:
            return
        try:
            self._popen.wait(timeout=max(timeout_s, 0.0))
        except subprocess.TimeoutExpired:
            self._signal_group(signal.SIGKILL)
            self._popen.wait()
        # The child may be gone while something it spawned still runs in its group.
        self._signal_group(signal.SIGKILL)
        self._close_output()

    def stop(self) -> None:
        """SIGTERM the group, wait up to stop_timeout_s, then SIGKILL it."""
        self.terminate()
        self.wait_or_kill(self.stop_timeout_s)

    def kill(self) -> None:
        """SIGKILL the group now, as a crash would (tests use it to kill -9 a service)."""
        if self._popen is not None:
            self._signal_group(signal.SIGKILL)
            self._popen.wait()
            self._close_output()

    def _signal_group(self, signum: signal.Signals) -> None:
        assert self._popen is not None
        # start_new_session made the child a group leader: its pid is the group id.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._popen.pid, signum)

    def _close_output(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=2.0)
            self._reader = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class Supervisor:
    """A set of children that are stopped together: SIGTERM to all at once (newest first), one shared
    deadline, then SIGKILL to whatever is left. Use one per shutdown tier."""

    def __init__(self) -> None:
        self._processes: list[ManagedProcess] = []

    @property
    def processes(self) -> tuple[ManagedProcess, ...]:
        return tuple(self._processes)

    def adopt(self, process: ManagedProcess) -> ManagedProcess:
        """Track an already started child, so stop_all stops it."""
        self._processes.append(process)
        return process

    def start(self, process: ManagedProcess) -> ManagedProcess:
        return self.adopt(process.start())

    def first_exited(self) -> ManagedProcess | None:
        return next((process for process in self._processes if not process.is_running()), None)

    def stop_all(self) -> None:
        newest_first = list(reversed(self._processes))
        for process in newest_first:
            process.terminate()
        deadline = time.monotonic() + max((process.stop_timeout_s for process in newest_first), default=0.0)
        for process in newest_first:
            process.wait_or_kill(deadline - time.monotonic())
        self._processes.clear()

    def __enter__(self) -> "Supervisor":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()
