"""`hash7-admin revoke-all`: emergency revocation of every binding of a user, or of the one binding an access key
is indexed to, in one command.

The bindings are found in Vault with the ops identity (deploy/admin/identity.py): the user's folder of bindings, or
the access-key index (shared/adapters/vault/stores.py). Each is revoked as the app revokes one
(BindingClient.revoke): the vault-writer deletes its key, record and whitelist, and audits it. The command waits
for each revocation's final status and shows them as a table.
"""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from deploy.admin import cli
from deploy.admin.identity import load_settings, ops_vault
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.stores import AccessKeyIndex, Bindings
from shared.clients.binding_client import BindingClient, StatusTimeout
from shared.clients.cli.tables import Column, TableView, shown_state, shown_time
from shared.clients.console import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    JSON,
    USER_ID,
    ContractValue,
    Waiting,
    output_format,
    print_json_line,
    run,
    shown,
    stderr,
    stdout,
)
from shared.contracts.events import AccessKey
from shared.contracts.states import REVOKE_OUTCOME, BindingState, RequestKind
from shared.runtime.config import Settings

ACCESS_KEY = ContractValue("ACCESS_KEY", AccessKey)


@dataclass(frozen=True)
class Revocation:
    """How one binding's revocation ended: its final state and when, or None when none came in time."""

    user_id: str
    binding_id: str
    request_id: str
    state: BindingState | None
    occurred_at: datetime | None
    reason_codes: list[str]


REVOCATIONS = TableView[Revocation](
    "revocations",
    [
        Column("User", lambda r: shown(r.user_id)),
        Column("Binding", lambda r: shown(r.binding_id)),
        Column("Request", lambda r: shown(r.request_id)),
        Column("Final state", lambda r: shown_state(r.state) if r.state else Text("no answer in time", style="red")),
        Column("At (UTC)", lambda r: shown_time(r.occurred_at) if r.occurred_at else shown(None)),
        Column("Reasons", lambda r: shown(", ".join(r.reason_codes))),
    ],
    # Those without an answer last.
    lambda r: r.occurred_at or datetime.max.replace(tzinfo=UTC),
)

BindingsFinder = Callable[[VaultClient], Awaitable[list[tuple[str, str]]]]


@cli.command("revoke-all")
@click.option("--user", "user_id", type=USER_ID, help="Revoke every stored binding of this user.")
@click.option("--access-key", type=ACCESS_KEY, help="Revoke the binding this HTX access key is bound to.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=1), default=60.0, show_default=True,
              help="Seconds to wait for each revocation's final status.")
def revoke_all(user_id: str | None, access_key: str | None, yes: bool, timeout_s: float) -> None:
    """Emergency revocation: every binding of a user, or of an access key, revoked and waited for.

    Exit code 3 when a revocation was refused, 1 when one got no answer in time."""
    if user_id is not None and access_key is None:
        whose, find = f"user {user_id}", partial(_bindings_of_user, user_id=user_id)
    elif access_key is not None and user_id is None:
        whose, find = "that access key", partial(_binding_of_access_key, access_key=access_key)
    else:
        raise click.UsageError("give exactly one of --user and --access-key")
    settings = load_settings()
    run(settings, _revoke_all(settings, whose, find, yes=yes, timeout_s=timeout_s))


async def _revoke_all(settings: Settings, whose: str, find: BindingsFinder, *, yes: bool, timeout_s: float) -> int:
    with Waiting(f"Finding the bindings of {whose} in Vault at {settings.vault_addr}…"):
        targets = await find(ops_vault(settings))
    if not targets:
        stderr.print(f"No stored binding of {whose}: nothing to revoke.", markup=False)
        return EXIT_OK
    if not yes:
        stderr.print(Text.assemble(f"Bindings of {whose} to revoke: ",
                                   Text(", ").join(shown(f"{user}/{binding}") for user, binding in targets)))
        click.confirm(f"Revoke these {len(targets)} binding(s)?", abort=True, err=True)
    async with BindingClient(settings) as client:
        requests = [(user, binding, await client.revoke(user, binding)) for user, binding in targets]
        revocations = await _outcomes(client, requests, timeout_s)
    _print(revocations)
    if any(revocation.state is None for revocation in revocations):
        return EXIT_FAILED
    return EXIT_OK if all(r.state in REVOKE_OUTCOME.succeeded for r in revocations) else EXIT_REFUSED


async def _bindings_of_user(vault: VaultClient, *, user_id: str) -> list[tuple[str, str]]:
    return [(user_id, binding_id) for binding_id in await Bindings(vault).ids_of(user_id)]


async def _binding_of_access_key(vault: VaultClient, *, access_key: str) -> list[tuple[str, str]]:
    entry = await AccessKeyIndex(vault).holder(access_key)
    return [] if entry is None else [(entry.holder.user_id, entry.holder.binding_id)]


async def _outcomes(client: BindingClient, requests: list[tuple[str, str, str]], timeout_s: float
                    ) -> list[Revocation]:
    progress = Progress(TextColumn("Waiting for the revocations' final statuses"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=stderr, transient=True)

    async def outcome(user_id: str, binding_id: str, request_id: str) -> Revocation:
        try:
            timeline = await client.wait_for(request_id, REVOKE_OUTCOME.final, timeout_s, user_id=user_id,
                                             kind=RequestKind.REVOKE)
        except StatusTimeout:
            revocation = Revocation(user_id, binding_id, request_id, None, None, [])
        else:
            final = timeline[-1]
            revocation = Revocation(user_id, binding_id, request_id, final.state, final.occurred_at,
                                    list(final.reason_codes))
        progress.advance(task)
        return revocation

    with progress:
        task = progress.add_task("revoke", total=len(requests))
        return list(await asyncio.gather(*(outcome(*request) for request in requests)))


def _print(revocations: list[Revocation]) -> None:
    if output_format() == JSON:
        for revocation in revocations:
            print_json_line(revocation)
        return
    stdout.print(REVOCATIONS.table(revocations))
