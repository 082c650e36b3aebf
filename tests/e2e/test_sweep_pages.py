"""A key-health sweep pages through the stored bindings on the real stack (HASH7_SWEEP_PAGE_SIZE is 4 here:
tests/fixtures/pipeline.py): the vault-writer is killed with SIGKILL mid-sweep and started again, and the sweep
goes on from the page it was in, to the end, rechecking every binding stored when it started."""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from hvac import exceptions as hvac_errors

from shared.adapters.vault.layout import BINDINGS_FOLDER, KV_MOUNT, binding_path, sweep_progress_path
from shared.adapters.vault.records import SweepProgress
from tests.e2e.helpers import WAIT_S, fresh_key
from tests.e2e.test_key_health import bind_active
from tests.e2e.test_observability import samples

pytestmark = pytest.mark.stack
# Enough filler bindings (filler_bindings) that the kill lands mid-sweep.
FILLER_USERS = 300
VAULT_WRITER = "vault_writer"


def stored_bindings(vault_admin) -> set[tuple[str, str]]:
    kv = vault_admin.secrets.kv.v2
    users = kv.list_secrets(path=BINDINGS_FOLDER, mount_point=KV_MOUNT)["data"]["keys"]
    return {(user.rstrip("/"), binding)
            for user in users
            for binding in kv.list_secrets(path=BINDINGS_FOLDER + user, mount_point=KV_MOUNT)["data"]["keys"]}


def sweep_progress(vault_admin, sweep_id: str) -> SweepProgress | None:
    try:
        data = vault_admin.secrets.kv.v2.read_secret_version(
            sweep_progress_path(sweep_id), mount_point=KV_MOUNT, raise_on_deleted_version=True)["data"]["data"]
    except hvac_errors.InvalidPath:
        return None
    return SweepProgress.from_vault(data)


@asynccontextmanager
async def filler_bindings(vault_admin, name: str, users: int) -> AsyncIterator[None]:
    """Bindings with no key to recheck (as if stored by hand), one for each of `users` users, deleted afterwards: the
    validator answers each at once (binding_gone), so a sweep over them has many pages without waiting on HTX."""
    prefix = f"{name}-{uuid.uuid4().hex[:8]}"
    filler = [binding_path(f"{prefix}-{n:03d}", f"filler-{n:03d}") for n in range(users)]
    for path in filler:
        await asyncio.to_thread(vault_admin.secrets.kv.v2.create_or_update_secret, path, {"seeded": "yes"},
                                cas=0, mount_point=KV_MOUNT)
    try:
        yield
    finally:
        for path in filler:
            await asyncio.to_thread(vault_admin.secrets.kv.v2.delete_metadata_and_all_versions, path,
                                    mount_point=KV_MOUNT)


async def progress_when(vault_admin, sweep_id: str, reached) -> SweepProgress:
    """The sweep's progress in Vault once `reached` holds of it, looked at every few milliseconds."""
    deadline = time.monotonic() + WAIT_S
    while True:
        progress = await asyncio.to_thread(sweep_progress, vault_admin, sweep_id)
        if progress is not None and reached(progress):
            return progress
        assert time.monotonic() < deadline, f"the sweep stopped at {progress}"
        await asyncio.sleep(0.005)


async def test_a_sweep_whose_vault_writer_is_killed_mid_sweep_goes_on_from_its_page_and_rechecks_every_binding(
        client, pipeline, htx_sandbox, vault_admin):
    real = {await bind_active(client, fresh_key(htx_sandbox)) for _ in range(2)}
    async with filler_bindings(vault_admin, "sweep-filler", FILLER_USERS):
        everything = await asyncio.to_thread(stored_bindings, vault_admin)
        request_id = await client.request_sweep()
        sweep_id = f"manual-{request_id}"

        await progress_when(vault_admin, sweep_id, lambda progress: progress.pages >= 3)
        await asyncio.to_thread(pipeline.kill, VAULT_WRITER)
        at_kill = await asyncio.to_thread(sweep_progress, vault_admin, sweep_id)
        assert at_kill is not None and not at_kill.finished, "the sweep ended before the kill: too few pages"
        await asyncio.to_thread(pipeline.start, VAULT_WRITER)

        done = await progress_when(vault_admin, sweep_id, lambda progress: progress.finished)
        # Pages started after the restart, and every binding counted once, the page in hand at the kill included.
        assert done.pages > at_kill.pages and done.bindings == len(everything)
        rechecked = await rechecks_of(client, request_id, len(everything))
        assert rechecked == everything  # every binding, the two real ones rechecked on HTX among them
        assert {binding for _, binding in rechecked} >= real

        pages = {a.details["page"] for a in await sweep_audits(client, request_id, "page_requested")}
        assert pages == set(range(1, done.pages + 1))  # none skipped
        [finished] = {(a.details["pages"], a.details["bindings"])
                      for a in await sweep_audits(client, request_id, "finished")}
        assert finished == (done.pages, len(everything))
        # The restarted vault-writer ended the sweep: its metrics say how far it got and how big it was.
        metrics = await asyncio.to_thread(samples, pipeline.health_url(VAULT_WRITER))
        assert metrics[("hash7_sweep_bindings_found", frozenset())] == len(everything)
        assert metrics[("hash7_sweep_bindings_so_far", frozenset())] == len(everything)
        assert metrics[("hash7_sweep_pages_total", frozenset())] >= done.pages - at_kill.pages


async def rechecks_of(client, request_id: str, expected: int) -> set[tuple[str, str]]:
    """The bindings the validator rechecked for the sweep (it audits each), once it has rechecked `expected`."""
    deadline = time.monotonic() + WAIT_S
    while True:
        rechecked = {(a.user_id, a.binding_id) async for a in client.audit_events()
                     if a.request_id == request_id and a.action == "recheck"}
        if len(rechecked) >= expected:
            return rechecked
        assert time.monotonic() < deadline, f"the validator rechecked {len(rechecked)} of {expected}"
        await asyncio.sleep(0.5)


async def sweep_audits(client, request_id: str, outcome: str) -> list:
    return [a async for a in client.audit_events()
            if a.request_id == request_id and a.action == "health_sweep" and a.outcome == outcome]
