"""validator: proves a key against HTX itself and reports every problem found, at bind time and again
whenever a key-health sweep asks.

The plaintext secret exists only in memory, inside this handler, for the duration of the HTX calls; what
leaves is the same sealed value that came in, plus HTX's facts about the key."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from pydantic import SecretStr

from services.validator.inspection import KeyInspection
from shared.adapters.htx.client import HtxCredentials
from shared.adapters.htx.errors import HtxError
from shared.adapters.vault.client import UnsealFailed, VaultPort
from shared.adapters.vault.layout import BINDING_SECRET_KEY
from shared.adapters.vault.stores import Bindings
from shared.contracts.events import (
    BindingAccepted,
    BindingRechecked,
    BindingValidated,
    Event,
    MalformedEvent,
    RecheckRequested,
    derived_event_id,
)
from shared.contracts.outcomes import audit, malformed, rejected, status
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.contracts.routing import Party
from shared.contracts.secrets import mask_access_key
from shared.contracts.states import BindingState, RequestKind

SERVICE = Party.VALIDATOR
log = structlog.get_logger(__name__)


@dataclass
class ValidatorDeps:
    vault: VaultPort
    inspect: Callable[[HtxCredentials], Awaitable[KeyInspection]]
    # Transient HTX trouble is retried inside the client; past this, the user hears exchange_unavailable.
    htx_deadline_s: float
    # Waits for a key-health re-check's turn (see pacing.Pacer).
    pace_recheck: Callable[[], Awaitable[None]]
    # Keys unsealed and inspected at once (ValidatorSettings.htx_max_concurrent_inspections); htx_deadline_s
    # counts from a key's turn.
    inspection_turns: asyncio.Semaphore
    bindings: Bindings = field(init=False)

    def __post_init__(self) -> None:
        self.bindings = Bindings(self.vault)


async def inspect_sealed_key(deps: ValidatorDeps, user_id: str, access_key: str, sealed: SecretStr) -> KeyInspection:
    """On the key's turn, unseal, then inspect the key at HTX: the same for a new binding and for a key-health
    re-check. The turn comes first, so a burst does not unseal every key in hand at once and hold each
    plaintext while it waits."""
    async with deps.inspection_turns:
        return await _unseal_and_inspect(deps, user_id, access_key, sealed)


async def _unseal_and_inspect(deps: ValidatorDeps, user_id: str, access_key: str, sealed: SecretStr) -> KeyInspection:
    try:
        secret_key = await deps.vault.unseal(BINDING_SECRET_KEY, sealed.get_secret_value(), user_id)
    except UnsealFailed:
        return KeyInspection.refused(reason(ReasonCode.SECRET_UNREADABLE))
    try:
        async with asyncio.timeout(deps.htx_deadline_s):
            return await deps.inspect(HtxCredentials(access_key, secret_key))
    except (HtxError, TimeoutError) as exc:
        # Trouble on HTX's side says nothing about the key: tell the user to retry, not to change it.
        log.warning("htx_unavailable", error_class=type(exc).__name__, kind=getattr(exc, "kind", None))
        return KeyInspection.refused(reason(ReasonCode.EXCHANGE_UNAVAILABLE), checked=False)
    finally:
        del secret_key


async def handle_binding_accepted(event: BindingAccepted, deps: ValidatorDeps, *, at: datetime) -> list[Event]:
    masked = mask_access_key(event.access_key)
    inspection = await inspect_sealed_key(deps, event.user_id, event.access_key, event.secret_key_sealed)
    verdict, facts = inspection.verdict, inspection.facts
    if not verdict.accepted or facts is None:
        return _rejected(event, masked, [*verdict.rejections, *verdict.warnings], at)
    validated = BindingValidated(
        **event.model_dump(exclude={"event_id", "secret_key_sealed"}),
        secret_key_sealed=event.secret_key_sealed,
        event_id=derived_event_id("validated", event.user_id, event.request_id),
        htx=facts,
        warnings=verdict.warnings,
        validated_at=at,
    )
    return [
        validated,
        status(user_id=event.user_id, state=BindingState.VALIDATED, request_id=event.request_id,
               binding_id=event.binding_id, occurred_at=at, kind=RequestKind.BIND, reasons=verdict.warnings,
               access_key_masked=masked,
               details={"htx_uid": facts.uid}),
        audit(service=SERVICE, action="validate", outcome="validated", user_id=event.user_id,
              request_id=event.request_id, binding_id=event.binding_id, access_key_masked=masked,
              reasons=verdict.warnings, details={"htx_uid": facts.uid, "permissions": facts.permissions}),
    ]


async def handle_recheck_requested(event: RecheckRequested, deps: ValidatorDeps, *, at: datetime) -> list[Event]:
    """Re-check the key stored for the binding now, whatever any event says the key is."""
    binding = await deps.bindings.recheckable(event.user_id, event.binding_id)
    if binding is None:
        return [audit(service=SERVICE, action="recheck", outcome="binding_gone", user_id=event.user_id,
                      request_id=event.sweep_request_id, binding_id=event.binding_id)]
    await deps.pace_recheck()
    masked = mask_access_key(binding.access_key)
    inspection = await inspect_sealed_key(deps, binding.user_id, binding.access_key, binding.secret_key_sealed)
    verdict = inspection.verdict
    rechecked = BindingRechecked(
        event_id=derived_event_id("rechecked", event.sweep_request_id, event.user_id, event.binding_id),
        sweep_request_id=event.sweep_request_id, sweep_started_at=event.sweep_started_at, user_id=event.user_id,
        binding_id=event.binding_id, exchange=binding.exchange, access_key_masked=masked,
        checked=inspection.checked, rejections=verdict.rejections if inspection.checked else [],
        warnings=verdict.warnings, checked_at=at,
    )
    outcome = "unchecked" if not inspection.checked else ("failed" if verdict.rejections else "passed")
    return [
        rechecked,
        audit(service=SERVICE, action="recheck", outcome=outcome, user_id=event.user_id,
              request_id=event.sweep_request_id, binding_id=event.binding_id, access_key_masked=masked,
              reasons=[*verdict.rejections, *verdict.warnings]),
    ]


def on_malformed(error: MalformedEvent, *, at: datetime) -> list[Event]:
    # Either topic's record: a malformed one cannot say which kind of request it served.
    return malformed(error, at=at, service=SERVICE, action="validate", kind=None)


def _rejected(event: BindingAccepted, masked: str, reasons: list[Reason], at: datetime) -> list[Event]:
    return rejected(service=SERVICE, action="validate", user_id=event.user_id, request_id=event.request_id,
                    binding_id=event.binding_id, reasons=reasons, occurred_at=at, kind=RequestKind.BIND,
                    access_key_masked=masked)
