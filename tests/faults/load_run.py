"""A fault test's load: a few hundred good keys bound through the running stack at a steady pace, with some
keys bound a second time by another user shortly after (exactly one of the two may win), so that a fault can
be injected while work is in flight at every stage."""

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from deploy.bench.load import SandboxKey, StatusCollector, Submission, provision_good_keys, seal_requests
from deploy.stack.loopback import LoopbackStack
from shared.clients.binding_client import BindingClient
from shared.contracts.events import BindingRequested

BINDINGS = 200
RATE_PER_S = 25.0
# Every this many keys, the key two places back is bound again by another user: a race for one key.
RIVAL_EVERY = 20
# Long enough for a Vault outage, a restart and a rebalance, and the in-place retries after them.
OUTCOME_TIMEOUT_S = 180.0


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

    def __init__(self, stack: LoopbackStack, client: BindingClient, collector: StatusCollector) -> None:
        self._stack = stack
        self._client = client
        self._collector = collector
        self._runs: list[LoadRun] = []

    async def start(self, count: int = BINDINGS, rate_per_s: float = RATE_PER_S,
                    keys_per_user: int = 1) -> LoadRun:
        keys = provision_good_keys(self._stack.sandbox, count, self._stack.settings.egress_ips, keys_per_user)
        requests = await seal_requests(self._client, with_rivals(keys))
        run = LoadRun(requests, keys, Submission(self._client, requests, rate_per_s), self._collector)
        self._runs.append(run)
        run.start()
        return run

    async def cancel(self) -> None:
        for run in self._runs:
            await run.cancel()
