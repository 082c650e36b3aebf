"""Outages of what the services depend on, mid-stream: Vault stopped for tens of seconds, and HTX (the
sandbox) slow, failing with 5xx, rate limiting and in maintenance."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from deploy.stack.loopback import LoopbackStack
from shared.contracts.reasons import ReasonCode
from tests.faults.invariants import assert_invariants
from tests.faults.load_run import LoadRun, LoadRuns

pytestmark = pytest.mark.faults
VAULT_DOWN_S = 20.0
MAINTENANCE_S = 6.0
RATE_LIMITED = "base-request-exceed-frequency-limit"
# HTX's own trouble says nothing about a key: the only excusable rejection is "try again later".
HTX_TROUBLE_EXCUSES = frozenset({ReasonCode.EXCHANGE_UNAVAILABLE})


async def test_vault_down_for_twenty_seconds_mid_stream_rejects_nothing_and_work_resumes_by_itself(
        fault_stack: LoopbackStack, load_runs: LoadRuns) -> None:
    run = await load_runs.start()
    await run.reached(0.3)
    await asyncio.to_thread(fault_stack.vault_outage, VAULT_DOWN_S)
    await run.finish()
    await assert_invariants(run, fault_stack)


def rate_limited_answers(stack: LoopbackStack) -> int:
    return sum(counts.get(RATE_LIMITED, 0) for counts in stack.sandbox.request_counts().values())


async def slow(stack: LoopbackStack, run: LoadRun) -> None:
    # Slow everywhere, and a tenth of the calls held past the client's timeout.
    stack.sandbox.set_fault("*", latency_ms=300, timeout_rate=0.1, timeout_hold_ms=2500)


async def failing_with_5xx(stack: LoopbackStack, run: LoadRun) -> None:
    stack.sandbox.set_fault("*", error_rate=0.3, error_kind="bad-gateway")
    stack.sandbox.set_fault("/v2/user/api-key", error_rate=0.3, error_kind="gateway-internal-error")


async def in_maintenance(stack: LoopbackStack, run: LoadRun) -> None:
    await run.reached(0.3)
    stack.sandbox.set_fault("*", maintenance=True)
    await asyncio.sleep(MAINTENANCE_S)
    stack.sandbox.clear_faults()


HTX_TROUBLE: dict[str, Callable[[LoopbackStack, LoadRun], Awaitable[None]]] = {
    "slow": slow, "failing_with_5xx": failing_with_5xx, "in_maintenance": in_maintenance,
}


@pytest.mark.parametrize("trouble", sorted(HTX_TROUBLE))
async def test_htx_trouble_rejects_no_good_key_as_bad_and_retries_stay_within_htx_rate_limits(
        trouble: str, fault_stack: LoopbackStack, load_runs: LoadRuns) -> None:
    run = await load_runs.start()
    await HTX_TROUBLE[trouble](fault_stack, run)
    await run.finish()
    await assert_invariants(run, fault_stack, excused=HTX_TROUBLE_EXCUSES)
    assert rate_limited_answers(fault_stack) == 0


async def test_htx_rate_limiting_is_waited_out_not_hammered(fault_stack: LoopbackStack, load_runs: LoadRuns) -> None:
    # Ten keys per HTX user, and limits well below the documented ones: the users' windows fill up.
    for endpoint in ("/v2/user/uid", "/v2/user/api-key", "/v1/account/accounts"):
        fault_stack.sandbox.set_rate_limit(endpoint, requests=4, window_ms=1000)
    run = await load_runs.start(keys_per_user=10)
    await run.finish()
    await assert_invariants(run, fault_stack, excused=HTX_TROUBLE_EXCUSES)
    # A refused call waits for the window HTX names before it tries again, so a key is refused about once:
    # retrying into a full window would be refused again and again.
    assert rate_limited_answers(fault_stack) <= len(run.requests)
