"""The order gate asks the binding's exchange which client order ids it takes before it opens a passphrase or signs
anything: an id the exchange would refuse is refused by the gate (OrderRefused, client_order_id_refused) with an
order_refused audit, and nothing reaches the exchange; an id it takes goes on to the exchange. Real adapters
against their real sandboxes; the binding in an in-memory Vault that records every signing and opening."""

from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import pytest
from pydantic import SecretStr

from shared.adapters.bybit.client import ORDER_CREATE_PATH, BybitExchange
from shared.adapters.exchange.errors import ExchangeError
from shared.adapters.exchange.port import Exchange
from shared.adapters.exchange.registry import Exchanges
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.exchange import HtxExchange
from shared.adapters.okx.client import ORDER_PATH, OkxExchange
from shared.adapters.vault.client import HmacBatch
from shared.clients.trading.credentials import BindingStore
from shared.clients.trading.gate import OrderGate, OrderRefusalReason, OrderRefused, OrderRequest
from shared.contracts.exchanges import ExchangeName
from tests.clients.trading.fakes import BINDING, USER, RecordingSink, store_binding, store_whitelist
from tests.fakes import InMemoryVault, fake_seal_text

pytestmark = pytest.mark.stack

HTX_ORDER_PATH = "/v1/order/orders/place"
ORDER_ENDPOINTS = {ExchangeName.BYBIT: f"POST {ORDER_CREATE_PATH}", ExchangeName.OKX: f"POST {ORDER_PATH}",
                   ExchangeName.HTX: f"POST {HTX_ORDER_PATH}"}


class SigningRecordingVault(InMemoryVault):
    def __init__(self) -> None:
        super().__init__()
        self.used: list[str] = []

    async def hmac_batch(self, key: str, version: int, texts: Sequence[str]) -> HmacBatch:
        self.used.append("sign")
        return await super().hmac_batch(key, version, texts)

    async def unseal(self, key: str, ciphertext: str, context: str) -> SecretStr:
        self.used.append("unseal")
        return await super().unseal(key, ciphertext, context)


@pytest.fixture
async def adapters(clean_bybit_sandbox, clean_okx_sandbox, clean_htx_sandbox) -> AsyncIterator[dict]:
    options = {"timeout_s": 2.0, "retry_budget_s": 0.3}
    made: dict[ExchangeName, tuple[Exchange, object]] = {
        ExchangeName.BYBIT: (BybitExchange(clean_bybit_sandbox.base_url, **options), clean_bybit_sandbox),
        ExchangeName.OKX: (OkxExchange(clean_okx_sandbox.base_url, **options), clean_okx_sandbox),
        ExchangeName.HTX: (HtxExchange(HtxClient(clean_htx_sandbox.base_url, **options)), clean_htx_sandbox),
    }
    yield made
    for exchange, _ in made.values():
        await exchange.aclose()


async def gate_on(on: ExchangeName, exchange: Exchange, vault: InMemoryVault, clock, sink) -> OrderGate:
    passphrase = SecretStr(fake_seal_text("Okx-Passphrase-7!", USER)) if on is ExchangeName.OKX else None
    await store_binding(vault, exchange=on.value, passphrase_sealed=passphrase)
    await store_whitelist(vault, ["btcusdt"])
    return OrderGate(BindingStore(vault, 3600.0, clock), Exchanges({on: exchange}), sink, exchange_deadline_s=2.0)


def buy(client_order_id: str) -> OrderRequest:
    return OrderRequest("btcusdt", "buy", "limit", Decimal("0.001"), Decimal("30000"), client_order_id=client_order_id)


REFUSED = [
    (ExchangeName.BYBIT, "b" * 37), (ExchangeName.BYBIT, "h7 order 1"), (ExchangeName.BYBIT, "h7.order:1"),
    (ExchangeName.OKX, "o" * 33), (ExchangeName.OKX, "h7-client-1"), (ExchangeName.OKX, "h7_client_1"),
    (ExchangeName.HTX, "x" * 65), (ExchangeName.HTX, "h7 client 1"),
    *((name, hostile) for name in ExchangeName for hostile in ("", "ordér1", "h7\r\nX-Injected: 1", "١٢٣")),
]


@pytest.mark.parametrize(("on", "client_order_id"), REFUSED)
async def test_an_id_the_exchange_would_refuse_is_refused_audited_and_never_sent(adapters, clock, on,
                                                                                  client_order_id):
    exchange, sandbox = adapters[on]
    vault, sink = SigningRecordingVault(), RecordingSink()
    gate = await gate_on(on, exchange, vault, clock, sink)
    with pytest.raises(OrderRefused) as caught:
        await gate.place(USER, BINDING, buy(client_order_id))
    refused = caught.value
    assert refused.reason is OrderRefusalReason.CLIENT_ORDER_ID_REFUSED
    assert "client order ids of" in str(refused) and (not client_order_id or client_order_id not in str(refused))
    await gate.close(deadline_s=1.0)
    [event] = sink.published
    assert (event.outcome, event.details["reason"]) == ("order_refused", "client_order_id_refused")
    assert vault.used == []
    assert ORDER_ENDPOINTS[on] not in sandbox.admin.request_counts()


@pytest.mark.parametrize(("on", "client_order_id"), [
    (ExchangeName.BYBIT, "h7-client_1" + "b" * 25), (ExchangeName.OKX, "h7client1" + "o" * 23),
    (ExchangeName.HTX, "h7-client.1:" + "x" * 52)])
async def test_an_id_the_exchange_takes_goes_on_to_it(adapters, clock, on, client_order_id):
    """The fake binding's key is unknown to the sandbox, so the exchange refuses it: the id itself was let through."""
    exchange, sandbox = adapters[on]
    vault = SigningRecordingVault()
    gate = await gate_on(on, exchange, vault, clock, RecordingSink())
    with pytest.raises(ExchangeError):
        await gate.place(USER, BINDING, buy(client_order_id))
    assert "sign" in vault.used
    assert ORDER_ENDPOINTS[on] in sandbox.admin.request_counts()
