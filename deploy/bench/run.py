"""`make bench`: throughput and latency of bindings end to end, against what this machine can do at all.

On its own stack (Tansu, the persistent OpenBao, the HTX sandbox answering every endpoint after 20 ms, the
four services as processes with their default settings), in this order:

1. warm-up: a few bindings, so logins and connections are made before anything is timed;
2. latency: bindings offered at a fixed 50/s (the target's load), and at 25/s (below this machine's
   saturation), each timed from its binding.requested to its `active` status, as the app sees them;
3. sustained throughput: bindings submitted as fast as the broker takes them, completions per second over
   the middle 80% of completions (the start and the drain left out);
4. raw capacity: the same Vault operations and HTX calls done directly, many at once (the better of two
   concurrency levels), from four processes as the pipeline has four services, without Kafka and without
   our services: the practical limit, to which our throughput is compared;

while sampling CPU time and resident memory of every process. Prints tables and writes JSON to
.run/bench/result.json.
"""

import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from deploy.bench.capacity import CONCURRENCY_LEVELS, Capacity, DirectBinding, Part, measure
from deploy.bench.load import StatusCollector, Submission, provision_good_keys, seal_requests
from deploy.bootstrap.private_files import make_private_dir
from deploy.stack.loopback import LoopbackStack, loopback_stack
from shared.clients.binding_client import BindingClient
from shared.contracts.events import BindingRequested
from shared.contracts.states import BindingState
from shared.runtime.logging import configure_logging

BENCH_DIR = Path(".run/bench")
SANDBOX_LATENCY_MS = 20
WARM_UP_BINDINGS = 30
# The target's load first; the lower rate shows the latency of a pipeline that is not queueing.
LATENCY_RATES_PER_S = (50.0, 25.0)
LATENCY_BINDINGS = 600
SUSTAINED_BINDINGS = 1_000
CAPACITY_BINDINGS = 600
OUTCOME_TIMEOUT_S = 300.0
TARGET_P99_S = 0.4
TARGET_SHARE_OF_LIMIT = 0.5
SAMPLE_EVERY_S = 0.25

console = Console(highlight=False)


class ResourceSampler:
    """CPU seconds (user + system, children included) and peak resident memory of named processes."""

    def __init__(self, processes: dict[str, int]) -> None:
        self._processes = {name: psutil.Process(pid) for name, pid in processes.items()}
        self.peak_rss: dict[str, int] = dict.fromkeys(processes, 0)

    def cpu_seconds(self) -> dict[str, float]:
        return {name: _tree_cpu(process) for name, process in self._processes.items()}

    def current_rss(self) -> dict[str, int]:
        return {name: _tree_rss(process) for name, process in self._processes.items()}

    def sample(self) -> None:
        for name, process in self._processes.items():
            self.peak_rss[name] = max(self.peak_rss[name], _tree_rss(process))

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(SAMPLE_EVERY_S)


def _tree(process: psutil.Process) -> list[psutil.Process]:
    try:
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _tree_cpu(process: psutil.Process) -> float:
    total = 0.0
    for member in _tree(process):
        try:
            times = member.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def _tree_rss(process: psutil.Process) -> int:
    total = 0
    for member in _tree(process):
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of values sorted ascending."""
    return sorted_values[max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))]


@dataclass
class Phase:
    """One load phase: what was submitted when, and when each request reached its outcome."""

    requests: list[BindingRequested]
    submitted_at: dict[str, float]
    completed_at: dict[str, float] = field(default_factory=dict)
    states: dict[str, int] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0

    def active_latencies(self) -> list[float]:
        return sorted(self.completed_at[r.request_id] - self.submitted_at[r.request_id]
                      for r in self.requests if r.request_id in self.completed_at)


class Benchmark:
    def __init__(self, stack: LoopbackStack, client: BindingClient, collector: StatusCollector,
                 sampler: ResourceSampler, progress: Progress) -> None:
        self.stack = stack
        self.client = client
        self.collector = collector
        self.sampler = sampler
        self.progress = progress

    async def prepare(self, count: int, what: str) -> list[BindingRequested]:
        task = self.progress.add_task(f"sealing {count} requests for {what}", total=count)
        keys = await asyncio.to_thread(provision_good_keys, self.stack.sandbox, count, self.stack.settings.egress_ips)
        requests = await seal_requests(self.client, keys)
        self.progress.update(task, completed=count)
        return requests

    async def load(self, requests: list[BindingRequested], rate_per_s: float | None, what: str) -> Phase:
        task = self.progress.add_task(what, total=len(requests))
        submission = Submission(self.client, requests, rate_per_s)
        cpu_before, started = self.sampler.cpu_seconds(), time.monotonic()
        await submission.run()
        left = await self.collector.wait_for_outcomes(
            [r.request_id for r in requests], OUTCOME_TIMEOUT_S,
            on_progress=lambda pending: self.progress.update(task, completed=len(requests) - pending))
        if left:
            raise RuntimeError(f"{len(left)} of {len(requests)} bindings had no outcome in {OUTCOME_TIMEOUT_S:.0f} s")
        phase = Phase(requests, submission.submitted_at, wall_s=time.monotonic() - started)
        cpu_after = self.sampler.cpu_seconds()
        phase.cpu_seconds = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
        for request in requests:
            outcome = self.collector.outcome(request.request_id)
            assert outcome is not None
            phase.states[outcome.status.state] = phase.states.get(outcome.status.state, 0) + 1
            if outcome.status.state == BindingState.ACTIVE:
                phase.completed_at[request.request_id] = outcome.arrived_at
        return phase

    async def capacity(self, part: Part, what: str) -> Capacity:
        """The best of part's throughput over the concurrency levels, each on keys of its own."""
        task = self.progress.add_task(what, total=len(CONCURRENCY_LEVELS))
        best: Capacity | None = None
        for concurrency in CONCURRENCY_LEVELS:
            keys = await asyncio.to_thread(provision_good_keys, self.stack.sandbox, CAPACITY_BINDINGS,
                                           self.stack.settings.egress_ips)
            measured = await asyncio.to_thread(measure, self.stack.settings, keys, part, concurrency)
            best = measured if best is None or measured.per_second > best.per_second else best
            self.progress.advance(task)
        assert best is not None
        return best


def sustained_per_s(phase: Phase) -> float:
    """Completions per second between the 10th and the 90th percentile of completion times."""
    done = sorted(phase.completed_at.values())
    first, last = done[len(done) // 10], done[len(done) * 9 // 10]
    return (len(done) * 9 // 10 - len(done) // 10) / (last - first)


@asynccontextmanager
async def benchmarking(stack: LoopbackStack) -> AsyncIterator[Benchmark]:
    """A Benchmark of stack: its processes sampled, a client and a status collector open, progress shown."""
    sampler = ResourceSampler({name: process.pid for name, process in stack.processes().items()})
    sampling = asyncio.create_task(sampler.run())
    try:
        async with BindingClient(stack.settings) as client, StatusCollector(client) as collector:
            with Progress(console=console, transient=False) as progress:
                yield Benchmark(stack, client, collector, sampler, progress)
    finally:
        sampling.cancel()


async def run_benchmark(stack: LoopbackStack) -> dict[str, object]:
    stack.sandbox.set_fault("*", latency_ms=SANDBOX_LATENCY_MS)
    async with benchmarking(stack) as bench:
        await bench.load(await bench.prepare(WARM_UP_BINDINGS, "the warm-up"), 10.0, "warm-up")
        latencies = {rate: await bench.load(await bench.prepare(LATENCY_BINDINGS, "latency"), rate,
                                            f"latency at {rate:.0f}/s")
                     for rate in LATENCY_RATES_PER_S}
        sustained = await bench.load(await bench.prepare(SUSTAINED_BINDINGS, "throughput"), None,
                                     "sustained throughput")
        vault_only = await bench.capacity(DirectBinding.vault_part, "raw capacity: Vault operations")
        htx_only = await bench.capacity(DirectBinding.htx_part, "raw capacity: HTX calls")
        limit = await bench.capacity(DirectBinding.whole, "raw capacity: both")
    return report(latencies, sustained, vault_only, htx_only, limit, bench.sampler)


def latency_figures(rate: float, phase: Phase) -> dict[str, object]:
    latencies = phase.active_latencies()
    return {"offered_per_s": rate, "bindings": len(phase.requests), "states": phase.states,
            **{f"p{p}_ms": round(percentile(latencies, p / 100) * 1000, 1) for p in (50, 95, 99)},
            "max_ms": round(latencies[-1] * 1000, 1)}


def report(latencies: dict[float, Phase], sustained: Phase, vault_only: Capacity, htx_only: Capacity, limit: Capacity,
           sampler: ResourceSampler) -> dict[str, object]:
    throughput = sustained_per_s(sustained)
    completed = len(sustained.completed_at)
    return {
        "machine": {"cpus": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
                    "python": platform.python_version(), "platform": platform.platform()},
        "sandbox_latency_ms": SANDBOX_LATENCY_MS,
        "latency": [latency_figures(rate, phase) for rate, phase in latencies.items()],
        "sustained": {"bindings": len(sustained.requests), "states": sustained.states,
                      "bindings_per_s": round(throughput, 1), "wall_s": round(sustained.wall_s, 1)},
        "raw_capacity_per_s": {"vault_operations": round(vault_only.per_second, 1),
                               "htx_calls": round(htx_only.per_second, 1), "both": round(limit.per_second, 1)},
        "share_of_limit": round(throughput / limit.per_second, 2),
        "resources": {name: {"cpu_s_sustained": round(cpu, 2),
                             "cpu_ms_per_binding": round(1000 * cpu / completed, 2) if completed else None,
                             "peak_rss_mib": round(sampler.peak_rss[name] / 2**20, 1)}
                      for name, cpu in sustained.cpu_seconds.items()},
        "targets": {"p99_under_ms": TARGET_P99_S * 1000, "at_per_s": LATENCY_RATES_PER_S[0],
                    "share_of_limit_at_least": TARGET_SHARE_OF_LIMIT},
    }


def show(result: dict[str, object]) -> None:
    latencies, sustained = result["latency"], result["sustained"]
    capacity, resources = result["raw_capacity_per_s"], result["resources"]
    assert isinstance(latencies, list) and isinstance(sustained, dict)
    assert isinstance(capacity, dict) and isinstance(resources, dict)
    summary = Table(title=f"Bindings end to end, sandbox latency {SANDBOX_LATENCY_MS} ms", title_justify="left")
    summary.add_column("measure")
    summary.add_column("value", justify="right")
    summary.add_column("target", justify="right")
    share_met = result["share_of_limit"] >= TARGET_SHARE_OF_LIMIT  # type: ignore[operator]
    for latency in latencies:
        rate = latency["offered_per_s"]
        target = ""
        if rate == LATENCY_RATES_PER_S[0]:
            met = latency["p99_ms"] < TARGET_P99_S * 1000
            target = f"p99 < {TARGET_P99_S * 1000:.0f} ms {'met' if met else 'MISSED'}"
        summary.add_row(f"latency p50 / p95 / p99 at {rate:.0f}/s",
                        f"{latency['p50_ms']:.0f} / {latency['p95_ms']:.0f} / {latency['p99_ms']:.0f} ms", target)
    summary.add_row("sustained throughput", f"{sustained['bindings_per_s']:.1f} /s", "")
    summary.add_row("raw capacity: Vault ops / HTX calls / both",
                    f"{capacity['vault_operations']:.0f} / {capacity['htx_calls']:.0f} / {capacity['both']:.0f} /s", "")
    summary.add_row("throughput as a share of the limit", f"{result['share_of_limit']:.0%}",
                    f">= {TARGET_SHARE_OF_LIMIT:.0%} {'met' if share_met else 'MISSED'}")
    console.print(summary)
    usage = Table(title="Resources during the sustained run", title_justify="left")
    for column in ("process", "CPU s", "CPU ms per binding", "peak RSS MiB"):
        usage.add_column(column, justify="left" if column == "process" else "right")
    for name, figures in resources.items():
        usage.add_row(name, f"{figures['cpu_s_sustained']:.1f}", f"{figures['cpu_ms_per_binding']:.1f}",
                      f"{figures['peak_rss_mib']:.0f}")
    console.print(usage)


def main() -> int:
    configure_logging("bench", "console", "WARNING")
    make_private_dir(BENCH_DIR)
    console.print("Starting a stack of its own (Tansu, OpenBao, the HTX sandbox, the four services)…")
    # The stack's folder (Vault's data, AppRole credentials, logs) goes when the run ends; the result stays.
    with tempfile.TemporaryDirectory(dir=BENCH_DIR, prefix="stack-") as run_dir, loopback_stack(Path(run_dir)) as stack:
        result = asyncio.run(run_benchmark(stack))
    show(result)
    output = BENCH_DIR / "result.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"Written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
