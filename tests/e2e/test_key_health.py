"""Key health over time: a sweep re-checks every stored binding against HTX (changed through the sandbox's
admin API) and moves each binding to invalid, expiring or back to active, saying nothing when nothing
changed."""

import asyncio

import pytest

from shared.contracts.reasons import ReasonCode
from shared.contracts.states import BindingState
from tests.e2e.helpers import WAIT_S, bind, fresh_account_key, fresh_key, new_user

pytestmark = pytest.mark.stack
S = BindingState
R = ReasonCode


async def bind_active(client, key):
    timeline = await bind(client, new_user(), key, trading_pairs=["btcusdt"])
    assert timeline[-1].state == S.ACTIVE
    return timeline[-1].binding_id


async def sweep_and_collect(client, bindings):
    """Run a sweep; wait until the validator re-checked each binding of this test (and a moment for the
    whitelist service to decide); return this sweep's statuses by binding."""
    request_id = await client.request_sweep()
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        checked = {a.binding_id async for a in client.audit_events() if a.request_id == request_id and a.action == "recheck"}
        if set(bindings) <= checked:
            break
        assert asyncio.get_running_loop().time() < deadline, "the sweep did not re-check every binding"
        await asyncio.sleep(0.3)
    await asyncio.sleep(2)
    return {s.binding_id: s async for s in client.statuses(request_id=request_id)}


async def test_sweeps_drive_every_key_health_transition(client, htx_sandbox):
    admin = htx_sandbox.admin
    keys = {name: fresh_key(htx_sandbox) for name in ("deleted", "expired", "withdraw", "foreign_ip", "expiring", "unchanged")}
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

    # The user fixes two keys; nothing else changes, so nothing else is said.
    admin.update_key(keys["withdraw"].access_key, permission="readOnly,trade")
    admin.update_key(keys["expiring"].access_key, valid_days=-1)
    second = await sweep_and_collect(client, bindings.values())
    assert {name for name, binding in bindings.items() if binding in second} == {"withdraw", "expiring"}
    assert second[bindings["withdraw"]].state == S.ACTIVE and second[bindings["expiring"]].state == S.ACTIVE
