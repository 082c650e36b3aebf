from dataclasses import dataclass
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


class RequestKind(StrEnum):
    """What a status answers: the app's request ids are its own, so one id may name requests of two kinds."""

    BIND = "bind"
    WHITELIST = "whitelist"
    REVOKE = "revoke"
    SWEEP = "sweep"


@dataclass(frozen=True)
class RequestOutcome:
    """Which states end one kind of request, and which of those mean it worked."""

    succeeded: frozenset[BindingState]
    refused: frozenset[BindingState]

    @property
    def final(self) -> frozenset[BindingState]:
        return self.succeeded | self.refused


BIND_OUTCOME = RequestOutcome(
    succeeded=frozenset({BindingState.AWAITING_WHITELIST, BindingState.ACTIVE, BindingState.EXPIRING}),
    refused=frozenset({BindingState.REJECTED, BindingState.INVALID}),
)
WHITELIST_OUTCOME = RequestOutcome(
    # RECEIVED: saved, and waiting for its binding to be stored (the whitelist service's one answer).
    succeeded=frozenset({BindingState.ACTIVE, BindingState.AWAITING_WHITELIST, BindingState.RECEIVED}),
    refused=frozenset({BindingState.REJECTED, BindingState.INVALID}),
)
REVOKE_OUTCOME = RequestOutcome(
    succeeded=frozenset({BindingState.REVOKED}), refused=frozenset({BindingState.REJECTED}),
)
