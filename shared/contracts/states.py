from enum import StrEnum


class BindingState(StrEnum):
    """The life of one binding as the app shows it."""

    RECEIVED = "received"
    REJECTED = "rejected"
    VALIDATED = "validated"
    STORED = "stored"
    AWAITING_WHITELIST = "awaiting_whitelist"
    ACTIVE = "active"
    EXPIRING = "expiring"
    INVALID = "invalid"
    REVOKED = "revoked"
