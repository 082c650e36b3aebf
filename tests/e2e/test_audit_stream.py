"""The audit stream on the real pipeline: each decision that rests on Vault names the Vault calls it made, and
Vault's own audit log holds every one of them, so ops can go from our audit to Vault's and back."""

import asyncio
import time

import pytest

from shared.adapters.vault.layout import KV_MOUNT, binding_path, whitelist_path
from shared.contracts.events import AuditEvent
from shared.contracts.states import BindingState
from tests.e2e.helpers import WAIT_S, bind, fresh_key, new_user
from tests.vault_admin import audit_responses

pytestmark = pytest.mark.stack

# The decisions of one bind, one whitelist change and one revocation that rest on Vault: (service, action, outcome).
ON_VAULT = [
    ("validator", "validate", "validated"),
    ("vault-writer", "store", "stored"),
    ("whitelist", "whitelist", "active"),  # the bind's pairs
    ("whitelist", "whitelist", "active"),  # the whitelist request's
    ("vault-writer", "revoke", "revoked"),
]


async def audits_of(client, user: str, expected: int) -> list[AuditEvent]:
    """The user's audit events, once there are `expected` of them (audits travel beside the statuses awaited)."""
    deadline = time.monotonic() + WAIT_S
    while True:
        events = [event async for event in client.audit_events() if event.user_id == user]
        if len(events) >= expected or time.monotonic() > deadline:
            return events
        await asyncio.sleep(0.5)


def written(answers: dict, request_ids: list[str], path: str) -> bool:
    return any(answers[request_id]["request"]["path"] == f"{KV_MOUNT}/data/{path}"
               and answers[request_id]["request"]["operation"] in {"create", "update"} for request_id in request_ids)


async def test_each_decision_resting_on_vault_names_its_vault_calls_and_vault_logged_each_one(
        client, htx_sandbox, pipeline, bootstrapped_stack):
    user, key = new_user(), fresh_key(htx_sandbox)
    timeline = await bind(client, user, key, trading_pairs=["btcusdt"])
    assert timeline[-1].state == BindingState.ACTIVE, timeline
    binding_id = timeline[-1].binding_id
    whitelisting = await client.set_whitelist(user, binding_id, ["btcusdt", "ethusdt"])
    await client.wait_for(whitelisting, {BindingState.ACTIVE}, WAIT_S)
    revoking = await client.revoke(user, binding_id)
    await client.wait_for(revoking, {BindingState.REVOKED}, WAIT_S)

    events = await audits_of(client, user, expected=len(ON_VAULT) + 1)  # and intake's, which asks Vault nothing
    decided = [event for event in events if (event.service, event.action, event.outcome) in ON_VAULT]
    assert sorted((event.service, event.action, event.outcome) for event in decided) == sorted(ON_VAULT)
    answers = audit_responses(bootstrapped_stack.run_dir)
    for event in decided:
        request_ids = event.details["vault_request_ids"]
        assert request_ids and set(request_ids) <= set(answers), event
    by_decision = {(event.action, event.request_id): event.details["vault_request_ids"] for event in decided}
    stored_by = by_decision[("store", timeline[-1].request_id)]
    assert written(answers, stored_by, binding_path(user, binding_id))
    assert written(answers, by_decision[("whitelist", whitelisting)], whitelist_path(user, binding_id))
    # The revocation's tombstone is written (create-only) before anything is deleted.
    assert by_decision[("revoke", revoking)]
    [accepted] = [event for event in events if event.service == "intake"]
    assert "vault_request_ids" not in accepted.details
