"""Credentials and the order gate for trading engines.

    async with order_gate(EngineSettings()) as gate:
        binding = await gate.bindings.get(user_id, binding_id)          # cached up to HASH7_ENGINE_CACHE_TTL_S
        placed = await gate.place(user_id, binding_id, OrderRequest("btcusdt", "buy", "limit", amount, price))

`hash7-engine` (shared.clients.trading.example) does exactly this from the command line.
"""

from shared.clients.trading.credentials import BindingNotFound, BindingStore, TradingBinding
from shared.clients.trading.gate import OrderGate, OrderRefusalReason, OrderRefused, OrderRequest, order_gate

__all__ = [
    "BindingNotFound",
    "BindingStore",
    "OrderGate",
    "OrderRefusalReason",
    "OrderRefused",
    "OrderRequest",
    "TradingBinding",
    "order_gate",
]
