"""The exchanges Hash7 binds keys for: their names on the wire and in the app."""

from enum import StrEnum


class ExchangeName(StrEnum):
    """An event's `exchange`, lower case. Adding an exchange starts here, then its adapter
    (shared/adapters/exchange/registry.py) and its hints (shared/contracts/reasons.py)."""

    HTX = "htx"
    BYBIT = "bybit"
    OKX = "okx"

    @property
    def display_name(self) -> str:
        return _DISPLAY_NAMES[self]

    @property
    def needs_passphrase(self) -> bool:
        """Whether the exchange's keys come with a passphrase sent on every request (a secret like the secret
        key: shared/adapters/okx/README.md#signing)."""
        return self is ExchangeName.OKX


_DISPLAY_NAMES = {ExchangeName.HTX: "HTX", ExchangeName.BYBIT: "Bybit", ExchangeName.OKX: "OKX"}


def supported_exchange(name: str) -> ExchangeName | None:
    """The exchange an event names, or None when Hash7 does not support it."""
    try:
        return ExchangeName(name.strip().lower())
    except ValueError:
        return None
