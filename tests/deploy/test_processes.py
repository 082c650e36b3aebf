import sys
import time

import psutil
import pytest

from deploy.stack.processes import ManagedProcess, ServerStartError, Supervisor

IGNORE_SIGTERM_AND_SLEEP = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
)


def _wait_for(condition, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_stop_ends_everything_the_child_started(tmp_path):
    tree = ManagedProcess("tree", ["sh", "-c", "sleep 60 & sleep 60 & wait"], tmp_path / "tree.log").start()
    _wait_for(lambda: len(psutil.Process(tree.pid).children()) == 2)
    descendants = psutil.Process(tree.pid).children()

    tree.stop()

    assert not tree.is_running()
    # Signals are delivered asynchronously: give the (SIGKILLed) grandchildren a moment to be gone.
    _gone, alive = psutil.wait_procs(descendants, timeout=3)
    assert alive == []


def test_a_child_that_ignores_sigterm_is_killed_after_its_timeout(tmp_path):
    stubborn = ManagedProcess(
        "stubborn", [sys.executable, "-c", IGNORE_SIGTERM_AND_SLEEP], tmp_path / "stubborn.log", stop_timeout_s=0.5
    ).start()
    _wait_for(lambda: "ready" in stubborn.log_path.read_text())

    started = time.monotonic()
    stubborn.stop()

    assert time.monotonic() - started < 3
    assert stubborn.returncode == -9


def test_echoed_output_is_also_kept_in_the_log(tmp_path):
    echoed: list[str] = []
    talker = ManagedProcess("talker", ["printf", "one\\ntwo\\n"], tmp_path / "talker.log", echo=echoed.append).start()
    _wait_for(lambda: not talker.is_running())
    talker.stop()

    assert echoed == ["one", "two"]
    assert talker.log_path.read_text() == "one\ntwo\n"


def test_waiting_for_a_child_that_exits_fails_fast_and_names_its_log(tmp_path):
    crasher = ManagedProcess("crasher", ["sh", "-c", "exit 3"], tmp_path / "crasher.log").start()

    with pytest.raises(ServerStartError, match=r"crasher exited with code 3 .*crasher\.log"):
        crasher.wait_until_ready(lambda: False, "ready", timeout_s=30)


def test_supervisor_reports_the_child_that_exited_and_stops_the_others(tmp_path):
    with Supervisor() as supervisor:
        sleeper = supervisor.start(ManagedProcess("sleeper", ["sleep", "60"], tmp_path / "sleeper.log"))
        quitter = supervisor.start(ManagedProcess("quitter", ["sh", "-c", "exit 4"], tmp_path / "quitter.log"))
        _wait_for(lambda: supervisor.first_exited() is not None)

        assert supervisor.first_exited() is quitter
        assert quitter.returncode == 4

    assert not sleeper.is_running()
