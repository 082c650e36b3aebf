"""shared.runtime.lanes: records in order for one key and concurrently across keys, one key holding at most its
share of the room (a flood for one user must not hold up the others), with commits that never pass a record
not finished (the at-least-once promise), on a tick, on a revocation and at shutdown."""

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import RebalanceInProgressError
from structlog.testing import capture_logs

from shared.runtime.lanes import LanedSubscription, Lanes, OffsetLedger

P0 = TopicPartition("hash7.binding.validated", 0)
P1 = TopicPartition("hash7.binding.validated", 1)
P2 = TopicPartition("hash7.binding.validated", 2)


def test_the_ledger_commits_up_to_the_first_unfinished_record_and_past_the_last_once_all_are_finished():
    ledger = OffsetLedger()
    tickets = {offset: ledger.admit(P0, offset) for offset in (5, 6, 7)}
    assert ledger.committable() == {P0: 5}
    tickets[6].finish()
    assert ledger.committable() == {P0: 5}
    tickets[5].finish()
    assert ledger.committable() == {P0: 7}
    ledger.committed({P0: 7})
    assert ledger.committable() == {}  # nothing moved on since
    tickets[7].finish()
    assert ledger.committable() == {P0: 8}


def test_a_record_in_hand_twice_holds_the_commit_until_both_copies_finish():
    ledger = OffsetLedger()
    first, second = ledger.admit(P0, 3), ledger.admit(P0, 3)
    first.finish()
    assert ledger.committable() == {P0: 3}
    second.finish()
    assert ledger.committable() == {P0: 4}


def test_a_revoked_partition_starts_afresh_and_its_old_tickets_change_nothing():
    ledger = OffsetLedger()
    stale = ledger.admit(P0, 10)
    ledger.admit(P1, 4)
    ledger.forget([P0])
    assert ledger.committable() == {P1: 4}
    fresh = ledger.admit(P0, 10)  # assigned again: read again from the committed offset
    stale.finish()
    assert ledger.committable([P0]) == {P0: 10}
    fresh.finish()
    assert ledger.committable([P0]) == {P0: 11}


async def test_lanes_run_in_order_within_a_lane_and_concurrently_across_lanes():
    started: list[str] = []
    first_of_a_done = asyncio.Event()

    async def work(name: str) -> None:
        started.append(name)
        if name == "a1":
            # b1 must start while a1 is still in hand; a2 must wait for a1.
            await asyncio.wait_for(_until(lambda: "b1" in started), timeout=2)
            assert "a2" not in started
            first_of_a_done.set()
        if name == "a2":
            assert first_of_a_done.is_set()

    lanes, done = Lanes(capacity=10, share=1.0), []
    for lane, name in (("u1", "a1"), ("u1", "a2"), ("u2", "b1")):
        lanes.admit(lane, lambda name=name: work(name), lambda name=name: done.append(name), source="p0")
    assert await lanes.idle(timeout_s=3)
    assert sorted(done) == ["a1", "a2", "b1"] and done.index("a1") < done.index("a2")


class Gated:
    """Work that starts when admitted to a lane and finishes when released, recording both."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.done: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    def admit(self, lanes: Lanes, lane: str, name: str, source: str = "p0") -> None:
        gate = self.gates[name] = asyncio.Event()

        async def work() -> None:
            self.started.append(name)
            await gate.wait()

        lanes.admit(lane, work, lambda: self.done.append(name), source=source)

    async def release(self, name: str) -> None:
        self.gates[name].set()
        await _until(lambda: name in self.done)
        await asyncio.sleep(0)  # the lane's next work starts


async def test_work_beyond_the_room_waits_without_blocking_the_admission_and_starts_when_room_frees():
    lanes, gated = Lanes(capacity=2, share=1.0), Gated()
    for user in ("u1", "u2", "u3"):
        gated.admit(lanes, user, user)  # returns at once: the third waits
    await asyncio.sleep(0.02)
    assert gated.started == ["u1", "u2"] and lanes.waiting("p0") == 1 and lanes.in_hand(["p0"]) == 2
    await gated.release("u1")
    assert gated.started == ["u1", "u2", "u3"] and lanes.waiting("p0") == 0
    for name in ("u2", "u3"):
        gated.gates[name].set()
    assert await lanes.idle(timeout_s=2)


async def test_one_key_holds_at_most_its_share_and_the_other_keys_find_room():
    lanes, gated = Lanes(capacity=10, share=0.2, on_drained=lambda source: None), Gated()
    for index in range(50):  # a flood for one user, before anyone else
        gated.admit(lanes, "flooder", f"f{index}")
    for user in ("u1", "u2", "u3"):
        gated.admit(lanes, user, user)
    await asyncio.sleep(0.02)
    # 2 of the flood in hand (one running, one queued behind it in its lane), 48 waiting; the others run at once.
    assert lanes.in_hand(["p0"]) == 5 and lanes.waiting("p0") == 48
    assert gated.started == ["f0", "u1", "u2", "u3"]
    # In order for one key: the flood's next record runs once the one before it is done, never beside it.
    await gated.release("f0")
    assert gated.started[-1] == "f1" and lanes.waiting("p0") == 47


async def test_the_share_is_at_least_one_record_and_rounds_down():
    lanes, gated = Lanes(capacity=100, share=0.29), Gated()
    for index in range(40):
        gated.admit(lanes, "flooder", f"f{index}")
    assert lanes.in_hand(["p0"]) == 29  # 0.29 × 100, not the 28 of floating point
    tiny, gated_tiny = Lanes(capacity=3, share=0.1), Gated()
    for index in range(3):
        gated_tiny.admit(tiny, "flooder", f"f{index}")
    assert tiny.in_hand(["p0"]) == 1
    for gate in [*gated.gates.values(), *gated_tiny.gates.values()]:
        gate.set()
    assert await lanes.idle(timeout_s=2) and await tiny.idle(timeout_s=2)


async def test_freed_room_goes_to_the_waiting_keys_in_turn_not_back_to_the_busiest():
    lanes, gated = Lanes(capacity=2, share=1.0), Gated()
    for index in range(2):
        gated.admit(lanes, "flooder", f"f{index}")  # the flood fills the room...
    for index in range(2, 6):
        gated.admit(lanes, "flooder", f"f{index}")  # ...and has more waiting, admitted before u1's
    gated.admit(lanes, "u1", "u1")
    await gated.release("f0")  # the room f0 freed goes to u1, who holds none, not to f2
    assert gated.started == ["f0", "f1", "u1"] and lanes.waiting("p0") == 4
    for gate in gated.gates.values():
        gate.set()
    assert await lanes.idle(timeout_s=2)


async def test_the_source_is_told_once_none_of_its_work_waits_any_more():
    drained: list[str] = []
    lanes, gated = Lanes(capacity=1, share=1.0, on_drained=drained.append), Gated()
    gated.admit(lanes, "u1", "a", source="p0")
    gated.admit(lanes, "u2", "b", source="p1")
    gated.admit(lanes, "u3", "c", source="p1")
    assert drained == ["p0"]
    await gated.release("a")
    assert drained == ["p0"]  # b in hand, c still waits: p1 is not drained
    await gated.release("b")
    assert drained == ["p0", "p1"]
    await gated.release("c")


async def test_dropped_waiting_work_is_neither_run_nor_done_and_the_rest_goes_on():
    lanes, gated = Lanes(capacity=1, share=1.0), Gated()
    gated.admit(lanes, "u1", "a", source="p0")
    gated.admit(lanes, "u1", "b", source="p0")
    gated.admit(lanes, "u2", "c", source="p1")
    lanes.drop_waiting({"p0"})
    assert lanes.waiting("p0") == 0 and lanes.waiting("p1") == 1
    await gated.release("a")
    await gated.release("c")
    assert await lanes.idle(timeout_s=2)
    assert gated.started == ["a", "c"] and gated.done == ["a", "c"]


async def test_work_that_raises_is_done_all_the_same_so_its_commits_never_stall():
    done: list[str] = []

    async def broken() -> None:
        raise RuntimeError("a bug")

    async def fine() -> None:
        pass

    lanes = Lanes(capacity=1, share=1.0)
    with capture_logs() as logs:
        lanes.admit("u1", broken, lambda: done.append("broken"), source="p0")
        lanes.admit("u1", fine, lambda: done.append("fine"), source="p0")  # waits for the room broken holds
        assert await lanes.idle(timeout_s=2)
    assert done == ["broken", "fine"]
    assert [(entry["event"], entry["log_level"], entry["error_class"]) for entry in logs] == [
        ("lane_work_failed", "critical", "RuntimeError")]


async def test_idle_says_when_work_outlasts_the_wait():
    lanes = Lanes(capacity=1, share=1.0)
    never = asyncio.Event()
    lanes.admit("u1", never.wait, lambda: None, source="p0")
    assert not await lanes.idle(timeout_s=0.05)
    never.set()
    assert await lanes.idle(timeout_s=1)


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None


class FakeConsumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned = assigned
        self.commits: list[dict[TopicPartition, int]] = []
        self.refuse_next = False
        self.paused_partitions: set[TopicPartition] = set()
        self.highwaters: dict[TopicPartition, int] = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def pause(self, *partitions: TopicPartition) -> None:
        assert set(partitions) <= self.assigned  # aiokafka raises IllegalStateError for a partition not assigned
        self.paused_partitions |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        assert set(partitions) <= self.assigned
        self.paused_partitions -= set(partitions)

    def paused(self) -> set[TopicPartition]:
        return self.paused_partitions & self.assigned

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.highwaters.get(partition)

    def revoke(self, partitions: set[TopicPartition]) -> None:
        self.assigned -= partitions
        self.paused_partitions -= partitions  # aiokafka forgets a revoked partition's state, paused or not

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse_next:
            self.refuse_next = False
            raise RebalanceInProgressError()
        self.commits.append(dict(offsets))


def record(partition: int, offset: int, user: str) -> Record:
    return Record(P0.topic, partition, offset, user.encode())


async def test_a_subscription_commits_only_what_its_lanes_finished_and_retries_a_refused_commit():
    gates = {offset: asyncio.Event() for offset in range(3)}

    async def process(rec: Record) -> None:
        await gates[rec.offset].wait()

    consumer = FakeConsumer({P0})
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=1.0)
    await subscription.admit([record(0, 0, "u1"), record(0, 1, "u2"), record(0, 2, "u3")], consumer)
    gates[1].set()
    await asyncio.sleep(0.01)
    await subscription.commit()
    assert consumer.commits == [{P0: 0}]  # offset 1 is finished, offset 0 is not: nothing past 0
    gates[0].set()
    await asyncio.sleep(0.01)
    consumer.refuse_next = True
    await subscription.commit()  # refused (a rebalance): kept for the next one
    await subscription.commit()
    assert consumer.commits[-1] == {P0: 2}
    gates[2].set()
    await subscription.close()
    assert consumer.commits[-1] == {P0: 3}


async def test_a_revocation_waits_for_the_partitions_records_in_hand_then_commits_them():
    release = asyncio.Event()

    async def process(rec: Record) -> None:
        if rec.partition == 0:
            await release.wait()

    consumer = FakeConsumer({P0, P1})
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=1.0)
    await subscription.admit([record(0, 7, "u1"), record(1, 3, "u2")], consumer)
    revoking = asyncio.create_task(subscription.on_partitions_revoked({P0}))
    await asyncio.sleep(0.1)
    assert not revoking.done() and all(P0 not in commit for commit in consumer.commits)
    release.set()
    await revoking
    assert consumer.commits[-1] == {P0: 8}
    await subscription.close()


async def test_after_close_nothing_more_is_admitted_so_nothing_more_is_committed():
    processed: list[int] = []

    async def process(rec: Record) -> None:
        processed.append(rec.offset)

    consumer = FakeConsumer({P0})
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=1.0)
    await subscription.admit([record(0, 0, "u1")], consumer)
    await subscription.close()
    await subscription.admit([record(0, 1, "u1")], consumer)
    await subscription.commit()
    assert processed == [0] and consumer.commits[-1] == {P0: 1}


class GatedProcess:
    """A subscription's process: each record handled once its offset's gate (per partition) is opened."""

    def __init__(self) -> None:
        self.started: list[tuple[int, int]] = []
        self.handled: list[tuple[int, int]] = []
        self.gates: dict[tuple[int, int], asyncio.Event] = {}

    async def __call__(self, rec: Record) -> None:
        where = (rec.partition, rec.offset)
        self.started.append(where)
        await self.gates.setdefault(where, asyncio.Event()).wait()
        self.handled.append(where)

    async def release(self, *where: tuple[int, int]) -> None:
        for one in where:
            self.gates.setdefault(one, asyncio.Event()).set()
        await _until(lambda: all(one in self.handled for one in where))
        await asyncio.sleep(0.01)


def flood(partition: int, offsets: range, user: str = "flooder") -> list[Record]:
    return [record(partition, offset, user) for offset in offsets]


async def test_a_flood_for_one_user_waits_for_its_share_while_the_rest_of_the_batch_runs_and_its_partition_pauses():
    process, consumer = GatedProcess(), FakeConsumer({P0, P1})
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=0.2)  # 2 records a key
    batch = [*flood(0, range(0, 8)), record(0, 8, "u2"), record(1, 0, "u3")]
    await asyncio.wait_for(subscription.admit(batch, consumer), timeout=1)  # never blocks on the flood
    await asyncio.sleep(0.01)
    assert process.started == [(0, 0), (0, 8), (1, 0)]
    assert consumer.paused() == {P0}  # 6 of the flood wait: nothing more is fetched from P0 meanwhile
    await process.release((0, 8), (1, 0))
    await subscription.commit()
    assert consumer.commits[-1] == {P0: 0, P1: 1}  # P0's waiting records hold its commit like those in hand

    await process.release(*((0, offset) for offset in range(0, 5)))
    assert consumer.paused() == {P0}  # (0, 7) still waits
    await process.release((0, 5))
    assert consumer.paused() == set()  # the last waiting record went in hand: fetch from P0 again
    assert process.started[3:] == [(0, offset) for offset in range(1, 7)]  # the flood in its order
    await process.release((0, 6), (0, 7))
    await subscription.close()
    assert consumer.commits[-1] == {P0: 9}


async def test_the_flood_is_read_in_order_across_batches_while_its_records_wait():
    process, consumer = GatedProcess(), FakeConsumer({P0, P1})
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=0.2)
    await subscription.admit(flood(0, range(0, 4)), consumer)
    await subscription.admit(flood(1, range(0, 2)), consumer)  # the same key on another partition: behind
    assert consumer.paused() == {P0, P1}
    await process.release(*((0, offset) for offset in range(4)), (1, 0), (1, 1))
    assert process.handled == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]
    assert consumer.paused() == set()
    await subscription.close()


async def test_floods_on_every_partition_at_once_stop_the_polling_once_the_rooms_worth_of_records_wait():
    process, consumer = GatedProcess(), FakeConsumer({P0, P1, P2})
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=0.2)
    await asyncio.wait_for(subscription.admit([*flood(0, range(6), "a"), *flood(1, range(6), "b")], consumer), 1)
    admitting = asyncio.create_task(subscription.admit(flood(2, range(6), "c"), consumer))  # 12 wait now
    await asyncio.sleep(0.02)
    assert not admitting.done() and consumer.paused() == {P0, P1, P2}
    await process.release((0, 0), (1, 0))  # each lets one more of its flood in hand: 10 still wait
    assert not admitting.done()
    await process.release((2, 0))
    await asyncio.wait_for(admitting, timeout=1)
    await process.release(*((partition, offset) for partition in range(3) for offset in range(1, 6)))
    await subscription.close()
    assert consumer.commits[-1] == {P0: 6, P1: 6, P2: 6}


async def test_a_revoked_partitions_waiting_records_are_dropped_uncommitted_and_its_records_in_hand_drain():
    process, consumer = GatedProcess(), FakeConsumer({P0, P1})
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=0.2)
    await subscription.admit([*flood(0, range(0, 6)), record(1, 0, "u2")], consumer)
    revoking = asyncio.create_task(subscription.on_partitions_revoked({P0}))
    await asyncio.sleep(0.05)
    assert not revoking.done()  # (0, 0) and (0, 1) are in hand: the revocation waits for them
    await process.release((0, 0), (0, 1))
    await asyncio.wait_for(revoking, timeout=1)  # not for the dropped ones, which would never finish
    consumer.revoke({P0})
    assert consumer.commits[-1] == {P0: 2}  # the new owner reads from the first dropped record
    await process.release((1, 0))
    await subscription.close()
    assert process.started == [(0, 0), (1, 0), (0, 1)]  # (0, 2)..(0, 5) never ran
    assert max(commit.get(P0, 0) for commit in consumer.commits) == 2 and consumer.commits[-1] == {P1: 1}


async def test_a_record_whose_handling_raised_is_finished_and_the_commit_moves_past_it():
    async def process(rec: Record) -> None:
        if rec.offset == 0:
            raise RuntimeError("a bug in the handler")

    consumer = FakeConsumer({P0})
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=1.0)
    await subscription.admit([record(0, 0, "u1"), record(0, 1, "u1")], consumer)
    await subscription.close()
    assert consumer.commits[-1] == {P0: 2}


async def test_close_finishes_the_records_in_hand_and_leaves_the_waiting_ones_for_after_the_restart():
    process, consumer = GatedProcess(), FakeConsumer({P0})
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=0.2)
    await subscription.admit(flood(0, range(0, 6)), consumer)
    closing = asyncio.create_task(subscription.close())
    await asyncio.sleep(0.01)  # closing: what waits is dropped
    await process.release((0, 0), (0, 1))
    await asyncio.wait_for(closing, timeout=1)
    assert process.handled == [(0, 0), (0, 1)] and consumer.commits[-1] == {P0: 2}


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.001)


async def test_its_load_says_what_it_holds_per_partition_how_long_and_how_far_behind_the_end():
    release = asyncio.Event()

    async def process(rec: Record) -> None:
        if rec.offset == 4:
            await release.wait()

    consumer = FakeConsumer({P0, P1})
    consumer.highwaters = {P0: 10, P1: 2}
    subscription = LanedSubscription(process, capacity=10, max_share_per_key=1.0)
    assert subscription.loads() == []
    await subscription.admit([record(0, 4, "u1"), record(0, 5, "u2"), record(1, 1, "u3")], consumer)
    await asyncio.sleep(0.2)
    await subscription.commit()
    loads = {load.partition: load for load in subscription.loads()}
    # Offset 4 is held: the partition's commits wait at it, so 6 records lie past what was committed.
    assert (loads[0].in_hand, loads[0].lag) == (1, 6) and loads[0].oldest_age_s >= 0.2
    assert (loads[1].in_hand, loads[1].oldest_age_s, loads[1].lag) == (0, 0.0, 0)
    release.set()
    await subscription.close()
    assert [(load.partition, load.in_hand, load.lag) for load in subscription.loads()] == [(0, 0, 4), (1, 0, 0)]
