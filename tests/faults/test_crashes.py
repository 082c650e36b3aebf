"""Crashes mid-stream: a service killed with SIGKILL while bindings flow through every stage, then started
again; and two instances of every service, one of each killed, so that its partitions move to the other."""

import asyncio

import pytest

from deploy.stack.loopback import LoopbackStack
from deploy.stack.services import SERVICE_PACKAGES
from tests.faults.invariants import assert_invariants
from tests.faults.load_run import LoadRuns

pytestmark = pytest.mark.faults
# Long enough for the killed service's partitions to fill up with work it has not done.
DEAD_FOR_S = 3.0


@pytest.mark.parametrize("package", SERVICE_PACKAGES)
async def test_a_service_killed_mid_stream_and_restarted_loses_nothing_and_stores_nothing_twice(
        package: str, fault_stack: LoopbackStack, load_runs: LoadRuns) -> None:
    run = await load_runs.start()
    await run.reached(0.3)
    await asyncio.to_thread(fault_stack.services.kill, package)
    await asyncio.sleep(DEAD_FOR_S)
    await asyncio.to_thread(fault_stack.services.start, package)
    await run.finish()
    await assert_invariants(run, fault_stack)


async def test_with_two_instances_of_each_service_one_killed_its_partitions_move_and_nothing_is_lost(
        fault_stack: LoopbackStack, load_runs: LoadRuns) -> None:
    for package in SERVICE_PACKAGES:
        await asyncio.to_thread(fault_stack.services.start, package, 1)
    run = await load_runs.start()
    for package in SERVICE_PACKAGES:
        await run.reached(0.2 + 0.15 * SERVICE_PACKAGES.index(package))
        await asyncio.to_thread(fault_stack.services.kill, package, 0)
    await run.finish()
    await assert_invariants(run, fault_stack)
