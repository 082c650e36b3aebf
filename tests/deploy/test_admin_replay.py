"""`hash7-admin dead-letters replay` on the real stack: a binding whose storing failed for good (the vault-writer's
policy broken, as a bad deploy would) is a dead letter; once the policy is fixed, the replay sends the original
record back as its producer signed it and the binding goes active. A second replay changes nothing and tells the
user nothing new; letters that are not the original's bytes, or were never authentic, are refused and not sent.
Every replay is an audit event signed by ops."""

import asyncio
import json
from contextlib import aclosing

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from deploy.bootstrap.event_keys import signing_policy
from shared.adapters.vault.layout import KV_MOUNT, binding_path
from shared.clients.binding_client import BindingClient, DeadLetterRecord
from shared.contracts import dead_letters
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import AuditEvent
from shared.contracts.provenance import SIGNATURE_HEADER, is_signed_header
from shared.contracts.routing import Party, Topic
from shared.contracts.states import BindingState
from shared.runtime.config import VaultWriterSettings, consumer_group_id
from shared.runtime.dead_letters import DeadLetter
from tests.builders import SECRET, provenance_headers, validated
from tests.clients.hash7_process import hash7_environment, run_hash7
from tests.e2e.helpers import PLAINTEXT_PUBLISHED, WAIT_S, fresh_key, new_user
from tests.fakes import InMemoryVault
from tests.kafka_reading import raw_records

pytestmark = pytest.mark.stack
ADMIN = "deploy.admin"
EXIT_REFUSED = 3
VAULT_WRITER = Party.VAULT_WRITER.value


@pytest.fixture
async def client(pipeline):
    async with BindingClient(pipeline.settings) as binding_client:
        yield binding_client


def replay(settings, *args: str) -> tuple[int, list[dict]]:
    done = run_hash7(["--output", "json", "dead-letters", "replay", *args], hash7_environment(settings), module=ADMIN)
    assert done.returncode in (0, EXIT_REFUSED), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


async def dead_letter_of(client: BindingClient, key: str) -> DeadLetterRecord:
    async with asyncio.timeout(WAIT_S), aclosing(client.dead_letters(follow=True)) as letters:
        async for letter in letters:
            if letter.key == key:
                return letter
    raise AssertionError("unreachable")


def letter_id(letter: DeadLetterRecord) -> str:
    return f"{letter.original_topic}/{letter.original_partition}/{letter.original_offset}"


async def records_of(settings, topic: Topic, key: str):
    return [record for record in await raw_records(settings, topic) if record.key == key.encode()]


async def consumed_past(settings, topic: Topic, partition: int, offset: int) -> None:
    """Wait until the vault-writer's group committed past offset: it has handled the record there."""
    group = consumer_group_id(settings.topic_prefix, VaultWriterSettings.service_name, settings.kafka_group_suffix,
                              topic)
    reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=group,
                              enable_auto_commit=False)
    await reader.start()
    try:
        async with asyncio.timeout(WAIT_S):
            while ((await reader.committed(TopicPartition(settings.topic(topic), partition))) or 0) <= offset:
                await asyncio.sleep(0.2)
    finally:
        await reader.stop()


def signed_headers(record) -> list[tuple[str, bytes]]:
    return sorted((name, value) for name, value in record.headers if is_signed_header(name) or name.startswith("x-"))


async def test_a_fixed_failure_is_replayed_to_active_once_and_audited(client, pipeline, htx_sandbox, vault_admin):
    settings = pipeline.settings
    user, key = new_user(), fresh_key(htx_sandbox)
    policy = vault_admin.sys.read_policy(VAULT_WRITER)["data"]["rules"]
    # A bad deploy: the vault-writer may sign its records and nothing else, so storing keeps failing (denied).
    vault_admin.sys.create_or_update_policy(VAULT_WRITER, signing_policy(VAULT_WRITER))
    try:
        request_id = await client.bind(user, key.access_key, key.secret_key, trading_pairs=["btcusdt"])
        letter = await dead_letter_of(client, user)
    finally:
        vault_admin.sys.create_or_update_policy(VAULT_WRITER, policy)
    assert letter.original_topic == settings.topic(Topic.BINDING_VALIDATED) and letter.error_class == "VaultDenied"

    dry_code, dry = replay(settings, "--id", letter_id(letter), "--dry-run")
    assert (dry_code, [row["result"] for row in dry]) == (0, ["would replay"])
    assert len(await records_of(settings, Topic.BINDING_VALIDATED, user)) == 1

    code, first = replay(settings, "--id", letter_id(letter))
    assert (code, first[0]["dead_letter"], first[0]["result"]) == (0, letter_id(letter), "replayed")
    timeline = await client.wait_for(request_id, {BindingState.ACTIVE}, WAIT_S)
    binding_id = timeline[-1].binding_id
    # The replay is the original record: same bytes, same key, the validator's own signature.
    original, replayed = await records_of(settings, Topic.BINDING_VALIDATED, user)
    assert (replayed.value, signed_headers(replayed)) == (original.value, signed_headers(original))

    code, second = replay(settings, "--id", letter_id(letter))
    assert (code, second[0]["result"]) == (0, "replayed")
    again = (await records_of(settings, Topic.BINDING_VALIDATED, user))[-1]
    await consumed_past(settings, Topic.BINDING_VALIDATED, again.partition, again.offset)
    # Nothing stored twice, nobody told twice: each state once (a copy carries the same event id, and the app
    # drops it).
    metadata = vault_admin.secrets.kv.v2.read_secret_metadata(path=binding_path(user, binding_id),
                                                              mount_point=KV_MOUNT)["data"]
    assert len(metadata["versions"]) == 1
    told = {status.event_id: status.state async for status in client.statuses(request_id=request_id)}
    assert sorted(told.values()) == sorted([BindingState.RECEIVED, BindingState.VALIDATED, BindingState.STORED,
                                            BindingState.ACTIVE])

    audits = [event async for event in client.audit_events() if _replay_audit_of(event, letter_id(letter))]
    assert [(event.service, event.outcome, event.user_id) for event in audits] == [
        ("hash7-admin", AuditOutcome.REPUBLISHED, user)] * 2
    assert len({event.event_id for event in audits}) == 2


def _replay_audit_of(event: AuditEvent, dead_letter: str) -> bool:
    return event.action == AuditAction.DEAD_LETTER_REPLAY and event.details.get("dead_letter") == dead_letter


async def test_a_forged_or_scrubbed_letter_is_refused_and_never_sent(client, pipeline):
    settings = pipeline.settings
    forger, careless = new_user(), new_user()
    # The app may not produce binding.validated: the vault-writer refuses the record unread.
    await client.publish_raw(Topic.BINDING_VALIDATED, forger, json.dumps({"user_id": forger}).encode())
    # A careless app sends a secret in clear: its dead letter holds the body with the secret scrubbed.
    secret = "plain-secret-for-replay-refusal"
    PLAINTEXT_PUBLISHED.add(secret)
    await client.publish_raw(Topic.BINDING_REQUESTED, careless,
                             json.dumps({"user_id": careless, "secret_key": secret}).encode())
    forged, scrubbed = await dead_letter_of(client, forger), await dead_letter_of(client, careless)

    code, rows = replay(settings, "--id", letter_id(forged), "--id", letter_id(scrubbed))

    assert code == EXIT_REFUSED, rows
    reasons = {row["dead_letter"]: (row["result"], row["reason"]) for row in rows}
    assert reasons == {
        letter_id(forged): ("refused", "its original failed proof of origin: it is nobody's record to send"),
        letter_id(scrubbed): ("refused", "the letter's body is not the original's (secret-shaped text was "
                                         "scrubbed, or it was emptied)"),
    }
    assert len(await records_of(settings, Topic.BINDING_VALIDATED, forger)) == 1
    assert len(await records_of(settings, Topic.BINDING_REQUESTED, careless)) == 1
    audits = [event async for event in client.audit_events()
              if _replay_audit_of(event, letter_id(forged)) or _replay_audit_of(event, letter_id(scrubbed))]
    assert {event.outcome for event in audits} == {AuditOutcome.REPLAY_REFUSED}

    unknown = f"{settings.topic(Topic.BINDING_VALIDATED)}/0/999999"
    missing = run_hash7(["dead-letters", "replay", "--id", unknown], hash7_environment(settings), module=ADMIN)
    assert missing.returncode == 1 and f"No dead letter {unknown}" in missing.stderr


def test_a_dead_letter_keeps_the_originals_proof_of_origin_but_no_header_that_could_hold_a_secret():
    body = validated().to_bytes()
    proof = provenance_headers(InMemoryVault(), Party.VALIDATOR, Topic.BINDING_VALIDATED, body,
                               headers={"event-type": "BindingValidated"})
    # What a forger might add: a secret in an extra signed header, or in place of a signature.
    careless = [("x-note", SECRET.encode()), ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b71-01")]
    letter = DeadLetter.of(body, b"u1", "hash7.binding.validated", 0, 7, ValueError("no"), "vault-writer",
                           headers=[*proof, *careless])
    kept = {name.removeprefix(dead_letters.ORIGINAL_HEADER_PREFIX): value for name, value in letter.headers().items()
            if name.startswith(dead_letters.ORIGINAL_HEADER_PREFIX)}
    assert kept == {name: value.decode() for name, value in proof}

    forged = [(name, SECRET.encode() if name == SIGNATURE_HEADER else value) for name, value in proof]
    assert SIGNATURE_HEADER not in DeadLetter.of(body, b"u1", "t", 0, 7, ValueError("no"), "vault-writer",
                                                 headers=forged).original_headers
