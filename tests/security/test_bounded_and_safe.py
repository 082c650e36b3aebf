"""Attacks on the system's bounds and on the people who read it (issue 13, classes 4-7), against the real
services, broker, Vault and HTX sandbox: records that would stall a service, HTX answering slowly or with
garbage, control characters aimed at a person's terminal, and smaller holes (an unknown schema version, a secret
in a dead letter, old secrets in KV history, another user's binding id).

Each test plays one attack and asserts what must happen; the last one checks that, after all of them, no record
without a valid proof of origin was processed and no partition's commits are stuck."""

import asyncio
import hashlib
import json
import re
import secrets
import time
import uuid

import hvac
import psutil
import pytest

from services.whitelist.handlers import MAX_PENDING_WHITELISTS
from shared.adapters.vault.layout import KV_MOUNT, binding_path, whitelist_path
from shared.clients.binding_client import BindingClient
from shared.contracts import dead_letters
from shared.contracts.events import utc_now
from shared.contracts.provenance import PRODUCER_HEADER, SIGNATURE_HEADER
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from shared.runtime.config import ServiceSettings
from tests.clients.hash7_process import hash7_environment, run_hash7
from tests.e2e.helpers import PLAINTEXT_PUBLISHED, TERMINAL, WAIT_S, bind, fresh_key, new_user, states
from tests.e2e.test_binding_pipeline import eventually, kv_read
from tests.faults.invariants import stuck_commits, unauthentic_records_processed
from tests.kafka_reading import raw_records

pytestmark = pytest.mark.stack
S = BindingState
R = ReasonCode

# Over ServiceSettings.kafka_max_record_bytes (256 KiB) and under the producer's 1 MB request limit.
OVERSIZED_BYTES = 300_000
MAX_RECORD_BYTES = ServiceSettings.model_fields["kafka_max_record_bytes"].default
DEAD_LETTER_MAX_BODY = ServiceSettings.model_fields["dead_letter_max_body_bytes"].default
# Bodies that make a JSON reader or a validator trip, each its own attack.
UNPARSEABLE = {
    "deep-nesting": b"[" * 100_000 + b"]" * 100_000,
    "5000-digit-number": b'{"user_id": "u", "n": ' + b"7" * 5000 + b"}",
    "invalid-utf8": b'{"user_id": "\xff\xfe\xc0\x80"}',
    "empty": b"",
    "json-array": b'[{"user_id": "u"}]',
}
# What a terminal would obey: CSI clear screen, OSC window title with BEL, the 8-bit CSI, a right-to-left
# override, and rich markup that a careless print would turn into styling.
HOSTILE = "\x1b[2J\x1b]0;pwned\x07\x9b31m\u202e[bold red]X"
# A character a terminal acts on: C0 controls but newline, DEL, C1 controls, bidi marks, overrides, isolates.
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# The validator's deadline for HTX during one inspection (HASH7_EXCHANGE_RETRY_BUDGET_S in tests/fixtures/pipeline.py),
# plus what the pipeline itself takes around it.
HTX_DEADLINE_S = 3.0
PIPELINE_SLACK_S = 5.0


def headers_of(record) -> dict[str, str]:
    return {name: value.decode(errors="replace") for name, value in record.headers}


async def letters_for(settings, key: str) -> list:
    """The dead letters keyed by key, read raw: their headers and body as the broker holds them."""
    return [r for r in await raw_records(settings, Topic.DEAD_LETTER) if (r.key or b"").decode() == key]


async def letters_eventually(settings, key: str, expected: int) -> list:
    await eventually(lambda: letters_for(settings, key), expected)
    return await letters_for(settings, key)


async def refusals(client, outcome: str, topic: Topic) -> list:
    return [a async for a in client.audit_events()
            if a.outcome == outcome and a.details.get("topic") == topic.value]


def request_body(user: str, request_id: str, **fields) -> bytes:
    document = {"schema_version": 2, "request_id": request_id, "user_id": user, "exchange": "htx", "label": "",
                "access_key": "abcd1234-abcd1234-abcd1234-abcd", "secret_key_sealed": "vault:v1:AAAA",
                "requested_at": utc_now().isoformat(), **fields}
    return json.dumps(document).encode()


async def no_statuses_for(client, user: str) -> None:
    assert [s async for s in client.statuses(user_id=user)] == []


async def goes_active(client, htx_sandbox) -> float:
    """A fresh binding for a new user goes active; how long it took, in seconds."""
    started = time.monotonic()
    timeline = await bind(client, new_user(), fresh_key(htx_sandbox), trading_pairs=["btcusdt"])
    assert timeline[-1].state == S.ACTIVE, states(timeline)
    return time.monotonic() - started


def rss_of(pipeline, package: str) -> int:
    return psutil.Process(pipeline.processes[package][0].pid).memory_info().rss


# ---- 4. one message must not stall a service for everyone -----------------------------------------------------


async def test_oversized_bind_requests_are_dead_lettered_cut_to_the_cap_and_intake_neither_swells_nor_stalls(
        client, htx_sandbox, pipeline):
    user = new_user()
    bodies = [request_body(user, f"huge-{i}-{uuid.uuid4().hex}", label="x" * OVERSIZED_BYTES) for i in range(5)]
    before = rss_of(pipeline, "intake")
    for body in bodies:
        await client.publish_raw(Topic.BINDING_REQUESTED, user, body)
    letters = await letters_eventually(pipeline.settings, user, len(bodies))
    assert {headers_of(r)[dead_letters.ORIGINAL_SHA256] for r in letters} == {
        hashlib.sha256(b).hexdigest() for b in bodies}
    for record in letters:
        headers = headers_of(record)
        assert headers[dead_letters.EXCEPTION_TYPE] == "RecordTooLarge"
        assert headers[dead_letters.TRUNCATED] == "true" and int(headers[dead_letters.ORIGINAL_SIZE]) > MAX_RECORD_BYTES
        assert len(record.value) <= DEAD_LETTER_MAX_BODY
    assert len(await refusals(client, "record_too_large", Topic.BINDING_REQUESTED)) >= len(bodies)
    await no_statuses_for(client, user)  # never parsed: nobody is told anything
    await goes_active(client, htx_sandbox)
    # Five 300 KB records read, refused and forgotten: no more than a few of them may stay in memory.
    assert rss_of(pipeline, "intake") - before < 16 * OVERSIZED_BYTES


async def test_an_oversized_record_on_an_internal_topic_is_dead_lettered_and_the_writer_keeps_working(
        client, htx_sandbox, pipeline):
    # Unsigned, straight onto binding.validated: refused for its size before anything else is read.
    user = new_user()
    body = b'{"pad": "' + b"y" * OVERSIZED_BYTES + b'"}'
    await client.publish_raw(Topic.BINDING_VALIDATED, user, body, signed=False)
    [letter] = await letters_eventually(pipeline.settings, user, 1)
    headers = headers_of(letter)
    assert headers[dead_letters.EXCEPTION_TYPE] == "RecordTooLarge" and headers[dead_letters.SERVICE] == "vault-writer"
    assert headers[dead_letters.ORIGINAL_SHA256] == hashlib.sha256(body).hexdigest()
    assert len(letter.value) <= DEAD_LETTER_MAX_BODY and headers[dead_letters.TRUNCATED] == "true"
    await goes_active(client, htx_sandbox)


async def test_a_small_body_with_a_huge_header_is_refused_without_stalling_anyone(client, htx_sandbox, pipeline):
    # The size cap reads the body only: the bytes may hide in a header instead (x-* headers are signed, so read).
    user = new_user()
    await client.publish_raw(Topic.BINDING_REQUESTED, user, request_body(user, uuid.uuid4().hex),
                             {"x-padding": "z" * OVERSIZED_BYTES, PRODUCER_HEADER: "app"}, signed=False)
    [letter] = await letters_eventually(pipeline.settings, user, 1)
    assert headers_of(letter)[dead_letters.EXCEPTION_TYPE] == "Unauthentic"
    await no_statuses_for(client, user)
    await goes_active(client, htx_sandbox)


@pytest.mark.parametrize("name", ["5000-digit-number", "invalid-utf8", "empty", "json-array"])
async def test_a_signed_body_that_escapes_parsing_is_dead_lettered_and_commits_move_on(client, pipeline, name):
    user = new_user()
    await client.publish_raw(Topic.BINDING_REQUESTED, user, UNPARSEABLE[name])
    [letter] = await letters_eventually(pipeline.settings, user, 1)
    assert headers_of(letter)[dead_letters.EXCEPTION_TYPE] == "MalformedEvent"
    assert headers_of(letter)[dead_letters.ORIGINAL_SHA256] == hashlib.sha256(UNPARSEABLE[name]).hexdigest()
    assert await stuck_commits(pipeline.settings) == []


async def test_a_request_whose_label_nests_deeper_than_a_validator_would_walk_tells_the_user_malformed(
        client, pipeline):
    # Deep enough to tempt a recursive validator, shallow enough for the JSON reader: the user is known.
    user, request_id = new_user(), uuid.uuid4().hex
    body = request_body(user, request_id).replace(b'"label": ""', b'"label": ' + b"[" * 900 + b"]" * 900)
    await client.publish_raw(Topic.BINDING_REQUESTED, user, body)
    timeline = await client.wait_for(request_id, TERMINAL, WAIT_S, user_id=user)
    assert states(timeline) == [S.REJECTED] and timeline[0].reason_codes == [R.MALFORMED_REQUEST]
    [letter] = await letters_eventually(pipeline.settings, user, 1)
    assert headers_of(letter)[dead_letters.EXCEPTION_TYPE] == "MalformedEvent"


async def test_a_flood_of_forged_requests_for_one_user_does_not_hold_up_another_users_binding(
        client, htx_sandbox, pipeline):
    flooded, forged = new_user(), 300
    fake_signature = {PRODUCER_HEADER: "app", SIGNATURE_HEADER: "vault:v1:" + "A" * 86 + "=="}
    await asyncio.gather(*(
        client.publish_raw(Topic.BINDING_REQUESTED, flooded, request_body(flooded, f"flood-{i}"),
                           fake_signature if i % 2 else None, signed=False)
        for i in range(forged)))
    took_s = await goes_active(client, htx_sandbox)
    print(f"binding behind a flood of {forged} forged records went active in {took_s:.1f}s")
    assert took_s < 20.0
    letters = await letters_eventually(pipeline.settings, flooded, forged)
    assert {headers_of(r)[dead_letters.EXCEPTION_TYPE] for r in letters} == {"Unauthentic"}
    await no_statuses_for(client, flooded)


# ---- 5. the exchange is untrusted input -----------------------------------------------------------------------


@pytest.mark.parametrize("fault", [
    {"endpoint": "/v2/user/uid", "timeout_rate": 1.0, "timeout_hold_ms": 30_000},
    {"endpoint": "/v1/account/accounts", "error_rate": 1.0, "error_kind": "bad-gateway"},
    {"endpoint": "/v2/user/api-key", "latency_ms": 20_000},
], ids=["hung", "garbled-html", "slow"])
async def test_htx_hanging_or_garbled_during_a_binding_tells_the_user_exchange_unavailable_within_the_deadline(
        client, htx_sandbox, fault):
    user, key = new_user(), fresh_key(htx_sandbox)
    htx_sandbox.admin.set_fault(**fault)
    arrived: dict[S, float] = {}
    try:
        request_id = await client.bind(user, key.access_key, key.secret_key, trading_pairs=["btcusdt"])
        timeline = await client.wait_for(request_id, TERMINAL, WAIT_S,
                                         on_status=lambda s: arrived.setdefault(s.state, time.monotonic()))
    finally:
        htx_sandbox.admin.clear_faults()
    assert states(timeline) == [S.RECEIVED, S.REJECTED] and timeline[-1].reason_codes == [R.EXCHANGE_UNAVAILABLE]
    waited_s = arrived[S.REJECTED] - arrived[S.RECEIVED]
    print(f"HTX {fault}: exchange_unavailable {waited_s:.1f}s after received")
    assert waited_s < HTX_DEADLINE_S + PIPELINE_SLACK_S
    # Nothing was left hanging: the same key binds once HTX is back.
    assert (await bind(client, user, key, trading_pairs=["btcusdt"]))[-1].state == S.ACTIVE


async def test_the_whitelists_symbol_list_keeps_the_last_good_one_while_htx_fails_and_recovers_after(
        client, htx_sandbox):
    user = new_user()
    binding_id = (await bind(client, user, fresh_key(htx_sandbox)))[0].binding_id
    symbol = f"sec{secrets.token_hex(3)}usdt"
    htx_sandbox.admin.set_fault("/v1/settings/common/market-symbols", error_rate=1.0, error_kind="bad-gateway")
    try:
        htx_sandbox.admin.put_symbol({"symbol": symbol, "base": symbol[:-4], "quote": "usdt"})
        await asyncio.sleep(3)  # a few refresh intervals (HASH7_SYMBOL_REFRESH_S=1), each failing
        during = await client.wait_for(await client.set_whitelist(user, binding_id, [symbol, "btcusdt"]),
                                       TERMINAL, WAIT_S)
    finally:
        htx_sandbox.admin.clear_faults()
    # The last good list is kept: known pairs pass, the one HTX added meanwhile is not known yet.
    assert during[-1].state == S.REJECTED and during[-1].reason_codes == [R.PAIR_UNKNOWN]
    deadline = time.monotonic() + 15
    while True:
        after = await client.wait_for(await client.set_whitelist(user, binding_id, [symbol]), TERMINAL, WAIT_S)
        if after[-1].state == S.ACTIVE or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    assert after[-1].state == S.ACTIVE, after[-1].reason_codes


# ---- 6. a person's terminal -----------------------------------------------------------------------------------


async def test_escape_sequences_from_the_app_htx_and_a_dead_letter_reach_no_terminal_raw(
        client, htx_sandbox, pipeline):
    user = new_user()
    # The app's own fields: an exchange name (echoed in unsupported_exchange) and a label.
    refused = await bind(client, user, fresh_key(htx_sandbox), exchange=HOSTILE, label=HOSTILE)
    assert refused[-1].reason_codes == [R.UNSUPPORTED_EXCHANGE]
    # Trading pairs, echoed in pair_unknown.
    pairs = await client.wait_for(await client.set_whitelist(user, "no-such-binding", [HOSTILE]), TERMINAL, WAIT_S)
    assert pairs[-1].reason_codes == [R.PAIR_UNKNOWN]
    # HTX's own answer: a key linked to an "address" that is an escape sequence (echoed in ip_binding_foreign).
    egress = htx_sandbox.scenario["egress_ip"]
    foreign = await bind(client, user, fresh_key(htx_sandbox, ip_addresses=f"{egress},{HOSTILE}"))
    assert R.IP_BINDING_FOREIGN in foreign[-1].reason_codes
    # A dead letter whose body and key are the escape sequences.
    await client.publish_raw(Topic.BINDING_REQUESTED, user, f'{{"user_id": "{user}", "x": "{HOSTILE}"'.encode())
    await letters_eventually(pipeline.settings, user, 1)

    environment = hash7_environment(pipeline.settings)
    for command in (["timeline", "--user", user], ["audit", "--limit", "300"], ["dead-letters", "--limit", "100"]):
        shown = await asyncio.to_thread(run_hash7, command, environment)
        output = shown.stdout + shown.stderr
        assert shown.returncode == 0, output[-2000:]
        assert not RAW_CONTROL.search(output), (command, RAW_CONTROL.search(output))
        if command[0] == "timeline":
            # Shown, escaped, and never read as markup.
            assert "\\x1b[2J" in output and "[bold red]" in output and "\\u202e" in output


# ---- 7. smaller holes -----------------------------------------------------------------------------------------


async def test_a_bind_request_of_schema_version_999_is_malformed_never_read_as_version_1(client, htx_sandbox,
                                                                                         pipeline):
    user, key = new_user(), fresh_key(htx_sandbox)
    request = await client.binding_request(user, key.access_key, key.secret_key, trading_pairs=["btcusdt"])
    body = json.dumps(json.loads(request.to_bytes()) | {"schema_version": 999}).encode()
    await client.publish_raw(Topic.BINDING_REQUESTED, user, body)
    timeline = await client.wait_for(request.request_id, TERMINAL, WAIT_S, user_id=user)
    assert states(timeline) == [S.REJECTED] and timeline[0].reason_codes == [R.MALFORMED_REQUEST]
    assert "schema_version 999" in timeline[0].reasons[0].message
    [letter] = await letters_eventually(pipeline.settings, user, 1)
    assert headers_of(letter)[dead_letters.EXCEPTION_TYPE] == "MalformedEvent"
    await asyncio.sleep(2)  # had it been read as version 1, the validator would have answered by now
    assert states([s async for s in client.statuses(user_id=user)]) == [S.REJECTED]


async def test_a_plaintext_secret_hidden_anywhere_in_a_malformed_request_is_not_kept_in_its_dead_letter(
        client, htx_sandbox, pipeline):
    user, key = new_user(), fresh_key(htx_sandbox)
    secret = key.secret_key.get_secret_value()
    PLAINTEXT_PUBLISHED.add(secret)  # on binding.requested by design of this attack; nowhere else
    careless = {
        "request_id": uuid.uuid4().hex, "user_id": user, "exchange": "htx", "access_key": 42,  # malformed
        "secret_key_sealed": "vault:v1:AAAA",
        "meta": {"device": {"cache": [{"k": secret}]}},  # nested, under a harmless name
        "note": f"pasted from HTX: {secret} (do not share)",  # inside prose
        secret: "as a field name",
    }
    duplicated = json.dumps(careless)[:-1].encode() + b', "note": "clean"}'  # a name twice: scrubbed as text
    truncated_json = json.dumps(careless).encode()[:-1]  # not JSON at all
    for body in (json.dumps(careless).encode(), duplicated, truncated_json):
        await client.publish_raw(Topic.BINDING_REQUESTED, user, body)
    letters = await letters_eventually(pipeline.settings, user, 3)
    assert {headers_of(r)[dead_letters.EXCEPTION_TYPE] for r in letters} == {"MalformedEvent"}
    for letter in letters:
        assert secret.encode() not in letter.value and secret.encode() not in b"".join(v for _, v in letter.headers)
        assert b"[REDACTED]" in letter.value


async def test_a_rotation_leaves_no_readable_old_secret_in_kv_history(client, htx_sandbox, vault_admin):
    user, old, new = new_user(), fresh_key(htx_sandbox), fresh_key(htx_sandbox)
    binding_id = (await bind(client, user, old, trading_pairs=["btcusdt"]))[0].binding_id
    assert (await bind(client, user, new, replaces_binding_id=binding_id))[-1].state == S.ACTIVE
    path = binding_path(user, binding_id)
    try:
        first = vault_admin.secrets.kv.v2.read_secret_version(path=path, version=1, mount_point=KV_MOUNT,
                                                              raise_on_deleted_version=False)
    except hvac.exceptions.InvalidPath:
        first = None
    assert first is None or first["data"]["data"] is None
    assert old.secret_key.get_secret_value() not in json.dumps(vault_admin.secrets.kv.v2.read_secret_metadata(
        path=path, mount_point=KV_MOUNT))
    current = kv_read(vault_admin, path)
    assert "secret_key" not in current and current["exchange_key_version"] == 2


@pytest.fixture(scope="module")
async def victims_binding(pipeline, htx_sandbox):
    """A victim's active binding whitelisting btcusdt: (user, binding id)."""
    async with BindingClient(pipeline.settings) as own_client:
        user = new_user()
        timeline = await bind(own_client, user, fresh_key(htx_sandbox), trading_pairs=["btcusdt"])
        assert timeline[-1].state == S.ACTIVE
        return user, timeline[0].binding_id


async def test_a_whitelist_request_for_another_users_binding_leaves_the_victims_whitelist_alone(
        client, vault_admin, victims_binding):
    victim, binding_id = victims_binding
    attacker = new_user()
    attempt = await client.wait_for(await client.set_whitelist(attacker, binding_id, ["ethusdt"]),
                                    TERMINAL | {S.RECEIVED}, WAIT_S)
    assert attempt[-1].state in (S.RECEIVED, S.REJECTED)
    assert kv_read(vault_admin, whitelist_path(victim, binding_id))["pairs"] == ["btcusdt"]
    assert [s async for s in client.statuses(user_id=victim) if s.request_id == attempt[-1].request_id] == []


async def test_whitelist_requests_for_other_users_bindings_leave_at_most_a_few_waiting_records(
        client, vault_admin, victims_binding):
    # Pairs may come before their binding is stored, so a request for a binding id the attacker does not hold is
    # kept, waiting; but only MAX_PENDING_WHITELISTS of them per user, then refused.
    _, binding_id = victims_binding
    attacker = new_user()
    made_up = [binding_id] + [f"made-up-{n}" for n in range(MAX_PENDING_WHITELISTS + 2)]
    answers = [(await client.wait_for(await client.set_whitelist(attacker, target, ["ethusdt"]),
                                      TERMINAL | {S.RECEIVED}, WAIT_S))[-1] for target in made_up]
    assert [a.state for a in answers] == [S.RECEIVED] * MAX_PENDING_WHITELISTS + [S.REJECTED] * 3
    assert answers[-1].reason_codes == [ReasonCode.BINDING_UNKNOWN]
    assert vault_admin.secrets.kv.v2.list_secrets(f"whitelists/{attacker}/", mount_point=KV_MOUNT)["data"]["keys"] \
        == sorted(made_up[:MAX_PENDING_WHITELISTS])


async def test_a_signed_100k_deep_nested_body_is_dead_lettered_and_commits_move_on(client, pipeline):
    user = new_user()
    body = UNPARSEABLE["deep-nesting"]
    await client.publish_raw(Topic.BINDING_REQUESTED, user, body)
    [letter] = await letters_eventually(pipeline.settings, user, 1)
    headers = headers_of(letter)
    assert headers[dead_letters.EXCEPTION_TYPE] == "MalformedEvent"
    assert headers[dead_letters.ORIGINAL_SHA256] == hashlib.sha256(body).hexdigest()
    assert len(letter.value) <= DEAD_LETTER_MAX_BODY
    assert await stuck_commits(pipeline.settings) == []


async def test_hash7_dead_letters_survives_a_dead_letter_of_a_deeply_nested_body(client, pipeline):
    user = new_user()
    await client.publish_raw(Topic.BINDING_REQUESTED, user, b"[" * 5_000 + b"]" * 5_000)
    await letters_eventually(pipeline.settings, user, 1)
    shown = await asyncio.to_thread(run_hash7, ["dead-letters", "--limit", "5"], hash7_environment(pipeline.settings))
    assert shown.returncode == 0, shown.stderr[-500:]


async def test_after_every_attack_no_unauthentic_record_was_processed_and_no_commit_is_stuck(pipeline):
    assert await unauthentic_records_processed(pipeline.settings) == []
    assert await stuck_commits(pipeline.settings) == []
