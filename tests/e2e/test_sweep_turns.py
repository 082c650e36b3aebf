"""A key-health sweep keeps the validator's pace on the real stack, and one sweep runs at a time: the vault-writer
starts each page no sooner than the page before it had its re-checks' turn (HASH7_HEALTH_RECHECKS_PER_S, 50 here,
pages of HASH7_SWEEP_PAGE_SIZE 4: tests/fixtures/pipeline.py), and a second sweep asked for meanwhile is refused
(`sweep_running`) rather than started beside it."""

import asyncio
import time

import pytest

from tests.e2e.helpers import WAIT_S
from tests.e2e.test_sweep_pages import (
    filler_bindings,
    progress_when,
    rechecks_of,
    stored_bindings,
    sweep_audits,
    sweep_progress,
)
from tests.fixtures.pipeline import TEST_SERVICE_SETTINGS

pytestmark = pytest.mark.stack
PACE = float(TEST_SERVICE_SETTINGS["HASH7_HEALTH_RECHECKS_PER_S"])
PAGE = int(TEST_SERVICE_SETTINGS["HASH7_SWEEP_PAGE_SIZE"])
# Enough filler bindings (the validator answers each at once) that the sweep lasts seconds at the pace.
FILLER_USERS = 150


async def test_a_sweep_keeps_the_recheck_pace_and_a_second_one_asked_for_while_it_runs_is_refused(
        client, vault_admin):
    async with filler_bindings(vault_admin, "sweep-turns", FILLER_USERS):
        everything = await asyncio.to_thread(stored_bindings, vault_admin)
        asked_at = time.monotonic()
        first = await client.request_sweep()
        first_id = f"manual-{first}"
        await progress_when(vault_admin, first_id, lambda progress: progress.pages >= 1)

        second = await client.request_sweep()
        [refused] = await answered(client, second, "sweep_running")
        assert refused.details["running_sweep_id"] == first_id
        assert not await sweep_audits(client, second, "started")

        # Pages never run ahead of their re-checks' turns: page k starts no sooner than (k - 1) pages' turns after
        # the first, so the bindings it has asked for are at most one page over pace × time.
        while (progress := await asyncio.to_thread(sweep_progress, vault_admin, first_id)) is None \
                or not progress.finished:
            assert progress is None or progress.bindings <= PAGE + PACE * (time.monotonic() - asked_at)
            assert time.monotonic() - asked_at < WAIT_S + len(everything) / PACE, f"the sweep stopped at {progress}"
            await asyncio.sleep(0.005)
        assert progress.bindings == len(everything)
        last_page = len(everything) % PAGE  # a page shorter than the page size is the last (0: an empty one)
        assert time.monotonic() - asked_at >= (len(everything) - last_page) / PACE

        [started] = await sweep_audits(client, first, "started")
        [finished] = await answered(client, first, "finished")
        assert (finished.occurred_at - started.occurred_at).total_seconds() >= (len(everything) - last_page) / PACE
        assert finished.details["duration_s"] >= len(everything) / PACE  # to its last page's turn's end
        await rechecks_of(client, first, len(everything))


async def answered(client, request_id: str, outcome: str) -> list:
    deadline = time.monotonic() + WAIT_S
    while not (found := await sweep_audits(client, request_id, outcome)):
        assert time.monotonic() < deadline, f"no {outcome} for {request_id} after {WAIT_S} s"
        await asyncio.sleep(0.2)
    return found
