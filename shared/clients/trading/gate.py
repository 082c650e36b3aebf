"""The one way a trading engine places an order: `OrderGate.place` signs and sends it to the binding's exchange
only if the binding still exists, its key is not marked invalid and the pair is in its current whitelist. Anything
else raises `OrderRefused` and leaves an `order_refused` audit event; a placed order leaves `order_placed`.

HTX, Bybit and OKX enforce no per-key pair whitelist at order time, and stolen trade-only keys are used to trade
illiquid pairs against their owners: this check is the only one there is.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

import structlog

from shared.adapters.exchange.http import answered_within
from shared.adapters.exchange.port import PlacedOrder, SpotOrder
from shared.adapters.exchange.registry import ClientOptions, Exchanges, UnsupportedExchange
from shared.adapters.vault.client import KeyMissing, UnsealFailed
from shared.clients.trading.audit_outbox import AuditOutbox, EventSink
from shared.clients.trading.credentials import BindingNotFound, BindingStore, TradingBinding, engine_vault
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import utc_now
from shared.contracts.outcomes import audit
from shared.contracts.pairs import normalise_pairs
from shared.contracts.routing import Party
from shared.runtime.config import EngineSettings
from shared.runtime.errors import ClientError
from shared.runtime.producer import KafkaPublisher
from shared.runtime.provenance import EventSigner
from shared.runtime.tracing import link_to_binding, note_outcome, placing_order

log = structlog.get_logger(__name__)

# The name trading engines go by in audit events.
SERVICE = Party.TRADING_ENGINE
_KAFKA_CLIENT_ID = "hash7-trading-engine"
# Order audits that may wait for the broker (shared/clients/trading/audit_outbox.py): an hour of a busy engine.
AUDIT_OUTBOX_CAPACITY = 10_000
# How long closing the gate waits for the broker to take the audits still waiting.
AUDIT_FLUSH_DEADLINE_S = 10.0
# The longest wait between two attempts to publish an audit while the broker is down.
AUDIT_RETRY_CAP_S = 5.0


class OrderRefusalReason(StrEnum):
    BINDING_REVOKED = "binding_revoked"
    BINDING_INVALID = "binding_invalid"
    PAIR_NOT_WHITELISTED = "pair_not_whitelisted"
    NO_SPOT_ACCOUNT = "no_spot_account"
    EXCHANGE_UNSUPPORTED = "exchange_unsupported"
    # The stored passphrase (OKX) does not open for the binding's user.
    PASSPHRASE_UNREADABLE = "passphrase_unreadable"
    # The order's client order id is not one the binding's exchange takes (each has its own length and characters).
    CLIENT_ORDER_ID_REFUSED = "client_order_id_refused"


class OrderRefused(ClientError):
    """The gate did not send the order. The message says why in a person's terms; `reason` says it for code."""

    def __init__(self, reason: OrderRefusalReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class OrderRequest:
    """An order as an engine asks for it. The gate adds the account where the exchange needs one named: always the
    binding's spot account."""

    # A trading pair in any spelling the app accepts ('BTC/USDT', 'btcusdt').
    symbol: str
    side: Literal["buy", "sell"]
    kind: Literal["limit", "market"]
    amount: Decimal
    price: Decimal | None = None
    client_order_id: str | None = None


class OrderGate:
    """Places orders with the credentials of a binding, within its whitelist. The exchange has exchange_deadline_s
    in all to answer an order, however slowly it drips the answer; past that the order's fate is unknown."""

    def __init__(self, bindings: BindingStore, exchanges: Exchanges, events: EventSink, *,
                 exchange_deadline_s: float) -> None:
        self.bindings = bindings
        self._exchanges = exchanges
        self._audits = AuditOutbox(events, capacity=AUDIT_OUTBOX_CAPACITY, retry_cap_s=AUDIT_RETRY_CAP_S)
        self._exchange_deadline_s = exchange_deadline_s

    async def close(self, deadline_s: float = AUDIT_FLUSH_DEADLINE_S) -> None:
        """Publish the order audits still waiting for the broker, for up to deadline_s (each one left is logged)."""
        await self._audits.close(deadline_s)

    async def place(self, user_id: str, binding_id: str, order: OrderRequest) -> PlacedOrder:
        """Send the order to the binding's exchange, or raise OrderRefused. The exchange's own refusals raise
        ExchangeError as they are, and so does no answer within the deadline (an `ExchangeTransientError`
        `network-error`: the order may have been placed)."""
        with placing_order(binding_id):
            try:
                placed = await self._place(user_id, binding_id, order)
            except OrderRefused as refused:
                note_outcome(refused.reason.value)
                raise
            note_outcome("placed")
            return placed

    async def _place(self, user_id: str, binding_id: str, order: OrderRequest) -> PlacedOrder:
        # A blank symbol normalises to "", which no whitelist holds.
        symbol = "".join(normalise_pairs([order.symbol]))
        decision = _Decision.of(user_id, binding_id, symbol, order)
        # Read afresh, never from the cache: a revocation, a whitelist change or a rotation binds the very
        # next order, not one up to a cache TTL later. So a just-revoked binding trades only orders already
        # past this read when the revocation lands (their exchange round trip), never for a cache TTL. It costs
        # two Vault reads (a few ms) per order, small beside that round trip. Vault down: no order.
        try:
            binding = await self.bindings.refresh(user_id, binding_id)
        except BindingNotFound:
            raise self._refused(decision, None, OrderRefusalReason.BINDING_REVOKED,
                                "it has no credentials in Vault (revoked, or never stored)") from None
        link_to_binding(binding.traceparent)
        if binding.invalid:
            raise self._refused(decision, binding, OrderRefusalReason.BINDING_INVALID,
                                "its key stopped working at its exchange; bind a new key")
        if not binding.allows(symbol):
            whitelist = ", ".join(binding.whitelist) or "empty"
            raise self._refused(decision, binding, OrderRefusalReason.PAIR_NOT_WHITELISTED,
                                f"it is not in its whitelist ({whitelist})")

        try:
            exchange = self._exchanges[binding.exchange]
        except UnsupportedExchange:
            raise self._refused(decision, binding, OrderRefusalReason.EXCHANGE_UNSUPPORTED,
                                f"this engine cannot trade on its exchange ({binding.exchange[:32]!r})") from None
        if binding.needs_trading_account and binding.trading_account_id is None:
            # The exchange listed no spot account for the key when it was bound: there is nowhere to place a spot
            # order.
            raise self._refused(decision, binding, OrderRefusalReason.NO_SPOT_ACCOUNT,
                                "its exchange listed no spot account for its key; open one there and bind the key "
                                "again")

        if order.client_order_id is not None:
            # Checked here, before anything is opened or signed: an id the exchange's rules refuse would otherwise
            # fail inside the adapter, neither refused nor audited.
            problem = exchange.client_order_id_problem(order.client_order_id)
            if problem is not None:
                raise self._refused(decision, binding, OrderRefusalReason.CLIENT_ORDER_ID_REFUSED, problem)

        # Signed inside Vault: the engine never holds the secret, and Vault's audit log records the signing call.
        signer = self.bindings.signer(binding)
        try:
            # Opened for this order alone, and dropped with it (README.md#the-passphrases-path).
            passphrase = await self.bindings.passphrase(binding)
        except UnsealFailed:
            raise self._refused(decision, binding, OrderRefusalReason.PASSPHRASE_UNREADABLE,
                                "its stored passphrase does not open for its user; bind the key again") from None
        spot_order = SpotOrder(pair=symbol, side=order.side, kind=order.kind, amount=order.amount, price=order.price,
                               client_order_id=order.client_order_id)
        try:
            async with answered_within(self._exchange_deadline_s, "the order"):
                placed = await exchange.place_order(binding.credentials(signer, passphrase), spot_order,
                                                    binding.trading_account_id)
        except KeyMissing:
            # Revoked since the read: the revocation deleted the key before the record, so nothing was sent.
            raise self._refused(decision, binding, OrderRefusalReason.BINDING_REVOKED,
                                "it was revoked (its key is deleted from Vault)") from None
        log.info("order_placed", user_id=user_id, binding_id=binding_id, access_key_masked=binding.access_key_masked,
                 exchange=binding.exchange, symbol=symbol, order_id=placed.order_id)
        self._audit(decision, binding, AuditOutcome.ORDER_PLACED,
                    {"exchange": binding.exchange, "symbol": symbol, "type": f"{order.side}-{order.kind}",
                     "order_id": placed.order_id,
                     "vault_sign_request_ids": signer.vault_request_ids})
        return placed

    def _refused(self, decision: "_Decision", binding: TradingBinding | None, reason: OrderRefusalReason,
                 why: str) -> OrderRefused:
        log.warning("order_refused", user_id=decision.user_id, binding_id=decision.binding_id,
                    symbol=decision.symbol, reason=reason.value)
        self._audit(decision, binding, AuditOutcome.ORDER_REFUSED, {"symbol": decision.symbol, "reason": reason.value})
        return OrderRefused(reason, f"binding {decision.binding_id} may not trade "
                                    f"{decision.symbol or 'a blank symbol'}: {why}")

    def _audit(self, decision: "_Decision", binding: TradingBinding | None, outcome: AuditOutcome,
               details: dict[str, Any]) -> None:
        if binding is not None:
            # Correlates this decision with Vault's own audit record of the credentials read it rests on.
            details = {**details, "vault_request_id": binding.vault_request_id}
        # Published in the background: the order's fate is decided, and a broker that is down must neither hold
        # it up nor make a placed order look failed (an engine that retries would place it twice).
        self._audits.put(audit(
            service=SERVICE, action=AuditAction.ORDER, outcome=outcome, cause=decision.cause, at=decision.at,
            user_id=decision.user_id, binding_id=decision.binding_id,
            access_key_masked=binding.access_key_masked if binding else None, details=details))


@dataclass(frozen=True)
class _Decision:
    """One call of `place` as its audit names it. The order gate has no input record: the audit's id is derived
    from the order as asked and the time of the decision, taken once, so it names this decision alone."""

    user_id: str
    binding_id: str
    symbol: str
    cause: str
    at: datetime

    @classmethod
    def of(cls, user_id: str, binding_id: str, symbol: str, order: OrderRequest) -> "_Decision":
        at = utc_now()
        cause = (f"order:{order.client_order_id or '-'}:{symbol}:{order.side}-{order.kind}:{order.amount}:{order.price}"
                 f"@{at.isoformat()}")
        return cls(user_id, binding_id, symbol, cause, at)


@asynccontextmanager
async def order_gate(settings: EngineSettings) -> AsyncIterator[OrderGate]:
    """A gate wired to the settings' Vault (AppRole `trading-engine`), exchanges and Kafka."""
    vault = engine_vault(settings)
    bindings = BindingStore.from_settings(settings, vault)
    # Its order decisions are audited as the trading engine's, signed with that role's key in Vault.
    publisher = KafkaPublisher(settings, _KAFKA_CLIENT_ID, EventSigner(vault, Party.TRADING_ENGINE))
    try:
        # exchange_timeout_s is the order's whole deadline: retrying past it would be cut off anyway.
        deadline_s = settings.exchange_timeout_s
        exchanges = Exchanges.open(settings.exchange_urls(), ClientOptions(deadline_s, deadline_s))
        gate = OrderGate(bindings, exchanges, publisher, exchange_deadline_s=deadline_s)
        try:
            yield gate
        finally:
            await gate.close()
            await exchanges.aclose()
    finally:
        await publisher.close()
