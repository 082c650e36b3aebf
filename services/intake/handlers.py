"""Intake: shape and sealing checks, binding id, replay and rate limits. Needs no secret access at all."""

from dataclasses import dataclass
from datetime import datetime

from services.intake.rules import AttemptLimiter, RequestHistory, binding_id_for
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import (
    BindingAccepted,
    BindingRequested,
    BindingStatus,
    Event,
    MalformedEvent,
    derived_event_id,
)
from shared.contracts.exchanges import ExchangeName, supported_exchange
from shared.contracts.outcomes import audit, malformed, rejected, status
from shared.contracts.pairs import normalise_pairs
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.contracts.routing import Party
from shared.contracts.secrets import is_sealed, mask_access_key
from shared.contracts.states import BindingState, RequestKind

SERVICE = Party.INTAKE


@dataclass
class IntakeDeps:
    history: RequestHistory
    limiter: AttemptLimiter


async def handle_binding_requested(request: BindingRequested, deps: IntakeDeps, *, at: datetime) -> list[Event]:
    masked = mask_access_key(request.access_key)
    # None for an exchange Hash7 does not support: the request's own text is untrusted and goes nowhere but the
    # unsupported_exchange reason.
    exchange = supported_exchange(request.exchange)
    previous = deps.history.latest(request.user_id, request.request_id)
    if previous is not None and previous.state is not BindingState.RECEIVED:
        # An exact replay of a request past intake: say again where it stands, do not do the work twice.
        return _replayed(request, previous, masked, at)
    if deps.history.forgotten(request.user_id, request.request_id, request.requested_at):
        # Too old to tell a first delivery from a replay whose answer fell out of memory: doing it again could
        # store a binding revoked since, so it is refused, tied to no binding, and counts as no attempt.
        return _rejected(request, exchange, None, [reason(ReasonCode.REQUEST_EXPIRED, exchange)], masked, at)
    binding_id = request.replaces_binding_id or binding_id_for(request.user_id, request.request_id)
    # Every check, again for a request still `received` (our first answer may have gone out without its
    # binding.accepted, a crash between the two): the record in hand need not be the one that was checked.
    problems = _problems(request, exchange, deps.limiter)
    if problems or exchange is None:
        return _rejected(request, exchange, binding_id, problems, masked, at)
    # Accepted again identically (same time, same ids): a second copy downstream is harmless.
    return _accepted(request, exchange, binding_id, masked, previous.occurred_at if previous is not None else at)


def _accepted(request: BindingRequested, exchange: ExchangeName, binding_id: str, masked: str,
              at: datetime) -> list[Event]:
    accepted = BindingAccepted(
        event_id=derived_event_id("accepted", request.user_id, request.request_id),
        binding_id=binding_id,
        request_id=request.request_id,
        user_id=request.user_id,
        exchange=exchange,
        label=request.label,
        access_key=request.access_key,
        secret_key_sealed=request.secret_key_sealed,
        passphrase_sealed=request.passphrase_sealed,
        trading_pairs=None if request.trading_pairs is None else normalise_pairs(request.trading_pairs),
        replaces_binding_id=request.replaces_binding_id,
        requested_at=request.requested_at,
        accepted_at=at,
    )
    return [
        accepted,
        status(user_id=request.user_id, state=BindingState.RECEIVED, request_id=request.request_id,
               binding_id=binding_id, occurred_at=at, kind=RequestKind.BIND, exchange=exchange,
               access_key_masked=masked,
               details={"replaces_binding_id": request.replaces_binding_id} if request.replaces_binding_id else None),
        audit(service=SERVICE, action=AuditAction.BIND_REQUEST, outcome=AuditOutcome.ACCEPTED, cause=request, at=at,
              user_id=request.user_id, request_id=request.request_id, binding_id=binding_id,
              access_key_masked=masked),
    ]


def _problems(request: BindingRequested, exchange: ExchangeName | None, limiter: AttemptLimiter) -> list[Reason]:
    # Every new attempt counts, bad ones included: the limit is there to slow down guessing.
    if not limiter.allow(request.user_id):
        return [reason(ReasonCode.TOO_MANY_ATTEMPTS, exchange)]
    problems = []
    if exchange is None:
        problems.append(reason(ReasonCode.UNSUPPORTED_EXCHANGE, None, exchange=request.exchange))
    secret_sealed = is_sealed(request.secret_key_sealed.get_secret_value())
    if not secret_sealed:
        problems.append(reason(ReasonCode.SECRET_NOT_SEALED, exchange))
    if exchange is not None:
        problems.extend(_passphrase_problems(request, exchange, secret_sealed=secret_sealed))
    return problems


def _passphrase_problems(request: BindingRequested, exchange: ExchangeName, *, secret_sealed: bool) -> list[Reason]:
    """A passphrase where the exchange wants one (OKX: shared/adapters/okx/README.md#signing), sealed like the secret,
    and none where it does not: an unwanted one is refused rather than dropped, so the app hears of its mistake, and
    it is never forwarded."""
    passphrase = request.passphrase_sealed
    if exchange.needs_passphrase and passphrase is None:
        return [reason(ReasonCode.MALFORMED_REQUEST, exchange,
                       problem=f"an {exchange.display_name} key needs its passphrase")]
    if not exchange.needs_passphrase and passphrase is not None:
        return [reason(ReasonCode.MALFORMED_REQUEST, exchange,
                       problem=f"keys on {exchange.display_name} have no passphrase, yet one was sent")]
    if passphrase is not None and not is_sealed(passphrase.get_secret_value()) and secret_sealed:
        # One secret_not_sealed says it for both: the message names the secret key and the passphrase.
        return [reason(ReasonCode.SECRET_NOT_SEALED, exchange)]
    return []


def on_malformed(error: MalformedEvent, *, at: datetime) -> list[Event]:
    return malformed(error, at=at, service=SERVICE, action=AuditAction.BIND_REQUEST, kind=RequestKind.BIND)


def _replayed(request: BindingRequested, previous: BindingStatus, masked: str, at: datetime) -> list[Event]:
    return [
        previous,
        audit(service=SERVICE, action=AuditAction.BIND_REQUEST, outcome=AuditOutcome.REPLAYED, cause=request, at=at,
              user_id=request.user_id, request_id=request.request_id, binding_id=previous.binding_id,
              access_key_masked=masked),
    ]


def _rejected(request: BindingRequested, exchange: ExchangeName | None, binding_id: str | None,
              problems: list[Reason], masked: str | None, at: datetime) -> list[Event]:
    return rejected(service=SERVICE, action=AuditAction.BIND_REQUEST, cause=request, user_id=request.user_id,
                    request_id=request.request_id, binding_id=binding_id, exchange=exchange,
                    reasons=problems, occurred_at=at,
                    kind=RequestKind.BIND, access_key_masked=masked)
