"""OrderGate with an in-memory Vault, a recording HTX and a recording audit sink: what is sent, what is
refused and why, what is audited, and that a decision never rests on a cached binding."""

import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import fields
from decimal import Decimal

import pytest
from pydantic import SecretStr
from structlog.testing import capture_logs

from shared.adapters.exchange.errors import ExchangeTransientError
from shared.adapters.exchange.http import NETWORK_ERROR
from shared.adapters.exchange.port import SpotOrder
from shared.adapters.exchange.registry import Exchanges
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.exchange import HtxExchange
from shared.adapters.request_signing import LocalHmacSigner
from shared.adapters.vault.client import HmacBatch, KvEntry, VaultUnavailable
from shared.adapters.vault.layout import BINDING_PASSPHRASE_KEY, binding_path, exchange_key, whitelist_path
from shared.adapters.vault.records import KeyRef
from shared.adapters.vault.stores import ExchangeKeys
from shared.adapters.vault.transit_signer import TransitHmacSigner
from shared.clients.trading.credentials import BindingStore
from shared.clients.trading.gate import OrderGate, OrderRefusalReason, OrderRefused, OrderRequest
from shared.contracts.exchanges import ExchangeName
from shared.contracts.routing import Party, Topic, route_of
from shared.contracts.secrets import mask_access_key
from tests.adapters.htx.hostile import drip, hostile_htx
from tests.clients.trading.fakes import (
    ACCESS_KEY,
    BINDING,
    HTX_UID,
    SECRET_KEY,
    SPOT_ACCOUNT_ID,
    USER,
    RecordingExchange,
    RecordingSink,
    exchanges_of,
    store_binding,
    store_whitelist,
)
from tests.fakes import InMemoryVault, fake_seal_text

# Long enough that nothing in these tests expires: the gate must not depend on it.
TTL_S = 3600.0
BUY_BTC = OrderRequest("BTC/USDT", "buy", "limit", Decimal("0.001"), Decimal("30000"), client_order_id="c-1")
BUY_ETH = OrderRequest("ethusdt", "buy", "limit", Decimal("0.01"), Decimal("2000"))
# The whole time HTX has to answer an order.
DEADLINE_S = 1.0
# Time for the loop and the sockets beyond a deadline, on a loaded 2-core machine.
SLACK_S = 0.75
ROTATED_ACCESS_KEY = "f0e1d2c3-b4a59687-78695a4b-3c2d1e"
ROTATED_SECRET_KEY = "rotated-secret-9f8e7d6c-never-shown"


async def hmac_of(secret: str, text: str) -> bytes:
    """The digest HTX expects, computed apart from Vault."""
    [digest] = await LocalHmacSigner(SecretStr(secret)).sign([text])
    return digest


class RevokedJustAfterTheRead(InMemoryVault):
    """The vault-writer revokes the binding between the gate's read and its order: the key is destroyed first
    (ExchangeKeys.destroy), so the record the gate read still names it."""

    async def read(self, path: str) -> KvEntry | None:
        entry = await super().read(path)
        if path == binding_path(USER, BINDING):
            await ExchangeKeys(self).destroy(USER, BINDING)
        return entry


class VaultDownWhenSigning(InMemoryVault):
    async def hmac_batch(self, key: str, version: int, texts: Sequence[str]) -> HmacBatch:
        raise VaultUnavailable("Vault is unreachable at 127.0.0.1:1")


@pytest.fixture
def htx():
    return RecordingExchange()


@pytest.fixture
def sink():
    return RecordingSink()


@pytest.fixture
def gate(vault, clock, htx, sink):
    return OrderGate(BindingStore(vault, TTL_S, clock), exchanges_of(htx), sink, exchange_deadline_s=DEADLINE_S)


@pytest.fixture
async def active_binding(vault):
    await store_binding(vault)
    await store_whitelist(vault, ["btcusdt"])


async def audits(gate, sink):
    """What the gate audited, once it published it all (closing publishes every audit still waiting)."""
    await gate.close(deadline_s=DEADLINE_S)
    routes = [route_of(event, Party.TRADING_ENGINE) for event in sink.published]
    assert all(
        route.topic == Topic.AUDIT and route.key_of(event) == USER for route, event in zip(routes, sink.published)
    )
    return sink.published


async def refusal(gate, order):
    with pytest.raises(OrderRefused) as refused:
        await gate.place(USER, BINDING, order)
    return refused.value


@pytest.mark.usefixtures("active_binding")
async def test_a_whitelisted_pair_is_signed_with_the_binding_key_and_sent_to_its_spot_account(gate, htx, sink):
    placed = await gate.place(USER, BINDING, BUY_BTC)

    [(credentials, order, account)] = htx.orders
    assert (credentials.access_key, credentials.owner_uid) == (ACCESS_KEY, HTX_UID)
    # Signed inside Vault, by the binding's own key version, with the secret the user bound.
    assert isinstance(credentials.signer, TransitHmacSigner)
    assert credentials.signer.key == KeyRef(exchange_key(USER, BINDING), 1)
    [(text, digest)] = htx.signed
    assert digest == await hmac_of(SECRET_KEY, text)
    assert order == SpotOrder(pair="btcusdt", side="buy", kind="limit", amount=Decimal("0.001"),
                              price=Decimal("30000"), client_order_id="c-1")
    assert account == SPOT_ACCOUNT_ID
    assert placed.order_id == "1" and placed.client_order_id == "c-1"
    [event] = await audits(gate, sink)
    assert (event.service, event.action, event.outcome) == ("trading-engine", "order", "order_placed")
    assert (event.user_id, event.binding_id, event.access_key_masked) == (USER, BINDING, mask_access_key(ACCESS_KEY))
    # The audit names Vault's signing call (Vault's audit log records it under that id), one per signature.
    [sign_request_id] = credentials.signer.vault_request_ids
    assert sign_request_id.startswith("in-memory-")
    assert event.details == {"exchange": "htx", "symbol": "btcusdt", "type": "buy-limit", "order_id": "1",
                             "vault_request_id": "",
                             "vault_sign_request_ids": [sign_request_id]}


@pytest.mark.usefixtures("active_binding")
async def test_the_credentials_sent_with_an_order_hold_no_secret(gate, htx):
    await gate.place(USER, BINDING, BUY_BTC)

    [(credentials, _, _)] = htx.orders
    signer = credentials.signer
    assert isinstance(signer, TransitHmacSigner)
    # Field by field: what travels is the access key, a key name and version, and Vault's request ids (an HTX key
    # has no passphrase).
    assert [field.name for field in fields(credentials)] == ["access_key", "signer", "passphrase", "owner_uid"]
    assert credentials.passphrase is None
    assert [field.name for field in fields(signer)] == ["vault", "key", "vault_request_ids"]
    assert all(SECRET_KEY not in str(value) for value in (signer.key, signer.vault_request_ids))
    assert SECRET_KEY not in repr(credentials) + repr(signer)


async def test_a_binding_revoked_between_read_and_order_is_refused_and_nothing_is_sent(clock, htx, sink):
    vault = RevokedJustAfterTheRead()
    await store_binding(vault)
    await store_whitelist(vault, ["btcusdt"])
    gate = OrderGate(BindingStore(vault, TTL_S, clock), exchanges_of(htx), sink, exchange_deadline_s=DEADLINE_S)

    refused = await refusal(gate, BUY_BTC)

    assert refused.reason is OrderRefusalReason.BINDING_REVOKED and "key is deleted from Vault" in str(refused)
    assert htx.orders == [] and htx.signed == []
    [event] = await audits(gate, sink)
    assert (event.outcome, event.access_key_masked) == ("order_refused", mask_access_key(ACCESS_KEY))
    assert event.details == {"symbol": "btcusdt", "reason": "binding_revoked", "vault_request_id": ""}


async def test_vault_down_when_signing_sends_nothing_and_places_nothing(clock, htx, sink):
    vault = VaultDownWhenSigning()
    await store_binding(vault)
    await store_whitelist(vault, ["btcusdt"])
    gate = OrderGate(BindingStore(vault, TTL_S, clock), exchanges_of(htx), sink, exchange_deadline_s=DEADLINE_S)

    with pytest.raises(VaultUnavailable):
        await gate.place(USER, BINDING, BUY_BTC)

    assert htx.orders == [] and [event.outcome for event in await audits(gate, sink)] == []


@pytest.mark.usefixtures("active_binding")
async def test_a_pair_outside_the_whitelist_is_refused_audited_and_never_sent(gate, htx, sink):
    refused = await refusal(gate, BUY_ETH)

    assert refused.reason is OrderRefusalReason.PAIR_NOT_WHITELISTED
    assert str(refused) == f"binding {BINDING} may not trade ethusdt: it is not in its whitelist (btcusdt)"
    assert htx.orders == []
    [event] = await audits(gate, sink)
    assert (event.action, event.outcome, event.access_key_masked) == (
        "order", "order_refused", mask_access_key(ACCESS_KEY)
    )
    assert event.details == {"symbol": "ethusdt", "reason": "pair_not_whitelisted", "vault_request_id": ""}


async def test_a_binding_awaiting_its_whitelist_trades_nothing(gate, vault, htx):
    await store_binding(vault)
    refused = await refusal(gate, BUY_BTC)
    assert refused.reason is OrderRefusalReason.PAIR_NOT_WHITELISTED and "whitelist (empty)" in str(refused)
    assert htx.orders == []


@pytest.mark.usefixtures("active_binding")
async def test_a_blank_symbol_is_refused(gate, htx):
    refused = await refusal(gate, OrderRequest(" / ", "buy", "limit", Decimal("1")))
    assert refused.reason is OrderRefusalReason.PAIR_NOT_WHITELISTED and htx.orders == []


async def test_a_binding_not_in_vault_is_refused_as_revoked(gate, htx, sink):
    refused = await refusal(gate, BUY_BTC)

    assert refused.reason is OrderRefusalReason.BINDING_REVOKED
    assert "no credentials in Vault (revoked, or never stored)" in str(refused)
    assert htx.orders == []
    [event] = await audits(gate, sink)
    assert event.outcome == "order_refused" and event.access_key_masked is None
    assert event.details == {"symbol": "btcusdt", "reason": "binding_revoked"}


async def test_a_binding_whose_key_is_marked_invalid_is_refused_even_for_a_whitelisted_pair(gate, vault, htx):
    await store_binding(vault)
    await store_whitelist(vault, ["btcusdt"], health="invalid")
    refused = await refusal(gate, BUY_BTC)
    assert refused.reason is OrderRefusalReason.BINDING_INVALID and htx.orders == []


async def test_a_binding_without_a_spot_account_is_refused_not_sent(gate, vault, htx, sink):
    await store_binding(vault, trading_account_id=None)
    await store_whitelist(vault, ["btcusdt"])
    refused = await refusal(gate, BUY_BTC)
    assert refused.reason is OrderRefusalReason.NO_SPOT_ACCOUNT and htx.orders == []
    assert [a.outcome for a in await audits(gate, sink)] == ["order_refused"]


@pytest.mark.usefixtures("active_binding")
async def test_revocation_whitelist_changes_and_rotation_bind_the_very_next_order(gate, vault, htx):
    await gate.place(USER, BINDING, BUY_BTC)

    await store_whitelist(vault, ["ethusdt"])
    assert (await refusal(gate, BUY_BTC)).reason is OrderRefusalReason.PAIR_NOT_WHITELISTED

    await store_binding(vault, access_key=ROTATED_ACCESS_KEY, secret_key=ROTATED_SECRET_KEY)
    await gate.place(USER, BINDING, BUY_ETH)
    rotated, _, _ = htx.orders[-1]
    assert rotated.access_key == ROTATED_ACCESS_KEY and rotated.signer.key == KeyRef(exchange_key(USER, BINDING), 2)
    text, digest = htx.signed[-1]
    assert digest == await hmac_of(ROTATED_SECRET_KEY, text)

    await vault.delete_all(whitelist_path(USER, BINDING))
    await vault.delete_all(binding_path(USER, BINDING))
    assert (await refusal(gate, BUY_ETH)).reason is OrderRefusalReason.BINDING_REVOKED
    assert len(htx.orders) == 2


async def test_a_revoked_binding_whose_whitelist_was_written_again_is_still_refused(gate, vault, htx):
    # A whitelist request that arrives after a revocation is saved (waiting for a binding that never comes).
    await store_whitelist(vault, ["btcusdt"])
    assert (await refusal(gate, BUY_BTC)).reason is OrderRefusalReason.BINDING_REVOKED
    assert htx.orders == []


@pytest.mark.usefixtures("active_binding")
async def test_audits_the_broker_cannot_take_change_no_decision_and_are_published_in_order_once_it_is_back(
        vault, clock, htx):
    sink = RecordingSink(broker_down=True)
    gate = OrderGate(BindingStore(vault, TTL_S, clock), exchanges_of(htx), sink, exchange_deadline_s=DEADLINE_S)
    started = time.monotonic()
    placed = await gate.place(USER, BINDING, BUY_BTC)
    refused = await refusal(gate, BUY_ETH)

    # Neither decision waited for the broker.
    assert time.monotonic() - started < SLACK_S
    assert placed.order_id == "1" and refused.reason is OrderRefusalReason.PAIR_NOT_WHITELISTED
    assert sink.published == []
    sink.broker_down = False
    assert [event.outcome for event in await audits(gate, sink)] == ["order_placed", "order_refused"]


@pytest.mark.usefixtures("active_binding")
async def test_each_audit_still_waiting_for_the_broker_when_the_gate_closes_is_logged_whole(vault, clock, htx):
    gate = OrderGate(BindingStore(vault, TTL_S, clock), exchanges_of(htx), RecordingSink(broker_down=True),
                     exchange_deadline_s=DEADLINE_S)
    await gate.place(USER, BINDING, BUY_BTC)
    await refusal(gate, BUY_ETH)
    with capture_logs() as logs:
        await gate.close(deadline_s=0.5)

    lost = [line for line in logs if line["event"] == "audit_not_published"]
    assert [(line["why"], line["outcome"]) for line in lost] == [
        ("closed_before_published", "order_placed"), ("closed_before_published", "order_refused")]
    assert all(uuid.UUID(line["event_id"]) and line["binding_id"] == BINDING for line in lost)


@pytest.mark.usefixtures("active_binding")
async def test_no_secret_or_whole_access_key_in_audit_events_errors_or_log_lines(gate, sink):
    with capture_logs() as logs:
        await gate.place(USER, BINDING, BUY_BTC)
        refused = await refusal(gate, BUY_ETH)

    said = [event.to_bytes().decode() for event in await audits(gate, sink)] + [str(refused), repr(refused)]
    said += [repr(line) for line in logs]
    assert logs and all(SECRET_KEY not in text and ACCESS_KEY not in text for text in said)


@pytest.mark.usefixtures("active_binding")
async def test_an_htx_dripping_its_answer_cannot_hold_an_order_past_the_deadline(vault, clock, sink):
    # HTX sends a byte every 0.3 s, so the client's own per-read timeout (5 s) and retry budget (20 s) never
    # stop it: only the gate's total deadline does.
    async with hostile_htx(drip(0.3)) as server, HtxClient(server.base_url) as htx:
        gate = OrderGate(BindingStore(vault, TTL_S, clock), exchanges_of(HtxExchange(htx)), sink,
                         exchange_deadline_s=DEADLINE_S)
        started = time.monotonic()
        with pytest.raises(ExchangeTransientError) as caught:
            await gate.place(USER, BINDING, BUY_BTC)
        elapsed = time.monotonic() - started

    assert DEADLINE_S <= elapsed < DEADLINE_S + SLACK_S
    assert caught.value.code == NETWORK_ERROR and "the order" in caught.value.message
    assert server.requests == 1 and server.body_bytes_sent > 1
    assert [event.outcome for event in await audits(gate, sink)] == []


@pytest.mark.usefixtures("active_binding")
async def test_a_full_outbox_lets_its_oldest_audit_go_logged_whole_and_keeps_the_newest(vault, clock, htx,
                                                                                       monkeypatch):
    monkeypatch.setattr("shared.clients.trading.gate.AUDIT_OUTBOX_CAPACITY", 2)
    sink = RecordingSink(broker_down=True)
    gate = OrderGate(BindingStore(vault, TTL_S, clock), exchanges_of(htx), sink, exchange_deadline_s=DEADLINE_S)
    with capture_logs() as logs:
        for order in (BUY_BTC, BUY_ETH, BUY_ETH):
            with pytest.raises(OrderRefused) if order is BUY_ETH else nullcontext():
                await gate.place(USER, BINDING, order)
    sink.broker_down = False

    [lost] = [line for line in logs if line["event"] == "audit_not_published"]
    assert (lost["why"], lost["outcome"]) == ("outbox_full", "order_placed")
    assert [event.outcome for event in await audits(gate, sink)] == ["order_refused", "order_refused"]


# ---- an OKX key's passphrase: opened per order, only where the exchange wants it ----------------------------------

PASSPHRASE = "Okx-Passphrase-7!"


class UnsealRecordingVault(InMemoryVault):
    def __init__(self) -> None:
        super().__init__()
        self.unsealed: list[tuple[str, str]] = []

    async def unseal(self, key: str, ciphertext: str, context: str) -> SecretStr:
        self.unsealed.append((key, context))
        return await super().unseal(key, ciphertext, context)


async def passphrase_gate(vault, clock, exchange, sink, *, on: ExchangeName, sealed_for: str = USER):
    await store_binding(vault, exchange=on.value, passphrase_sealed=SecretStr(fake_seal_text(PASSPHRASE, sealed_for)))
    await store_whitelist(vault, ["btcusdt"])
    return OrderGate(BindingStore(vault, TTL_S, clock), Exchanges({on: exchange}), sink,
                     exchange_deadline_s=DEADLINE_S)


async def test_an_okx_order_carries_the_passphrase_opened_for_its_user_with_the_passphrase_key(clock, htx, sink):
    vault = UnsealRecordingVault()
    gate = await passphrase_gate(vault, clock, htx, sink, on=ExchangeName.OKX)
    with capture_logs() as logs:
        await gate.place(USER, BINDING, BUY_BTC)
    (credentials, _, _), = htx.orders
    assert credentials.passphrase is not None and credentials.passphrase.get_secret_value() == PASSPHRASE
    assert vault.unsealed == [(BINDING_PASSPHRASE_KEY, USER)]
    binding = await gate.bindings.get(USER, BINDING)
    sealed = binding.passphrase_sealed.get_secret_value()
    assert PASSPHRASE not in repr(binding) and sealed not in repr(binding) and PASSPHRASE not in repr(credentials)
    published = " ".join(event.model_dump_json() for event in await audits(gate, sink))
    assert PASSPHRASE not in published and sealed not in published and PASSPHRASE not in repr(logs)


async def test_a_passphrase_in_the_record_of_an_exchange_that_wants_none_is_never_opened_nor_sent(clock, htx, sink):
    vault = UnsealRecordingVault()
    gate = await passphrase_gate(vault, clock, htx, sink, on=ExchangeName.HTX)
    await gate.place(USER, BINDING, BUY_BTC)
    (credentials, _, _), = htx.orders
    assert credentials.passphrase is None and vault.unsealed == []


async def test_an_okx_passphrase_that_does_not_open_refuses_the_order_and_sends_nothing(clock, htx, sink):
    gate = await passphrase_gate(InMemoryVault(), clock, htx, sink, on=ExchangeName.OKX, sealed_for="someone-else")
    refused = await refusal(gate, BUY_BTC)
    assert refused.reason is OrderRefusalReason.PASSPHRASE_UNREADABLE and htx.orders == []
    assert PASSPHRASE not in str(refused)
