"""The binding pipeline end to end: the four services as processes, the real broker, the real Vault
(AppRole per service) and the HTX sandbox over HTTP."""

import asyncio
import json
import uuid

import hvac
import pytest
from pydantic import SecretStr

from shared.adapters.vault.layout import KV_MOUNT, binding_path, exchange_key, whitelist_path
from shared.contracts.events import utc_now
from shared.contracts.provenance import PRODUCED_AT_HEADER
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from tests.e2e.helpers import PLAINTEXT_PUBLISHED, TERMINAL, WAIT_S, Key, bind, demo_key, fresh_key, new_user, states
from tests.kafka_reading import raw_records

pytestmark = pytest.mark.stack
S = BindingState
R = ReasonCode


def kv_versions(vault_admin, path):
    try:
        metadata = vault_admin.secrets.kv.v2.read_secret_metadata(path=path, mount_point=KV_MOUNT)["data"]
    except hvac.exceptions.InvalidPath:
        return None
    return metadata["versions"]


def kv_read(vault_admin, path):
    return vault_admin.secrets.kv.v2.read_secret_version(path=path, mount_point=KV_MOUNT,
                                                         raise_on_deleted_version=False)["data"]["data"]


async def test_a_good_key_with_pairs_goes_from_received_to_active_and_is_stored_once(client, htx_sandbox, vault_admin):
    user, key = new_user(), fresh_key(htx_sandbox)
    timeline = await bind(client, user, key, trading_pairs=["BTC/USDT", "ethusdt"])
    assert states(timeline) == [S.RECEIVED, S.VALIDATED, S.STORED, S.ACTIVE]
    binding_id = timeline[0].binding_id
    assert all(s.binding_id == binding_id and s.access_key_masked for s in timeline)
    assert len(kv_versions(vault_admin, binding_path(user, binding_id))) == 1
    record = kv_read(vault_admin, binding_path(user, binding_id))
    assert record["owner_uid"] == str(key.uid) and record["exchange_key"] == exchange_key(user, binding_id)
    assert kv_read(vault_admin, whitelist_path(user, binding_id))["pairs"] == ["btcusdt", "ethusdt"]


async def test_each_status_carries_the_signed_time_of_the_record_it_answers(client, htx_sandbox, pipeline):
    # What makes a status sent again after a crash (or replayed) identical to the first: its time comes from the
    # record being handled, as its producer signed it (or from Vault), never from the clock of the moment.
    user, key = new_user(), fresh_key(htx_sandbox)
    timeline = await bind(client, user, key, trading_pairs=["btcusdt"])
    request_id = timeline[0].request_id

    async def record_time(topic):
        [record] = [r for r in await raw_records(pipeline.settings, topic)
                    if json.loads(r.value).get("request_id") == request_id]
        return int(dict(record.headers)[PRODUCED_AT_HEADER])

    at = {state: round(status.occurred_at.timestamp() * 1000) for state, status in zip(states(timeline), timeline)}
    assert at[S.RECEIVED] == await record_time(Topic.BINDING_REQUESTED)
    assert at[S.VALIDATED] == await record_time(Topic.BINDING_ACCEPTED)
    assert at[S.STORED] == await record_time(Topic.BINDING_VALIDATED)
    assert at[S.ACTIVE] == await record_time(Topic.BINDING_STORED)


VERDICTS = {
    "withdraw": [R.PERMISSION_WITHDRAW_FORBIDDEN],
    "read-only": [R.PERMISSION_TRADE_MISSING],
    "no-read": [R.PERMISSION_READ_MISSING],
    "no-ip-binding": [R.IP_BINDING_MISSING, R.KEY_EXPIRING],
    "foreign-cidr": [R.IP_BINDING_FOREIGN],
    "missing-one-ip": [R.IP_BINDING_INCOMPLETE],
    "ip-not-bound": [R.IP_BINDING_INCOMPLETE],
    "expired": [R.KEY_EXPIRED],
    "locked-account": [R.ACCOUNT_LOCKED],
    "sub-user": [R.SUB_ACCOUNT_KEY],
    "abnormal-user": [R.KEY_DISABLED],
}


@pytest.mark.parametrize("note", sorted(VERDICTS))
async def test_each_demo_key_is_rejected_with_every_reason_the_user_can_act_on(client, htx_sandbox, note):
    timeline = await bind(client, new_user(), demo_key(htx_sandbox, note), trading_pairs=["btcusdt"])
    assert states(timeline) == [S.RECEIVED, S.REJECTED]
    rejection = timeline[-1]
    assert set(VERDICTS[note]) <= set(rejection.reason_codes), rejection.reason_codes
    assert all(r.message and "HTX" in (r.message + r.hint) for r in rejection.reasons)


async def test_an_unknown_key_and_a_wrong_secret_are_key_invalid(client, htx_sandbox):
    unknown = await bind(client, new_user(), Key("ab12cd34-ef56ab78-cd90ef12-3456", SecretStr("a-b-c-d" * 5), 0))
    good = fresh_key(htx_sandbox)
    wrong_secret = await bind(client, new_user(), Key(good.access_key, SecretStr("not-the-secret-" * 3), good.uid))
    assert unknown[-1].reason_codes == [R.KEY_INVALID] and wrong_secret[-1].reason_codes == [R.KEY_INVALID]


async def test_a_key_bound_by_a_second_user_is_refused(client, htx_sandbox):
    key = fresh_key(htx_sandbox)
    first = await bind(client, new_user(), key, trading_pairs=["btcusdt"])
    second = await bind(client, new_user(), key, trading_pairs=["btcusdt"])
    assert first[-1].state == S.ACTIVE
    assert states(second) == [S.RECEIVED, S.VALIDATED, S.REJECTED]
    assert second[-1].reason_codes == [R.KEY_ALREADY_BOUND]


async def test_a_replayed_request_re_emits_a_status_it_already_had_and_writes_nothing(client, htx_sandbox, vault_admin):
    user, key = new_user(), fresh_key(htx_sandbox)
    request_id = uuid.uuid4().hex
    first = await bind(client, user, key, trading_pairs=["btcusdt"], request_id=request_id)
    assert first[-1].state == S.ACTIVE
    await client.bind(user, key.access_key, key.secret_key, trading_pairs=["btcusdt"], request_id=request_id)
    await eventually(lambda: audits_of(client, request_id, "replayed"), 1)
    await eventually(lambda: statuses_of(client, request_id, lambda s: True), len(first) + 1)
    timeline = await statuses_of(client, request_id, lambda s: True)
    # Intake answers from its view of the status topic, which may trail by a moment: the replayed status
    # is the latest it knew, identical to one already sent (same event id, same content).
    assert timeline[:len(first)] == first and timeline[-1] in first
    assert len(kv_versions(vault_admin, binding_path(user, first[0].binding_id))) == 1


async def test_a_plaintext_secret_is_refused_and_never_forwarded(client, htx_sandbox, pipeline):
    user, key = new_user(), fresh_key(htx_sandbox)
    request = {"schema_version": 2, "request_id": uuid.uuid4().hex, "user_id": user, "exchange": "htx", "label": "",
               "access_key": key.access_key, "secret_key_sealed": key.secret_key.get_secret_value(),
               "requested_at": utc_now().isoformat()}
    PLAINTEXT_PUBLISHED.add(key.secret_key.get_secret_value())
    await client.publish_raw(Topic.BINDING_REQUESTED, user, json.dumps(request).encode())
    timeline = await client.wait_for(request["request_id"], TERMINAL, WAIT_S)
    assert states(timeline) == [S.REJECTED] and timeline[0].reason_codes == [R.SECRET_NOT_SEALED]


async def test_a_secret_sealed_for_another_user_is_unreadable(client, htx_sandbox, pipeline):
    victim, attacker, key = new_user(), new_user(), fresh_key(htx_sandbox)
    # Capture what the app sealed for the victim, then replay it under the attacker's user id.
    request_id = await client.bind(victim, key.access_key, key.secret_key, request_id=uuid.uuid4().hex)
    await client.wait_for(request_id, TERMINAL, WAIT_S)
    sealed = await sealed_secret_of(pipeline.settings, request_id)
    stolen = {"schema_version": 2, "request_id": uuid.uuid4().hex, "user_id": attacker, "exchange": "htx",
              "access_key": key.access_key,
              "secret_key_sealed": sealed, "requested_at": utc_now().isoformat()}
    await client.publish_raw(Topic.BINDING_REQUESTED, attacker, json.dumps(stolen).encode())
    timeline = await client.wait_for(stolen["request_id"], TERMINAL, WAIT_S)
    assert states(timeline) == [S.RECEIVED, S.REJECTED] and timeline[-1].reason_codes == [R.SECRET_UNREADABLE]


async def test_an_unsupported_exchange_is_refused(client, htx_sandbox):
    timeline = await bind(client, new_user(), fresh_key(htx_sandbox), exchange="binance")
    assert states(timeline) == [S.REJECTED] and timeline[0].reason_codes == [R.UNSUPPORTED_EXCHANGE]


async def test_a_poison_message_is_dead_lettered_the_user_told_and_the_service_keeps_going(
    client, htx_sandbox, pipeline
):
    user = new_user()
    poison = json.dumps({"schema_version": 2, "user_id": user, "request_id": "poison-1", "access_key": 42}).encode()
    await client.publish_raw(Topic.BINDING_REQUESTED, user, poison)
    await client.publish_raw(Topic.BINDING_REQUESTED, user, b"\xff\x00 not json at all")
    timeline = await client.wait_for("poison-1", TERMINAL, WAIT_S)
    assert timeline[-1].reason_codes == [R.MALFORMED_REQUEST] and "access_key" in timeline[-1].reasons[0].message
    letters = [d async for d in client.dead_letters() if d.key == user]
    assert len(letters) == 2 and (
        {d.original_topic for d in letters} == {pipeline.settings.topic(Topic.BINDING_REQUESTED)}
    )
    assert all(d.error_class == "MalformedEvent" for d in letters)
    after = await bind(client, user, fresh_key(htx_sandbox), trading_pairs=["btcusdt"])
    assert after[-1].state == S.ACTIVE


async def test_htx_outage_tells_the_user_to_retry_not_to_fix_the_key(client, htx_sandbox):
    key = fresh_key(htx_sandbox)
    htx_sandbox.admin.set_fault("/v2/user/uid", error_rate=1.0)
    try:
        timeline = await bind(client, new_user(), key)
    finally:
        htx_sandbox.admin.clear_faults()
    assert timeline[-1].state == S.REJECTED and timeline[-1].reason_codes == [R.EXCHANGE_UNAVAILABLE]


async def test_too_many_attempts_in_a_minute_are_refused(client, htx_sandbox, pipeline):
    user, key = new_user(), fresh_key(htx_sandbox)
    limit = int(pipeline.env["HASH7_INTAKE_MAX_ATTEMPTS_PER_MINUTE"])
    request_ids = [await client.bind(user, key.access_key, key.secret_key, exchange="nope") for _ in range(limit + 1)]
    last = await client.wait_for(request_ids[-1], TERMINAL, WAIT_S)
    assert last[-1].reason_codes == [R.TOO_MANY_ATTEMPTS]


async def test_a_key_close_to_expiry_is_bound_but_expiring(client, htx_sandbox):
    timeline = await bind(client, new_user(), fresh_key(htx_sandbox, valid_days=5), trading_pairs=["btcusdt"])
    assert states(timeline) == [S.RECEIVED, S.VALIDATED, S.STORED, S.EXPIRING]
    assert timeline[-1].reason_codes == [R.KEY_EXPIRING] and "5 day" in timeline[-1].reasons[0].message


async def test_whitelist_after_binding_activates_it_and_bad_pairs_are_refused(client, htx_sandbox, vault_admin):
    user = new_user()
    bound = await bind(client, user, fresh_key(htx_sandbox))
    assert states(bound)[-1] == S.AWAITING_WHITELIST and bound[-1].reason_codes == [R.WHITELIST_EMPTY]
    binding_id = bound[0].binding_id
    bad = await client.wait_for(
        await client.set_whitelist(user, binding_id, ["btcusdt", "nosuchusdt", "xrpusdt", "lunausdt"]),
        TERMINAL, WAIT_S)
    assert bad[-1].state == S.REJECTED and bad[-1].reason_codes == [R.PAIR_UNKNOWN, R.PAIR_NOT_TRADABLE]
    assert "nosuchusdt" in bad[-1].reasons[0].message and "xrpusdt, lunausdt" in bad[-1].reasons[1].message
    good = await client.wait_for(await client.set_whitelist(user, binding_id, ["ETH/USDT"]), TERMINAL, WAIT_S)
    assert good[-1].state == S.ACTIVE
    assert kv_read(vault_admin, whitelist_path(user, binding_id))["pairs"] == ["ethusdt"]


async def test_whitelist_sent_before_the_binding_is_stored_is_used_when_it_is(client, htx_sandbox):
    user, key = new_user(), fresh_key(htx_sandbox)
    htx_sandbox.admin.set_fault("/v1/account/accounts", latency_ms=1500)
    try:
        request_id = await client.bind(user, key.access_key, key.secret_key)
        received = await client.wait_for(request_id, {S.RECEIVED}, WAIT_S)
        early = await client.wait_for(
            await client.set_whitelist(user, received[-1].binding_id, ["btcusdt"]), TERMINAL | {S.RECEIVED}, WAIT_S)
    finally:
        htx_sandbox.admin.clear_faults()
    assert early[-1].state == S.RECEIVED and early[-1].details["waiting_for"] == "binding"
    timeline = await client.wait_for(request_id, TERMINAL, WAIT_S)
    assert states(timeline) == [S.RECEIVED, S.VALIDATED, S.STORED, S.ACTIVE]


async def test_rotation_writes_the_next_version_and_says_to_delete_the_old_key(client, htx_sandbox, vault_admin):
    user, old, new = new_user(), fresh_key(htx_sandbox), fresh_key(htx_sandbox)
    first = await bind(client, user, old, trading_pairs=["btcusdt"])
    binding_id = first[0].binding_id
    rotated = await bind(client, user, new, replaces_binding_id=binding_id)
    assert states(rotated) == [S.RECEIVED, S.VALIDATED, S.STORED, S.ACTIVE]
    assert all(s.binding_id == binding_id for s in rotated)
    assert "Delete the key" in rotated[2].details["next_step"] and rotated[2].details["rotated_from"]
    # The next version, and the only one kept: the old secret is not readable in the history.
    assert list(kv_versions(vault_admin, binding_path(user, binding_id))) == ["2"]
    assert kv_read(vault_admin, binding_path(user, binding_id))["access_key"] == new.access_key
    # the old key is free again: another user may bind it
    assert (await bind(client, new_user(), old, trading_pairs=["btcusdt"]))[-1].state == S.ACTIVE


async def test_revocation_removes_every_version_index_and_whitelist(client, htx_sandbox, vault_admin):
    user, key = new_user(), fresh_key(htx_sandbox)
    binding_id = (await bind(client, user, key, trading_pairs=["btcusdt"]))[0].binding_id
    revoked = await client.wait_for(await client.revoke(user, binding_id), TERMINAL, WAIT_S)
    assert revoked[-1].state == S.REVOKED and "Delete the key" in revoked[-1].details["next_step"]
    assert kv_versions(vault_admin, binding_path(user, binding_id)) is None
    assert kv_versions(vault_admin, whitelist_path(user, binding_id)) is None
    # the index entry is gone too: the same key can be bound again (by anyone)
    assert (await bind(client, new_user(), key, trading_pairs=["btcusdt"]))[-1].state == S.ACTIVE
    unknown = await client.wait_for(await client.revoke(user, "no-such-binding"), TERMINAL, WAIT_S)
    assert unknown[-1].state == S.REJECTED and unknown[-1].reason_codes == [R.BINDING_UNKNOWN]
    # a revoked binding cannot be rotated back to life, and the user is told so
    rotation = await bind(client, user, fresh_key(htx_sandbox), replaces_binding_id=binding_id)
    assert rotation[-1].state == S.REJECTED and rotation[-1].reason_codes == [R.BINDING_UNKNOWN]


async def test_a_binding_revoked_before_its_events_are_redelivered_is_not_stored_or_activated_again(
        client, htx_sandbox, vault_admin, pipeline):
    user, key = new_user(), fresh_key(htx_sandbox)
    timeline = await bind(client, user, key, trading_pairs=["btcusdt"])
    request_id, binding_id = timeline[0].request_id, timeline[0].binding_id
    await client.wait_for(await client.revoke(user, binding_id), TERMINAL, WAIT_S)
    # A crash before the commit, then a restart: the services have forgotten which events they completed,
    # and the broker hands them binding.validated and binding.stored again.
    restarted = ("vault_writer", "whitelist")
    for package in restarted:
        pipeline.kill(package)
    pipeline.start_all(restarted)
    for topic in (Topic.BINDING_VALIDATED, Topic.BINDING_STORED):
        [record] = [r for r in await raw_records(pipeline.settings, topic)
                    if json.loads(r.value).get("request_id") == request_id]
        # The very record again, its producer's signature included (a redelivery, or a replay of a genuine one).
        await client.publish_raw(topic, user, record.value, {n: v.decode() for n, v in record.headers}, signed=False)
    await eventually(lambda: audits_of(client, request_id, "already_revoked"), 2)
    assert kv_versions(vault_admin, binding_path(user, binding_id)) is None
    assert kv_versions(vault_admin, whitelist_path(user, binding_id)) is None
    assert states(await statuses_of(client, request_id, lambda s: True)) == [
        S.RECEIVED, S.VALIDATED, S.STORED, S.ACTIVE
    ]


async def test_a_second_validator_instance_shares_the_work_and_survives_the_other_being_killed(
    client, htx_sandbox, pipeline
):
    pipeline.start("validator", instance=1)
    users = [new_user() for _ in range(12)]
    keys = [fresh_key(htx_sandbox) for _ in users]
    request_ids = [
        await client.bind(u, k.access_key, k.secret_key, trading_pairs=["btcusdt"]) for u, k in zip(users, keys)
    ]
    pipeline.kill("validator", instance=0)
    try:
        for request_id in request_ids:
            assert (await client.wait_for(request_id, TERMINAL, WAIT_S))[-1].state == S.ACTIVE
    finally:
        pipeline.start("validator", instance=0)
        pipeline.processes["validator"][1].stop()


async def statuses_of(client, request_id, keep):
    return [s async for s in client.statuses(request_id=request_id) if keep(s)]


async def audits_of(client, request_id, outcome):
    return [a async for a in client.audit_events() if a.request_id == request_id and a.outcome == outcome]


async def sealed_secret_of(settings, request_id):
    for record in await raw_records(settings, Topic.BINDING_REQUESTED):
        document = json.loads(record.value)
        if document.get("request_id") == request_id:
            return document["secret_key_sealed"]
    raise AssertionError("request not found")


async def eventually(count, expected, timeout_s=WAIT_S):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(found := await count()) < expected:
        assert asyncio.get_running_loop().time() < deadline, f"saw {len(found)} of {expected}"
        await asyncio.sleep(0.2)
    return found
