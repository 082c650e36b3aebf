"""A fault test's load: a few hundred good keys bound through the running stack at a steady pace, with some
keys bound a second time by another user shortly after (exactly one of the two may win), so that a fault can
be injected while work is in flight at every stage. The stream is mixed-exchange: a share of its keys are Bybit and
OKX keys (OKX's with their passphrases), interleaved with HTX's, so every stage holds work for every exchange when
the fault strikes."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from deploy.bench.load import (
    SandboxKey,
    StatusCollector,
    Submission,
    provision_good_bybit_keys,
    provision_good_keys,
    provision_good_okx_keys,
    seal_requests,
)
from deploy.sandbox.common.admin_client import SandboxAdmin
from deploy.stack.loopback import LoopbackStack
from shared.clients.binding_client import BindingClient
from shared.contracts.events import BindingRequested
from shared.contracts.exchanges import ExchangeName

BINDINGS = 200
RATE_PER_S = 25.0
# Every this many keys, the key two places back is bound again by another user: a race for one key.
RIVAL_EVERY = 20
# Long enough for a Vault outage, a restart and a rebalance, and the in-place retries after them.
OUTCOME_TIMEOUT_S = 180.0
# Of every five keys, one is a Bybit key and one an OKX key: the same number of bindings as before, so the suite's
# run time stays what it was.
MIX_EVERY = 5


def mixed(htx: Sequence[SandboxKey], bybit: Sequence[SandboxKey], okx: Sequence[SandboxKey]) -> list[SandboxKey]:
    """The three lists interleaved: an HTX key, then in each group of MIX_EVERY a Bybit and an OKX key among the
    HTX ones, to the end of the longest list."""
    queues = {ExchangeName.HTX: list(htx), ExchangeName.BYBIT: list(bybit), ExchangeName.OKX: list(okx)}
    pattern = [ExchangeName.HTX, ExchangeName.BYBIT, ExchangeName.HTX, ExchangeName.OKX, ExchangeName.HTX]
    ordered: list[SandboxKey] = []
    while any(queues.values()):
        for exchange in pattern:
            if queues[exchange]:
                ordered.append(queues[exchange].pop(0))
    return ordered


def provision_mixed_keys(stack: LoopbackStack, other_sandboxes: dict[ExchangeName, SandboxAdmin], count: int,
                         keys_per_user: int) -> list[SandboxKey]:
    """count good keys, a fifth of them on Bybit and a fifth on OKX (keys_per_user applies to HTX's users, whose
    rate limits one test fills)."""
    egress_ips = stack.settings.egress_ips
    others = count // MIX_EVERY
    return mixed(provision_good_keys(stack.sandbox, count - 2 * others, egress_ips, keys_per_user),
                 provision_good_bybit_keys(other_sandboxes[ExchangeName.BYBIT], others, egress_ips),
                 provision_good_okx_keys(other_sandboxes[ExchangeName.OKX], others, egress_ips))


def with_rivals(keys: Sequence[SandboxKey], every: int = RIVAL_EVERY) -> list[SandboxKey]:
    ordered: list[SandboxKey] = []
    for index, key in enumerate(keys, start=1):
        ordered.append(key)
        if index % every == 0:
            ordered.append(keys[index - 3])
    return ordered


@dataclass
class LoadRun:
    requests: list[BindingRequested]
    keys: list[SandboxKey]
    submission: Submission
    collector: StatusCollector
    without_outcome: list[str] = field(default_factory=list)
    _submitting: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._submitting = asyncio.create_task(self.submission.run())

    async def reached(self, fraction: float) -> None:
        """Return once this fraction of the requests has been submitted."""
        await self.submission.reached(int(len(self.requests) * fraction))

    async def finish(self, timeout_s: float = OUTCOME_TIMEOUT_S) -> None:
        """Wait for the submission, then for every request's outcome (those still without one are kept in
        without_outcome for the invariant check)."""
        assert self._submitting is not None
        await self._submitting
        self.without_outcome = await self.collector.wait_for_outcomes(
            [request.request_id for request in self.requests], timeout_s)

    async def cancel(self) -> None:
        if self._submitting is not None and not self._submitting.done():
            self._submitting.cancel()
            await asyncio.gather(self._submitting, return_exceptions=True)


class LoadRuns:
    """Makes a test's load runs and cancels what is left of them when the test ends."""

    def __init__(self, stack: LoopbackStack, other_sandboxes: dict[ExchangeName, SandboxAdmin], client: BindingClient,
                 collector: StatusCollector) -> None:
        self._stack = stack
        self._other_sandboxes = other_sandboxes
        self._client = client
        self._collector = collector
        self._runs: list[LoadRun] = []

    async def start(self, count: int = BINDINGS, rate_per_s: float = RATE_PER_S,
                    keys_per_user: int = 1) -> LoadRun:
        keys = provision_mixed_keys(self._stack, self._other_sandboxes, count, keys_per_user)
        requests = await seal_requests(self._client, with_rivals(keys))
        run = LoadRun(requests, keys, Submission(self._client, requests, rate_per_s), self._collector)
        self._runs.append(run)
        run.start()
        return run

    async def cancel(self) -> None:
        for run in self._runs:
            await run.cancel()
