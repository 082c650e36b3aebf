"""Key health over time: a sweep re-checks every stored binding against HTX (changed through the sandbox's
admin API) and moves each binding to invalid, expiring or back to active, saying nothing when nothing
changed."""

import asyncio
import uuid

import pytest

from shared.adapters.vault.layout import exchange_key
from shared.contracts.events import SweepRequested, utc_now
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from tests.e2e.helpers import WAIT_S, bind, fresh_account_key, fresh_key, new_user
from tests.vault_admin import audit_responses

pytestmark = pytest.mark.stack
S = BindingState
R = ReasonCode


async def sweep_done(client, request_id):
    """Wait until the sweep's last page was requested and every binding its pages named was re-checked (the
    validator audits each), so that none of its re-checks runs on into a later test's HTX calls; returns the
    re-checked binding ids."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        audits = [a async for a in client.audit_events() if a.request_id == request_id]
        found = [a.details["bindings"] for a in audits if a.action == "health_sweep" and a.outcome == "finished"]
        # By user and binding: binding ids are unique per user only (tests store b0, b1 for several users).
        checked = {(a.user_id, a.binding_id) for a in audits if a.action == "recheck"}
        if found and len(checked) >= found[0]:
            return {binding_id for _, binding_id in checked}
        assert asyncio.get_running_loop().time() < deadline, f"the sweep re-checked {len(checked)} of {found}"
        await asyncio.sleep(0.3)


async def bind_active(client, key):
    timeline = await bind(client, new_user(), key, trading_pairs=["btcusdt"])
    assert timeline[-1].state == S.ACTIVE
    return timeline[-1].binding_id


async def sweep_and_collect(client, bindings):
    """Run a sweep; wait until it re-checked every binding (and a moment for the whitelist service to
    decide); return this sweep's statuses by binding."""
    request_id = await client.request_sweep()
    assert set(bindings) <= await sweep_done(client, request_id), "the sweep did not re-check this test's bindings"
    await asyncio.sleep(2)
    return {s.binding_id: s async for s in client.statuses(request_id=request_id)}


async def assert_rechecks_signed_in_vault(client, binding_id, bootstrapped_stack):
    """The recheck's HTX calls were signed by Vault with the binding's own key, each call in Vault's audit log
    under an id the recheck's audit event names."""
    [recheck] = [a async for a in client.audit_events() if a.action == "recheck" and a.binding_id == binding_id]
    ids = set(recheck.details["vault_sign_request_ids"])
    answered = audit_responses(bootstrapped_stack.run_dir)
    signings = [answered[request_id] for request_id in ids if request_id in answered]
    assert ids and len(signings) == len(ids)
    assert all(entry["request"]["path"] == f"transit/hmac/{exchange_key(recheck.user_id, binding_id)}/sha2-256"
               and "validator" in entry["auth"]["policies"] for entry in signings)


async def test_sweeps_drive_every_key_health_transition(client, htx_sandbox, bootstrapped_stack):
    admin = htx_sandbox.admin
    keys = {
        name: fresh_key(htx_sandbox)
        for name in ("deleted", "expired", "withdraw", "foreign_ip", "expiring", "unchanged")
    }
    keys["locked"], locked_account = fresh_account_key(htx_sandbox)
    bindings = {name: await bind_active(client, key) for name, key in keys.items()}

    admin.delete_key(keys["deleted"].access_key)
    admin.update_key(keys["expired"].access_key, status="expired", valid_days=0)
    admin.update_key(keys["withdraw"].access_key, permission="readOnly,trade,withdraw")
    admin.update_key(keys["foreign_ip"].access_key, ip_addresses="203.0.113.10,203.0.113.11,198.51.100.9")
    admin.update_key(keys["expiring"].access_key, valid_days=5)
    admin.set_account_state(locked_account, "lock")

    first = await sweep_and_collect(client, bindings.values())
    expected = {
        "deleted": (S.INVALID, R.KEY_INVALID),
        "expired": (S.INVALID, R.KEY_EXPIRED),
        "withdraw": (S.INVALID, R.PERMISSION_WITHDRAW_FORBIDDEN),
        "foreign_ip": (S.INVALID, R.IP_BINDING_FOREIGN),
        "locked": (S.INVALID, R.ACCOUNT_LOCKED),
        "expiring": (S.EXPIRING, R.KEY_EXPIRING),
    }
    for name, (state, code) in expected.items():
        status = first[bindings[name]]
        assert status.state == state and code in status.reason_codes, (name, status.state, status.reason_codes)
    assert "5 day" in first[bindings["expiring"]].reasons[0].message
    assert bindings["unchanged"] not in first
    await assert_rechecks_signed_in_vault(client, bindings["unchanged"], bootstrapped_stack)

    # The user fixes two keys; nothing else changes, so nothing else is said.
    admin.update_key(keys["withdraw"].access_key, permission="readOnly,trade")
    admin.update_key(keys["expiring"].access_key, valid_days=-1)
    second = await sweep_and_collect(client, bindings.values())
    assert {name for name, binding in bindings.items() if binding in second} == {"withdraw", "expiring"}
    assert second[bindings["withdraw"]].state == S.ACTIVE and second[bindings["expiring"]].state == S.ACTIVE


async def test_a_sweep_asked_for_twice_runs_once_and_the_second_ask_is_told_so_not_dead_lettered(client):
    # What every vault-writer instance (and every restart) does for a scheduled sweep: ask with the same id.
    # Vault refuses a second create-only claim with "permission denied" (the policy grants no update), not
    # a check-and-set conflict, which only the real Vault shows.
    sweep_id = f"twice-{uuid.uuid4().hex}"
    asks = [uuid.uuid4().hex, uuid.uuid4().hex]
    for request_id in asks:
        request = SweepRequested(request_id=request_id, sweep_id=sweep_id, requested_at=utc_now())
        await client.publish_raw(Topic.HEALTH_SWEEP_REQUESTED, sweep_id, request.to_bytes())
    deadline = asyncio.get_running_loop().time() + WAIT_S
    # What each ask was answered (the sweep's pages and its end are audited too, later).
    while len(outcomes := {a.request_id: a.outcome async for a in client.audit_events()
                           if a.request_id in asks and a.action in ("health_sweep", "consume")
                           and a.outcome not in ("page_requested", "finished")}) < 2:
        assert asyncio.get_running_loop().time() < deadline, f"only {outcomes} after {WAIT_S} s"
        await asyncio.sleep(0.3)
    assert outcomes == {asks[0]: "started", asks[1]: "already_claimed"}
    assert not [d async for d in client.dead_letters() if d.key == sweep_id]
    await sweep_done(client, asks[0])
