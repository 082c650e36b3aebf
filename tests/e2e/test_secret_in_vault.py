"""The secret never leaves Vault, end to end: a bound key lives only as a non-exportable Transit key that signs
exactly as the user's secret would; every signature is in Vault's audit log under the id our audit event names;
rejected bindings leave no key behind; a rotation adds a version and a revocation deletes the key."""

import json

import hvac
import pytest

from deploy.bootstrap.vault_files import VaultFiles
from shared.adapters.htx.signing import pre_sign_text
from shared.adapters.vault.layout import TRANSIT_MOUNT, binding_path, exchange_key, key_check_key
from shared.contracts.reasons import ReasonCode
from shared.contracts.states import BindingState
from tests.e2e.helpers import TERMINAL, WAIT_S, bind, fresh_key, new_user, states
from tests.e2e.test_binding_pipeline import audits_of, eventually, kv_read
from tests.vault_admin import audit_responses, signs_as, transit_key

pytestmark = pytest.mark.stack
S = BindingState
R = ReasonCode
# A text HTX would have signed: what the stored key must sign as the user's secret does.
PRE_SIGN_TEXT = pre_sign_text("GET", "api.huobi.pro", "/v2/user/uid",
                              [("AccessKeyId", "probe"), ("Timestamp", "2026-11-30T00:00:00")])


def key_checks_left(vault_admin: hvac.Client, user: str, request_id: str) -> bool:
    return transit_key(vault_admin, key_check_key(user, request_id)) is not None


async def test_a_bound_key_is_a_non_exportable_transit_key_that_signs_as_the_secret_and_kv_holds_no_secret(
        client, htx_sandbox, vault_admin):
    user, key = new_user(), fresh_key(htx_sandbox)
    timeline = await bind(client, user, key, trading_pairs=["btcusdt"])
    assert timeline[-1].state == S.ACTIVE
    binding_id, request_id = timeline[0].binding_id, timeline[0].request_id

    record = kv_read(vault_admin, binding_path(user, binding_id))
    assert "secret_key" not in record and "secret_key_sealed" not in record
    assert key.secret_key.get_secret_value() not in json.dumps(record)
    assert (record["exchange_key"], record["exchange_key_version"]) == (exchange_key(user, binding_id), 1)
    stored = transit_key(vault_admin, record["exchange_key"])
    assert stored is not None
    assert (stored["type"], stored["exportable"], stored["allow_plaintext_backup"]) == ("hmac", False, False)
    assert signs_as(vault_admin, record["exchange_key"], key.secret_key.get_secret_value(), PRE_SIGN_TEXT)
    # Not even root can take the key out of Vault.
    for refused in (f"{TRANSIT_MOUNT}/export/hmac-key/{record['exchange_key']}",
                    f"{TRANSIT_MOUNT}/backup/{record['exchange_key']}"):
        with pytest.raises(hvac.exceptions.VaultError, match="not exportable|exporting is disallowed"):
            vault_admin.read(refused)
    assert not key_checks_left(vault_admin, user, request_id)


async def test_every_signature_of_a_key_check_is_in_vaults_audit_log_under_the_ids_our_audit_event_names(
        client, htx_sandbox, bootstrapped_stack):
    user, key = new_user(), fresh_key(htx_sandbox)
    timeline = await bind(client, user, key)
    request_id = timeline[0].request_id
    [validated] = await eventually(lambda: audits_of(client, request_id, "validated"), 1)
    ids = validated.details["vault_sign_request_ids"]
    # uid, api-key and accounts: the signed calls of a key check (services/validator/inspection.py).
    assert len(ids) == 3 and len(set(ids)) == 3

    answered = audit_responses(bootstrapped_stack.run_dir)
    signings = {request_id: answered[request_id] for request_id in ids if request_id in answered}
    assert set(signings) == set(ids)
    for entry in signings.values():
        assert entry["request"]["path"] == f"{TRANSIT_MOUNT}/hmac/{key_check_key(user, request_id)}/sha2-256"
        assert "validator" in entry["auth"]["policies"]
        # Vault records a keyed HMAC of what it signed, never the text, let alone the secret.
        [signed] = entry["request"]["data"]["batch_input"]
        assert signed["input"].startswith("hmac-sha256:")
    assert key.secret_key.get_secret_value() not in VaultFiles(bootstrapped_stack.run_dir).audit_log.read_text()


@pytest.mark.parametrize("note", ["withdraw", "ip-not-bound"])
async def test_a_key_the_validator_rejects_leaves_no_key_in_vault(client, htx_sandbox, vault_admin, note):
    user = new_user()
    timeline = await bind(client, user, fresh_key(htx_sandbox, note))
    assert states(timeline) == [S.RECEIVED, S.REJECTED]
    assert not key_checks_left(vault_admin, user, timeline[0].request_id)
    assert transit_key(vault_admin, exchange_key(user, timeline[0].binding_id)) is None


async def test_a_key_bound_by_another_user_leaves_the_second_user_no_key(client, htx_sandbox, vault_admin):
    key = fresh_key(htx_sandbox)
    assert (await bind(client, new_user(), key, trading_pairs=["btcusdt"]))[-1].state == S.ACTIVE
    rival = new_user()
    second = await bind(client, rival, key)
    assert second[-1].reason_codes == [R.KEY_ALREADY_BOUND]
    assert transit_key(vault_admin, exchange_key(rival, second[0].binding_id)) is None
    assert not key_checks_left(vault_admin, rival, second[0].request_id)


async def test_a_rotation_adds_a_key_version_and_a_revocation_deletes_the_key(client, htx_sandbox, vault_admin):
    user, old, new = new_user(), fresh_key(htx_sandbox), fresh_key(htx_sandbox)
    binding_id = (await bind(client, user, old, trading_pairs=["btcusdt"]))[0].binding_id
    assert (await bind(client, user, new, replaces_binding_id=binding_id))[-1].state == S.ACTIVE
    name = exchange_key(user, binding_id)
    record = kv_read(vault_admin, binding_path(user, binding_id))
    assert (record["exchange_key"], record["exchange_key_version"]) == (name, 2)
    # The old version still signs: requests signed with it and still in flight verify at HTX until the user
    # deletes the old key there, as the rotation's status tells them to.
    assert signs_as(vault_admin, name, new.secret_key.get_secret_value(), PRE_SIGN_TEXT, version=2)
    assert signs_as(vault_admin, name, old.secret_key.get_secret_value(), PRE_SIGN_TEXT, version=1)

    revoked = await client.wait_for(await client.revoke(user, binding_id), TERMINAL, WAIT_S)
    assert revoked[-1].state == S.REVOKED
    assert transit_key(vault_admin, name) is None
