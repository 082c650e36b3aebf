"""Background work is supervised (shared/runtime/service.py: supervised): a crash is one log line naming the error
class, then the work starts again after a capped, jittered wait; cancellation still stops it."""

import asyncio

import pytest
from structlog.testing import capture_logs

from shared.runtime.service import supervised

SECRET = "hvs.s3cr3t-t0k3n"
CAP_S = 0.05


class CrashingWork:
    """Raises (quoting a secret, as a careless exception might) on its first `crashes` runs, then runs until
    cancelled."""

    def __init__(self, crashes: int) -> None:
        self.crashes = crashes
        self.runs = 0
        self.running = asyncio.Event()

    async def __call__(self) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            raise RuntimeError(f"Vault said no to {SECRET}")
        self.running.set()
        await asyncio.Event().wait()


def crash_lines(logs: list[dict]) -> list[dict]:
    return [line for line in logs if line["event"] == "background_task_crashed"]


async def test_crashed_work_is_logged_and_started_again_until_it_runs():
    work = CrashingWork(crashes=3)
    with capture_logs() as logs:
        task = asyncio.create_task(supervised(work, "symbol_refresh", restart_cap_s=CAP_S))
        await asyncio.wait_for(work.running.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert work.runs == 4
    crashes = crash_lines(logs)
    assert [(line["task"], line["error_class"], line["log_level"]) for line in crashes] == [
        ("symbol_refresh", "RuntimeError", "error")
    ] * 3
    assert all(0 <= line["restart_in_s"] <= CAP_S for line in crashes)
    assert SECRET not in repr(logs)
    assert not any(line["event"] == "background_task_finished" for line in logs)


async def test_cancelling_during_the_wait_to_restart_stops_it_for_good():
    work = CrashingWork(crashes=1_000_000)
    task = asyncio.create_task(supervised(work, "sweep_requests", restart_cap_s=10.0))
    while work.runs < 2:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    runs = work.runs
    await asyncio.sleep(0.1)
    assert task.cancelled() and work.runs == runs


async def test_restarts_are_spaced_by_a_growing_jittered_wait_not_a_tight_loop():
    work = CrashingWork(crashes=1_000_000)
    with capture_logs() as logs:
        task = asyncio.create_task(supervised(work, "tight", restart_cap_s=0.4))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    # Waits drawn from [0, min(0.4, 0.2 * 2^n)]: a second holds a handful of restarts, never thousands.
    assert 2 <= work.runs < 40
    assert max(line["restart_in_s"] for line in crash_lines(logs)) <= 0.4
