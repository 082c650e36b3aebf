"""whitelist: keeps, per binding, exactly the pairs the bot may trade and the key's last known health, and
says what state the binding is in (active, awaiting_whitelist, expiring, invalid).

A binding is `active` only when it is stored and its whitelist is non-empty and valid; otherwise it is
`awaiting_whitelist`. Pairs may come with the binding request (carried on binding.stored) or later on
whitelist.requested, in either order; an explicit whitelist request wins over pairs in the bind request,
because the app can only send it after it learnt the binding id, i.e. later. Storage mechanics and write
conflicts are the stores' (shared.adapters.vault.stores)."""

from dataclasses import dataclass, field
from datetime import datetime

from services.whitelist.catalog import SymbolCatalog
from services.whitelist.health import binding_state, key_health
from shared.adapters.vault.client import VaultPort
from shared.adapters.vault.records import KeyHealth, WhitelistRecord
from shared.adapters.vault.stores import Bindings, Versioned, Whitelists
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
from shared.contracts.reasons import Reason
from shared.contracts.routing import Party
from shared.contracts.states import BindingState
from shared.runtime.errors import TransientError

SERVICE = Party.WHITELIST


class CatalogNotLoaded(TransientError):
    """HTX's symbol list has not been loaded yet: wait rather than judge pairs blind."""


@dataclass
class WhitelistDeps:
    vault: VaultPort
    catalog: SymbolCatalog
    bindings: Bindings = field(init=False)
    whitelists: Whitelists = field(init=False)

    def __post_init__(self) -> None:
        self.bindings = Bindings(self.vault)
        self.whitelists = Whitelists(self.vault)


async def handle_whitelist_requested(event: WhitelistRequested, deps: WhitelistDeps, *,
                                     at: datetime) -> list[Event]:
    pairs = normalise_pairs(event.trading_pairs)
    problems = _check(deps.catalog, pairs)
    if problems:
        return rejected(service=SERVICE, action="whitelist", user_id=event.user_id, request_id=event.request_id,
                        binding_id=event.binding_id, reasons=problems, occurred_at=at,
                        details={"scope": "whitelist", "whitelist_unchanged": True})
    current = await deps.whitelists.read(event.user_id, event.binding_id)
    record = await deps.whitelists.save(event.user_id, event.binding_id, current, event.request_id, at, pairs=pairs)
    # When the whitelist was written: a status sent again after a redelivery keeps that time.
    saved_at = record.updated_at
    if not await deps.bindings.exists(event.user_id, event.binding_id):
        # The binding is not stored yet (or was revoked): its own pipeline will pick this whitelist up.
        return [
            status(user_id=event.user_id, state=BindingState.RECEIVED, request_id=event.request_id,
                   binding_id=event.binding_id, occurred_at=saved_at,
                   details={"scope": "whitelist", "waiting_for": "binding", "pairs": pairs}),
            _audit(event.user_id, event.request_id, event.binding_id, "saved_pending_binding", [], pairs),
        ]
    state = binding_state(record.key_health, whitelist_valid=True)
    return [
        status(user_id=event.user_id, state=state, request_id=event.request_id, binding_id=event.binding_id,
               occurred_at=saved_at, details={"scope": "whitelist", "pairs": pairs}),
        _audit(event.user_id, event.request_id, event.binding_id, state.value, [], pairs),
    ]


async def handle_binding_stored(event: BindingStored, deps: WhitelistDeps, *, at: datetime) -> list[Event]:
    if not await deps.bindings.exists(event.user_id, event.binding_id):
        # Revoked since it was stored (this is a redelivery): no whitelist for it, and no `active` after `revoked`.
        return [audit(service=SERVICE, action="whitelist", outcome="already_revoked", user_id=event.user_id,
                      request_id=event.request_id, binding_id=event.binding_id,
                      access_key_masked=event.access_key_masked)]
    # Just validated: the key is as healthy as the validator found it.
    health = key_health([], event.warnings)
    pairs = normalise_pairs(event.trading_pairs or [])
    problems = _check(deps.catalog, pairs)
    saved: Versioned[WhitelistRecord] | None
    if pairs and not problems:
        # Usually there is no whitelist yet: offer ours create-only, one Vault call. What holds the path instead
        # (pairs saved before the binding, a rotation, a redelivery) is decided on below.
        saved = await deps.whitelists.create_or_read(event.user_id, event.binding_id, WhitelistRecord(
            pairs=pairs, health=health, request_id=event.request_id, updated_at=at))
    else:
        saved = await deps.whitelists.read(event.user_id, event.binding_id)
    if saved is not None and saved.record.request_id != event.request_id and saved.record.pairs:
        # An explicit whitelist request wins over the pairs of the bind request (module docstring).
        pairs = list(saved.record.pairs)
        problems = _check(deps.catalog, pairs)
    record = None if problems else await deps.whitelists.save(event.user_id, event.binding_id, saved,
                                                              event.request_id, at, pairs=pairs, health=health)
    state = binding_state(health, whitelist_valid=not problems)
    reasons = [*problems, *event.warnings]
    return [
        status(user_id=event.user_id, state=state, request_id=event.request_id, binding_id=event.binding_id,
               occurred_at=record.updated_at if record else at, reasons=reasons,
               access_key_masked=event.access_key_masked, details={"pairs": pairs}),
        _audit(event.user_id, event.request_id, event.binding_id, state.value, reasons, pairs),
    ]


async def handle_binding_rechecked(event: BindingRechecked, deps: WhitelistDeps, *, at: datetime) -> list[Event]:
    """A key-health re-check: a status (and audit) only when the key's health changed."""
    if not event.checked:
        return []  # HTX could not be asked: nothing is known, nothing changes (the validator audited it)
    if not await deps.bindings.exists(event.user_id, event.binding_id):
        return []  # revoked since the sweep started
    current = await deps.whitelists.read(event.user_id, event.binding_id)
    previous = current.record.key_health if current else KeyHealth.HEALTHY
    health = key_health(event.rejections, event.warnings)
    if health is previous:
        return []
    record = await deps.whitelists.save(event.user_id, event.binding_id, current,
                                        f"recheck:{event.sweep_request_id}", at, health=health)
    pair_problems = _check(deps.catalog, record.pairs)
    state = binding_state(health, whitelist_valid=not pair_problems)
    reasons = [*event.rejections, *event.warnings, *(pair_problems if health is not KeyHealth.INVALID else [])]
    return [
        status(user_id=event.user_id, state=state, request_id=event.sweep_request_id, binding_id=event.binding_id,
               occurred_at=record.updated_at, reasons=reasons, access_key_masked=event.access_key_masked,
               details={"scope": "key_health", "previous_health": previous.value, "health": health.value}),
        audit(service=SERVICE, action="key_health", outcome=state.value, user_id=event.user_id,
              request_id=event.sweep_request_id, binding_id=event.binding_id,
              access_key_masked=event.access_key_masked, reasons=reasons,
              details={"previous_health": previous.value, "health": health.value}),
    ]


def on_malformed(error: MalformedEvent, *, at: datetime) -> list[Event]:
    return malformed(error, at=at, service=SERVICE, action="whitelist", details={"scope": "whitelist"})


def _check(catalog: SymbolCatalog, pairs: list[str]) -> list[Reason]:
    if not catalog.loaded:
        raise CatalogNotLoaded("HTX symbol list not loaded yet")
    return catalog.problems(pairs)


def _audit(user_id: str, request_id: str, binding_id: str, outcome: str, reasons: list[Reason],
           pairs: list[str]) -> AuditEvent:
    return audit(service=SERVICE, action="whitelist", outcome=outcome, user_id=user_id, request_id=request_id,
                 binding_id=binding_id, reasons=reasons, details={"pairs": pairs})
