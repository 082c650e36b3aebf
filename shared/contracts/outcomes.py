"""Builders for what every handler emits besides its next event: a status for the app and an audit record
for ops. Their topics and keys come from the routing table (shared/contracts/routing.py)."""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import AuditEvent, BindingStatus, Event, MalformedEvent, derived_event_id
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.contracts.states import BindingState, RequestKind


def status(*, user_id: str, state: BindingState, request_id: str | None, binding_id: str | None,
           occurred_at: datetime, kind: RequestKind | None, exchange: str | None, reasons: Sequence[Reason] = (),
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


def audit(*, service: str, action: AuditAction, outcome: AuditOutcome, cause: Event | str, at: datetime,
          user_id: str | None, request_id: str | None = None, binding_id: str | None = None,
          access_key_masked: str | None = None, reasons: Sequence[Reason] = (),
          details: dict[str, Any] | None = None) -> AuditEvent:
    """The audit record of a decision about `cause` (the input event, or a string naming the record) handled at
    `at` (its record's time). Its id is derived from the decision, never from what a re-run may change (the
    Vault request ids in `details`): a redelivered input re-emits the same event, and consumers deduplicate."""
    event_id = derived_event_id("audit", service, action.value, outcome.value, _cause_ref(cause, at), user_id or "-",
                                request_id or "-", binding_id or "-", *sorted(r.code.value for r in reasons))
    return AuditEvent(
        event_id=event_id, occurred_at=at, service=service, action=action, outcome=outcome, request_id=request_id,
        binding_id=binding_id, user_id=user_id, access_key_masked=access_key_masked,
        reason_codes=[r.code for r in reasons], details=details or {},
    )


def _cause_ref(cause: Event | str, at: datetime) -> str:
    if isinstance(cause, str):
        return cause
    event_id = getattr(cause, "event_id", None)
    if event_id is not None:
        return str(event_id)  # a pipeline event: its id is derived from its own cause
    # The app's requests carry no id of their own: their record's signed time tells two sends of one request apart.
    return f"{getattr(cause, 'request_id', '-')}@{at.isoformat()}"


def naming_vault_calls(events: Sequence[Event], request_ids: Sequence[str]) -> list[Event]:
    """events, the audit records among them naming the Vault calls made to reach their decision
    (`details.vault_request_ids`, for Vault's audit log). Not part of the audit's id: a redelivery's copy names
    the Vault calls of its own run."""
    if not request_ids:
        return list(events)
    return [event.model_copy(update={"details": {**event.details, "vault_request_ids": list(request_ids)}})
            if isinstance(event, AuditEvent) else event for event in events]


def rejected(*, service: str, action: AuditAction, cause: Event | str, user_id: str | None, request_id: str | None,
             binding_id: str | None, exchange: str | None, reasons: Sequence[Reason], occurred_at: datetime,
             kind: RequestKind | None,
             access_key_masked: str | None = None, outcome: AuditOutcome = AuditOutcome.REJECTED,
             details: dict[str, Any] | None = None, audit_details: dict[str, Any] | None = None) -> list[Event]:
    """A refusal: the user hears why (when we know who they are), ops always hear (with audit_details, for ops
    only)."""
    record = audit(service=service, action=action, outcome=outcome, cause=cause, at=occurred_at, user_id=user_id,
                   request_id=request_id, binding_id=binding_id, access_key_masked=access_key_masked,
                   reasons=reasons, details=audit_details)
    if user_id is None:
        return [record]
    return [status(user_id=user_id, state=BindingState.REJECTED, request_id=request_id, binding_id=binding_id,
                   occurred_at=occurred_at, kind=kind, exchange=exchange, reasons=reasons,
                   access_key_masked=access_key_masked, details=details),
            record]


def malformed(error: MalformedEvent, *, at: datetime, service: str, action: AuditAction, kind: RequestKind | None,
              details: dict[str, Any] | None = None) -> list[Event]:
    """An input that is not a valid event (it also goes to dead-letter, see shared/runtime/processing.py)."""
    return rejected(service=service, action=action, cause=f"malformed@{at.isoformat()}:{error.problem}",
                    user_id=error.user_id, request_id=error.request_id, binding_id=None, exchange=None,
                    reasons=[reason(ReasonCode.MALFORMED_REQUEST, None, problem=error.problem)], occurred_at=at,
                    kind=kind, outcome=AuditOutcome.MALFORMED, details=details)
