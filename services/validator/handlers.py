"""validator: proves a key against its exchange itself and reports every problem found, at bind time and again
whenever a key-health sweep asks.

No secret is ever in this process. A new key arrives sealed for its user and wrapped for Vault; the validator
imports it into a Transit key of its own for the check (shared/adapters/vault/stores.py), has Vault sign
each exchange request with it, and deletes that key once it has the verdict. A recheck signs with the key stored for the
binding. What leaves is the same sealed value that came in, the exchange's facts about the key, and the ids of Vault's
signing calls, which Vault's audit log records."""

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from services.validator.inspection import KeyInspection
from shared.adapters.exchange.errors import ExchangeError
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.exchange.registry import UnsupportedExchange
from shared.adapters.vault.client import ImportRefused, KeyMissing, UnsealFailed, VaultPort
from shared.adapters.vault.layout import BINDING_SECRET_KEY
from shared.adapters.vault.passphrases import open_passphrase
from shared.adapters.vault.records import RecheckableBinding
from shared.adapters.vault.stores import Bindings, ExchangeKeys
from shared.adapters.vault.transit_signer import TransitHmacSigner
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import (
    AuditEvent,
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
from shared.runtime.errors import TransientError

SERVICE = Party.VALIDATOR
log = structlog.get_logger(__name__)


# Inspects a key on the exchange named.
Inspect = Callable[[str, ExchangeCredentials], Awaitable[KeyInspection]]


@dataclass
class ValidatorDeps:
    vault: VaultPort
    inspect: Inspect
    # Transient exchange trouble is retried inside the client; past this, the user hears exchange_unavailable.
    exchange_deadline_s: float
    # Waits for a key-health re-check's turn (see pacing.Pacer).
    pace_recheck: Callable[[], Awaitable[None]]
    # Keys inspected at once (ValidatorSettings.exchange_max_concurrent_inspections); exchange_deadline_s counts from a
    # key's turn.
    inspection_turns: asyncio.Semaphore
    bindings: Bindings = field(init=False)
    keys: ExchangeKeys = field(init=False)

    def __post_init__(self) -> None:
        self.bindings = Bindings(self.vault)
        self.keys = ExchangeKeys(self.vault)


class KeyCheckInterrupted(TransientError):
    """The key check lost its key to another delivery of the same request: made again, in place."""


@dataclass(frozen=True)
class Checked:
    """An inspection, and the ids of the Vault calls that signed its exchange requests."""

    inspection: KeyInspection
    vault_request_ids: list[str]


async def check_new_key(deps: ValidatorDeps, event: BindingAccepted) -> Checked:
    """On the key's turn: import the request's secret into a key-check key, inspect the key at its exchange with it, and
    delete it (a failed deletion fails the whole check, which is then made again: nothing is left behind)."""
    async with deps.inspection_turns:
        try:
            # Opened first: a passphrase that does not open leaves no key-check key to discard.
            passphrase = await open_passphrase(deps.vault, event.passphrase_sealed, event.user_id)
            wrapped = await deps.vault.unseal(BINDING_SECRET_KEY, event.secret_key_sealed.get_secret_value(),
                                              event.user_id)
            key = await deps.keys.import_for_check(event.user_id, event.request_id, wrapped.get_secret_value())
        except (UnsealFailed, ImportRefused):
            return Checked(KeyInspection.refused(reason(ReasonCode.SECRET_UNREADABLE, event.exchange)), [])
        signer = TransitHmacSigner(deps.vault, key)
        try:
            credentials = ExchangeCredentials(event.access_key, signer, passphrase=passphrase)
            return Checked(await _inspect(deps, event.exchange, credentials), signer.vault_request_ids)
        except KeyMissing:
            # Another delivery of this request (two instances during a rebalance) discarded the key mid-check.
            raise KeyCheckInterrupted("the key-check key was discarded during the check; checking again") from None
        finally:
            await deps.keys.discard_check(event.user_id, event.request_id)


async def _inspect(deps: ValidatorDeps, exchange: str, credentials: ExchangeCredentials) -> KeyInspection:
    try:
        async with asyncio.timeout(deps.exchange_deadline_s):
            return await deps.inspect(exchange, credentials)
    except UnsupportedExchange:
        # intake lets only supported exchanges through; a stored binding of one no longer supported lands here.
        return KeyInspection.refused(reason(ReasonCode.UNSUPPORTED_EXCHANGE, None, exchange=exchange))
    except (ExchangeError, TimeoutError) as exc:
        # Trouble on the exchange's side says nothing about the key: tell the user to retry, not to change it.
        log.warning("exchange_unavailable", exchange=exchange, error_class=type(exc).__name__,
                    kind=getattr(exc, "kind", None))
        return KeyInspection.refused(reason(ReasonCode.EXCHANGE_UNAVAILABLE, exchange), checked=False)


async def handle_binding_accepted(event: BindingAccepted, deps: ValidatorDeps, *, at: datetime) -> list[Event]:
    masked = mask_access_key(event.access_key)
    checked = await check_new_key(deps, event)
    verdict, facts = checked.inspection.verdict, checked.inspection.facts
    if not verdict.accepted or facts is None:
        return _rejected(event, masked, [*verdict.rejections, *verdict.warnings], at, checked.vault_request_ids)
    validated = BindingValidated(
        **event.model_dump(exclude={"event_id", "secret_key_sealed"}),
        secret_key_sealed=event.secret_key_sealed,
        event_id=derived_event_id("validated", event.user_id, event.request_id),
        key=facts,
        warnings=verdict.warnings,
        validated_at=at,
    )
    return [
        validated,
        status(user_id=event.user_id, state=BindingState.VALIDATED, request_id=event.request_id,
               binding_id=event.binding_id, occurred_at=at, kind=RequestKind.BIND, exchange=event.exchange,
               reasons=verdict.warnings, access_key_masked=masked, details={"owner_uid": facts.owner_uid}),
        audit(service=SERVICE, action=AuditAction.VALIDATE, outcome=AuditOutcome.VALIDATED, cause=event, at=at,
              user_id=event.user_id, request_id=event.request_id, binding_id=event.binding_id, access_key_masked=masked,
              reasons=verdict.warnings, details={"owner_uid": facts.owner_uid, "permissions": facts.permissions,
                                                 "vault_sign_request_ids": checked.vault_request_ids}),
    ]


async def handle_recheck_requested(event: RecheckRequested, deps: ValidatorDeps, *, at: datetime) -> list[Event]:
    """Re-check the key stored for the binding now, whatever any event says the key is."""
    binding = await deps.bindings.recheckable(event.user_id, event.binding_id)
    if binding is None:
        return [_binding_gone(event, at)]
    await deps.pace_recheck()
    masked = mask_access_key(binding.access_key)
    signer = TransitHmacSigner(deps.vault, binding.signing_key)
    try:
        async with deps.inspection_turns:
            inspection = await _recheck(deps, binding, signer)
    except KeyMissing:
        # Revoked between the read and the signing: the revocation deleted the key.
        return [_binding_gone(event, at)]
    verdict = inspection.verdict
    rechecked = BindingRechecked(
        event_id=derived_event_id("rechecked", event.sweep_request_id, event.user_id, event.binding_id),
        sweep_request_id=event.sweep_request_id, sweep_started_at=event.sweep_started_at, user_id=event.user_id,
        binding_id=event.binding_id, exchange=binding.exchange, access_key_masked=masked,
        checked=inspection.checked, rejections=verdict.rejections if inspection.checked else [],
        warnings=verdict.warnings, checked_at=at,
    )
    outcome = (AuditOutcome.UNCHECKED if not inspection.checked
               else AuditOutcome.FAILED if verdict.rejections else AuditOutcome.PASSED)
    return [
        rechecked,
        audit(service=SERVICE, action=AuditAction.RECHECK, outcome=outcome, cause=event, at=at,
              user_id=event.user_id, request_id=event.sweep_request_id, binding_id=event.binding_id,
              access_key_masked=masked, reasons=[*verdict.rejections, *verdict.warnings],
              details={"vault_sign_request_ids": signer.vault_request_ids}),
    ]


async def _recheck(deps: ValidatorDeps, binding: RecheckableBinding, signer: TransitHmacSigner) -> KeyInspection:
    try:
        passphrase = await open_passphrase(deps.vault, binding.passphrase_sealed, binding.user_id)
    except UnsealFailed:
        # Our choice: a stored passphrase that no longer opens makes the binding as unusable as a refused key, so the
        # recheck says so, in the words used at bind time, without asking the exchange.
        return KeyInspection.refused(reason(ReasonCode.SECRET_UNREADABLE, binding.exchange))
    credentials = ExchangeCredentials(binding.access_key, signer, passphrase=passphrase)
    return await _inspect(deps, binding.exchange, credentials)


def on_malformed(error: MalformedEvent, *, at: datetime) -> list[Event]:
    # Either topic's record: a malformed one cannot say which kind of request it served.
    return malformed(error, at=at, service=SERVICE, action=AuditAction.VALIDATE, kind=None)


def _binding_gone(event: RecheckRequested, at: datetime) -> AuditEvent:
    return audit(service=SERVICE, action=AuditAction.RECHECK, outcome=AuditOutcome.BINDING_GONE, cause=event, at=at,
                 user_id=event.user_id, request_id=event.sweep_request_id, binding_id=event.binding_id)


def _rejected(event: BindingAccepted, masked: str, reasons: list[Reason], at: datetime,
              vault_request_ids: list[str]) -> list[Event]:
    return rejected(service=SERVICE, action=AuditAction.VALIDATE, cause=event, user_id=event.user_id,
                    request_id=event.request_id, binding_id=event.binding_id, exchange=event.exchange,
                    reasons=reasons, occurred_at=at,
                    kind=RequestKind.BIND, access_key_masked=masked,
                    audit_details={"vault_sign_request_ids": vault_request_ids})
