"""Handling a subscription's records as they arrive: in order for one key (a user), concurrently across keys,
with each partition's offset committed behind its first unfinished record.

FastStream hands a batch subscriber each poll's records and polls again when the handler returns. Handling
a batch to its end first would make every record wait for the slowest record of the batch before it, at
every stage. So the handler only admits the records to their key's lane and returns. A record in hand holds
room (the bound on records in hand), and one key holds at most its share of it: records sent straight to a
topic for one user must not fill the room every other user needs. A record that finds no room waits in its
lane, and its partition is paused until its waiting records are in hand: the next polls bring the other
partitions' records. That, and no polling at all while the room's worth of records wait, is the back-pressure.
Offsets are committed a few times a second, and on a rebalance or shutdown once the records in hand are
finished: a crash repeats at most the records fetched and the last fraction of a second, never skips one.
"""

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Collection, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from typing import Generic, Protocol, TypeVar

import structlog
from aiokafka import ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from shared.runtime.metrics import PartitionLoad

log = structlog.get_logger(__name__)

# How often the offsets of finished records are committed: what a crash repeats beyond the records in hand.
COMMIT_EVERY_S = 0.2
# How long a revocation or a shutdown waits for the records in hand to finish before it commits.
DRAIN_TIMEOUT_S = 10.0

S = TypeVar("S", bound=Hashable)


@dataclass(eq=False)
class _PartitionProgress:
    """One assignment of one partition: the records admitted and not yet finished (a record redelivered
    while its first copy is still in hand counts twice), and the highest offset admitted."""

    unfinished: Counter[int] = field(default_factory=Counter)
    highest: int = -1
    # When each unfinished offset was first admitted (time.monotonic): how long the partition's commits wait.
    admitted_at: dict[int, float] = field(default_factory=dict)

    def finish(self, offset: int) -> None:
        self.unfinished[offset] -= 1
        if self.unfinished[offset] <= 0:
            del self.unfinished[offset]
            self.admitted_at.pop(offset, None)

    def oldest_age_s(self, now: float) -> float:
        return now - min(self.admitted_at.values()) if self.admitted_at else 0.0

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
        progress.admitted_at.setdefault(offset, time.monotonic())
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

    def loads(self, now: float) -> Iterator[tuple[TopicPartition, int, float, int | None]]:
        """Per partition: records unfinished, the age of the oldest, and the next offset to read (committed, or
        past the highest admitted; None before any)."""
        for tp, progress in self._partitions.items():
            next_offset = self._committed.get(tp, progress.committable())
            yield tp, progress.unfinished.total(), progress.oldest_age_s(now), next_offset

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """The partitions were revoked: whoever is assigned them next starts from the committed offsets."""
        for tp in partitions:
            self._partitions.pop(tp, None)
            self._committed.pop(tp, None)


@dataclass(frozen=True)
class _Work(Generic[S]):
    run: Callable[[], Awaitable[None]]
    on_done: Callable[[], None]
    source: S  # where it came from (a partition): what is paused, resumed and dropped


@dataclass(eq=False)
class _Lane(Generic[S]):
    """A lane's work in order: the first `in_hand` items hold room (the first of them runs), the rest wait."""

    items: deque[_Work[S]] = field(default_factory=deque)
    in_hand: int = 0
    runner: asyncio.Task[None] | None = None

    def waiting(self) -> int:
        return len(self.items) - self.in_hand


def _ignore(source: object) -> None:
    pass


class Lanes(Generic[S]):
    """Runs work in order within a lane and concurrently across lanes, with at most `capacity` items in hand
    and at most max(1, floor(share × capacity)) of them in one lane. Admitting never blocks: work beyond
    either bound waits in its lane. Room that frees goes to the waiting lanes holding the least, in turn, so
    that a lane with a long backlog cannot keep it. `on_drained(source)` is told when no work from that
    source waits any more."""

    def __init__(self, capacity: int, share: float, on_drained: Callable[[S], None] = _ignore) -> None:
        self._capacity = capacity
        # Rounded first: 0.29 × 100 is 28.999… in binary floating point.
        self._per_lane = max(1, math.floor(round(share * capacity, 6)))
        self._on_drained = on_drained
        # In turn order: a lane given room goes to the back (_fill).
        self._lanes: dict[Hashable, _Lane[S]] = {}
        self._in_hand = 0
        self._in_hand_from: Counter[S] = Counter()
        self._waiting_from: Counter[S] = Counter()
        self._fewer_waiting = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()

    def admit(self, lane: Hashable, work: Callable[[], Awaitable[None]], on_done: Callable[[], None],
              source: S) -> None:
        """Queue work at the end of its lane: in hand at once if there is room for it, else waiting."""
        self._lanes.setdefault(lane, _Lane()).items.append(_Work(work, on_done, source))
        self._waiting_from[source] += 1
        self._fill()

    def waiting(self, source: S) -> int:
        return self._waiting_from[source]

    def in_hand(self, sources: Iterable[S]) -> int:
        return sum(self._in_hand_from[source] for source in sources)

    async def fewer_waiting_than(self, limit: int) -> None:
        """Return once fewer than `limit` items wait, from all sources together."""
        while self._waiting_from.total() >= limit:
            self._fewer_waiting.clear()
            await self._fewer_waiting.wait()

    def drop_waiting(self, sources: Collection[S] | None = None) -> None:
        """Forget the work that waits (all of it, or that from the given sources): it is neither run nor done."""
        for key, lane in list(self._lanes.items()):
            kept = deque(islice(lane.items, lane.in_hand))
            for work in islice(lane.items, lane.in_hand, None):
                if sources is None or work.source in sources:
                    self._waiting_from[work.source] -= 1
                    self._fewer_waiting.set()
                else:
                    kept.append(work)
            lane.items = kept
            if not kept:  # nothing in hand either, so no runner
                del self._lanes[key]

    def _fill(self) -> None:
        """Give the free room to waiting work, an item at a time: to the lane holding the least, and among
        those to the one given room longest ago, so that a user with one record never waits behind a flood."""
        while self._in_hand < self._capacity:
            key = min((key for key, lane in self._lanes.items() if lane.waiting() and lane.in_hand < self._per_lane),
                      key=lambda key: self._lanes[key].in_hand, default=None)
            if key is None:
                return
            lane = self._lanes[key] = self._lanes.pop(key)
            self._take_in_hand(key, lane)

    def _take_in_hand(self, key: Hashable, lane: _Lane[S]) -> None:
        work = lane.items[lane.in_hand]
        lane.in_hand += 1
        self._in_hand += 1
        self._in_hand_from[work.source] += 1
        self._waiting_from[work.source] -= 1
        self._fewer_waiting.set()
        if lane.runner is None:
            lane.runner = asyncio.create_task(self._run(key, lane))
            self._running.add(lane.runner)
            lane.runner.add_done_callback(self._running.discard)
        if not self._waiting_from[work.source]:
            self._on_drained(work.source)

    async def _run(self, key: Hashable, lane: _Lane[S]) -> None:
        while lane.in_hand:
            work = lane.items[0]
            try:
                await work.run()
            except Exception as exc:  # noqa: BLE001 — the work handles its own failures; this is a bug
                # Done all the same: a record never finished would hold its partition's commits for good.
                log.critical("lane_work_failed", error_class=type(exc).__name__)
            lane.items.popleft()
            lane.in_hand -= 1
            self._in_hand -= 1
            self._in_hand_from[work.source] -= 1
            work.on_done()
            self._fill()
        # No await between the last check of in_hand and this: work taken in hand from now on starts a new runner.
        lane.runner = None
        if not lane.items:
            del self._lanes[key]

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
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def paused(self) -> set[TopicPartition]: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...


# aiokafka has no type information, so its listener base class is Any to the type checker.
class LanedSubscription(ConsumerRebalanceListener):  # type: ignore[misc]
    """One subscription's records through Lanes (a lane per message key: a user), its offsets through an
    OffsetLedger, committed by the consumer that fetched them. It is also that consumer's rebalance
    listener: a revoked partition is committed up to where its records in hand got to.

    At most `capacity` records in hand, at most `max_share_per_key` of them for one key (Lanes)."""

    def __init__(self, process: Callable[[ConsumerRecord], Awaitable[None]], capacity: int,
                 max_share_per_key: float) -> None:
        self._process = process
        self._capacity = capacity
        self._lanes: Lanes[TopicPartition] = Lanes(capacity, max_share_per_key, on_drained=self._resume)
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
            partition = TopicPartition(record.topic, record.partition)
            # In the ledger from now on, waiting or not: no commit passes it before it is finished.
            ticket = self._ledger.admit(partition, record.offset)
            lane = record.key if record.key is not None else record.partition
            self._lanes.admit(lane, partial(self._process, record), ticket.finish, source=partition)
        self._pause_where_records_wait(consumer)
        # Pausing bounds what waits per partition; this bounds it whatever the partition count: once the room's
        # worth of records wait, FastStream polls no more until fewer do (they are handed room, or dropped).
        await self._lanes.fewer_waiting_than(self._capacity)

    def loads(self) -> list[PartitionLoad]:
        """What it holds of each partition assigned to it, and how far behind the partition's end it is."""
        consumer = self._consumer
        if consumer is None:
            return []
        loads = []
        for tp, unfinished, oldest_age_s, next_offset in self._ledger.loads(time.monotonic()):
            highwater = consumer.highwater(tp)
            lag = max(0, highwater - next_offset) if highwater is not None and next_offset is not None else None
            loads.append(PartitionLoad(tp.topic, tp.partition, unfinished, oldest_age_s, lag))
        return loads

    def _pause_where_records_wait(self, consumer: Consumer) -> None:
        """Fetch nothing more from a partition while some of its records wait for room: what waits stays within
        one poll's records per partition, and the next polls bring the other partitions' records."""
        waiting = {tp for tp in consumer.assignment() - consumer.paused() if self._lanes.waiting(tp)}
        if waiting:
            consumer.pause(*waiting)

    def _resume(self, partition: TopicPartition) -> None:
        """No record of the partition waits any more (Lanes' on_drained): fetch from it again."""
        consumer = self._consumer
        if consumer is not None and partition in consumer.paused():
            consumer.resume(partition)

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
        # Its records still waiting for room are neither run nor committed: the partition's next owner reads them.
        self._lanes.drop_waiting(revoked)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DRAIN_TIMEOUT_S
        while self._lanes.in_hand(revoked) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        await self.commit(revoked)
        self._ledger.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Nothing to do: the consumer reads a newly assigned partition from its committed offset."""

    async def close(self) -> None:
        """Stop admitting, let the records in hand finish (for a while), and commit what they got to. Those
        waiting for room are read again after the restart."""
        self._closing = True
        self._lanes.drop_waiting()
        if not await self._lanes.idle(DRAIN_TIMEOUT_S):
            log.warning("closing_with_records_in_hand", detail="they will be read again after the restart")
        if self._committing is not None:
            self._committing.cancel()
        await self.commit()
