"""`make footprint`: what each part of the system holds and costs per binding, measured on a stack of its own (Tansu,
the persistent raft OpenBao of `make run`, the HTX sandbox, the four services with their default settings), and
scaled to a target number of bindings (the README's capacity section).

    python -m deploy.bench.footprint --bindings 10000 --scale-to 1000000 [--pace 25] [--output json]

1. warm-up bindings, then a snapshot: Vault's raft data and audit log on disk, every topic's records and bytes
   (key, value and headers as produced; Kafka adds its batch framing), and each process's resident memory;
2. the bindings through the pipeline, in batches, as fast as it takes them; the snapshot again;
3. one key-health sweep of every stored binding with re-checks paced at --pace per second, timed from its request
   to the whitelist having applied the last re-check; the snapshot again.

Per-binding figures are differences between snapshots divided by the bindings; scaled figures multiply them out
(`scale`), with the bounds the code sets (intake's replay memory) and the retention each topic class has. Prints
tables; `--output json` prints the figures as JSON. Either way they are written to .run/bench/footprint.json."""

import argparse
import asyncio
import json
import math
import sys
import tempfile
import time
from contextlib import aclosing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError
from rich.progress import Progress
from rich.table import Table

from deploy.bench.run import BENCH_DIR, ResourceSampler, benchmarking, console
from deploy.bootstrap.kafka_topics import RETENTION_MS, unread_records
from deploy.bootstrap.private_files import make_private_dir
from deploy.bootstrap.vault_files import VaultFiles
from deploy.stack.loopback import LoopbackStack, loopback_stack
from shared.adapters.vault.client import hvac_client
from shared.adapters.vault.layout import BINDINGS_FOLDER, KV_MOUNT
from shared.clients.binding_client import BindingClient
from shared.contracts.routing import ROUTES, Party, Topic
from shared.runtime.config import IntakeSettings, Settings, ValidatorSettings, VaultWriterSettings
from shared.runtime.kafka_security import kafka_connection
from shared.runtime.logging import configure_logging

WARM_UP_BINDINGS = 50
# Each batch must reach its outcomes within the benchmark's timeout (deploy/bench/run.py OUTCOME_TIMEOUT_S).
BATCH_BINDINGS = 1_000
SWEEP_TIMEOUT_S = 3_600.0
SERVICES = ("intake", "validator", "vault_writer", "whitelist")
DAY_S = 86_400.0



@dataclass(frozen=True)
class TopicSize:
    records: int
    bytes: int


@dataclass(frozen=True)
class Snapshot:
    vault_data_bytes: int  # on disk: the raft log and the bolt database, which grows in preallocated steps
    vault_snapshot_bytes: int  # a raft snapshot: what the data is, compacted (what a backup holds)
    vault_audit_bytes: int
    topics: dict[str, TopicSize]
    rss_bytes: dict[str, int]


def _bytes_under(path: Path) -> int:
    return sum(file.stat().st_size for file in path.rglob("*") if file.is_file())


def _partitions(consumer: AIOKafkaConsumer, name: str) -> list[TopicPartition]:
    return [TopicPartition(name, number) for number in sorted(consumer.partitions_for_topic(name) or ())]


async def topic_sizes(settings: Settings) -> dict[str, TopicSize]:
    """Every topic read from its first record to its end, outside any consumer group."""
    connection = kafka_connection(settings, Party.OPS)
    consumer = AIOKafkaConsumer(**connection.client_options(), enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # the metadata of every topic, partitions included
        # Read before the first assign: after it, the client's metadata covers the assigned topic only.
        every_partition = {topic: _partitions(consumer, settings.topic(topic)) for topic in Topic}
        sizes = {}
        for topic, partitions in every_partition.items():
            starts, ends = await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
            consumer.assign(partitions)
            await consumer.seek_to_beginning(*partitions)
            records = size = 0
            behind = {tp for tp in partitions if starts[tp] < ends[tp]}
            while behind:
                for batch in (await consumer.getmany(timeout_ms=1_000, max_records=5_000)).values():
                    for record in batch:
                        records += 1
                        size += len(record.key or b"") + len(record.value or b"") + sum(
                            len(name) + len(value) for name, value in record.headers or ())
                behind = {tp for tp in behind if await consumer.position(tp) < ends[tp]}
            sizes[topic.value] = TopicSize(records, size)
        return sizes
    finally:
        await consumer.stop()


def _raft_snapshot(stack: LoopbackStack) -> bytes:
    response = hvac_client(stack.settings.vault_connection(), stack.root_token).sys.take_raft_snapshot()
    response.raise_for_status()
    return bytes(response.content)


async def snapshot(stack: LoopbackStack, sampler: ResourceSampler) -> Snapshot:
    files = VaultFiles(stack.settings.run_dir)
    sampler.sample()
    snapshot_bytes = len(await asyncio.to_thread(_raft_snapshot, stack))
    return Snapshot(_bytes_under(files.data), snapshot_bytes, files.audit_log.stat().st_size,
                    await topic_sizes(stack.settings),
                    sampler.current_rss())


async def sweep_everything(stack: LoopbackStack, client: BindingClient, bindings: int, progress: Progress) -> float:
    """Seconds from asking for a sweep to the whitelist having applied a re-check of each of the bindings."""
    settings = stack.settings
    connection = kafka_connection(settings, Party.OPS)
    consumer = AIOKafkaConsumer(**connection.client_options(), enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**connection.client_options())
    await consumer.start()
    await admin.start()
    task = progress.add_task(f"sweeping {bindings} bindings", total=bindings)
    try:
        await consumer.topics()
        partitions = _partitions(consumer, settings.topic(Topic.BINDING_RECHECKED))
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for partition in partitions:  # the end as it is now: seeking alone resolves it only on the next fetch
            await consumer.position(partition)
        started = time.monotonic()
        sweep_request_id = await client.request_sweep()
        seen: set[tuple[str, str]] = set()
        while len(seen) < bindings:
            if time.monotonic() - started > SWEEP_TIMEOUT_S:
                raise RuntimeError(f"the sweep re-checked {len(seen)} of {bindings} bindings "
                                   f"in {SWEEP_TIMEOUT_S:.0f} s")
            for batch in (await consumer.getmany(timeout_ms=1_000)).values():
                for record in batch:
                    event = json.loads(record.value or b"{}")
                    if event.get("sweep_request_id") == sweep_request_id:
                        seen.add((event["user_id"], event["binding_id"]))
            progress.update(task, completed=len(seen))
        while await unread_records(admin, connection, settings.topic_prefix, Topic.BINDING_RECHECKED,
                                   len(partitions), settings.kafka_group_suffix):
            await asyncio.sleep(0.5)
        return time.monotonic() - started
    finally:
        await consumer.stop()
        await admin.close()


def stack_settings(pace_per_s: float) -> dict[str, str]:
    """The services' settings for a measurement: re-checks at pace_per_s, and no sweep but the one measured."""
    return {"HASH7_HEALTH_SWEEP_INTERVAL_S": "0", "HASH7_HEALTH_RECHECKS_PER_S": str(pace_per_s)}


async def listing_audit(stack: LoopbackStack) -> dict[str, int]:
    """What a LIST adds to Vault's audit log: one of every user (what each sweep page does first), and one of a
    single user's bindings, to tell what grows with the names listed from what each LIST costs anyway."""
    audit_log = VaultFiles(stack.settings.run_dir).audit_log
    client = hvac_client(stack.settings.vault_connection(), stack.root_token)

    def listed(folder: str) -> tuple[list[str], int]:
        """The names in folder, and what listing them added to the audit log."""
        before = audit_log.stat().st_size
        names = client.secrets.kv.v2.list_secrets(folder, mount_point=KV_MOUNT)["data"]["keys"]
        return names, audit_log.stat().st_size - before

    users, every_user_bytes = await asyncio.to_thread(listed, BINDINGS_FOLDER)
    one, one_bytes = await asyncio.to_thread(listed, f"{BINDINGS_FOLDER}{users[0]}")
    return {"users": len(users), "audit_bytes": every_user_bytes, "one_name_audit_bytes": one_bytes,
            "one_names": len(one)}


async def read_statuses_back(client: BindingClient) -> tuple[int, float]:
    """binding.status from its first record to its end, each record verified and parsed: the work intake's replay
    view does on every start (shared/runtime/subscriptions.py follow). The records read, and the seconds it took."""
    started, records = time.monotonic(), 0
    async with aclosing(client.statuses(from_beginning=True)) as statuses:
        async for _status in statuses:
            records += 1
    return records, time.monotonic() - started


async def measure(stack: LoopbackStack, bindings: int, warm_up: int = WARM_UP_BINDINGS) -> dict[str, Any]:
    """Snapshots after warm_up bindings, after bindings more, and after a sweep of them all (see the module's doc)."""
    async with benchmarking(stack) as bench:
        await bench.load(await bench.prepare(warm_up, "the warm-up"), None, "warm-up")
        warm = await snapshot(stack, bench.sampler)
        bound_s, halfway = 0.0, None
        # At least two batches: memory's growth is measured over the second half (see scale).
        batch = min(BATCH_BINDINGS, max(bindings // 2, 1))
        for first in range(0, bindings, batch):
            count = min(batch, bindings - first)
            what = f"bindings {first + 1}–{first + count}"
            phase = await bench.load(await bench.prepare(count, what), None, what)
            bound_s += phase.wall_s
            if phase.states != {"active": count}:
                raise RuntimeError(f"not every binding became active: {phase.states}")
            if halfway is None and first + count >= bindings // 2:
                halfway = {"bindings": first + count, "rss_bytes": bench.sampler.current_rss()}
        bound = await snapshot(stack, bench.sampler)
        sweep_s = await sweep_everything(stack, bench.client, warm_up + bindings, bench.progress)
        swept = await snapshot(stack, bench.sampler)
        status_records, status_read_s = await read_statuses_back(bench.client)
    return {"bindings": bindings, "warm_up_bindings": warm_up, "bind_wall_s": round(bound_s, 1),
            "sweep_s": sweep_s, "halfway": halfway, "listing": await listing_audit(stack),
            "snapshots": {"warm": asdict(warm), "bound": asdict(bound), "swept": asdict(swept)},
            "status_read": {"records": status_records, "seconds": status_read_s},
            "peak_rss_bytes": dict(bench.sampler.peak_rss)}


def _records_per(after: dict[str, Any], before: dict[str, Any], topic: Topic, per: int) -> float:
    return float(after["topics"][topic.value]["records"] - before["topics"][topic.value]["records"]) / per


def scale(measured: dict[str, Any], target: int) -> dict[str, Any]:
    """The measured differences per binding, multiplied out to target bindings."""
    bindings = measured["bindings"]
    swept_bindings = bindings + measured["warm_up_bindings"]
    snapshots = measured["snapshots"]
    warm, bound, swept = snapshots["warm"], snapshots["bound"], snapshots["swept"]
    sweep_s = float(measured["sweep_s"])
    # The sweep's duration at target: the re-checks at the configured pace, unless this machine re-checked slower.
    achieved_per_s = swept_bindings / sweep_s
    default_pace = ValidatorSettings.model_fields["health_rechecks_per_s"].default
    sweep_at_target_s = target / min(default_pace, achieved_per_s)
    interval_s = VaultWriterSettings.model_fields["health_sweep_interval_s"].default
    # A sweep starts at the first slot of the interval after the one before it ended (one sweep at a time).
    sweeps_per_day = DAY_S / (math.ceil(sweep_at_target_s / interval_s) * interval_s)
    topics = {}
    for topic in Topic:
        name = topic.value
        per_bind = (bound["topics"][name]["bytes"] - warm["topics"][name]["bytes"]) / bindings
        per_sweep = (swept["topics"][name]["bytes"] - bound["topics"][name]["bytes"]) / swept_bindings
        retention_days = RETENTION_MS[ROUTES[topic].retention] / 1000 / DAY_S
        topics[name] = {
            "retention_days": retention_days, "bytes_per_binding": round(per_bind),
            "bytes_per_recheck": round(per_sweep),
            # Every binding bound once within the retention, plus the sweeps the retention holds.
            "at_target_bytes": round(target * per_bind + target * per_sweep * sweeps_per_day * retention_days)}
    replay_bound = IntakeSettings.model_fields["intake_replay_memory_max_requests"].default
    memory = {}
    halfway = measured["halfway"]
    for name in SERVICES + ("vault", "kafka"):
        # Over the second half of the bindings only: the first half also fills caches, connection pools and the
        # heap's first arenas once, which more bindings do not grow again.
        growth = (bound["rss_bytes"][name] - halfway["rss_bytes"][name]) / (bindings - halfway["bindings"])
        held = min(target, replay_bound) if name == "intake" else target
        memory[name] = {"warm_bytes": warm["rss_bytes"][name], "swept_bytes": swept["rss_bytes"][name],
                        "growth_per_binding_bytes": round(growth, 1),
                        "at_target_bytes": round(swept["rss_bytes"][name] + growth * max(held - bindings, 0))}
    status_read = measured["status_read"]
    status_records_per_s = status_read["records"] / status_read["seconds"]
    # Every status of the retention read back: the bindings' own, and what sweeps said (changes only).
    status_retention_days = RETENTION_MS[ROUTES[Topic.BINDING_STATUS].retention] / 1000 / DAY_S
    statuses_at_target = target * (
        _records_per(bound, warm, Topic.BINDING_STATUS, bindings)
        + _records_per(swept, bound, Topic.BINDING_STATUS, swept_bindings) * sweeps_per_day * status_retention_days)
    vault_per_binding = (bound["vault_data_bytes"] - warm["vault_data_bytes"]) / bindings
    snapshot_per_binding = (bound["vault_snapshot_bytes"] - warm["vault_snapshot_bytes"]) / bindings
    audit_per_binding = (bound["vault_audit_bytes"] - warm["vault_audit_bytes"]) / bindings
    # Each page of a sweep lists every user (Vault's KV LIST has no paging), and the audit device logs the names
    # listed: that part grows with pages × users, the rest with the re-checks.
    page_size = VaultWriterSettings.model_fields["sweep_page_size"].default
    listing = measured["listing"]
    list_per_user = max((listing["audit_bytes"] - listing["one_name_audit_bytes"])
                        / (listing["users"] - listing["one_names"]), 0.0)
    list_fixed = listing["one_name_audit_bytes"] - list_per_user * listing["one_names"]
    listed_here = (swept_bindings // page_size + 1) * listing["audit_bytes"]
    audit_per_recheck = (swept["vault_audit_bytes"] - bound["vault_audit_bytes"] - listed_here) / swept_bindings
    listing_per_sweep = (target // page_size + 1) * (list_fixed + list_per_user * target)
    return {
        "target_bindings": target, "recheck_pace_per_s": default_pace,
        "achieved_recheck_per_s": round(achieved_per_s, 1),
        "sweep_at_target_s": round(sweep_at_target_s), "sweep_interval_s": interval_s,
        "vault": {"data_bytes_per_binding": round(vault_per_binding),
                  "data_at_target_bytes": round(vault_per_binding * target),
                  "snapshot_bytes_per_binding": round(snapshot_per_binding),
                  "snapshot_at_target_bytes": round(snapshot_per_binding * target),
                  "audit_bytes_per_binding": round(audit_per_binding),
                  "audit_bytes_per_recheck": round(audit_per_recheck),
                  "audit_list_bytes_per_user": round(list_per_user, 1),
                  "audit_list_fixed_bytes": round(list_fixed),
                  "audit_listing_per_sweep_at_target_bytes": round(listing_per_sweep),
                  "audit_per_day_at_target_bytes": round((audit_per_recheck * target + listing_per_sweep)
                                                         * sweeps_per_day)},
        "topics": topics, "memory": memory,
        "intake_start": {"status_records_per_s": round(status_records_per_s),
                         "status_records_at_target": round(statuses_at_target),
                         "read_back_at_target_s": round(statuses_at_target / status_records_per_s)},
    }


def _mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB" if value < 1e9 else f"{value / 1e9:,.1f} GB"


def show(result: dict[str, Any]) -> None:
    measured, scaled = result["measured"], result["scaled"]
    bindings, target = measured["bindings"], scaled["target_bindings"]
    console.print(f"{bindings:,} bindings bound in {measured['bind_wall_s']:.0f} s; a sweep of all of them "
                  f"({bindings + measured['warm_up_bindings']:,}) took {measured['sweep_s']:.0f} s "
                  f"({scaled['achieved_recheck_per_s']:.1f} re-checks/s at the measured pace).")
    vault = scaled["vault"]
    storage = Table(title=f"Vault, measured per binding and scaled to {target:,}", title_justify="left")
    for column in ("what", "per binding", f"at {target:,}"):
        storage.add_column(column, justify="left" if column == "what" else "right")
    storage.add_row("raft data on disk", f"{vault['data_bytes_per_binding']:,} B", _mb(vault["data_at_target_bytes"]))
    storage.add_row("raft snapshot (backup)", f"{vault['snapshot_bytes_per_binding']:,} B",
                    _mb(vault["snapshot_at_target_bytes"]))
    storage.add_row("audit log, binding", f"{vault['audit_bytes_per_binding']:,} B",
                    _mb(vault["audit_bytes_per_binding"] * target))
    storage.add_row("audit log, a sweep's LISTs", f"{vault['audit_list_fixed_bytes']:,} B a page "
                    f"+ {vault['audit_list_bytes_per_user']:,} B per user listed",
                    _mb(vault["audit_listing_per_sweep_at_target_bytes"]))
    storage.add_row("audit log, per day of sweeps", f"{vault['audit_bytes_per_recheck']:,} B per re-check",
                    _mb(vault["audit_per_day_at_target_bytes"]))
    console.print(storage)
    topics = Table(title=f"Topics (key + value + headers) at {target:,}, within each retention", title_justify="left")
    for column in ("topic", "retention", "per binding", "per re-check", f"at {target:,}"):
        topics.add_column(column, justify="left" if column == "topic" else "right")
    for name, figures in scaled["topics"].items():
        topics.add_row(name, f"{figures['retention_days']:.0f} d", f"{figures['bytes_per_binding']:,} B",
                       f"{figures['bytes_per_recheck']:,} B", _mb(figures["at_target_bytes"]))
    console.print(topics)
    memory = Table(title="Resident memory", title_justify="left")
    for column in ("process", "after warm-up", f"after {bindings:,} and a sweep", "growth per binding, 2nd half",
                   f"at {target:,}"):
        memory.add_column(column, justify="left" if column == "process" else "right")
    for name, figures in scaled["memory"].items():
        memory.add_row(name, _mb(figures["warm_bytes"]), _mb(figures["swept_bytes"]),
                       f"{figures['growth_per_binding_bytes']:,.1f} B", _mb(figures["at_target_bytes"]))
    console.print(memory)
    start = scaled["intake_start"]
    console.print(f"intake's start at {target:,}: {start['status_records_at_target']:,} statuses to read back at "
                  f"{start['status_records_per_s']:,}/s (measured): {start['read_back_at_target_s'] / 60:,.0f} min.")
    console.print(f"A full sweep at {target:,}: {scaled['sweep_at_target_s'] / 3600:,.1f} h at "
                  f"{scaled['recheck_pace_per_s']} re-checks/s (the sweep interval is "
                  f"{scaled['sweep_interval_s'] / 3600:.0f} h).")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bindings", type=int, default=10_000, help="bindings to measure with (default 10,000)")
    parser.add_argument("--scale-to", type=int, default=1_000_000, help="bindings to scale to (default 1,000,000)")
    parser.add_argument("--pace", type=float, default=25.0,
                        help="re-checks per second during the measured sweep (default 25, to keep the run short)")
    parser.add_argument("--output", choices=("table", "json"), default="table")
    arguments = parser.parse_args()
    if arguments.bindings < 2:
        parser.error("--bindings must be at least 2: memory's growth is measured over the second half")
    try:
        VaultWriterSettings.model_validate({"health_rechecks_per_s": arguments.pace})
    except ValidationError as exc:
        parser.error(f"--pace {arguments.pace:g}: {exc.errors()[0]['msg']}")
    configure_logging("footprint", "console", "WARNING")
    make_private_dir(BENCH_DIR)
    with tempfile.TemporaryDirectory(dir=BENCH_DIR, prefix="stack-") as run_dir, \
            loopback_stack(Path(run_dir), stack_settings(arguments.pace)) as stack:
        measured = asyncio.run(measure(stack, arguments.bindings))
    result = {"measured": measured, "scaled": scale(measured, arguments.scale_to)}
    output = BENCH_DIR / "footprint.json"
    output.write_text(json.dumps(result, indent=2) + "\n")
    if arguments.output == "json":
        print(json.dumps(result, indent=2))
    else:
        show(result)
        console.print(f"Written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
