"""Outages of what the services depend on, mid-stream: Vault stopped for tens of seconds, and the exchanges (their
sandboxes: HTX, Bybit and OKX at once, as the stream mixes their keys) slow, failing with 5xx and in maintenance,
and HTX rate limiting."""

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from deploy.sandbox.common.admin_client import SandboxAdmin
from deploy.stack.loopback import LoopbackStack
from shared.adapters.bybit.client import QUERY_API_PATH
from shared.adapters.okx.client import ACCOUNT_CONFIG_PATH
from shared.contracts.exchanges import ExchangeName
from shared.contracts.reasons import ReasonCode
from tests.faults.invariants import assert_invariants
from tests.faults.load_run import LoadRun, LoadRuns

pytestmark = pytest.mark.faults
VAULT_DOWN_S = 20.0
MAINTENANCE_S = 6.0
# Each exchange's rate-limit refusal as its sandbox counts it (the error code):
# shared/adapters/htx/README.md#rate-limits, shared/adapters/bybit/README.md#rate-limits,
# shared/adapters/okx/README.md#rate-limits.
RATE_LIMITED = {ExchangeName.HTX: "base-request-exceed-frequency-limit", ExchangeName.BYBIT: "10006",
                ExchangeName.OKX: "50011"}
# Each exchange's key-info call, which a 5xx fault also answers with the exchange's own internal-error envelope.
KEY_INFO_PATHS = {ExchangeName.HTX: "/v2/user/api-key", ExchangeName.BYBIT: QUERY_API_PATH,
                  ExchangeName.OKX: ACCOUNT_CONFIG_PATH}
# An exchange's own trouble says nothing about a key: the only excusable rejection is "try again later".
EXCHANGE_TROUBLE_EXCUSES = frozenset({ReasonCode.EXCHANGE_UNAVAILABLE})
Sandboxes = dict[ExchangeName, SandboxAdmin]


async def test_vault_down_for_twenty_seconds_mid_stream_rejects_nothing_and_work_resumes_by_itself(
        fault_stack: LoopbackStack, load_runs: LoadRuns) -> None:
    run = await load_runs.start()
    await run.reached(0.3)
    await asyncio.to_thread(fault_stack.vault_outage, VAULT_DOWN_S)
    await run.finish()
    await assert_invariants(run, fault_stack)


def rate_limited_answers(sandboxes: Sandboxes) -> int:
    return sum(counts.get(RATE_LIMITED[exchange], 0)
               for exchange, sandbox in sandboxes.items() for counts in sandbox.request_counts().values())


def every_sandbox(stack: LoopbackStack, other_sandboxes: Sandboxes) -> Sandboxes:
    return {ExchangeName.HTX: stack.sandbox, **other_sandboxes}


async def slow(sandboxes: Sandboxes, run: LoadRun) -> None:
    # Slow everywhere, and a tenth of the calls held past the client's timeout.
    for sandbox in sandboxes.values():
        sandbox.set_fault("*", latency_ms=300, timeout_rate=0.1, timeout_hold_ms=2500)


async def failing_with_5xx(sandboxes: Sandboxes, run: LoadRun) -> None:
    for exchange, sandbox in sandboxes.items():
        sandbox.set_fault("*", error_rate=0.3, error_kind="bad-gateway")
        sandbox.set_fault(KEY_INFO_PATHS[exchange], error_rate=0.3, error_kind="gateway-internal-error")


async def in_maintenance(sandboxes: Sandboxes, run: LoadRun) -> None:
    await run.reached(0.3)
    for sandbox in sandboxes.values():
        sandbox.set_fault("*", maintenance=True)
    await asyncio.sleep(MAINTENANCE_S)
    for sandbox in sandboxes.values():
        sandbox.clear_faults()


EXCHANGE_TROUBLE: dict[str, Callable[[Sandboxes, LoadRun], Awaitable[None]]] = {
    "slow": slow, "failing_with_5xx": failing_with_5xx, "in_maintenance": in_maintenance,
}


@pytest.mark.parametrize("trouble", sorted(EXCHANGE_TROUBLE))
async def test_exchange_trouble_rejects_no_good_key_as_bad_and_retries_stay_within_rate_limits(
        trouble: str, fault_stack: LoopbackStack, other_sandboxes: Sandboxes, load_runs: LoadRuns) -> None:
    sandboxes = every_sandbox(fault_stack, other_sandboxes)
    run = await load_runs.start()
    await EXCHANGE_TROUBLE[trouble](sandboxes, run)
    await run.finish()
    await assert_invariants(run, fault_stack, excused=EXCHANGE_TROUBLE_EXCUSES)
    assert rate_limited_answers(sandboxes) == 0


async def test_htx_rate_limiting_is_waited_out_not_hammered(fault_stack: LoopbackStack, load_runs: LoadRuns) -> None:
    # Ten keys per HTX user, and limits well below the documented ones: the users' windows fill up.
    for endpoint in ("/v2/user/uid", "/v2/user/api-key", "/v1/account/accounts"):
        fault_stack.sandbox.set_rate_limit(endpoint, requests=4, window_ms=1000)
    run = await load_runs.start(keys_per_user=10)
    await run.finish()
    await assert_invariants(run, fault_stack, excused=EXCHANGE_TROUBLE_EXCUSES)
    # A refused call waits for the window HTX names before it tries again, so a key is refused about once:
    # retrying into a full window would be refused again and again.
    assert rate_limited_answers({ExchangeName.HTX: fault_stack.sandbox}) <= len(run.requests)
