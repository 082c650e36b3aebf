"""shared.runtime.lanes: records in order for one key and concurrently across keys, with commits that never
pass a record still in hand (the at-least-once promise), on a tick, on a revocation and at shutdown."""

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.errors import RebalanceInProgressError

from shared.runtime.lanes import LanedSubscription, Lanes, OffsetLedger

P0 = TopicPartition("hash7.binding.validated", 0)
P1 = TopicPartition("hash7.binding.validated", 1)


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
    assert ledger.unfinished([P0]) == 1
    ledger.forget([P0])
    assert ledger.committable() == {P1: 4} and ledger.unfinished([P0]) == 0
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

    lanes, done = Lanes(capacity=10), []
    for lane, name in (("u1", "a1"), ("u1", "a2"), ("u2", "b1")):
        await lanes.admit(lane, lambda name=name: work(name), lambda name=name: done.append(name))
    assert await lanes.idle(timeout_s=3)
    assert sorted(done) == ["a1", "a2", "b1"] and done.index("a1") < done.index("a2")


async def test_admission_waits_for_room():
    release = asyncio.Event()
    done: list[str] = []

    async def blocked() -> None:
        await release.wait()

    lanes = Lanes(capacity=2)
    await lanes.admit("u1", blocked, lambda: done.append("u1"))
    await lanes.admit("u2", blocked, lambda: done.append("u2"))
    third = asyncio.create_task(lanes.admit("u3", blocked, lambda: done.append("u3")))
    await asyncio.sleep(0.05)
    assert not third.done()
    release.set()
    await third
    assert await lanes.idle(timeout_s=2)
    assert sorted(done) == ["u1", "u2", "u3"]


async def test_work_that_raises_is_not_done_and_its_lane_goes_on():
    done: list[str] = []

    async def broken() -> None:
        raise RuntimeError("a bug")

    async def fine() -> None:
        pass

    lanes = Lanes(capacity=1)
    await lanes.admit("u1", broken, lambda: done.append("broken"))
    await lanes.admit("u1", fine, lambda: done.append("fine"))  # room again: the failure gave its slot back
    assert await lanes.idle(timeout_s=2)
    assert done == ["fine"]


async def test_idle_says_when_work_outlasts_the_wait():
    lanes = Lanes(capacity=1)
    never = asyncio.Event()
    await lanes.admit("u1", never.wait, lambda: None)
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

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

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
    subscription = LanedSubscription(process, capacity=10)
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
    subscription = LanedSubscription(process, capacity=10)
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
    subscription = LanedSubscription(process, capacity=10)
    await subscription.admit([record(0, 0, "u1")], consumer)
    await subscription.close()
    await subscription.admit([record(0, 1, "u1")], consumer)
    await subscription.commit()
    assert processed == [0] and consumer.commits[-1] == {P0: 1}


async def _until(condition) -> None:
    while not condition():
        await asyncio.sleep(0.001)
