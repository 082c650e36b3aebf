"""The one way a trading engine places an order: `OrderGate.place` signs and sends it to HTX only if the
binding still exists, its key is not marked invalid and the pair is in its current whitelist. Anything else
raises `OrderRefused` and leaves an `order_refused` audit event; a placed order leaves `order_placed`.

HTX enforces no per-key pair whitelist at order time, and stolen trade-only keys are used to trade illiquid
pairs against their owners: this check is the only one there is.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any, Protocol

import structlog

from shared.adapters.htx.client import HtxClient, HtxCredentials, answered_within
from shared.adapters.htx.models import NewOrder, PlacedOrder
from shared.adapters.vault.client import KeyMissing
from shared.clients.trading.credentials import BindingNotFound, BindingStore, TradingBinding, engine_vault
from shared.contracts.events import Event
from shared.contracts.outcomes import audit
from shared.contracts.pairs import normalise_pairs
from shared.contracts.routing import Party
from shared.runtime.config import EngineSettings
from shared.runtime.errors import ClientError
from shared.runtime.producer import BrokerUnavailable, KafkaPublisher
from shared.runtime.provenance import EventSigner

log = structlog.get_logger(__name__)

# The name trading engines go by in audit events.
SERVICE = Party.TRADING_ENGINE
_KAFKA_CLIENT_ID = "hash7-trading-engine"


class OrderRefusalReason(StrEnum):
    BINDING_REVOKED = "binding_revoked"
    BINDING_INVALID = "binding_invalid"
    PAIR_NOT_WHITELISTED = "pair_not_whitelisted"
    NO_SPOT_ACCOUNT = "no_spot_account"


class OrderRefused(ClientError):
    """The gate did not send the order. The message says why in a person's terms; `reason` says it for code."""

    def __init__(self, reason: OrderRefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class OrderRequest:
    """An order as an engine asks for it. The gate adds the account: always the binding's spot account."""

    # A trading pair in any spelling the app accepts ('BTC/USDT', 'btcusdt'); sent as the HTX symbol.
    symbol: str
    # HTX's order type, e.g. `buy-limit`, `sell-market`.
    type: str
    amount: Decimal
    price: Decimal | None = None
    client_order_id: str | None = None


class OrderPlacer(Protocol):
    """What the gate needs from HTX; HtxClient is the real one."""

    async def place_order(self, credentials: HtxCredentials, order: NewOrder) -> PlacedOrder: ...


class EventSink(Protocol):
    """Where audit events go; KafkaPublisher is the real one. Raises BrokerUnavailable when it cannot."""

    async def publish(self, event: Event) -> None: ...


class OrderGate:
    """Places orders with the credentials of a binding, within its whitelist. HTX has htx_deadline_s in all to
    answer an order, however slowly it drips the answer; past that the order's fate is unknown."""

    def __init__(self, bindings: BindingStore, htx: OrderPlacer, events: EventSink, *, htx_deadline_s: float) -> None:
        self.bindings = bindings
        self._htx = htx
        self._events = events
        self._htx_deadline_s = htx_deadline_s

    async def place(self, user_id: str, binding_id: str, order: OrderRequest) -> PlacedOrder:
        """Send the order to HTX, or raise OrderRefused. HTX's own refusals raise HtxError as they are, and so
        does no answer within the deadline (an `HtxTransientError` `network-error`: the order may have been placed)."""
        # A blank symbol normalises to "", which no whitelist holds.
        symbol = "".join(normalise_pairs([order.symbol]))
        # Read afresh, never from the cache: a revocation, a whitelist change or a rotation binds the very
        # next order, not one up to a cache TTL later. So a just-revoked binding trades only orders already
        # past this read when the revocation lands (their HTX round trip), never for a cache TTL. It costs
        # two Vault reads (a few ms) per order, small beside that round trip. Vault down: no order.
        try:
            binding = await self.bindings.refresh(user_id, binding_id)
        except BindingNotFound:
            raise await self._refused(
                user_id, binding_id, None, symbol, OrderRefusalReason.BINDING_REVOKED,
                "it has no credentials in Vault (revoked, or never stored)",
            ) from None
        if binding.invalid:
            raise await self._refused(user_id, binding_id, binding, symbol, OrderRefusalReason.BINDING_INVALID,
                                      "its key stopped working at HTX; bind a new key")
        if not binding.allows(symbol):
            whitelist = ", ".join(binding.whitelist) or "empty"
            raise await self._refused(user_id, binding_id, binding, symbol, OrderRefusalReason.PAIR_NOT_WHITELISTED,
                                      f"it is not in its whitelist ({whitelist})")

        if binding.spot_account_id is None:
            # HTX listed no spot account for the key when it was bound: there is nowhere to place a spot order.
            raise await self._refused(user_id, binding_id, binding, symbol, OrderRefusalReason.NO_SPOT_ACCOUNT,
                                      "HTX listed no spot account for its key; open one on HTX and bind the key again")

        # Signed inside Vault: the engine never holds the secret, and Vault's audit log records the signing call.
        signer = self.bindings.signer(binding)
        try:
            async with answered_within(self._htx_deadline_s, "the order"):
                placed = await self._htx.place_order(binding.htx_credentials(signer), NewOrder(
                    account_id=binding.spot_account_id, symbol=symbol, type=order.type, amount=order.amount,
                    price=order.price, client_order_id=order.client_order_id,
                ))
        except KeyMissing:
            # Revoked since the read: the revocation deleted the key before the record, so nothing was sent.
            raise await self._refused(
                user_id, binding_id, binding, symbol, OrderRefusalReason.BINDING_REVOKED,
                "it was revoked (its key is deleted from Vault)",
            ) from None
        log.info("order_placed", user_id=user_id, binding_id=binding_id, access_key_masked=binding.access_key_masked,
                 symbol=symbol, order_id=placed.order_id)
        await self._audit(user_id, binding_id, binding, "order_placed",
                          {"symbol": symbol, "type": order.type, "order_id": placed.order_id,
                           "vault_sign_request_ids": signer.vault_request_ids})
        return placed

    async def _refused(self, user_id: str, binding_id: str, binding: TradingBinding | None, symbol: str,
                       reason: OrderRefusalReason, why: str) -> OrderRefused:
        log.warning("order_refused", user_id=user_id, binding_id=binding_id, symbol=symbol, reason=reason.value)
        await self._audit(user_id, binding_id, binding, "order_refused", {"symbol": symbol, "reason": reason.value})
        return OrderRefused(reason, f"binding {binding_id} may not trade {symbol or 'a blank symbol'}: {why}")

    async def _audit(self, user_id: str, binding_id: str, binding: TradingBinding | None, outcome: str,
                     details: dict[str, Any]) -> None:
        if binding is not None:
            # Correlates this decision with Vault's own audit record of the credentials read it rests on.
            details = {**details, "vault_request_id": binding.vault_request_id}
        record = audit(service=SERVICE, action="order", outcome=outcome, user_id=user_id, binding_id=binding_id,
                       access_key_masked=binding.access_key_masked if binding else None, details=details)
        try:
            await self._events.publish(record)
        except BrokerUnavailable as exc:
            # The order's fate is already decided. Raising now would make a placed order look failed, and an
            # engine that retries would place it twice; the log line keeps the record.
            log.error("audit_not_published", user_id=user_id, binding_id=binding_id, outcome=outcome,
                      error=str(exc), **details)


@asynccontextmanager
async def order_gate(settings: EngineSettings) -> AsyncIterator[OrderGate]:
    """A gate wired to the settings' Vault (AppRole `trading-engine`), HTX and Kafka."""
    vault = engine_vault(settings)
    bindings = BindingStore.from_settings(settings, vault)
    # Its order decisions are audited as the trading engine's, signed with that role's key in Vault.
    publisher = KafkaPublisher(settings, _KAFKA_CLIENT_ID, EventSigner(vault, Party.TRADING_ENGINE))
    try:
        # htx_timeout_s is the order's whole deadline: retrying past it would be cut off anyway.
        deadline_s = settings.htx_timeout_s
        async with HtxClient(settings.htx_base_url, timeout_s=deadline_s, retry_budget_s=deadline_s) as htx:
            yield OrderGate(bindings, htx, publisher, htx_deadline_s=deadline_s)
    finally:
        await publisher.close()
