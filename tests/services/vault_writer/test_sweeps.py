"""Key-health sweeps page through the stored bindings (services/vault_writer/handlers.py handle_sweep_requested):
each page is one handling, bounded by the page size; a redelivered or crashed page is redone, a passed page's copy
skipped, and a sweep another request claimed is left alone. The real-stack run is tests/e2e/test_sweep_pages.py."""

from datetime import timedelta
from typing import Any

import pytest

from services.vault_writer.handlers import VaultWriterDeps, handle_sweep_requested
from shared.adapters.vault.layout import BINDINGS_FOLDER, binding_path, sweep_progress_path
from shared.adapters.vault.records import SweepProgress
from shared.adapters.vault.stores import ConcurrentWrite
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import AuditEvent, Event, RecheckRequested, SweepCursor, SweepRequested
from tests.fakes import AT, InMemoryVault, RacingVault
from tests.services.vaults import Crash, CrashingVault

PAGE = 5
# So fast that no page waits for its turn: these tests are about the pages, tests/services/vault_writer/
# test_sweep_turns.py about their pace.
UNPACED = 1e9
# Users with one to four bindings each, so pages end inside a user's bindings as well as between users.
BINDINGS = [(f"user-{u:02d}", f"binding-{b}") for u in range(9) for b in range(1 + u % 4)]


async def seeded(vault: InMemoryVault) -> InMemoryVault:
    for user_id, binding_id in BINDINGS:
        await vault.write(binding_path(user_id, binding_id), {"seeded": "yes"}, cas=0)  # a sweep lists names only
    return vault


def first_page(request_id: str = "s1", sweep_id: str = "sweep-1") -> SweepRequested:
    return SweepRequested(request_id=request_id, sweep_id=sweep_id, requested_at=AT)


def rechecked(out: list[Event]) -> list[tuple[str, str]]:
    return [(m.user_id, m.binding_id) for m in out if isinstance(m, RecheckRequested)]


def next_page(out: list[Event]) -> SweepRequested | None:
    pages = [m for m in out if isinstance(m, SweepRequested)]
    assert len(pages) <= 1
    return pages[0] if pages else None


def sweep_audits(out: list[Event], outcome: AuditOutcome) -> list[dict[str, Any]]:
    return [m.details for m in out if isinstance(m, AuditEvent)
            and (m.action, m.outcome) == (AuditAction.HEALTH_SWEEP, outcome)]


async def sweep_to_the_end(deps: VaultWriterDeps, event: SweepRequested | None,
                           handled: list[list[Event]]) -> None:
    """Hand each page's request for the next page back, as the topic would, until the sweep asks for none."""
    step = len(handled)
    while event is not None:
        step += 1
        out = await handle_sweep_requested(event, deps, at=AT + timedelta(seconds=step))
        handled.append(out)
        event = next_page(out)


async def first_page_handled(vault: InMemoryVault) -> tuple[VaultWriterDeps, list[Event], SweepRequested]:
    """A sweep of the seeded bindings whose first page is handled: the deps, that page's events, and its request
    for page two."""
    deps = VaultWriterDeps(await seeded(vault), sweep_page_size=PAGE, rechecks_per_s=UNPACED)
    first = await handle_sweep_requested(first_page(), deps, at=AT)
    page_two = next_page(first)
    assert page_two is not None
    return deps, first, page_two


def progress(vault: InMemoryVault) -> SweepProgress:
    return SweepProgress.from_vault(vault.versions[sweep_progress_path("sweep-1")][-1])


async def test_the_pages_of_a_sweep_recheck_every_stored_binding_exactly_once():
    vault = await seeded(InMemoryVault())
    handled: list[list[Event]] = []
    deps = VaultWriterDeps(vault, sweep_page_size=PAGE, rechecks_per_s=UNPACED)
    await sweep_to_the_end(deps, first_page(), handled)

    everything = [binding for out in handled for binding in rechecked(out)]
    assert everything == sorted(BINDINGS)  # each once, in the sweep's order
    assert [len(rechecked(out)) for out in handled] == [PAGE] * (len(BINDINGS) // PAGE) + [len(BINDINGS) % PAGE]
    pages = [details for out in handled for details in sweep_audits(out, AuditOutcome.PAGE_REQUESTED)]
    assert [(d["page"], d["bindings"]) for d in pages] == [(n, len(rechecked(out))) for n, out in enumerate(handled, 1)]
    assert pages[-1]["bindings_so_far"] == len(BINDINGS)
    assert len(sweep_audits(handled[0], AuditOutcome.STARTED)) == 1
    [finished] = [details for out in handled for details in sweep_audits(out, AuditOutcome.FINISHED)]
    assert (finished["pages"], finished["bindings"]) == (len(handled), len(BINDINGS))
    assert progress(vault).finished and progress(vault).bindings == len(BINDINGS)


async def test_a_sweep_whose_last_page_is_full_ends_with_an_empty_page():
    vault = await seeded(InMemoryVault())
    handled: list[list[Event]] = []
    deps = VaultWriterDeps(vault, sweep_page_size=len(BINDINGS), rechecks_per_s=UNPACED)
    await sweep_to_the_end(deps, first_page(), handled)
    assert [len(rechecked(out)) for out in handled] == [len(BINDINGS), 0]
    assert sweep_audits(handled[-1], AuditOutcome.FINISHED)[0]["bindings"] == len(BINDINGS)


async def test_no_page_lists_more_users_or_asks_for_more_rechecks_than_the_page_size_and_none_reads_a_binding():
    class ListCountingVault(InMemoryVault):
        def __init__(self) -> None:
            super().__init__()
            self.user_lists = 0
            self.binding_reads = 0

        async def list(self, path: str) -> list[str]:
            self.user_lists += path != BINDINGS_FOLDER
            return await super().list(path)

        async def read(self, path: str):  # type: ignore[no-untyped-def]
            self.binding_reads += path.startswith(BINDINGS_FOLDER)
            return await super().read(path)

    vault = ListCountingVault()
    many = [(f"u{n:04d}", f"b{n % 3}") for n in range(300)]
    for user_id, binding_id in many:
        await vault.write(binding_path(user_id, binding_id), {"seeded": "yes"}, cas=0)
    deps, event, swept = VaultWriterDeps(vault, sweep_page_size=7, rechecks_per_s=UNPACED), first_page(), 0
    while event is not None:
        vault.user_lists = 0
        out = await handle_sweep_requested(event, deps, at=AT)
        # The cursor's own user is listed again, for its bindings after the cursor's.
        assert len(rechecked(out)) <= 7 and vault.user_lists <= 7 + 1 and vault.binding_reads == 0
        swept, event = swept + len(rechecked(out)), next_page(out)
    assert swept == len(many)


async def test_a_redelivered_page_is_redone_identically_and_counted_once():
    vault = InMemoryVault()
    deps, first, second_page = await first_page_handled(vault)
    once = await handle_sweep_requested(second_page, deps, at=AT + timedelta(seconds=1))
    again = await handle_sweep_requested(second_page, deps, at=AT + timedelta(seconds=1))
    # The same events: the validator drops a recheck it handled, the next page's copy is dropped on arrival too.
    assert [m.model_dump() for m in again] == [m.model_dump() for m in once]
    assert (progress(vault).pages, progress(vault).bindings) == (2, 2 * PAGE)

    handled = [first, once, again]
    await sweep_to_the_end(deps, next_page(again), handled)
    assert sorted({b for out in handled for b in rechecked(out)}) == sorted(BINDINGS)
    assert progress(vault).bindings == len(BINDINGS)


@pytest.mark.parametrize("crash_at", ["the progress write", "a user's list", "after the handler, before publishing"])
async def test_a_crash_mid_page_repeats_that_page_only_and_skips_none(crash_at):
    class ListCrashingVault(CrashingVault):
        lists_before_crash: int | None = None

        async def list(self, path: str) -> list[str]:
            if self.lists_before_crash is not None:
                if self.lists_before_crash == 0:
                    self.lists_before_crash = None
                    raise Crash(path)
                self.lists_before_crash -= 1
            return await super().list(path)

    vault = ListCrashingVault()
    deps, first, page_two = await first_page_handled(vault)
    handled = [first]
    if crash_at == "the progress write":
        vault.crash_before(sweep_progress_path("sweep-1"))
    elif crash_at == "a user's list":
        vault.lists_before_crash = 2  # the users' folder, one user's bindings, then the next user's: dies
    if crash_at == "after the handler, before publishing":
        lost = await handle_sweep_requested(page_two, deps, at=AT + timedelta(seconds=1))
        assert rechecked(lost)  # done, progress written, but nothing of it published
    else:
        with pytest.raises(Crash):
            await handle_sweep_requested(page_two, deps, at=AT + timedelta(seconds=1))

    await sweep_to_the_end(deps, page_two, handled)  # the uncommitted page is delivered again
    assert [b for out in handled for b in rechecked(out)] == sorted(BINDINGS)
    assert progress(vault).pages == len(handled) and progress(vault).bindings == len(BINDINGS)


async def test_a_copy_of_a_page_the_sweep_has_passed_asks_for_nothing():
    vault = InMemoryVault()
    deps, _, page_two = await first_page_handled(vault)
    page_three = next_page(await handle_sweep_requested(page_two, deps, at=AT + timedelta(seconds=1)))
    assert page_three is not None
    await handle_sweep_requested(page_three, deps, at=AT + timedelta(seconds=2))
    for passed in (first_page(), page_two):  # e.g. a zombie instance's late copy: forks no second chain of pages
        out = await handle_sweep_requested(passed, deps, at=AT + timedelta(seconds=3))
        assert not rechecked(out) and next_page(out) is None
        assert len(sweep_audits(out, AuditOutcome.ALREADY_APPLIED)) == 1
    assert progress(vault).pages == 3


async def test_another_request_for_a_claimed_sweep_does_not_sweep_it_nor_its_pages():
    vault = InMemoryVault()
    _, _, page_two = await first_page_handled(vault)
    other = VaultWriterDeps(vault, sweep_page_size=PAGE, rechecks_per_s=UNPACED)  # another instance
    rival = await handle_sweep_requested(first_page("s2"), other, at=AT)  # its timer, for the same slot of time
    assert not rechecked(rival) and next_page(rival) is None
    assert len(sweep_audits(rival, AuditOutcome.ALREADY_CLAIMED)) == 1
    forged_page = page_two.model_copy(update={"request_id": "s2"})
    assert not rechecked(await handle_sweep_requested(forged_page, other, at=AT))
    assert progress(vault).request_id == "s1" and progress(vault).pages == 1


async def test_a_new_sweep_asked_to_start_past_some_bindings_skips_none_and_rechecks_nothing():
    vault = InMemoryVault()
    deps = VaultWriterDeps(await seeded(vault), sweep_page_size=PAGE, rechecks_per_s=UNPACED)
    last_user, last_binding = BINDINGS[-1]
    # A first page with a cursor (anyone allowed on the topic, the app among them, could write one): it would
    # pass over every binding before the cursor and still end as a finished sweep.
    forged = first_page().model_copy(update={"after": SweepCursor(user_id=last_user, binding_id=last_binding)})

    out = await handle_sweep_requested(forged, deps, at=AT)

    assert not rechecked(out) and next_page(out) is None
    assert len(sweep_audits(out, AuditOutcome.PAGE_REFUSED)) == 1
    assert sweep_progress_path("sweep-1") not in vault.versions


async def test_a_page_request_with_a_cursor_the_sweep_never_reached_is_refused_and_the_sweep_goes_on():
    vault = InMemoryVault()
    deps, first, page_two = await first_page_handled(vault)
    ahead = SweepCursor(user_id=BINDINGS[-2][0], binding_id=BINDINGS[-2][1])
    jumped = page_two.model_copy(update={"after": ahead})

    out = await handle_sweep_requested(jumped, deps, at=AT + timedelta(seconds=1))

    assert not rechecked(out) and next_page(out) is None
    assert len(sweep_audits(out, AuditOutcome.PAGE_REFUSED)) == 1
    assert progress(vault).pages == 1
    handled = [first]
    await sweep_to_the_end(deps, page_two, handled)
    assert sorted(binding for out in handled for binding in rechecked(out)) == sorted(BINDINGS)


async def test_two_instances_advancing_one_sweep_at_once_conflict_and_the_loser_decides_again():
    vault = RacingVault()
    deps, _, page_two = await first_page_handled(vault)
    # Another instance starts page two between our read of the progress and our write of it.
    rival = SweepProgress(request_id="s1", after=page_two.after, pages=2, bindings=2 * PAGE, updated_at=AT)
    vault.race(sweep_progress_path("sweep-1"), rival.to_vault())
    with pytest.raises(ConcurrentWrite):
        await handle_sweep_requested(page_two, deps, at=AT)
    retried = await handle_sweep_requested(page_two, deps, at=AT)  # the runtime retries a TransientError in place
    assert len(rechecked(retried)) == PAGE and progress(vault).pages == 2
