"""An attacker on the broker (or holding the app's credential) against the pipeline: internal events forged in
every way a record can be forged, genuine old events sent again, and intake's checks skipped. Each forged record
must end as a dead letter with an `event_rejected` audit and change nothing; each replay must change nothing a
newer fact decided; and the services must keep working afterwards."""

import asyncio
import base64
import json
import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import hvac
import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord

from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.layout import KV_MOUNT, binding_path, whitelist_path
from shared.clients.binding_client import APP_ROLE, BindingClient
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import (
    AuditEvent,
    BindingStatus,
    BindingValidated,
    RecheckRequested,
    SweepCursor,
    SweepRequested,
    utc_now,
)
from shared.contracts.provenance import CERTIFICATE_HEADER, PRODUCER_HEADER, SIGNATURE_HEADER, certificate_body
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import Party, Topic
from shared.contracts.states import BindingState, RequestKind
from shared.runtime.config import Settings
from shared.runtime.provenance import EventSigner, OutgoingRecord
from tests.clients.hash7_process import hash7_environment, run_hash7
from tests.e2e.helpers import PLAINTEXT_PUBLISHED, WAIT_S, bind, fresh_key, new_user, states
from tests.e2e.test_key_health import sweep_done
from tests.faults.invariants import stuck_commits, unauthentic_records_processed
from tests.fixtures.stack import publisher_as
from tests.kafka_reading import raw_records

pytestmark = pytest.mark.stack
S = BindingState
R = ReasonCode
Headers = list[tuple[str, bytes]]
# (full topic name, partition, offset): where a forged record landed, as dead letters and audits name it.
Place = tuple[str, int, int]
MARKER = "FORGED7"


# ---- the attacker's tools -------------------------------------------------------------------------------------

class Forger:
    """Publishes any bytes with any headers (duplicates included) as someone on the broker, and signs as the app
    when playing a careless app; returns where each record landed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all",
                                          enable_idempotence=False)
        app_vault = VaultClient(settings.vault_connection(), settings.approle_credentials(APP_ROLE))
        self._app = EventSigner(app_vault, Party.APP)

    async def __aenter__(self) -> "Forger":
        await self._producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._producer.stop()

    async def send(self, topic: Topic, key: bytes, value: bytes, headers: Headers) -> Place:
        sent = await self._producer.send_and_wait(self.settings.topic(topic), value, key=key, headers=headers)
        return sent.topic, sent.partition, sent.offset

    async def app_signed(self, topic: Topic, key: bytes, value: bytes, headers: Mapping[str, str]) -> Headers:
        [record] = await self._app.sign([OutgoingRecord(topic, key.decode(), value, dict(headers))])
        return encoded(record.headers)


def encoded(headers: Mapping[str, str]) -> Headers:
    return [(name, value.encode()) for name, value in headers.items()]


def made_up_certificate(producer: Party) -> bytes:
    body = certificate_body(producer.value, int(time.time()) + 3600, secrets.token_bytes(32))
    return (body + garbage_signature().decode()).encode()


def garbage_signature(version: int = 1) -> bytes:
    return f"vault:v{version}:{base64.b64encode(secrets.token_bytes(64)).decode()}".encode()


@dataclass(frozen=True)
class Forgery:
    """One forged record: what it is about, and the genuine records it is made from."""

    topic: Topic
    body: bytes  # a well-formed event its consumer would act on, were it believed
    event_type: str
    claimed: Party  # a producer the routing table allows on topic
    genuine: ConsumerRecord  # a genuine record of topic: its signature is copied, its key changed
    elsewhere: ConsumerRecord  # a genuine record of another topic, by a producer also allowed on topic


async def forge_every_way(forger: Forger, forgery: Forgery, *, app_may_produce: bool = False) -> dict[str, Place]:
    """The forgery published in every way an attacker would try; by way, where it landed."""
    topic, body, fresh_key_bytes = forgery.topic, forgery.body, f"forged-{uuid.uuid4().hex}".encode()
    typed = [("event-type", forgery.event_type.encode())]
    claimed = [*typed, (PRODUCER_HEADER, forgery.claimed.value.encode())]
    app_signed = await forger.app_signed(topic, fresh_key_bytes, body, {"event-type": forgery.event_type})
    ways: dict[str, tuple[bytes, bytes, Headers]] = {
        "no headers": (fresh_key_bytes, body, []),
        "a legit producer claimed, no signature": (fresh_key_bytes, body, claimed),
        "a legit producer claimed, a garbage signature": (
            fresh_key_bytes, body, [*claimed, (SIGNATURE_HEADER, garbage_signature())]),
        "a signature by a key version Vault does not hold": (
            fresh_key_bytes, body, [*claimed, (SIGNATURE_HEADER, garbage_signature(version=7))]),
        "a genuine certificate of this producer and a signature of the forger's": (
            fresh_key_bytes, body, [*claimed, (CERTIFICATE_HEADER, dict(forgery.genuine.headers)[CERTIFICATE_HEADER]),
                                    (SIGNATURE_HEADER, base64.b64encode(secrets.token_bytes(64)))]),
        "a certificate made up by the forger for a key of its own": (
            fresh_key_bytes, body, [*claimed, (CERTIFICATE_HEADER, made_up_certificate(forgery.claimed)),
                                    (SIGNATURE_HEADER, base64.b64encode(secrets.token_bytes(64)))]),
        "the producer and signature headers of a genuine record of this topic": (
            forgery.genuine.key, body, list(forgery.genuine.headers)),
        "a genuine record of this topic under another key": (
            fresh_key_bytes, forgery.genuine.value, list(forgery.genuine.headers)),
        "a genuine record moved here from another topic": (
            forgery.elsewhere.key, forgery.elsewhere.value, list(forgery.elsewhere.headers)),
        "the app's signature and a second producer header naming a legit producer": (
            fresh_key_bytes, body, [*app_signed, (PRODUCER_HEADER, forgery.claimed.value.encode())]),
    }
    if not app_may_produce:
        ways["the app's genuine signature"] = (fresh_key_bytes, body, app_signed)
    return {way: await forger.send(topic, key, value, headers) for way, (key, value, headers) in ways.items()}


async def refusals(client: BindingClient, settings: Settings, places: Mapping[str, Place],
                   service: Party) -> dict[str, str]:
    """Waits until every forged record is a dead letter of service with an `event_rejected` audit naming its
    place and no user; by way, the problem the audit names. Fails naming the ways that were not refused."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        letters = {(d.original_topic, d.original_partition, d.original_offset): d async for d in client.dead_letters()}
        rejected = {(a.details.get("partition"), a.details.get("offset"), a.details.get("topic")): a
                    async for a in client.audit_events() if a.outcome == "event_rejected"}
        found = {}
        for way, (topic, partition, offset) in places.items():
            letter = letters.get((topic, partition, offset))
            audit = rejected.get((partition, offset, topic.removeprefix(settings.topic_prefix)))
            if letter is not None and audit is not None:
                assert (letter.error_class, letter.service, audit.service) == ("Unauthentic", service, service), way
                assert audit.user_id is None and audit.request_id is None, way
                found[way] = audit.details["problem"]
        if len(found) == len(places):
            return found
        missing = sorted(set(places) - set(found))
        assert asyncio.get_running_loop().time() < deadline, f"not refused as unauthentic: {missing}"
        await asyncio.sleep(0.3)


async def genuine(settings: Settings, topic: Topic, **fields: object) -> ConsumerRecord:
    """The earliest record on topic whose body has these fields: the genuine one, which every copy or forgery
    made of it follows (in time: a copy under another key may sit on an earlier partition)."""
    return min((r for r in await raw_records(settings, topic)
                if all(body_of(r).get(name) == value for name, value in fields.items())), key=lambda r: r.timestamp)


async def replay(client: BindingClient, topic: Topic, record: ConsumerRecord) -> None:
    """The very record again, its producer's signature included: a redelivery, or anyone replaying it."""
    await client.publish_raw(topic, record.key.decode(), record.value,
                             {name: value.decode() for name, value in record.headers}, signed=False)


async def settled(settings: Settings) -> None:
    """Every service has committed past everything on its topics: whatever was sent has been handled."""
    assert await stuck_commits(settings) == []


async def eventually(find: Callable[[], Any], timeout_s: float = WAIT_S) -> list[Any]:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not (found := await find()):
        assert asyncio.get_running_loop().time() < deadline, "never seen"
        await asyncio.sleep(0.3)
    return found


async def audits(client: BindingClient, **fields: object) -> list[AuditEvent]:
    return [a async for a in client.audit_events() if all(getattr(a, n) == v for n, v in fields.items())]


async def statuses(client: BindingClient, request_id: str, user: str | None = None) -> list[BindingStatus]:
    return [s async for s in client.statuses(request_id=request_id, user_id=user)]


def kv_read(vault_admin: hvac.Client, path: str) -> dict[str, Any] | None:
    try:
        return vault_admin.secrets.kv.v2.read_secret_version(path=path, mount_point=KV_MOUNT,
                                                             raise_on_deleted_version=False)["data"]["data"]
    except hvac.exceptions.InvalidPath:
        return None


def body_of(record: ConsumerRecord) -> dict[str, Any]:
    """The record's JSON object; empty for anything else (what an attacker left on the topic)."""
    try:
        document = json.loads(record.value or b"")
    except (ValueError, RecursionError):  # not JSON, or nested deeper than any reader walks
        return {}
    return document if isinstance(document, dict) else {}


# ---- the scene: a few genuine bindings and two sweeps, shared by the module ---------------------------------------

@dataclass(frozen=True)
class Binding:
    user: str
    binding_id: str
    request_id: str


@dataclass(frozen=True)
class Scene:
    healthy: Binding  # active, whitelisted for btcusdt, never touched
    sick: Binding  # found healthy by the first sweep, invalid (withdraw enabled) by the second
    rotated: Binding  # its first key, since rotated to `rotated_to`
    rotated_to: str
    refused: Binding  # a withdraw-enabled key, rejected by the validator: never stored
    first_sweep: str
    second_sweep: str


async def bound(client: BindingClient, key: Any, state: BindingState = S.ACTIVE, **kwargs: Any) -> Binding:
    timeline = await bind(client, kwargs.pop("user", None) or new_user(), key, **kwargs)
    assert timeline[-1].state == state, states(timeline)
    return Binding(timeline[0].user_id, timeline[0].binding_id, timeline[0].request_id)


@pytest.fixture(scope="module")
async def scene(pipeline, htx_sandbox) -> Scene:
    async with BindingClient(pipeline.settings) as client:
        healthy = await bound(client, fresh_key(htx_sandbox), trading_pairs=["btcusdt"])
        sick_key = fresh_key(htx_sandbox)
        sick = await bound(client, sick_key, trading_pairs=["btcusdt"])
        rotated = await bound(client, fresh_key(htx_sandbox), trading_pairs=["btcusdt"])
        new_key = fresh_key(htx_sandbox)
        await bound(client, new_key, user=rotated.user, replaces_binding_id=rotated.binding_id)
        refused = await bound(client, fresh_key(htx_sandbox, like="withdraw"), S.REJECTED)
        first_sweep = await client.request_sweep()
        await sweep_done(client, first_sweep)
        htx_sandbox.admin.update_key(sick_key.access_key, permission="readOnly,trade,withdraw")
        second_sweep = await client.request_sweep()
        await client.wait_for(second_sweep, {S.INVALID}, WAIT_S, user_id=sick.user)
        await sweep_done(client, second_sweep)
    # A restart, as after a crash: the services forget which events they completed, so the replays below reach
    # the handlers instead of being skipped as second copies.
    for package in ("vault_writer", "whitelist"):
        pipeline.kill(package)
    pipeline.start_all(("vault_writer", "whitelist"))
    return Scene(healthy, sick, rotated, new_key.access_key, refused, first_sweep, second_sweep)


@pytest.fixture
async def forger(pipeline):
    async with Forger(pipeline.settings) as attacker:
        yield attacker


def health_of(vault_admin: hvac.Client, binding: Binding) -> str:
    whitelist = kv_read(vault_admin, whitelist_path(binding.user, binding.binding_id))
    assert whitelist is not None
    return whitelist["health"]


# ---- 1. forged internal events --------------------------------------------------------------------------------

async def test_a_forged_binding_validated_of_a_withdraw_enabled_key_is_refused_every_way_and_never_stored(
        client, scene, forger, vault_admin, pipeline):
    settings, target = pipeline.settings, scene.refused
    accepted = body_of(await genuine(settings, Topic.BINDING_ACCEPTED, request_id=target.request_id))
    # The genuine request's sealed secret, with the exchange's answer made up to look like a good key's.
    forged = BindingValidated.model_validate({
        **accepted, "event_id": str(uuid.uuid4()), "validated_at": utc_now().isoformat(),
        "htx": {"uid": 1, "spot_account_id": 10, "permissions": ["readOnly", "trade"],
                "ip_addresses": ["127.0.0.1"], "valid_days": 80, "key_status": "normal"},
    })
    places = await forge_every_way(forger, Forgery(
        Topic.BINDING_VALIDATED, forged.to_bytes(), "BindingValidated", Party.VALIDATOR,
        genuine=await genuine(settings, Topic.BINDING_VALIDATED, request_id=scene.healthy.request_id),
        elsewhere=await genuine(settings, Topic.BINDING_RECHECKED,
                                user_id=scene.healthy.user, sweep_request_id=scene.first_sweep),
    ))
    problems = await refusals(client, settings, places, Party.VAULT_WRITER)
    assert problems["a genuine record moved here from another topic"] == \
        "the signature does not verify with the validator key certified"
    assert kv_read(vault_admin, binding_path(target.user, target.binding_id)) is None
    assert states(await statuses(client, target.request_id)) == [S.RECEIVED, S.REJECTED]


async def test_a_forged_binding_stored_neither_heals_a_key_a_sweep_found_invalid_nor_sets_another_users_pairs(
        client, scene, forger, vault_admin, pipeline):
    settings = pipeline.settings
    sick_stored = await genuine(settings, Topic.BINDING_STORED, request_id=scene.sick.request_id)
    healthy_stored = await genuine(settings, Topic.BINDING_STORED,
                                   request_id=scene.healthy.request_id)
    moved = await genuine(settings, Topic.BINDING_RECHECK_REQUESTED,
                          user_id=scene.healthy.user, sweep_request_id=scene.first_sweep)
    # Believed, each would be acted on: the heal names the request the recheck's verdict was saved under, and
    # the other user's copy names that user's own request, so no ordering check would stop either.
    heal = {**body_of(sick_stored), "event_id": str(uuid.uuid4()), "request_id": f"recheck:{scene.second_sweep}"}
    pairs = {**body_of(healthy_stored), "event_id": str(uuid.uuid4()), "trading_pairs": ["ethusdt", "xrpusdt"]}
    for forged in (heal, pairs):
        places = await forge_every_way(forger, Forgery(Topic.BINDING_STORED, json.dumps(forged).encode(),
                                                       "BindingStored", Party.VAULT_WRITER, sick_stored, moved))
        await refusals(client, settings, places, Party.WHITELIST)
    assert health_of(vault_admin, scene.sick) == "invalid"
    assert kv_read(vault_admin, whitelist_path(scene.healthy.user, scene.healthy.binding_id))["pairs"] == ["btcusdt"]
    assert [s.state async for s in client.statuses(user_id=scene.sick.user)][-1] is S.INVALID
    assert not await statuses(client, heal["request_id"])
    assert [s.state async for s in client.statuses(user_id=scene.healthy.user)] == [
        S.RECEIVED, S.VALIDATED, S.STORED, S.ACTIVE]


async def test_a_forged_recheck_request_for_a_victim_makes_the_validator_check_nothing(
        client, scene, forger, pipeline):
    settings, victim = pipeline.settings, scene.healthy
    sweep_request_id = f"forged-sweep-{uuid.uuid4().hex}"
    forged = RecheckRequested(event_id=uuid.uuid4(), sweep_request_id=sweep_request_id,
                              sweep_started_at=utc_now(), user_id=victim.user, binding_id=victim.binding_id)
    places = await forge_every_way(forger, Forgery(
        Topic.BINDING_RECHECK_REQUESTED, forged.to_bytes(), "RecheckRequested", Party.VAULT_WRITER,
        genuine=await genuine(settings, Topic.BINDING_RECHECK_REQUESTED,
                              user_id=victim.user, sweep_request_id=scene.first_sweep),
        elsewhere=await genuine(settings, Topic.BINDING_STORED, request_id=victim.request_id),
    ))
    await refusals(client, settings, places, Party.VALIDATOR)
    assert not [r for r in await raw_records(settings, Topic.BINDING_RECHECKED)
                if body_of(r).get("sweep_request_id") == sweep_request_id]
    assert not await audits(client, request_id=sweep_request_id)


async def test_a_forged_binding_rechecked_does_not_mark_a_healthy_key_invalid(
        client, scene, forger, vault_admin, pipeline):
    settings, victim = pipeline.settings, scene.healthy
    verdict = body_of(await genuine(settings, Topic.BINDING_RECHECKED,
                                    user_id=scene.sick.user, sweep_request_id=scene.second_sweep))
    sweep_request_id = f"forged-sweep-{uuid.uuid4().hex}"
    # The sick key's genuine verdict (withdraw enabled), now about the victim, and newer than anything known.
    forged = {**verdict, "event_id": str(uuid.uuid4()), "sweep_request_id": sweep_request_id,
              "user_id": victim.user, "binding_id": victim.binding_id, "sweep_started_at": utc_now().isoformat(),
              "checked_at": utc_now().isoformat()}
    places = await forge_every_way(forger, Forgery(
        Topic.BINDING_RECHECKED, json.dumps(forged).encode(), "BindingRechecked", Party.VALIDATOR,
        genuine=await genuine(settings, Topic.BINDING_RECHECKED,
                              user_id=victim.user, sweep_request_id=scene.first_sweep),
        elsewhere=await genuine(settings, Topic.BINDING_VALIDATED, request_id=victim.request_id),
    ))
    await refusals(client, settings, places, Party.WHITELIST)
    assert health_of(vault_admin, victim) == "healthy"
    assert not [s async for s in client.statuses(user_id=victim.user) if s.request_id == sweep_request_id]


async def test_a_forged_active_status_does_not_make_the_app_report_active_for_a_key_being_rejected(
        client, scene, forger, htx_sandbox, pipeline):
    settings, user, request_id = pipeline.settings, new_user(), uuid.uuid4().hex
    victim_active = await genuine(settings, Topic.BINDING_STATUS, request_id=scene.healthy.request_id, state="active")
    forged = BindingStatus(event_id=uuid.uuid4(), request_id=request_id, request_kind=RequestKind.BIND,
                           binding_id=f"{user}.b", user_id=user, exchange="htx", state=S.ACTIVE,
                           occurred_at=utc_now())
    # On the topic before the request is even sent: the app reads from the start, and would meet these first.
    places = await forge_every_way(forger, Forgery(
        Topic.BINDING_STATUS, forged.to_bytes(), "BindingStatus", Party.WHITELIST, genuine=victim_active,
        elsewhere=await genuine(settings, Topic.AUDIT,
                                service="whitelist", request_id=scene.healthy.request_id, outcome="active"),
    ))
    timeline = await bind(client, user, fresh_key(htx_sandbox, like="withdraw"), request_id=request_id)
    assert states(timeline) == [S.RECEIVED, S.REJECTED]
    assert timeline[-1].reason_codes == [R.PERMISSION_WITHDRAW_FORBIDDEN]
    # Intake's view did not believe them either: believed, the request would have been answered as a replay of
    # an `active` it had reached. The app verifies before it filters, so reading the topic through counts each
    # forgery. (The forgeries are under a key of their own, on another partition than the user's: the outcome
    # above may have arrived before the reader got through them.)
    counted_before = client.unauthentic_records[Topic.BINDING_STATUS]
    read_back = [status async for status in client.statuses(request_id=request_id)]
    assert states(read_back) == [S.RECEIVED, S.REJECTED]
    assert client.unauthentic_records[Topic.BINDING_STATUS] - counted_before >= len(places)


async def test_forged_audit_events_and_dead_letters_never_reach_ops_through_the_cli(client, scene, forger, pipeline):
    settings = pipeline.settings
    # Dated in the future, so that each would be the newest line of its table, were it shown.
    audit_event = AuditEvent(event_id=uuid.uuid4(), occurred_at=utc_now().replace(year=2099), service=MARKER,
                             action=AuditAction.CONSUME, outcome=AuditOutcome.EVENT_REJECTED, user_id=MARKER)
    genuine_audit = await genuine(settings, Topic.AUDIT, request_id=scene.healthy.request_id, outcome="active")
    genuine_status = await genuine(settings, Topic.BINDING_STATUS,
                                   request_id=scene.healthy.request_id, state="active")
    await forge_every_way(forger, Forgery(Topic.AUDIT, audit_event.to_bytes(), "AuditEvent", Party.WHITELIST,
                                          genuine=genuine_audit, elsewhere=genuine_status))
    letter = next(r for r in await raw_records(settings, Topic.DEAD_LETTER) if r.headers)
    tampered = [(n, MARKER.encode() if n.startswith("x-dlq-exception") else v) for n, v in letter.headers]
    forged_letter = json.dumps({"note": MARKER}).encode()
    await forger.send(Topic.DEAD_LETTER, letter.key, letter.value, tampered)
    await forge_every_way(forger, Forgery(Topic.DEAD_LETTER, forged_letter, "", Party.INTAKE, genuine=letter,
                                          elsewhere=genuine_audit))
    environment = hash7_environment(settings, COLUMNS="400")
    shown_audit = await asyncio.to_thread(run_hash7, ["audit", "--limit", "100000"], environment)
    shown_letters = await asyncio.to_thread(run_hash7, ["dead-letters", "--limit", "100000"], environment)
    assert shown_audit.returncode == 0 and shown_letters.returncode == 0, shown_audit.stderr + shown_letters.stderr
    # What is genuine is shown (so the markers would be, were the forgeries believed).
    assert scene.healthy.user in shown_audit.stdout and "Unauthentic" in shown_letters.stdout
    assert MARKER not in shown_audit.stdout + shown_audit.stderr
    assert MARKER not in shown_letters.stdout + shown_letters.stderr


async def test_a_forged_sweep_request_starts_no_sweep(client, scene, forger, pipeline):
    settings, request_id = pipeline.settings, f"forged-{uuid.uuid4().hex}"
    forged = SweepRequested(request_id=request_id, sweep_id=f"manual-{request_id}", requested_at=utc_now()).to_bytes()
    places = await forge_every_way(forger, Forgery(
        Topic.HEALTH_SWEEP_REQUESTED, forged, "SweepRequested", Party.VAULT_WRITER,
        genuine=await genuine(settings, Topic.HEALTH_SWEEP_REQUESTED, request_id=scene.first_sweep),
        elsewhere=await genuine(settings, Topic.BINDING_REQUESTED,
                                request_id=scene.healthy.request_id),
    ), app_may_produce=True)
    await refusals(client, settings, places, Party.VAULT_WRITER)
    assert not await audits(client, request_id=request_id)
    assert not [r for r in await raw_records(settings, Topic.BINDING_RECHECK_REQUESTED)
                if body_of(r).get("sweep_request_id") == request_id]


async def test_a_sweep_the_app_asks_to_start_past_some_bindings_rechecks_nothing(client, pipeline):
    # The app may ask for sweeps, signed as itself; what it may not do is choose where one starts: a cursor would pass
    # over every binding before it and still end as a finished sweep.
    request_id = f"cursor-{uuid.uuid4().hex}"
    app = publisher_as(pipeline.settings, Party.APP)
    await app.start()
    try:
        await app.publish(SweepRequested(request_id=request_id, sweep_id=f"manual-{request_id}", requested_at=utc_now(),
                                         after=SweepCursor(user_id="zzzz", binding_id="zzzz")))
    finally:
        await app.close()
    [refused] = await eventually(lambda: audits(client, request_id=request_id, action=AuditAction.HEALTH_SWEEP))
    assert refused.outcome == AuditOutcome.PAGE_REFUSED
    assert not [r for r in await raw_records(pipeline.settings, Topic.BINDING_RECHECK_REQUESTED)
                if body_of(r).get("sweep_request_id") == request_id]


# ---- 2. genuine old events, redelivered or replayed -----------------------------------------------------------

async def test_a_replayed_binding_stored_does_not_heal_a_key_a_later_sweep_found_invalid(
        client, scene, vault_admin, pipeline):
    record = await genuine(pipeline.settings, Topic.BINDING_STORED, request_id=scene.sick.request_id)
    await replay(client, Topic.BINDING_STORED, record)
    await eventually(lambda: audits(client, request_id=scene.sick.request_id, outcome="superseded"))
    assert health_of(vault_admin, scene.sick) == "invalid"
    assert states(await statuses(client, scene.sick.request_id)) == [S.RECEIVED, S.VALIDATED, S.STORED, S.ACTIVE]


async def test_a_replayed_old_recheck_that_found_the_key_healthy_does_not_undo_a_newer_invalid(
        client, scene, vault_admin, pipeline):
    record = await genuine(pipeline.settings, Topic.BINDING_RECHECKED,
                           user_id=scene.sick.user, sweep_request_id=scene.first_sweep)
    assert body_of(record)["checked"] and not body_of(record)["rejections"]
    await replay(client, Topic.BINDING_RECHECKED, record)
    await eventually(lambda: audits(client, request_id=scene.first_sweep, binding_id=scene.sick.binding_id,
                                    outcome="stale_recheck_ignored"))
    assert health_of(vault_admin, scene.sick) == "invalid"
    assert not await statuses(client, scene.first_sweep, scene.sick.user)


async def test_a_replayed_old_status_does_not_answer_a_new_request(client, scene, htx_sandbox, pipeline):
    victim = scene.healthy
    old_active = await genuine(pipeline.settings, Topic.BINDING_STATUS,
                               request_id=victim.request_id, state="active")
    await replay(client, Topic.BINDING_STATUS, old_active)
    timeline = await bind(client, victim.user, fresh_key(htx_sandbox, like="withdraw"))
    assert states(timeline) == [S.RECEIVED, S.REJECTED]


async def test_a_replayed_old_binding_validated_does_not_bring_back_a_rotated_away_key(
        client, scene, vault_admin, pipeline):
    rotated = scene.rotated
    record = await genuine(pipeline.settings, Topic.BINDING_VALIDATED, request_id=rotated.request_id)
    await replay(client, Topic.BINDING_VALIDATED, record)
    await eventually(lambda: audits(client, request_id=rotated.request_id, outcome="superseded",
                                    service="vault-writer"))
    stored = kv_read(vault_admin, binding_path(rotated.user, rotated.binding_id))
    assert stored is not None and stored["access_key"] == scene.rotated_to


async def test_a_replayed_old_binding_accepted_does_not_bring_back_a_rotated_away_key(
        client, scene, vault_admin, pipeline):
    rotated = scene.rotated
    record = await genuine(pipeline.settings, Topic.BINDING_ACCEPTED, request_id=rotated.request_id)
    await replay(client, Topic.BINDING_ACCEPTED, record)
    await settled(pipeline.settings)
    stored = kv_read(vault_admin, binding_path(rotated.user, rotated.binding_id))
    assert stored is not None and stored["access_key"] == scene.rotated_to
    assert states(await statuses(client, rotated.request_id)) == [S.RECEIVED, S.VALIDATED, S.STORED, S.ACTIVE]


# ---- 3. intake's checks skipped -------------------------------------------------------------------------------

async def bind_after_a_whitelist_request_with_its_id(client: BindingClient, request: Callable[[str, str], Any],
                                                     settings: Settings) -> list[BindingStatus]:
    """A whitelist request with id R (status `received`, kind whitelist), then a bind request with the same R."""
    user = new_user()
    request_id = await client.set_whitelist(user, f"no-binding-{uuid.uuid4().hex[:8]}", ["btcusdt"])
    [first] = await client.wait_for(request_id, {S.RECEIVED}, WAIT_S)
    assert first.request_kind is RequestKind.WHITELIST
    await asyncio.sleep(1)  # intake has read that status back too
    await request(user, request_id)
    timeline = await client.wait_for(request_id, {S.REJECTED}, WAIT_S, user_id=user, kind=RequestKind.BIND)
    assert not [r for r in await raw_records(settings, Topic.BINDING_ACCEPTED)
                if body_of(r).get("request_id") == request_id]
    return timeline


async def test_a_whitelist_request_id_does_not_let_a_plaintext_secret_skip_intakes_checks(
        client, htx_sandbox, pipeline):
    key = fresh_key(htx_sandbox)
    PLAINTEXT_PUBLISHED.add(key.secret_key.get_secret_value())

    async def plaintext_bind(user: str, request_id: str) -> None:
        request = {"schema_version": 2, "request_id": request_id, "user_id": user, "exchange": "htx",
                   "access_key": key.access_key,
                   "secret_key_sealed": key.secret_key.get_secret_value(), "requested_at": utc_now().isoformat()}
        await client.publish_raw(Topic.BINDING_REQUESTED, user, json.dumps(request).encode())

    timeline = await bind_after_a_whitelist_request_with_its_id(client, plaintext_bind, pipeline.settings)
    assert timeline[-1].reason_codes == [R.SECRET_NOT_SEALED]


async def test_a_whitelist_request_id_does_not_let_an_unsupported_exchange_skip_intakes_checks(
        client, htx_sandbox, pipeline):
    key = fresh_key(htx_sandbox)

    async def other_exchange(user: str, request_id: str) -> None:
        await client.bind(user, key.access_key, key.secret_key, exchange="binance", request_id=request_id)

    timeline = await bind_after_a_whitelist_request_with_its_id(client, other_exchange, pipeline.settings)
    assert timeline[-1].reason_codes == [R.UNSUPPORTED_EXCHANGE]


async def test_a_request_sent_straight_to_binding_accepted_never_reaches_the_validator(
        client, scene, forger, htx_sandbox, pipeline):
    settings, user, key = pipeline.settings, new_user(), fresh_key(htx_sandbox)
    genuine_accepted = await genuine(settings, Topic.BINDING_ACCEPTED,
                                     request_id=scene.healthy.request_id)
    request = await client.binding_request(user, key.access_key, key.secret_key, trading_pairs=["btcusdt"])
    # A good key, properly sealed for its user: believed, it would be validated, stored and made active.
    forged = {**body_of(genuine_accepted), **json.loads(request.to_bytes()), "event_id": str(uuid.uuid4()),
              "binding_id": request.request_id, "accepted_at": utc_now().isoformat()}
    places = await forge_every_way(forger, Forgery(
        Topic.BINDING_ACCEPTED, json.dumps(forged).encode(), "BindingAccepted", Party.INTAKE,
        genuine=genuine_accepted,
        elsewhere=await genuine(settings, Topic.BINDING_STATUS, request_id=scene.healthy.request_id, state="received"),
    ))
    await refusals(client, settings, places, Party.VALIDATOR)
    assert not await statuses(client, request.request_id)
    assert not [r for r in await raw_records(settings, Topic.BINDING_VALIDATED)
                if body_of(r).get("request_id") == request.request_id]


# ---- afterwards -----------------------------------------------------------------------------------------------

async def test_after_every_attack_a_fresh_binding_goes_active_and_no_forgery_was_processed(
        client, scene, htx_sandbox, pipeline):
    await bound(client, fresh_key(htx_sandbox), trading_pairs=["btcusdt"])
    assert await unauthentic_records_processed(pipeline.settings) == []
    assert await stuck_commits(pipeline.settings) == []
