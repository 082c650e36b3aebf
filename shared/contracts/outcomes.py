"""Builders for what every handler emits besides its next event: a status for the app and an audit record
for ops. Their topics and keys come from the routing table (shared/contracts/routing.py)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.contracts.events import AuditEvent, BindingStatus, Event, MalformedEvent, derived_event_id
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.contracts.states import BindingState, RequestKind


def status(*, user_id: str, state: BindingState, request_id: str | None, binding_id: str | None,
           occurred_at: datetime, kind: RequestKind | None, exchange: str = "htx", reasons: Sequence[Reason] = (),
           access_key_masked: str | None = None, details: dict[str, Any] | None = None) -> BindingStatus:
    # The id is derived from what the status is about, and the time is given by the handler (the time of the
    # record it handles, or one it recorded in Vault), so a redelivered input re-emits an identical event
    # and the app can drop the duplicate.
    event_id = derived_event_id("status", user_id, request_id or "-", binding_id or "-", state.value,
                                *sorted(r.code.value for r in reasons))
    return BindingStatus(
        event_id=event_id, request_id=request_id, request_kind=kind, binding_id=binding_id, user_id=user_id,
        exchange=exchange,
        state=state, reasons=list(reasons), access_key_masked=access_key_masked, details=details or {},
        occurred_at=occurred_at,
    )


def audit(*, service: str, action: str, outcome: str, user_id: str | None, request_id: str | None = None,
          binding_id: str | None = None, access_key_masked: str | None = None,
          reasons: Sequence[Reason] = (), details: dict[str, Any] | None = None) -> AuditEvent:
    return AuditEvent.of(
        service=service, action=action, outcome=outcome, request_id=request_id, binding_id=binding_id,
        user_id=user_id, access_key_masked=access_key_masked, reason_codes=[r.code for r in reasons],
        details=details or {},
    )


def rejected(*, service: str, action: str, user_id: str | None, request_id: str | None, binding_id: str | None,
             reasons: Sequence[Reason], occurred_at: datetime, kind: RequestKind | None,
             access_key_masked: str | None = None, outcome: str = "rejected",
             details: dict[str, Any] | None = None, audit_details: dict[str, Any] | None = None) -> list[Event]:
    """A refusal: the user hears why (when we know who they are), ops always hear (with audit_details, for ops
    only)."""
    record = audit(service=service, action=action, outcome=outcome, user_id=user_id, request_id=request_id,
                   binding_id=binding_id, access_key_masked=access_key_masked, reasons=reasons,
                   details=audit_details)
    if user_id is None:
        return [record]
    return [status(user_id=user_id, state=BindingState.REJECTED, request_id=request_id, binding_id=binding_id,
                   occurred_at=occurred_at, kind=kind, reasons=reasons, access_key_masked=access_key_masked,
                   details=details),
            record]


def malformed(error: MalformedEvent, *, at: datetime, service: str, action: str, kind: RequestKind | None,
              details: dict[str, Any] | None = None) -> list[Event]:
    """An input that is not a valid event (it also goes to dead-letter, see shared/runtime/processing.py)."""
    return rejected(service=service, action=action, user_id=error.user_id, request_id=error.request_id,
                    binding_id=None, reasons=[reason(ReasonCode.MALFORMED_REQUEST, problem=error.problem)],
                    occurred_at=at, kind=kind, outcome="malformed", details=details)
