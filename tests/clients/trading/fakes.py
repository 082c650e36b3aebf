"""In-memory stand-ins for the trading library's edges (Vault comes from tests.fakes), and bindings written
exactly as the vault-writer and the whitelist service write them."""

from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from shared.adapters.exchange.port import (
    Exchange,
    ExchangeCredentials,
    KeyDescription,
    PlacedOrder,
    SpotOrder,
    TradingPair,
)
from shared.adapters.exchange.registry import Exchanges
from shared.adapters.vault.key_import import wrap_for_import
from shared.adapters.vault.layout import binding_path, whitelist_path
from shared.adapters.vault.records import BindingRecord, KeyRef
from shared.adapters.vault.stores import ExchangeKeys
from shared.clients.trading.audit_outbox import EventSink
from shared.contracts.events import Event, utc_now
from shared.contracts.exchanges import ExchangeName
from shared.contracts.routing import Party, route_of
from shared.runtime.producer import BrokerUnavailable
from tests.builders import validated
from tests.fakes import WRAPPING_KEY_PEM, InMemoryVault

USER, BINDING = "u1", "b1"
ACCESS_KEY = "a1b2c3d4-e5f6a7b8-c9d0e1f2-3a4b5c"
# 32 bytes at least, as Transit imports an HMAC key (shared/adapters/vault/key_import.py).
SECRET_KEY = "engine-secret-5e6f7a8b-never-shown"
HTX_UID, SPOT_ACCOUNT_ID = "1", "10"  # what tests.builders.validated says HTX answered


async def store_binding(vault: InMemoryVault, *, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                        **key_facts: Any) -> KeyRef:
    """A first binding, or a rotation of it (the next KV version), as the vault-writer writes it: the secret
    imported into the binding's Transit key (a rotation adds a version), the record naming that version. key_facts
    replace what HTX told the validator (e.g. trading_account_id=None). Returns the key version that signs."""
    current = await vault.read(binding_path(USER, BINDING))
    keys, wrapped = ExchangeKeys(vault), wrap_for_import(WRAPPING_KEY_PEM, SecretStr(secret_key))
    signing_key = (await keys.store_rotation(USER, BINDING, f"rotation-{current.version}", wrapped) if current
                   else await keys.store_new(USER, BINDING, wrapped))
    record = BindingRecord.of(validated(user_id=USER, binding_id=BINDING, access_key=access_key), signing_key,
                              utc_now()).model_copy(update=key_facts)
    await vault.write(binding_path(USER, BINDING), record.to_vault(), cas=current.version if current else 0)
    return signing_key


async def store_whitelist(vault: InMemoryVault, pairs: list[str], **extra: Any) -> None:
    """The whitelist as the whitelist service writes it (extra: fields a later version may add, e.g. health)."""
    current = await vault.read(whitelist_path(USER, BINDING))
    record = {"pairs": pairs, "request_id": f"w{current.version + 1 if current else 1}",
              "updated_at": utc_now().isoformat(), **extra}
    await vault.write(whitelist_path(USER, BINDING), record, cas=current.version if current else 0)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingExchange:
    """An exchange that accepts every order, numbering them from 1, once the credentials' signer has signed it, one
    text per order as HTX's client signs; remembers the credentials, order, account and (text, digest) signed of
    each. A signer that raises stops the order before it is recorded, as a client stops it before it is sent."""

    name = "htx"

    def __init__(self) -> None:
        self.orders: list[tuple[ExchangeCredentials, SpotOrder, str | None]] = []
        self.signed: list[tuple[str, bytes]] = []

    async def describe_key(self, credentials: ExchangeCredentials) -> KeyDescription:
        raise NotImplementedError("the gate never describes keys")

    async def trading_pairs(self) -> list[TradingPair]:
        raise NotImplementedError("the gate never lists pairs")

    async def place_order(self, credentials: ExchangeCredentials, order: SpotOrder,
                          trading_account_id: str | None) -> PlacedOrder:
        text = f"POST\napi.huobi.pro\n/v1/order/orders/place\nAccessKeyId={credentials.access_key}"
        [digest] = await credentials.signer.sign([text])
        self.signed.append((text, digest))
        self.orders.append((credentials, order, trading_account_id))
        return PlacedOrder(order_id=str(len(self.orders)), client_order_id=order.client_order_id)

    def client_order_id_problem(self, client_order_id: str) -> str | None:
        return None

    async def aclose(self) -> None:
        pass


def exchanges_of(exchange: Exchange) -> Exchanges:
    """A registry holding exchange for HTX, as the gate is given one."""
    return Exchanges({ExchangeName.HTX: exchange})


class RecordingSink:
    def __init__(self, broker_down: bool = False) -> None:
        self.published: list[Event] = []
        self.broker_down = broker_down

    async def publish(self, event: Event) -> None:
        if self.broker_down:
            raise BrokerUnavailable("Kafka is unreachable at 127.0.0.1:1 (KafkaConnectionError)")
        route_of(event, Party.TRADING_ENGINE)  # the gate may only produce what the routing table allows
        self.published.append(event)


if TYPE_CHECKING:  # the type checker holds the fakes to the ports they stand in for (make test runs mypy here)
    _exchange: Exchange = RecordingExchange()
    _event_sink: EventSink = RecordingSink()
