"""vault-writer: stores validated bindings exactly once, keeps one binding per access key across all users, rotates
and revokes; and starts key-health sweeps (it is the service that may list and read stored bindings).

The secret goes into Vault Transit as the binding's own non-exportable HMAC key (a rotation adds a version, a
revocation deletes it); the KV record names that key and never holds the secret. This service may import and
delete those keys but never sign with them. Storage mechanics and write conflicts are the stores'
(shared.adapters.vault.stores)."""

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from shared.adapters.vault.client import ImportRefused, UnsealFailed, VaultPort
from shared.adapters.vault.layout import BINDING_SECRET_KEY, binding_path
from shared.adapters.vault.records import BindingRecord, KeyRef, RunningSweep, SweepClaim, SweepProgress, Tombstone
from shared.adapters.vault.stores import (
    AccessKeyIndex,
    BindingExchanges,
    Bindings,
    ExchangeKeys,
    SweepClaims,
    SweepInCharge,
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
from shared.contracts.reasons import Reason, ReasonCode, delete_key_step, reason
from shared.contracts.routing import Party
from shared.contracts.secrets import mask_access_key
from shared.contracts.states import BindingState, RequestKind
from shared.runtime.config import HEALTH_RECHECKS_PER_S, SWEEP_PAGE_SIZE
from shared.runtime.errors import TransientError
from shared.runtime.tracing import current_traceparent

log = structlog.get_logger(__name__)

SERVICE = Party.VAULT_WRITER
# A running sweep whose next page is this many pages' turns overdue (and at least ABANDONED_AFTER_MIN_S) is taken
# for abandoned (its page request dead-lettered, say), so that a new sweep may replace it. A live sweep is late
# by its pages' Vault calls and their retries, a few seconds a page; a Vault or broker outage, or a vault-writer
# restarting (its start alone may take HASH7_START_TIMEOUT_S), stalls a live one for minutes, which the floor
# covers; an hour is still well inside the default sweep interval (6 h), so a dead sweep holds back one
# scheduled sweep at most.
ABANDONED_AFTER_PAGES = 10
ABANDONED_AFTER_MIN_S = 3600.0


class ImportInterrupted(TransientError):
    """Vault refused to import the secret of a key the validator proved by importing the very same bytes: Vault's
    trouble, not the key's (Transit answers its refusals and its storage failures alike, with a 500:
    shared/adapters/vault/README.md#exchange-keys), so it is waited out like an outage, never told to the user."""


@dataclass
class VaultWriterDeps:
    vault: VaultPort
    # Bindings per page of a key-health sweep (VaultWriterSettings.sweep_page_size).
    sweep_page_size: int = SWEEP_PAGE_SIZE
    # The validator's pace (KeyHealthSettings.health_rechecks_per_s): a page of n bindings is followed by the next
    # no sooner than n / pace after it started, so pages never run ahead of their re-checks.
    rechecks_per_s: float = HEALTH_RECHECKS_PER_S
    # The clock (seconds since the epoch) and the sleep a page waits for its turn with (tests pass their own).
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    bindings: Bindings = field(init=False)
    whitelists: Whitelists = field(init=False)
    tombstones: Tombstones = field(init=False)
    index: AccessKeyIndex = field(init=False)
    sweeps: SweepClaims = field(init=False)
    keys: ExchangeKeys = field(init=False)
    exchanges: BindingExchanges = field(init=False)

    def __post_init__(self) -> None:
        self.keys = ExchangeKeys(self.vault)
        self.exchanges = BindingExchanges(self.vault)
        self.bindings = Bindings(self.vault)
        self.whitelists = Whitelists(self.vault)
        self.tombstones = Tombstones(self.vault)
        self.index = AccessKeyIndex(self.vault)
        self.sweeps = SweepClaims(self.vault)

    def turn_s(self, bindings: int) -> float:
        """How long the validator takes to re-check this many bindings at the sweep's pace."""
        return bindings / self.rechecks_per_s

    def abandoned(self, running: SweepInCharge, at: datetime) -> bool:
        """Whether a running sweep stood still long enough to be taken for dead (ABANDONED_AFTER_PAGES)."""
        bound_s = max(ABANDONED_AFTER_PAGES * self.turn_s(self.sweep_page_size), ABANDONED_AFTER_MIN_S)
        return (at - running.due_at).total_seconds() > bound_s


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
        return _rejected(event, masked, [reason(ReasonCode.BINDING_UNKNOWN, event.exchange,
                                                binding_id=event.binding_id)], action=AuditAction.STORE, at=at)
    if current is not None and current.record.validated_at > event.validated_at:
        # A rotation validated before the key stored now (an old event sent again): it must not bring the older
        # key back.
        return [_store_audit(event, masked, AuditOutcome.SUPERSEDED, at)]
    if current is not None and current.record.exchange != event.exchange:
        # A rotation replaces the key on the binding's exchange; a key of another exchange is a binding of its own.
        return _rejected(event, masked, [_exchange_kept(current.record.exchange, event.exchange)],
                         action=AuditAction.STORE, at=at)
    if current is None and await deps.tombstones.read(event.user_id, event.binding_id) is not None:
        # A new binding's id is its request's, so a tombstone means this very request was stored, then revoked,
        # and is now redelivered (a crash before our commit): the user's revocation stands.
        return [_store_audit(event, masked, AuditOutcome.ALREADY_REVOKED, at)]

    try:
        wrapped = await deps.vault.unseal(BINDING_SECRET_KEY, event.secret_key_sealed.get_secret_value(),
                                          event.user_id)
    except UnsealFailed:
        problem = reason(ReasonCode.SECRET_UNREADABLE, event.exchange)
        return _rejected(event, masked, [problem], action=AuditAction.STORE, at=at)

    # Claim the access key first: of two users racing for one key, exactly one wins the create-only write.
    if not await deps.index.claim(event.access_key, event.user_id, event.binding_id):
        problem = reason(ReasonCode.KEY_ALREADY_BOUND, event.exchange)
        return _rejected(event, masked, [problem], action=AuditAction.STORE, at=at)

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
    # Noted before the binding is written, so every stored binding has it (the whitelist service reads it there). A
    # binding's exchange never changes (a rotation to another is refused above), so the note is the same every time.
    await deps.exchanges.note_once(event.user_id, event.binding_id, event.exchange)
    record = await _binding_record(deps, event, key, at, current)
    stored = await deps.bindings.save(record, current) if current else await deps.bindings.create_or_read(record)
    if stored.record.request_id != event.request_id:
        # This request was stored, and its binding rotated since; it came again (a redelivery, or an old record
        # sent again). The rotation stands; the claim just made for the replaced key is let go again.
        if stored.record.access_key != event.access_key:
            await deps.index.release(event.access_key, event.user_id, event.binding_id)
        return [_store_audit(event, masked, AuditOutcome.SUPERSEDED, at)]
    return await _stored(deps, event, masked, stored, at)


def _exchange_kept(kept: str, asked: str) -> Reason:
    return reason(ReasonCode.MALFORMED_REQUEST, asked,
                  problem=f"a replacement key must be on the binding's own exchange ({kept}); bind a key of another "
                          "exchange as a new binding")


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
            return _rejected(event, None, [reason(ReasonCode.BINDING_UNKNOWN, None, binding_id=event.binding_id)],
                             action=AuditAction.REVOKE, at=at)
        return _revoked(event, tombstone, at)

    access_key = current.record.access_key
    # Tombstone first: if we crash half-way, the redelivered revoke finishes the job.
    tombstone = await deps.tombstones.leave_once(event.user_id, event.binding_id, Tombstone(
        request_id=event.request_id, access_key_masked=mask_access_key(access_key), revoked_at=at,
        exchange=current.record.exchange))
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
    A page starts no sooner than its rechecks' turn at the validator's pace, so a sweep lasts bindings / pace.

    Several instances (or timers) may request the same sweep: the first to claim it runs it, anyone else's is skipped.
    One sweep runs at a time: a new one is not started while another's progress says unfinished, unless that one
    stood still so long it is taken for abandoned; a page of a sweep so replaced goes no further.
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

    running = await deps.sweeps.in_charge(event.sweep_id, current)
    in_charge: RunningSweep | None
    if current is None and (running is None or running.sweep_id != event.sweep_id):
        # A new sweep. Its first page redelivered finds itself in charge (or its progress written) and goes on.
        if running is not None and not running.over_by(at) and not deps.abandoned(running, at):
            log.info("sweep_not_started", sweep_id=event.sweep_id, running_sweep_id=running.sweep_id)
            return [_sweep_audit(event, AuditOutcome.SWEEP_RUNNING, at, running_sweep_id=running.sweep_id)]
        replaced = running.sweep_id if running is not None and not running.finished else None
        if replaced is not None:
            log.warning("sweep_abandoned_replaced", sweep_id=event.sweep_id, replaced_sweep_id=replaced)
        in_charge = await deps.sweeps.take_charge(RunningSweep(
            sweep_id=event.sweep_id, request_id=event.request_id, taken_at=at, replaced=replaced), running)
    elif (running is not None and running.sweep_id != event.sweep_id
          and not (redone and current is not None and current.record.finished)):
        # Replaced while taken for abandoned: it stops, so two sweeps never run side by side.
        return [_sweep_audit(event, AuditOutcome.SUPERSEDED, at, replaced_by=running.sweep_id)]
    else:
        # This sweep is in charge; or its last page is redone (a crash before its commit) after another sweep
        # started, and its re-checks are still owed; or none is in charge: a sweep started before sweep-running
        # existed goes on until a new sweep takes charge, and its next page then stops (superseded).
        in_charge = running.entry.record if running is not None and running.sweep_id == event.sweep_id else None

    # This page's start: its turn, once the page before it had its own (a redone page started before); the first
    # page's, with the sweep's claim.
    if redone and current is not None:
        begins = current.record.updated_at
    elif current is None:
        begins = max(at, started_at)
    else:
        begins = max(at, current.record.turn_ends_at or at)
    # Waited out in hand: VaultWriterSettings bounds the turn well under the age a record in hand may reach, and
    # never longer than one full page's turn here, whatever clock or settings wrote the turn before.
    wait_s = min(begins.timestamp() - deps.clock(), deps.turn_s(deps.sweep_page_size))
    if wait_s > 0:
        await deps.sleep(wait_s)

    page = await deps.bindings.ids_after(event.after, deps.sweep_page_size)
    last = len(page) < deps.sweep_page_size
    if redone and current is not None:
        progress = current.record  # this page again (a redelivery): counted when it first started
    else:
        before = current.record if current is not None else None
        progress = await deps.sweeps.advance(event.sweep_id, SweepProgress(
            request_id=event.request_id, after=event.after, next_after=None if last else page[-1],
            pages=(before.pages if before else 0) + 1, bindings=(before.bindings if before else 0) + len(page),
            finished=last, updated_at=begins, turn_ends_at=begins + timedelta(seconds=deps.turn_s(len(page)))),
            current)

    rechecks: list[Event] = [RecheckRequested(
        event_id=derived_event_id("recheck", event.request_id, binding.user_id, binding.binding_id),
        sweep_request_id=event.request_id, sweep_started_at=started_at, user_id=binding.user_id,
        binding_id=binding.binding_id,
    ) for binding in page]
    age_s = round(max((begins - started_at).total_seconds(), 0.0), 3)
    reports = []
    if event.after is None:
        replaced_details = {"replaced": in_charge.replaced} if in_charge and in_charge.replaced else {}
        reports.append(_sweep_audit(event, AuditOutcome.STARTED, begins, page_size=deps.sweep_page_size,
                                    rechecks_per_s=deps.rechecks_per_s, **replaced_details))
    reports.append(_sweep_audit(event, AuditOutcome.PAGE_REQUESTED, begins, page=progress.pages, bindings=len(page),
                                bindings_so_far=progress.bindings, age_s=age_s))
    if last:
        # Its end is its last page's turn's end: when the validator re-checks the last of its bindings.
        ends = progress.turn_ends_at or begins
        reports.append(_sweep_audit(event, AuditOutcome.FINISHED, begins, pages=progress.pages,
                                    bindings=progress.bindings,
                                    duration_s=round(max((ends - started_at).total_seconds(), 0.0), 3)))
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
        details |= {"rotated_from": record.rotated_from,
                    "next_step": delete_key_step(event.exchange, record.rotated_from)}
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
               exchange=event.exchange, access_key_masked=masked,
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
               exchange=tombstone.exchange, access_key_masked=masked,
               details={"next_step": delete_key_step(tombstone.exchange, masked)}),
        audit(service=SERVICE, action=AuditAction.REVOKE, outcome=AuditOutcome.REVOKED, cause=event, at=at,
              user_id=event.user_id, request_id=event.request_id, binding_id=event.binding_id,
              access_key_masked=masked),
    ]


def _rejected(event: BindingValidated | RevokeRequested, masked: str | None, problems: list[Reason],
              action: AuditAction, at: datetime) -> list[Event]:
    kind = RequestKind.REVOKE if action is AuditAction.REVOKE else RequestKind.BIND
    exchange = event.exchange if isinstance(event, BindingValidated) else None
    return rejected(service=SERVICE, action=action, cause=event, user_id=event.user_id, request_id=event.request_id,
                    binding_id=event.binding_id, exchange=exchange, reasons=problems, occurred_at=at, kind=kind,
                    access_key_masked=masked)
