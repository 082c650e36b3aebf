"""vault-writer: stores validated bindings exactly once, keeps one binding per access key across all users, rotates
and revokes; and starts key-health sweeps (it is the service that may list and read stored bindings).

The secret goes into Vault Transit as the binding's own non-exportable HMAC key (a rotation adds a version, a
revocation deletes it); the KV record names that key and never holds the secret. This service may import and
delete those keys but never sign with them. Storage mechanics and write conflicts are the stores'
(shared.adapters.vault.stores)."""

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.adapters.vault.client import ImportRefused, UnsealFailed, VaultPort
from shared.adapters.vault.layout import BINDING_SECRET_KEY, binding_path
from shared.adapters.vault.records import BindingRecord, KeyRef, SweepClaim, SweepProgress, Tombstone
from shared.adapters.vault.stores import (
    AccessKeyIndex,
    Bindings,
    ExchangeKeys,
    SweepClaims,
    Tombstones,
    Versioned,
    Whitelists,
)
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import (
    AuditEvent,
    BindingStored,
    BindingValidated,
    Event,
    MalformedEvent,
    RecheckRequested,
    RevokeRequested,
    SweepCursor,
    SweepRequested,
    derived_event_id,
)
from shared.contracts.outcomes import audit, malformed, rejected, status
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.contracts.routing import Party
from shared.contracts.secrets import mask_access_key
from shared.contracts.states import BindingState, RequestKind
from shared.runtime.config import SWEEP_PAGE_SIZE
from shared.runtime.errors import TransientError
from shared.runtime.tracing import current_traceparent

SERVICE = Party.VAULT_WRITER
DELETE_ON_HTX = ("Delete the key {key} on HTX too: HTX app → avatar → Settings → Trading Settings → "
                 "API Management → Delete.")


class ImportInterrupted(TransientError):
    """Vault refused to import the secret of a key the validator proved by importing the very same bytes: Vault's
    trouble, not the key's (Transit answers its refusals and its storage failures alike, with a 500:
    shared/adapters/vault/README.md#exchange-keys), so it is waited out like an outage, never told to the user."""


@dataclass
class VaultWriterDeps:
    vault: VaultPort
    # Bindings per page of a key-health sweep (VaultWriterSettings.sweep_page_size).
    sweep_page_size: int = SWEEP_PAGE_SIZE
    bindings: Bindings = field(init=False)
    whitelists: Whitelists = field(init=False)
    tombstones: Tombstones = field(init=False)
    index: AccessKeyIndex = field(init=False)
    sweeps: SweepClaims = field(init=False)
    keys: ExchangeKeys = field(init=False)

    def __post_init__(self) -> None:
        self.keys = ExchangeKeys(self.vault)
        self.bindings = Bindings(self.vault)
        self.whitelists = Whitelists(self.vault)
        self.tombstones = Tombstones(self.vault)
        self.index = AccessKeyIndex(self.vault)
        self.sweeps = SweepClaims(self.vault)


async def handle_binding_validated(event: BindingValidated, deps: VaultWriterDeps, *, at: datetime) -> list[Event]:
    masked = mask_access_key(event.access_key)
    # Only a rotation replaces a stored binding, so only a rotation reads it first. A new binding is written
    # create-only: one Vault call fewer on the usual path, and finding it taken means we stored it before.
    current = await deps.bindings.read(event.user_id, event.binding_id) if event.replaces_binding_id else None
    if current is not None and current.record.request_id == event.request_id:
        return await _stored(deps, event, masked, current, at)
    if event.replaces_binding_id and current is None:
        # Gone (revoked, maybe while an earlier attempt of this rotation claimed its new access key): let that go.
        await deps.index.release(event.access_key, event.user_id, event.binding_id)
        return _rejected(event, masked, [reason(ReasonCode.BINDING_UNKNOWN, binding_id=event.binding_id)],
                         action=AuditAction.STORE, at=at)
    if current is not None and current.record.validated_at > event.validated_at:
        # A rotation validated before the key stored now (an old event sent again): it must not bring the older
        # key back.
        return [_store_audit(event, masked, AuditOutcome.SUPERSEDED, at)]
    if current is None and await deps.tombstones.read(event.user_id, event.binding_id) is not None:
        # A new binding's id is its request's, so a tombstone means this very request was stored, then revoked,
        # and is now redelivered (a crash before our commit): the user's revocation stands.
        return [_store_audit(event, masked, AuditOutcome.ALREADY_REVOKED, at)]

    try:
        wrapped = await deps.vault.unseal(BINDING_SECRET_KEY, event.secret_key_sealed.get_secret_value(),
                                          event.user_id)
    except UnsealFailed:
        return _rejected(event, masked, [reason(ReasonCode.SECRET_UNREADABLE)], action=AuditAction.STORE, at=at)

    # Claim the access key first: of two users racing for one key, exactly one wins the create-only write.
    if not await deps.index.claim(event.access_key, event.user_id, event.binding_id):
        return _rejected(event, masked, [reason(ReasonCode.KEY_ALREADY_BOUND)], action=AuditAction.STORE, at=at)

    # Imported only once the key is ours: a rejected binding leaves no key behind.
    wrapped_text = wrapped.get_secret_value()
    try:
        key = (await deps.keys.store_rotation(event.user_id, event.binding_id, event.request_id, wrapped_text)
               if current else await deps.keys.store_new(event.user_id, event.binding_id, wrapped_text))
    except ImportRefused:
        raise ImportInterrupted("Vault refused to import a secret the validator imported from the same bytes") from None
    if await deps.tombstones.read(event.user_id, event.binding_id) is not None:
        # Revoked meanwhile (revocations are handled beside validations, not after them): the revocation stands,
        # and nothing may sign with what was just imported. The revocation deleted the key before it, or this does.
        await deps.keys.destroy(event.user_id, event.binding_id)
        await deps.index.release(event.access_key, event.user_id, event.binding_id)
        return [_store_audit(event, masked, AuditOutcome.ALREADY_REVOKED, at)]
    record = await _binding_record(deps, event, key, at, current)
    stored = await deps.bindings.save(record, current) if current else await deps.bindings.create_or_read(record)
    if stored.record.request_id != event.request_id:
        # This request was stored, and its binding rotated since; it came again (a redelivery, or an old record
        # sent again). The rotation stands; the claim just made for the replaced key is let go again.
        if stored.record.access_key != event.access_key:
            await deps.index.release(event.access_key, event.user_id, event.binding_id)
        return [_store_audit(event, masked, AuditOutcome.SUPERSEDED, at)]
    return await _stored(deps, event, masked, stored, at)


def _store_audit(event: BindingValidated, masked: str, outcome: AuditOutcome, at: datetime) -> AuditEvent:
    return audit(service=SERVICE, action=AuditAction.STORE, outcome=outcome, cause=event, at=at,
                 user_id=event.user_id, request_id=event.request_id, binding_id=event.binding_id,
                 access_key_masked=masked)


async def _binding_record(deps: VaultWriterDeps, event: BindingValidated, key: KeyRef, at: datetime,
                          current: Versioned[BindingRecord] | None) -> BindingRecord:
    """The record to store, with the context of the span storing it (orders link to it); a rotation to another key
    names the old one, and its index entry to release."""
    traceparent = current_traceparent()
    if current is None or current.record.access_key == event.access_key:
        return BindingRecord.of(event, key, at, traceparent)
    old_key = current.record.access_key
    # Where the old key's claim is, under whichever version of the index key it was made.
    claim = await deps.index.holder(old_key)
    ours = claim is not None and claim.holder.names(event.user_id, event.binding_id)
    return BindingRecord.of(event, key, at, traceparent, rotated_from=mask_access_key(old_key),
                            replaced_index_path=claim.path if claim and ours else None)


async def handle_revoke_requested(event: RevokeRequested, deps: VaultWriterDeps, *, at: datetime) -> list[Event]:
    current = await deps.bindings.read(event.user_id, event.binding_id)
    if current is None:
        tombstone = await deps.tombstones.read(event.user_id, event.binding_id)
        if tombstone is None:
            return _rejected(event, None, [reason(ReasonCode.BINDING_UNKNOWN, binding_id=event.binding_id)],
                             action=AuditAction.REVOKE, at=at)
        return _revoked(event, tombstone, at)

    access_key = current.record.access_key
    # Tombstone first: if we crash half-way, the redelivered revoke finishes the job.
    tombstone = await deps.tombstones.leave_once(event.user_id, event.binding_id, Tombstone(
        request_id=event.request_id, access_key_masked=mask_access_key(access_key), revoked_at=at))
    await deps.index.release(access_key, event.user_id, event.binding_id)
    await deps.whitelists.delete(event.user_id, event.binding_id)
    # The key before the record: nothing signs with the secret again, and the record left until then lets a
    # redelivered revoke find what to finish.
    await deps.keys.destroy(event.user_id, event.binding_id)
    await deps.bindings.delete(event.user_id, event.binding_id)
    return _revoked(event, tombstone, at)


async def handle_sweep_requested(event: SweepRequested, deps: VaultWriterDeps, *, at: datetime) -> list[Event]:
    """Re-check every stored binding, one page at a time: a page asks the validator to recheck up to
    `sweep_page_size` bindings after the event's cursor (by user id, then binding id) and asks, on this topic, for
    the page after it. A sweep of any size holds one page, and a crash repeats the page in hand, never skips one:
    the next page is asked for only with this page's rechecks, all confirmed before this page's record is committed.

    Several instances (or timers) may request the same sweep: the first to claim it runs it, anyone else's is skipped.
    The sweep's progress in Vault, advanced (check-and-set) as each page starts, tells a page redelivered after a
    crash (redone: rechecks are idempotent, the validator and the whitelist drop what they have applied) from a copy
    of a page the sweep has passed (skipped, so copies do not fork the sweep)."""
    claim = await deps.sweeps.claim(event.sweep_id, SweepClaim(request_id=event.request_id, claimed_at=at))
    if claim.request_id != event.request_id:
        return [_sweep_audit(event, AuditOutcome.ALREADY_CLAIMED, at)]
    # Names only: the validator reads each binding's key itself. The claim's time in Vault orders the facts the
    # sweep yields against the bindings' own writes.
    started_at = await deps.sweeps.started_at(event.sweep_id)
    current = await deps.sweeps.progress(event.sweep_id)
    reached = _position(current.record.after) if current is not None else None
    if reached is not None and reached > _position(event.after):
        return [_sweep_audit(event, AuditOutcome.ALREADY_APPLIED, at)]
    redone = reached == _position(event.after)
    # The cursor decides which bindings are skipped, and anyone allowed on this topic could write one: a page is
    # swept only where the sweep's own progress says it starts (a new sweep at the first binding).
    expected = current.record.next_after if current is not None else None
    if not redone and _position(event.after) != _position(expected):
        return [_sweep_audit(event, AuditOutcome.PAGE_REFUSED, at)]
    page = await deps.bindings.ids_after(event.after, deps.sweep_page_size)
    last = len(page) < deps.sweep_page_size
    if redone and current is not None:
        progress = current.record  # this page again (a redelivery): counted when it first started
    else:
        before = current.record if current is not None else None
        progress = await deps.sweeps.advance(event.sweep_id, SweepProgress(
            request_id=event.request_id, after=event.after, next_after=None if last else page[-1],
            pages=(before.pages if before else 0) + 1, bindings=(before.bindings if before else 0) + len(page),
            finished=last, updated_at=at), current)

    rechecks: list[Event] = [RecheckRequested(
        event_id=derived_event_id("recheck", event.request_id, binding.user_id, binding.binding_id),
        sweep_request_id=event.request_id, sweep_started_at=started_at, user_id=binding.user_id,
        binding_id=binding.binding_id,
    ) for binding in page]
    age_s = round(max((at - started_at).total_seconds(), 0.0), 3)
    reports = [_sweep_audit(event, AuditOutcome.STARTED, at, page_size=deps.sweep_page_size)] if event.after is None \
        else []
    reports.append(_sweep_audit(event, AuditOutcome.PAGE_REQUESTED, at, page=progress.pages, bindings=len(page),
                                bindings_so_far=progress.bindings, age_s=age_s))
    if last:
        reports.append(_sweep_audit(event, AuditOutcome.FINISHED, at, pages=progress.pages,
                                    bindings=progress.bindings, duration_s=age_s))
        return [*rechecks, *reports]
    after = page[-1]
    next_page = SweepRequested(
        request_id=event.request_id, sweep_id=event.sweep_id, requested_at=event.requested_at, after=after,
        event_id=derived_event_id("sweep-page", event.request_id, after.user_id, after.binding_id))
    return [*rechecks, *reports, next_page]


def _position(cursor: SweepCursor | None) -> tuple[str, str]:
    """Where a cursor is in the sweep's order; the first page's (no cursor) is before every binding's."""
    return (cursor.user_id, cursor.binding_id) if cursor is not None else ("", "")


def _sweep_audit(event: SweepRequested, outcome: AuditOutcome, at: datetime, **details: Any) -> AuditEvent:
    return audit(service=SERVICE, action=AuditAction.HEALTH_SWEEP, outcome=outcome, cause=event, at=at,
                 user_id=None, request_id=event.request_id, details={"sweep_id": event.sweep_id, **details})


def on_malformed(error: MalformedEvent, *, at: datetime) -> list[Event]:
    return malformed(error, at=at, service=SERVICE, action=AuditAction.CONSUME, kind=None)


async def _stored(deps: VaultWriterDeps, event: BindingValidated, masked: str,
                  stored: Versioned[BindingRecord], at: datetime) -> list[Event]:
    """Stored by this request, now or before it was redelivered: finish what may not have finished (releasing
    a replaced key's index entry), and say so, identically each time."""
    record = stored.record
    if record.replaced_index_path is not None:
        await deps.index.release_path(record.replaced_index_path, event.user_id, event.binding_id)
    path = binding_path(event.user_id, event.binding_id)
    details: dict[str, Any] = {"vault_version": stored.version}
    if record.rotated_from is not None:
        details |= {"rotated_from": record.rotated_from, "next_step": DELETE_ON_HTX.format(key=record.rotated_from)}
    # The time recorded with the write, so that saying it again (after a redelivery) says the same thing.
    stored_event = BindingStored(
        event_id=derived_event_id("stored", event.user_id, event.request_id),
        binding_id=event.binding_id, request_id=event.request_id, user_id=event.user_id, exchange=event.exchange,
        access_key_masked=masked, vault_path=path, vault_version=stored.version, trading_pairs=event.trading_pairs,
        warnings=event.warnings, rotated=event.replaces_binding_id is not None, stored_at=record.stored_at,
    )
    return [
        stored_event,
        status(user_id=event.user_id, state=BindingState.STORED, request_id=event.request_id,
               binding_id=event.binding_id, occurred_at=record.stored_at, kind=RequestKind.BIND,
               access_key_masked=masked,
               reasons=event.warnings, details=details),
        audit(service=SERVICE, action=AuditAction.STORE, outcome=AuditOutcome.STORED, cause=event, at=at,
              user_id=event.user_id, request_id=event.request_id, binding_id=event.binding_id,
              access_key_masked=masked, reasons=event.warnings,
              details={"vault_path": path, "vault_version": stored.version, "rotated": stored_event.rotated}),
    ]


def _revoked(event: RevokeRequested, tombstone: Tombstone, at: datetime) -> list[Event]:
    masked = tombstone.access_key_masked
    return [
        status(user_id=event.user_id, state=BindingState.REVOKED, request_id=event.request_id,
               binding_id=event.binding_id, occurred_at=tombstone.revoked_at, kind=RequestKind.REVOKE,
               access_key_masked=masked,
               details={"next_step": DELETE_ON_HTX.format(key=masked)}),
        audit(service=SERVICE, action=AuditAction.REVOKE, outcome=AuditOutcome.REVOKED, cause=event, at=at,
              user_id=event.user_id, request_id=event.request_id, binding_id=event.binding_id,
              access_key_masked=masked),
    ]


def _rejected(event: BindingValidated | RevokeRequested, masked: str | None, problems: list[Reason],
              action: AuditAction, at: datetime) -> list[Event]:
    kind = RequestKind.REVOKE if action is AuditAction.REVOKE else RequestKind.BIND
    return rejected(service=SERVICE, action=action, cause=event, user_id=event.user_id, request_id=event.request_id,
                    binding_id=event.binding_id, reasons=problems, occurred_at=at, kind=kind,
                    access_key_masked=masked)
