"""whitelist: keeps, per binding, exactly the pairs the bot may trade and the key's last known health, and
says what state the binding is in (active, awaiting_whitelist, expiring, invalid).

A binding is `active` only when it is stored and its whitelist is non-empty and valid; otherwise it is
`awaiting_whitelist`. Pairs may come with the binding request (carried on binding.stored) or later on
whitelist.requested, in either order; an explicit whitelist request wins over pairs in the bind request,
because the app can only send it after it learnt the binding id, i.e. later. Storage mechanics and write
conflicts are the stores' (shared.adapters.vault.stores)."""

from dataclasses import dataclass, field
from datetime import datetime

from services.whitelist.catalog import Catalogs
from services.whitelist.health import binding_state, key_health
from shared.adapters.vault.client import VaultPort
from shared.adapters.vault.records import KeyHealth, WhitelistRecord
from shared.adapters.vault.stores import BindingExchanges, Bindings, Tombstones, Versioned, Whitelists
from shared.contracts.audit import AuditAction, AuditOutcome
from shared.contracts.events import (
    AuditEvent,
    BindingRechecked,
    BindingStored,
    Event,
    MalformedEvent,
    WhitelistRequested,
)
from shared.contracts.outcomes import audit, malformed, rejected, status
from shared.contracts.pairs import normalise_pairs
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.contracts.routing import Party
from shared.contracts.states import BindingState, RequestKind

SERVICE = Party.WHITELIST
# Whitelists a user may keep for bindings not stored (yet): pairs sent right after a bind request wait for it.
MAX_PENDING_WHITELISTS = 5


@dataclass
class WhitelistDeps:
    vault: VaultPort
    catalogs: Catalogs
    bindings: Bindings = field(init=False)
    whitelists: Whitelists = field(init=False)
    tombstones: Tombstones = field(init=False)
    exchanges: BindingExchanges = field(init=False)

    def __post_init__(self) -> None:
        self.exchanges = BindingExchanges(self.vault)
        self.bindings = Bindings(self.vault)
        self.whitelists = Whitelists(self.vault)
        self.tombstones = Tombstones(self.vault)


async def handle_whitelist_requested(event: WhitelistRequested, deps: WhitelistDeps, *,
                                     at: datetime) -> list[Event]:
    pairs = normalise_pairs(event.trading_pairs)
    stored = await deps.bindings.exists(event.user_id, event.binding_id)
    # The stored binding's exchange, as Vault holds it; none while the binding is not stored
    # (services/whitelist/catalog.py).
    exchange = await deps.exchanges.of_stored(event.user_id, event.binding_id) if stored else None
    problems = deps.catalogs.problems(pairs, exchange)
    if problems:
        return rejected(service=SERVICE, action=AuditAction.WHITELIST, cause=event, user_id=event.user_id,
                        request_id=event.request_id, binding_id=event.binding_id, exchange=exchange,
                        reasons=problems, occurred_at=at, kind=RequestKind.WHITELIST,
                        details={"scope": "whitelist", "whitelist_unchanged": True})
    current = await deps.whitelists.read(event.user_id, event.binding_id)
    if current is not None and _older(event.requested_at, current.record.pairs_as_of):
        # Asked before the pairs in force were (an old request sent again): they stay.
        return [_audit(event, at, AuditOutcome.SUPERSEDED, [], pairs)]
    if not stored and current is None and (
            await _pending_whitelists(deps, event.user_id) >= MAX_PENDING_WHITELISTS
            or await deps.tombstones.read(event.user_id, event.binding_id) is not None):
        # Pairs may come before their binding is stored, but not for one revoked (a request sent again after
        # the revocation), and binding ids that never come (another user's, made up) must not pile up in Vault.
        return rejected(service=SERVICE, action=AuditAction.WHITELIST, cause=event, user_id=event.user_id,
                        request_id=event.request_id, binding_id=event.binding_id, exchange=None, occurred_at=at,
                        kind=RequestKind.WHITELIST,
                        reasons=[reason(ReasonCode.BINDING_UNKNOWN, None, binding_id=event.binding_id)],
                        details={"scope": "whitelist", "whitelist_unchanged": True})
    record = await deps.whitelists.save(event.user_id, event.binding_id, current, event.request_id, at, pairs=pairs,
                                        pairs_as_of=event.requested_at)
    # When the whitelist was written: a status sent again after a redelivery keeps that time.
    saved_at = record.updated_at
    if not stored:
        # The binding is not stored yet (or was revoked): its own pipeline will pick this whitelist up.
        return [
            status(user_id=event.user_id, state=BindingState.RECEIVED, request_id=event.request_id,
                   binding_id=event.binding_id, occurred_at=saved_at, kind=RequestKind.WHITELIST, exchange=None,
                   details={"scope": "whitelist", "waiting_for": "binding", "pairs": pairs}),
            _audit(event, at, AuditOutcome.SAVED_PENDING_BINDING, [], pairs),
        ]
    state = binding_state(record.key_health, whitelist_valid=True)
    return [
        status(user_id=event.user_id, state=state, request_id=event.request_id, binding_id=event.binding_id,
               occurred_at=saved_at, kind=RequestKind.WHITELIST, exchange=exchange,
               details={"scope": "whitelist", "pairs": pairs}),
        _audit(event, at, AuditOutcome.of_state(state), [], pairs),
    ]


async def handle_binding_stored(event: BindingStored, deps: WhitelistDeps, *, at: datetime) -> list[Event]:
    """The binding's state once its key is stored, judged from what Vault holds now: a copy of binding.stored
    that is not about the key stored now (rotated since), or older than a recheck's judgement, changes nothing."""
    stored = await deps.bindings.stored_version(event.user_id, event.binding_id)
    if stored is None:
        # Revoked since it was stored (this is a redelivery): no whitelist for it, and no `active` after `revoked`.
        return [_stored_audit(event, AuditOutcome.ALREADY_REVOKED, at)]
    if stored.version != event.vault_version:
        return [_stored_audit(event, AuditOutcome.SUPERSEDED, at)]
    # Just validated: the key is as healthy as the validator found it, as of its write in Vault.
    health, health_as_of = key_health([], event.warnings), stored.written_at
    pairs = normalise_pairs(event.trading_pairs or [])
    # The exchange as Vault holds it for the binding, whatever the event says.
    exchange = await deps.exchanges.of_stored(event.user_id, event.binding_id)
    problems = deps.catalogs.problems(pairs, exchange)
    saved: Versioned[WhitelistRecord] | None
    if pairs and not problems:
        # Usually there is no whitelist yet: offer ours create-only, one Vault call. What holds the path instead
        # (pairs saved before the binding, a rotation, a redelivery) is decided on below.
        saved = await deps.whitelists.create_or_read(event.user_id, event.binding_id, WhitelistRecord(
            pairs=pairs, health=health, health_as_of=health_as_of, applied_binding_version=stored.version,
            request_id=event.request_id, updated_at=at))
    else:
        saved = await deps.whitelists.read(event.user_id, event.binding_id)
    if saved is not None and _older(stored.written_at, saved.record.health_as_of):
        # A recheck judged this very key since the validator did: its judgement stands. It may even have reached us
        # before this binding's own store did (a sweep that started meanwhile).
        health, health_as_of = saved.record.key_health, saved.record.health_as_of or health_as_of
        if saved.record.request_id != event.request_id and saved.record.applied_binding_version == stored.version:
            # This event was applied before: a copy delivered late changes nothing.
            return [_stored_audit(event, AuditOutcome.SUPERSEDED, at)]
    if saved is not None and saved.record.request_id != event.request_id:
        if saved.record.health_as_of == stored.written_at:
            # Applied before, and the whitelist changed since by a request of its own, which said where the
            # binding stands: a copy of this event says nothing new.
            return [_stored_audit(event, AuditOutcome.ALREADY_APPLIED, at)]
        if saved.record.pairs:
            # An explicit whitelist request wins over the pairs of the bind request (module docstring).
            pairs = list(saved.record.pairs)
            problems = deps.catalogs.problems(pairs, exchange)
    # Written even when the pairs cannot be the whitelist (they are then left as they were): the record says which
    # version of the binding this event was applied for, so a copy delivered after a recheck is told apart.
    record = await deps.whitelists.save(event.user_id, event.binding_id, saved, event.request_id, at,
                                        pairs=None if problems else pairs, health=health, health_as_of=health_as_of,
                                        applied_binding_version=stored.version)
    state = binding_state(health, whitelist_valid=not problems)
    reasons = [*problems, *event.warnings]
    return [
        status(user_id=event.user_id, state=state, request_id=event.request_id, binding_id=event.binding_id,
               occurred_at=record.updated_at, kind=RequestKind.BIND,
               exchange=exchange, reasons=reasons, access_key_masked=event.access_key_masked,
               details={"pairs": pairs}),
        _audit(event, at, AuditOutcome.of_state(state), reasons, pairs),
    ]


async def handle_binding_rechecked(event: BindingRechecked, deps: WhitelistDeps, *, at: datetime) -> list[Event]:
    """A key-health re-check: a status (and audit) only when the key's health changed, and only from a check
    newer than the fact the health rests on now."""
    if not event.checked:
        return []  # the exchange could not be asked: nothing is known, nothing changes (the validator audited it)
    stored = await deps.bindings.stored_version(event.user_id, event.binding_id)
    if stored is None:
        return []  # revoked since the sweep started
    current = await deps.whitelists.read(event.user_id, event.binding_id)
    # The sweep's start in Vault: on the same clock as the binding's write. A recheck without it is ordered
    # after nothing, so it changes nothing.
    as_of = event.sweep_started_at
    known_as_of = (current.record.health_as_of if current else None) or stored.written_at
    if not _older(known_as_of, as_of):
        # A sweep that started before the key was stored, or before the judgement in force: it says nothing new.
        return [audit(service=SERVICE, action=AuditAction.KEY_HEALTH, outcome=AuditOutcome.STALE_RECHECK_IGNORED,
                      cause=event, at=at, user_id=event.user_id, request_id=event.sweep_request_id,
                      binding_id=event.binding_id,
                      access_key_masked=event.access_key_masked)]
    previous = current.record.key_health if current else KeyHealth.HEALTHY
    health = key_health(event.rejections, event.warnings)
    if health is previous:
        return []
    record = await deps.whitelists.save(event.user_id, event.binding_id, current,
                                        f"recheck:{event.sweep_request_id}", at, health=health, health_as_of=as_of)
    exchange = await deps.exchanges.of_stored(event.user_id, event.binding_id)
    pair_problems = deps.catalogs.problems(record.pairs, exchange)
    state = binding_state(health, whitelist_valid=not pair_problems)
    reasons = [*event.rejections, *event.warnings, *(pair_problems if health is not KeyHealth.INVALID else [])]
    return [
        status(user_id=event.user_id, state=state, request_id=event.sweep_request_id, binding_id=event.binding_id,
               occurred_at=record.updated_at, kind=RequestKind.SWEEP, exchange=exchange, reasons=reasons,
               access_key_masked=event.access_key_masked,
               details={"scope": "key_health", "previous_health": previous.value, "health": health.value}),
        audit(service=SERVICE, action=AuditAction.KEY_HEALTH, outcome=AuditOutcome.of_state(state), cause=event, at=at,
              user_id=event.user_id, request_id=event.sweep_request_id, binding_id=event.binding_id,
              access_key_masked=event.access_key_masked, reasons=reasons,
              details={"previous_health": previous.value, "health": health.value}),
    ]


def on_malformed(error: MalformedEvent, *, at: datetime) -> list[Event]:
    return malformed(error, at=at, service=SERVICE, action=AuditAction.WHITELIST, kind=None,
                     details={"scope": "whitelist"})


async def _pending_whitelists(deps: WhitelistDeps, user_id: str) -> int:
    """How many of the user's whitelists wait for a binding that is not stored."""
    return sum([not await deps.bindings.exists(user_id, binding_id)
                for binding_id in await deps.whitelists.binding_ids(user_id)])


def _older(fact: datetime | None, than: datetime | None) -> bool:
    """Whether a fact is older than another: one of unknown time is older than any of a known time (a producer
    that leaves the order out cannot overrule one that gives it), and nothing is older than an unknown time."""
    if than is None:
        return False
    return fact is None or fact < than


def _stored_audit(event: BindingStored, outcome: AuditOutcome, at: datetime) -> AuditEvent:
    return audit(service=SERVICE, action=AuditAction.WHITELIST, outcome=outcome, cause=event, at=at,
                 user_id=event.user_id, request_id=event.request_id, binding_id=event.binding_id,
                 access_key_masked=event.access_key_masked)


def _audit(event: WhitelistRequested | BindingStored, at: datetime, outcome: AuditOutcome, reasons: list[Reason],
           pairs: list[str]) -> AuditEvent:
    return audit(service=SERVICE, action=AuditAction.WHITELIST, outcome=outcome, cause=event, at=at,
                 user_id=event.user_id, request_id=event.request_id, binding_id=event.binding_id, reasons=reasons,
                 details={"pairs": pairs})
