"""Handling a subscription's records as they arrive: in order for one key (a user), concurrently across keys,
with each partition's offset committed behind its first unfinished record.

FastStream hands a batch subscriber each poll's records and polls again when the handler returns. Handling
a batch to its end first would make every record wait for the slowest record of the batch before it, at
every stage. So the handler only admits the records to their key's lane and returns; a record that found no
room (the bound on records in hand) waits for some, which is the back-pressure. Offsets are committed a few
times a second, and on a rebalance or shutdown once the records in hand are finished: a crash repeats at
most the records in hand and the last fraction of a second, never skips one.
"""

import asyncio
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

import structlog
from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

log = structlog.get_logger(__name__)

# How often the offsets of finished records are committed: what a crash repeats beyond the records in hand.
COMMIT_EVERY_S = 0.2
# How long a revocation or a shutdown waits for the records in hand to finish before it commits.
DRAIN_TIMEOUT_S = 10.0


@dataclass(eq=False)
class _PartitionProgress:
    """One assignment of one partition: the records admitted and not yet finished (a record redelivered
    while its first copy is still in hand counts twice), and the highest offset admitted."""

    unfinished: Counter[int] = field(default_factory=Counter)
    highest: int = -1

    def finish(self, offset: int) -> None:
        self.unfinished[offset] -= 1
        if self.unfinished[offset] <= 0:
            del self.unfinished[offset]

    def committable(self) -> int | None:
        """The offset to commit (the next record to read after a restart), None before any admission."""
        if self.unfinished:
            return min(self.unfinished)
        return self.highest + 1 if self.highest >= 0 else None


@dataclass(frozen=True)
class Ticket:
    """A record in hand. Finishing it after its partition was revoked changes nothing: the partition's
    progress it points at is no longer the ledger's."""

    progress: _PartitionProgress
    offset: int

    def finish(self) -> None:
        self.progress.finish(self.offset)


class OffsetLedger:
    """What may be committed per partition: never past a record admitted and not finished (pure, no I/O)."""

    def __init__(self) -> None:
        self._partitions: dict[TopicPartition, _PartitionProgress] = {}
        self._committed: dict[TopicPartition, int] = {}

    def admit(self, partition: TopicPartition, offset: int) -> Ticket:
        progress = self._partitions.setdefault(partition, _PartitionProgress())
        progress.unfinished[offset] += 1
        progress.highest = max(progress.highest, offset)
        return Ticket(progress, offset)

    def committable(self, among: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        """The offsets to commit that moved on since the last commit (of the given partitions, or all)."""
        partitions = self._partitions.keys() if among is None else set(among) & self._partitions.keys()
        offsets = {tp: self._partitions[tp].committable() for tp in partitions}
        return {tp: offset for tp, offset in offsets.items()
                if offset is not None and offset > self._committed.get(tp, -1)}

    def committed(self, offsets: dict[TopicPartition, int]) -> None:
        self._committed.update(offsets)

    def unfinished(self, partitions: Iterable[TopicPartition]) -> int:
        return sum(sum(self._partitions[tp].unfinished.values()) for tp in partitions if tp in self._partitions)

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """The partitions were revoked: whoever is assigned them next starts from the committed offsets."""
        for tp in partitions:
            self._partitions.pop(tp, None)
            self._committed.pop(tp, None)


class Lanes:
    """Runs work in order within a lane and concurrently across lanes, at most `capacity` items in hand."""

    def __init__(self, capacity: int) -> None:
        self._room = asyncio.Semaphore(capacity)
        self._queues: dict[object, deque[tuple[Callable[[], Awaitable[None]], Callable[[], None]]]] = {}
        self._running: set[asyncio.Task[None]] = set()

    async def admit(self, lane: object, work: Callable[[], Awaitable[None]], on_done: Callable[[], None]) -> None:
        """Queue work on its lane once there is room (waiting for it is the back-pressure)."""
        await self._room.acquire()
        queue = self._queues.get(lane)
        if queue is None:
            queue = self._queues[lane] = deque()
            task = asyncio.create_task(self._run(lane, queue))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        queue.append((work, on_done))

    async def _run(self, lane: object, queue: deque[tuple[Callable[[], Awaitable[None]], Callable[[], None]]]) -> None:
        try:
            while queue:
                work, on_done = queue.popleft()
                try:
                    await work()
                except Exception as exc:  # noqa: BLE001 — the work handles its own failures; this is a bug
                    # Not done: its partition's commits stop at it, so it is read again after a restart.
                    log.critical("lane_work_failed", error_class=type(exc).__name__)
                else:
                    on_done()
                finally:
                    self._room.release()
        finally:
            # No await between the last check of the queue and this: an admission either found this lane
            # (and its work ran above) or finds none and starts a new one.
            del self._queues[lane]

    async def idle(self, timeout_s: float) -> bool:
        """Wait until every lane has run out of work; False if some still had work after timeout_s."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self._running:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self._running), timeout=remaining)
        return True


class Consumer(Protocol):
    """What a subscription needs of the aiokafka consumer that fetched its records."""

    def assignment(self) -> set[TopicPartition]: ...
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


# aiokafka has no type information, so its listener base class is Any to the type checker.
class LanedSubscription(ConsumerRebalanceListener):  # type: ignore[misc]
    """One subscription's records through Lanes (a lane per message key: a user), its offsets through an
    OffsetLedger, committed by the consumer that fetched them. It is also that consumer's rebalance
    listener: a revoked partition is committed up to where its records in hand got to."""

    def __init__(self, process: Callable[[ConsumerRecord], Awaitable[None]], capacity: int) -> None:
        self._process = process
        self._lanes = Lanes(capacity)
        self._ledger = OffsetLedger()
        self._consumer: Consumer | None = None
        self._committing: asyncio.Task[None] | None = None
        self._closing = False

    async def admit(self, records: Sequence[ConsumerRecord], consumer: Consumer) -> None:
        if self._closing:
            return  # shutting down: not admitted, so not committed either; read again after the restart
        self._consumer = consumer
        if self._committing is None:
            self._committing = asyncio.create_task(self._commit_every(COMMIT_EVERY_S))
        for record in records:
            ticket = self._ledger.admit(TopicPartition(record.topic, record.partition), record.offset)
            lane = record.key if record.key is not None else record.partition
            await self._lanes.admit(lane, partial(self._process, record), ticket.finish)

    async def commit(self, among: Iterable[TopicPartition] | None = None) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in self._ledger.committable(among).items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # A rebalance under way or the broker away: the next tick, or the revocation, commits it.
            log.info("commit_deferred", error_class=type(exc).__name__)
            return
        self._ledger.committed(offsets)

    async def _commit_every(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.commit()
            except Exception as exc:  # noqa: BLE001 — a commit that failed oddly must not end the commits
                log.error("commit_failed", error_class=type(exc).__name__)

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while self._ledger.unfinished(revoked) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await self.commit(revoked)
        self._ledger.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Nothing to do: the consumer reads a newly assigned partition from its committed offset."""

    async def close(self) -> None:
        """Stop admitting, let the records in hand finish (for a while), and commit what they got to."""
        self._closing = True
        if not await self._lanes.idle(DRAIN_TIMEOUT_S):
            log.warning("closing_with_records_in_hand", detail="they will be read again after the restart")
        if self._committing is not None:
            self._committing.cancel()
        await self.commit()
