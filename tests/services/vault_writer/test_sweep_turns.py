"""Key-health sweeps keep the validator's pace and never overlap (services/vault_writer/handlers.py
handle_sweep_requested): a page waits for the turn of the page before it (bindings / HASH7_HEALTH_RECHECKS_PER_S),
and a new sweep is not started while another is running, unless that one stood still so long it is taken for
abandoned. In-memory Vault, injected clock and sleep (nothing sleeps for real); the real-stack run is
tests/e2e/test_sweep_turns.py."""

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from services.vault_writer.handlers import (
    ABANDONED_AFTER_MIN_S,
    ABANDONED_AFTER_PAGES,
    VaultWriterDeps,
    handle_sweep_requested,
)
from shared.adapters.vault.layout import SWEEP_RUNNING_PATH, sweep_progress_path
from shared.adapters.vault.records import RunningSweep, SweepProgress
from shared.adapters.vault.stores import ConcurrentWrite
from shared.contracts.audit import AuditOutcome
from shared.contracts.events import Event
from shared.runtime.config import ValidatorSettings, VaultWriterSettings
from tests.adapters.htx.scripted import FakeTime
from tests.fakes import InMemoryVault, RacingVault
from tests.services.vault_writer.test_sweeps import (
    BINDINGS,
    PAGE,
    first_page,
    next_page,
    rechecked,
    seeded,
    sweep_audits,
)

PACE = 2.0  # re-checks a second: a full page's turn is PAGE / PACE = 2.5 s


class Clock(FakeTime):
    """A clock that only moves when the handler sleeps (or the test says so), read as a time of day too."""

    def __init__(self, now: datetime) -> None:
        super().__init__()
        self.at = now

    @property
    def at(self) -> datetime:
        return datetime.fromtimestamp(self.now, UTC)

    @at.setter
    def at(self, value: datetime) -> None:
        self.now = value.timestamp()


def paced(vault: InMemoryVault, clock: Clock) -> VaultWriterDeps:
    return VaultWriterDeps(vault, sweep_page_size=PAGE, rechecks_per_s=PACE, clock=clock.clock, sleep=clock.sleep)


def progress_of(vault: InMemoryVault, sweep_id: str) -> SweepProgress:
    return SweepProgress.from_vault(vault.versions[sweep_progress_path(sweep_id)][-1])


def in_charge(vault: InMemoryVault) -> RunningSweep:
    return RunningSweep.from_vault(vault.versions[SWEEP_RUNNING_PATH][-1])


async def run_to_the_end(deps: VaultWriterDeps, clock: Clock, handled: list[list[Event]]) -> None:
    """Each page's request handed back at once, stamped with the clock (as the broker would)."""
    event = next_page(handled[-1])
    while event is not None:
        handled.append(await handle_sweep_requested(event, deps, at=clock.at))
        event = next_page(handled[-1])


def now() -> datetime:
    # After the claim's write time (the in-memory Vault stamps writes with the real clock), as on the real stack.
    return datetime.now(UTC) + timedelta(seconds=1)


# ---- pacing --------------------------------------------------------------------------------------------------------

async def test_each_page_waits_for_the_turn_of_the_page_before_it_and_the_sweep_lasts_bindings_over_pace():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    deps = paced(vault, clock)
    begun = clock.at
    handled = [await handle_sweep_requested(first_page(), deps, at=clock.at)]
    await run_to_the_end(deps, clock, handled)

    full_pages = len(BINDINGS) // PAGE
    # The first page at once; every next one waits the whole turn of a full page before it (the pages themselves
    # take no time here).
    assert clock.sleeps == pytest.approx([PAGE / PACE] * full_pages)
    done = progress_of(vault, "sweep-1")
    assert done.finished and done.turn_ends_at is not None
    assert (done.turn_ends_at - begun).total_seconds() == pytest.approx(len(BINDINGS) / PACE)
    [finished] = [d for out in handled for d in sweep_audits(out, AuditOutcome.FINISHED)]
    assert finished["duration_s"] >= len(BINDINGS) / PACE  # from the claim, a moment before the first page
    ages = [d["age_s"] for out in handled for d in sweep_audits(out, AuditOutcome.PAGE_REQUESTED)]
    assert [round(b - a, 3) for a, b in zip(ages, ages[1:], strict=False)] == [PAGE / PACE] * full_pages


async def test_a_page_that_comes_after_its_turn_waits_no_more_and_one_that_comes_early_waits_the_rest():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    deps = paced(vault, clock)
    page_two = next_page(await handle_sweep_requested(first_page(), deps, at=clock.at))
    assert page_two is not None
    clock.now += 1  # the page took a second: its turn has 1.5 s left
    page_three = next_page(await handle_sweep_requested(page_two, deps, at=clock.at))
    assert clock.sleeps == pytest.approx([PAGE / PACE - 1])
    assert page_three is not None
    clock.now += 60  # the request sat on the topic well past its turn
    await handle_sweep_requested(page_three, deps, at=clock.at)
    assert clock.sleeps == pytest.approx([PAGE / PACE - 1])


async def test_a_page_redelivered_after_its_wait_and_its_start_waits_no_more_and_says_the_same():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    deps = paced(vault, clock)
    at = clock.at
    page_two = next_page(await handle_sweep_requested(first_page(), deps, at=at))
    assert page_two is not None
    once = await handle_sweep_requested(page_two, deps, at=at)
    again = await handle_sweep_requested(page_two, deps, at=at)  # a crash before its commit
    assert clock.sleeps == pytest.approx([PAGE / PACE])
    assert [m.model_dump() for m in again] == [m.model_dump() for m in once]


# ---- one sweep at a time -------------------------------------------------------------------------------------------

async def test_a_new_sweep_while_another_runs_is_not_started_and_the_audit_names_the_running_one():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    deps = paced(vault, clock)
    page_two = next_page(await handle_sweep_requested(first_page(), deps, at=clock.at))
    assert page_two is not None

    for refused in (first_page("s2", "scheduled-7"), first_page("s3", "manual-s3")):  # the timer, `hash7 sweep`
        out = await handle_sweep_requested(refused, deps, at=clock.at + timedelta(seconds=30))
        assert not rechecked(out) and next_page(out) is None
        [audit] = sweep_audits(out, AuditOutcome.SWEEP_RUNNING)
        assert audit == {"sweep_id": refused.sweep_id, "running_sweep_id": "sweep-1"}
        assert sweep_progress_path(refused.sweep_id) not in vault.versions
    assert in_charge(vault).sweep_id == "sweep-1"

    # The running sweep goes on to its end; a new one starts once its last page's re-checks had their turn.
    handled = [await handle_sweep_requested(page_two, deps, at=clock.at)]
    await run_to_the_end(deps, clock, handled)
    done = progress_of(vault, "sweep-1")
    assert done.finished and done.turn_ends_at is not None
    out = await handle_sweep_requested(first_page("s4", "scheduled-8"), deps, at=clock.at)
    assert sweep_audits(out, AuditOutcome.SWEEP_RUNNING) and not rechecked(out)
    out = await handle_sweep_requested(first_page("s5", "scheduled-9"), deps, at=done.turn_ends_at)
    assert len(sweep_audits(out, AuditOutcome.STARTED)) == 1 and len(rechecked(out)) == PAGE
    assert in_charge(vault).sweep_id == "scheduled-9"


async def test_the_last_page_redelivered_after_the_next_sweep_started_still_asks_for_its_rechecks():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    deps = paced(vault, clock)
    handled = [await handle_sweep_requested(first_page(), deps, at=clock.at)]
    last_request = None
    event = next_page(handled[-1])
    while event is not None:  # to the end, keeping the last page's request
        last_request = event
        handled.append(await handle_sweep_requested(event, deps, at=clock.at))
        event = next_page(handled[-1])
    assert last_request is not None
    last_rechecks = rechecked(handled[-1])
    done = progress_of(vault, "sweep-1")
    assert done.turn_ends_at is not None
    started = await handle_sweep_requested(first_page("s2", "scheduled-9"), deps, at=done.turn_ends_at)
    assert sweep_audits(started, AuditOutcome.STARTED)

    # The vault-writer crashed before committing the last page: redelivered, it owes the same re-checks.
    again = await handle_sweep_requested(last_request, deps, at=done.turn_ends_at)
    assert rechecked(again) == last_rechecks and last_rechecks
    assert not sweep_audits(again, AuditOutcome.SUPERSEDED)
    assert in_charge(vault).sweep_id == "scheduled-9"


async def test_a_sweep_that_took_charge_but_has_no_page_yet_counts_as_running():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    deps = paced(vault, clock)
    # Another sweep took charge a moment ago and has not written its first page's progress yet.
    await vault.write(SWEEP_RUNNING_PATH, RunningSweep(sweep_id="other", request_id="o1", taken_at=clock.at)
                      .to_vault(), cas=0)
    out = await handle_sweep_requested(first_page(), deps, at=clock.at + timedelta(seconds=5))
    assert sweep_audits(out, AuditOutcome.SWEEP_RUNNING)[0]["running_sweep_id"] == "other"


async def test_the_redelivered_first_page_of_the_running_sweep_is_redone_not_refused():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    deps = paced(vault, clock)
    at = clock.at
    once = await handle_sweep_requested(first_page(), deps, at=at)
    again = await handle_sweep_requested(first_page(), deps, at=at)
    assert [m.model_dump() for m in again] == [m.model_dump() for m in once]
    assert len(sweep_audits(again, AuditOutcome.STARTED)) == 1 and not sweep_audits(again, AuditOutcome.SWEEP_RUNNING)
    assert progress_of(vault, "sweep-1").pages == 1


async def test_a_first_page_that_crashed_after_taking_charge_starts_when_redelivered():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    deps = paced(vault, clock)

    class Crash(Exception):
        pass

    async def crash(*_: object) -> None:
        raise Crash

    deps.bindings.ids_after = crash  # type: ignore[method-assign,assignment]  # dies after taking charge
    with pytest.raises(Crash):
        await handle_sweep_requested(first_page(), deps, at=clock.at)
    assert in_charge(vault).sweep_id == "sweep-1" and sweep_progress_path("sweep-1") not in vault.versions

    out = await handle_sweep_requested(first_page(), paced(vault, clock), at=clock.at)
    assert len(sweep_audits(out, AuditOutcome.STARTED)) == 1 and len(rechecked(out)) == PAGE


async def test_an_abandoned_sweep_is_replaced_and_its_pages_go_no_further():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    deps = paced(vault, clock)
    stuck_page = next_page(await handle_sweep_requested(first_page(), deps, at=clock.at))  # then dead-lettered
    assert stuck_page is not None
    bound_s = max(ABANDONED_AFTER_PAGES * PAGE / PACE, ABANDONED_AFTER_MIN_S)
    due = progress_of(vault, "sweep-1").turn_ends_at
    assert due is not None

    still_running = first_page("s2", "scheduled-1")
    out = await handle_sweep_requested(still_running, deps, at=due + timedelta(seconds=bound_s - 1))
    assert len(sweep_audits(out, AuditOutcome.SWEEP_RUNNING)) == 1

    clock.at = due + timedelta(seconds=bound_s + 1)
    out = await handle_sweep_requested(first_page("s3", "scheduled-2"), deps, at=clock.at)
    [started] = sweep_audits(out, AuditOutcome.STARTED)
    assert started["replaced"] == "sweep-1" and len(rechecked(out)) == PAGE
    assert in_charge(vault) == RunningSweep(sweep_id="scheduled-2", request_id="s3", taken_at=clock.at,
                                            replaced="sweep-1")

    # The abandoned sweep's page turns up after all: it stops, rather than run beside its replacement.
    late = await handle_sweep_requested(stuck_page, deps, at=clock.at)
    assert not rechecked(late) and next_page(late) is None
    assert sweep_audits(late, AuditOutcome.SUPERSEDED)[0]["replaced_by"] == "scheduled-2"
    assert progress_of(vault, "sweep-1").pages == 1


async def test_two_new_sweeps_starting_at_once_conflict_and_the_loser_is_refused_when_it_decides_again():
    vault, clock = RacingVault(), Clock(now())
    deps = paced(await seeded(vault), clock)
    # Another sweep takes charge between our read of sweep-running and our write of it.
    vault.race(SWEEP_RUNNING_PATH, RunningSweep(sweep_id="rival", request_id="r1", taken_at=clock.at).to_vault())
    with pytest.raises(ConcurrentWrite):
        await handle_sweep_requested(first_page(), deps, at=clock.at)
    again = await handle_sweep_requested(first_page(), deps, at=clock.at)  # retried in place
    assert sweep_audits(again, AuditOutcome.SWEEP_RUNNING)[0]["running_sweep_id"] == "rival"


async def test_two_instances_asking_for_the_same_slot_start_it_once_and_are_not_told_it_runs():
    vault, clock = await seeded(InMemoryVault()), Clock(now())
    mine, theirs = paced(vault, clock), paced(vault, clock)
    started = await handle_sweep_requested(first_page("a", "scheduled-9"), mine, at=clock.at)
    rival = await handle_sweep_requested(first_page("b", "scheduled-9"), theirs, at=clock.at)
    assert len(sweep_audits(started, AuditOutcome.STARTED)) == 1
    assert len(sweep_audits(rival, AuditOutcome.ALREADY_CLAIMED)) == 1 and not sweep_audits(
        rival, AuditOutcome.SWEEP_RUNNING)


# ---- the pace setting ----------------------------------------------------------------------------------------------

def test_the_validator_and_the_vault_writer_read_one_pace(monkeypatch):
    monkeypatch.setenv("HASH7_HEALTH_RECHECKS_PER_S", "7.5")
    assert ValidatorSettings().health_rechecks_per_s == VaultWriterSettings().health_rechecks_per_s == 7.5


def test_a_page_size_whose_turn_outlasts_half_the_age_a_record_may_be_in_hand_is_refused_at_start():
    assert VaultWriterSettings(sweep_page_size=500, health_rechecks_per_s=5).sweep_page_size == 500  # 100 s of 150
    with pytest.raises(ValidationError, match=r"HASH7_SWEEP_PAGE_SIZE / HASH7_HEALTH_RECHECKS_PER_S .*\(500 s\)"):
        VaultWriterSettings(sweep_page_size=500, health_rechecks_per_s=1)
    assert VaultWriterSettings(sweep_page_size=500, health_rechecks_per_s=1, ready_max_record_age_s=1200)
