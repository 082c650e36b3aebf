"""Key health and the binding state the app sees (the whitelist service's own pure logic)."""

from collections.abc import Sequence

from shared.adapters.vault.records import KeyHealth
from shared.contracts.reasons import Reason, ReasonCode
from shared.contracts.states import BindingState


def key_health(rejections: Sequence[Reason], warnings: Sequence[Reason]) -> KeyHealth:
    if rejections:
        return KeyHealth.INVALID
    if any(w.code == ReasonCode.KEY_EXPIRING for w in warnings):
        return KeyHealth.EXPIRING
    return KeyHealth.HEALTHY


def binding_state(health: KeyHealth, whitelist_valid: bool) -> BindingState:
    """A broken key trumps everything; then a binding needs a valid whitelist to trade at all."""
    if health is KeyHealth.INVALID:
        return BindingState.INVALID
    if not whitelist_valid:
        return BindingState.AWAITING_WHITELIST
    return BindingState.EXPIRING if health is KeyHealth.EXPIRING else BindingState.ACTIVE
