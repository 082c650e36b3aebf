"""The trading library and the example engine on the real stack: keys bound through the four services, read
back from the real Vault as the `trading-engine` AppRole, orders placed on the HTX sandbox, audit events on
the real broker."""

import asyncio
import json
import time
import uuid
from decimal import Decimal

import hvac
import pytest
from structlog.testing import capture_logs

from deploy.bootstrap.vault_files import VaultFiles
from deploy.bootstrap.vault_setup import APPROLE_MOUNT, ROLE_TOKEN_SETTINGS
from shared.adapters.vault.layout import KV_MOUNT, TRANSIT_MOUNT, binding_path, exchange_key
from shared.adapters.vault.records import KeyRef
from shared.clients.binding_client import BindingClient
from shared.clients.trading import BindingStore, OrderRefusalReason, OrderRefused, OrderRequest, order_gate
from shared.clients.trading.credentials import TRADING_ENGINE_ROLE, engine_vault
from shared.clients.trading.gate import OrderGate
from shared.contracts.events import AuditEvent, MalformedEvent, parse_event
from shared.contracts.routing import Party, Topic
from shared.contracts.secrets import mask_access_key
from shared.contracts.states import BindingState
from shared.runtime.config import EngineSettings
from shared.runtime.producer import KafkaPublisher
from shared.runtime.provenance import EventSigner
from tests.clients.trading.fakes import RecordingExchange, exchanges_of
from tests.e2e.helpers import WAIT_S, bind, fresh_key, new_user
from tests.e2e.test_key_health import sweep_done
from tests.kafka_reading import raw_records
from tests.vault_admin import audit_responses

pytestmark = pytest.mark.stack

CACHE_TTL_S = 1.0
BUY_BTC = OrderRequest("btcusdt", "buy", "limit", Decimal("0.001"), Decimal("30000"))
BUY_ETH = OrderRequest("ethusdt", "buy", "limit", Decimal("0.01"), Decimal("2000"))


@pytest.fixture
def engine_settings(pipeline, htx_sandbox) -> EngineSettings:
    return EngineSettings(**pipeline.settings.model_dump(exclude={"htx_base_url"}), htx_base_url=htx_sandbox.base_url,
                          engine_cache_ttl_s=CACHE_TTL_S)


@pytest.fixture
async def client(pipeline):
    async with BindingClient(pipeline.settings) as binding_client:
        yield binding_client


@pytest.fixture
async def gate(engine_settings):
    async with order_gate(engine_settings) as order_gate_:
        yield order_gate_


async def active_binding(client, user, key, **kwargs) -> str:
    timeline = await bind(client, user, key, trading_pairs=["btcusdt"], **kwargs)
    assert timeline[-1].state == BindingState.ACTIVE, timeline
    return timeline[-1].binding_id


async def order_audits(gate, settings, binding_id) -> list[AuditEvent]:
    """The binding's order audits on the topic, once the gate published all it decided (closing publishes every
    audit still waiting; the gate goes on working). Each once: an audit published again (at least once, after a
    send whose answer was lost) has the same id, and consumers keep one (README.md#deterministic-audit-events)."""
    await gate.close()
    events: dict[uuid.UUID, AuditEvent] = {}
    for record in await raw_records(settings, Topic.AUDIT):
        try:
            event = parse_event(AuditEvent, record.value)
        except MalformedEvent:
            continue  # other tests publish records that are not events, on purpose
        events.setdefault(event.event_id, event)
    return [event for event in events.values() if event.action == "order" and event.binding_id == binding_id]


def sandbox_order(htx_sandbox, order_id):
    return next(order for order in htx_sandbox.admin.orders() if str(order["order_id"]) == order_id)


async def test_the_engine_reads_the_bound_credentials_and_places_a_whitelisted_order(
        client, gate, htx_sandbox, pipeline):
    user, key = new_user(), fresh_key(htx_sandbox)
    binding_id = await active_binding(client, user, key)

    binding = await gate.bindings.get(user, binding_id)
    assert binding.access_key == key.access_key and binding.owner_uid == str(key.uid)
    assert binding.signing_key == KeyRef(exchange_key(user, binding_id), 1)
    assert binding.whitelist == ("btcusdt",) and binding.health == "healthy" and not binding.invalid

    # Accepted by the sandbox, which verifies the signature with the key's secret as HTX does: Vault signed
    # with the very secret the user bound.
    placed = await gate.place(user, binding_id, BUY_BTC)

    order = sandbox_order(htx_sandbox, placed.order_id)
    assert (order["symbol"], order["account_id"], order["uid"]) == ("btcusdt", int(binding.trading_account_id), key.uid)
    assert (order["type"], order["amount"], order["price"]) == ("buy-limit", "0.001", "30000")
    [audit] = await order_audits(gate, pipeline.settings, binding_id)
    assert (audit.service, audit.outcome, audit.access_key_masked) == ("trading-engine", "order_placed",
                                                                      mask_access_key(key.access_key))
    assert audit.details == {"exchange": "htx", "symbol": "btcusdt", "type": "buy-limit", "order_id": placed.order_id,
                             "vault_request_id": audit.details["vault_request_id"],
                             "vault_sign_request_ids": audit.details["vault_sign_request_ids"]}
    assert len(audit.details["vault_sign_request_ids"]) == 1



async def test_a_pair_outside_the_whitelist_is_refused_audited_and_never_reaches_htx(
        client, gate, htx_sandbox, pipeline):
    user, key = new_user(), fresh_key(htx_sandbox)
    binding_id = await active_binding(client, user, key)
    orders_before = len(htx_sandbox.admin.orders())

    with pytest.raises(OrderRefused) as refused:
        await gate.place(user, binding_id, BUY_ETH)

    assert refused.value.reason is OrderRefusalReason.PAIR_NOT_WHITELISTED
    assert len(htx_sandbox.admin.orders()) == orders_before
    [audit] = await order_audits(gate, pipeline.settings, binding_id)
    assert (audit.outcome, audit.user_id, audit.access_key_masked) == ("order_refused", user,
                                                                       mask_access_key(key.access_key))
    assert audit.details["symbol"] == "ethusdt" and audit.details["reason"] == "pair_not_whitelisted"


async def test_a_rotation_is_picked_up_without_a_restart(client, gate, htx_sandbox):
    user, old_key, new_key = new_user(), fresh_key(htx_sandbox), fresh_key(htx_sandbox)
    binding_id = await active_binding(client, user, old_key)
    assert (await gate.bindings.get(user, binding_id)).access_key == old_key.access_key

    await active_binding(client, user, new_key, replaces_binding_id=binding_id)
    # As the rotation's status tells the user to: the old key is deleted on HTX, so an order it signed
    # would be refused there.
    htx_sandbox.admin.delete_key(old_key.access_key)
    await asyncio.sleep(CACHE_TTL_S)

    binding = await gate.bindings.get(user, binding_id)
    assert binding.access_key == new_key.access_key and binding.version == 2
    assert binding.signing_key == KeyRef(exchange_key(user, binding_id), 2)
    # The sandbox accepts only the new secret's signature (the old key is deleted there).
    placed = await gate.place(user, binding_id, BUY_BTC)
    assert sandbox_order(htx_sandbox, placed.order_id)["symbol"] == "btcusdt"


async def test_a_revoked_binding_is_refused_at_once(client, gate, htx_sandbox, pipeline):
    user, key = new_user(), fresh_key(htx_sandbox)
    binding_id = await active_binding(client, user, key)
    await gate.place(user, binding_id, BUY_BTC)

    revoked = await client.wait_for(await client.revoke(user, binding_id), {BindingState.REVOKED}, WAIT_S)
    assert revoked[-1].state == BindingState.REVOKED
    orders_before = len(htx_sandbox.admin.orders())

    with pytest.raises(OrderRefused) as refused:
        await gate.place(user, binding_id, BUY_BTC)

    assert refused.value.reason is OrderRefusalReason.BINDING_REVOKED
    assert len(htx_sandbox.admin.orders()) == orders_before
    audits = await order_audits(gate, pipeline.settings, binding_id)
    outcomes = [(audit.outcome, audit.details.get("reason")) for audit in audits]
    assert outcomes == [("order_placed", None), ("order_refused", "binding_revoked")]


async def test_a_binding_a_sweep_found_invalid_is_refused(client, gate, htx_sandbox):
    user, key = new_user(), fresh_key(htx_sandbox)
    binding_id = await active_binding(client, user, key)
    htx_sandbox.admin.update_key(key.access_key, permission="readOnly,trade,withdraw")
    sweep = await client.request_sweep()
    invalid = await client.wait_for(sweep, lambda s: s.binding_id == binding_id, WAIT_S)
    assert invalid[-1].state == BindingState.INVALID
    await sweep_done(client, sweep)  # one sweep runs at a time: a later test's would be refused while this one runs

    with pytest.raises(OrderRefused) as refused:
        await gate.place(user, binding_id, BUY_BTC)
    assert refused.value.reason is OrderRefusalReason.BINDING_INVALID


async def test_vault_records_the_read_and_the_signing_and_our_audit_event_points_at_both(
        client, gate, htx_sandbox, pipeline, bootstrapped_stack, vault_admin):
    user, key = new_user(), fresh_key(htx_sandbox)
    binding_id = await active_binding(client, user, key)
    await gate.place(user, binding_id, BUY_BTC)
    [ours] = [a for a in await order_audits(gate, pipeline.settings, binding_id) if a.outcome == "order_placed"]

    answers = audit_responses(bootstrapped_stack.run_dir)
    read = answers[ours.details["vault_request_id"]]
    assert read["request"]["path"] == f"{KV_MOUNT}/data/{binding_path(user, binding_id)}"
    assert "trading-engine" in read["auth"]["policies"]
    # What the engine read names the Transit key holding the secret, never the secret (Vault HMACs the values).
    assert not {"secret_key", "secret_key_sealed"} & set(read["response"]["data"]["data"])
    [sign_request_id] = ours.details["vault_sign_request_ids"]
    signed = answers[sign_request_id]
    assert signed["request"]["path"] == f"{TRANSIT_MOUNT}/hmac/{exchange_key(user, binding_id)}/sha2-256"
    assert "trading-engine" in signed["auth"]["policies"] and not signed.get("error")

    stored = vault_admin.secrets.kv.v2.read_secret_version(path=binding_path(user, binding_id), mount_point=KV_MOUNT,
                                                           raise_on_deleted_version=True)["data"]["data"]
    assert (stored["exchange_key"], stored["exchange_key_version"]) == (exchange_key(user, binding_id), 1)
    assert not {"secret_key", "secret_key_sealed"} & set(stored)
    secret = key.secret_key.get_secret_value()
    assert secret not in json.dumps(stored)
    assert secret not in VaultFiles(bootstrapped_stack.run_dir).audit_log.read_text()


# ---- Vault token expiry -------------------------------------------------------------------------------------


@pytest.fixture
def short_lived_engine_tokens(bootstrapped_stack):
    """The trading-engine AppRole issuing tokens that live 2 s and renew up to 4 s; restored afterwards."""
    admin = hvac.Client(url=bootstrapped_stack.settings.vault_addr, token=bootstrapped_stack.root_token)

    def tune(**token_settings):
        admin.auth.approle.create_or_update_approle(TRADING_ENGINE_ROLE, mount_point=APPROLE_MOUNT,
                                                    token_policies=[TRADING_ENGINE_ROLE], **token_settings)

    tune(**{**ROLE_TOKEN_SETTINGS, "token_ttl": "2s", "token_max_ttl": "4s"})
    try:
        yield
    finally:
        tune(**ROLE_TOKEN_SETTINGS)
        admin.adapter.close()


def engine_vault_calls(audit_log, from_offset, user_id):
    """(path, error) of each answer Vault gave the trading-engine AppRole since from_offset of its audit log,
    and of each answer about user_id's paths (a request with a dead token carries no policies). Values in the
    log are HMAC'd; paths, policies and errors are not."""
    with audit_log.open() as log:
        log.seek(from_offset)
        answers = [json.loads(line) for line in log if line.strip()]
    return [
        (answer["request"]["path"], answer.get("error"))
        for answer in answers
        if answer["type"] == "response" and (
            TRADING_ENGINE_ROLE in (answer.get("auth") or {}).get("policies", [])
            or user_id in answer["request"]["path"]
        )
    ]


@pytest.mark.usefixtures("short_lived_engine_tokens")
async def test_reads_go_on_across_token_renewals_and_expiry(client, engine_settings, htx_sandbox, bootstrapped_stack):
    user, key = new_user(), fresh_key(htx_sandbox)
    binding_id = await active_binding(client, user, key)
    audit_log = VaultFiles(bootstrapped_stack.run_dir).audit_log
    from_offset = audit_log.stat().st_size
    store = BindingStore.from_settings(engine_settings.model_copy(update={"engine_cache_ttl_s": 0.4}))

    reads_until = time.monotonic() + 7.0
    while time.monotonic() < reads_until:
        assert (await store.get(user, binding_id)).access_key == key.access_key
        await asyncio.sleep(0.2)

    calls = engine_vault_calls(audit_log, from_offset, user)
    paths = [path for path, _ in calls]
    # 7 s of reads with tokens that die at 4 s: each renewed within its lifetime, then replaced by a login.
    assert paths.count("auth/approle/login") >= 2 and "auth/token/renew-self" in paths, calls
    # No read ever went out with a dead token (a 403 would have been retried after a login, and logged here).
    # A renewal may still be refused ("past the max TTL": Vault states the cap in whole seconds); a login
    # follows it.
    assert [(path, error) for path, error in calls if error and user in path] == []


# ---- order audits while Kafka is down -----------------------------------------------------------------------


class KafkaComingBack:
    """Kafka as the gate sees it: unreachable (a publisher pointed at a port nobody listens on), then, once
    `back` is set, the session's broker."""

    def __init__(self, down: KafkaPublisher, up: KafkaPublisher) -> None:
        self.down, self.up, self.back = down, up, False

    async def publish(self, event) -> None:
        await (self.up if self.back else self.down).publish(event)


async def test_order_audits_decided_while_kafka_is_unreachable_reach_the_topic_in_order_once_it_is_back(
        engine_settings, pipeline):
    vault = engine_vault(engine_settings)
    signer = EventSigner(vault, Party.TRADING_ENGINE)
    unreachable = engine_settings.model_copy(update={"kafka_bootstrap_servers": "127.0.0.1:1"})
    kafka = KafkaComingBack(KafkaPublisher(unreachable, "audit-outbox-down", signer),
                            KafkaPublisher(engine_settings, "audit-outbox-up", signer))
    gate = OrderGate(BindingStore.from_settings(engine_settings, vault), exchanges_of(RecordingExchange()), kafka,
                     exchange_deadline_s=1.0)
    user, bindings = new_user(), [f"never-bound-{n}" for n in range(3)]
    try:
        with capture_logs() as logs:
            started = time.monotonic()
            for binding_id in bindings:
                with pytest.raises(OrderRefused):
                    await gate.place(user, binding_id, BUY_BTC)
            # No decision waits for the broker; the audits wait, retried in the background.
            assert time.monotonic() - started < WAIT_S / 4
            await asyncio.sleep(1.0)
            kafka.back = True
            await gate.close(deadline_s=WAIT_S)
    finally:
        await kafka.down.close()
        await kafka.up.close()

    assert any(line["event"] == "audit_publish_waiting" for line in logs)
    assert not [line for line in logs if line["event"] == "audit_not_published"]
    audits = [event for binding_id in bindings for event in await order_audits(gate, pipeline.settings, binding_id)]
    assert [(event.binding_id, event.outcome) for event in audits] == [(b, "order_refused") for b in bindings]
    assert len({event.event_id for event in audits}) == len(bindings)
