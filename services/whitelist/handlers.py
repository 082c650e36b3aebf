"""whitelist: keeps, per binding, exactly the pairs the bot may trade and the key's last known health, and
says what state the binding is in (active, awaiting_whitelist, expiring, invalid).

A binding is `active` only when it is stored and its whitelist is non-empty and valid; otherwise it is
`awaiting_whitelist`. Pairs may come with the binding request (carried on binding.stored) or later on
whitelist.requested, in either order; an explicit whitelist request wins over pairs in the bind request,
because the app can only send it after it learnt the binding id, i.e. later."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.contracts.events import (
    AuditEvent, BindingRechecked, BindingStored, Event, MalformedEvent, WhitelistRequested,
)
from shared.contracts.pairs import normalise_pairs
from shared.contracts.reasons import Reason
from shared.contracts.states import BindingState
from shared.runtime.errors import TransientError
from shared.contracts.outcomes import audit, malformed, rejected, status
from shared.adapters.vault.client import CasConflict, KvEntry, VaultPort
from shared.adapters.vault.layout import binding_path, whitelist_path
from services.whitelist.catalog import SymbolCatalog
from services.whitelist.health import KeyHealth, binding_state, key_health

SERVICE = "whitelist"


class CatalogNotLoaded(TransientError):
    """HTX's symbol list has not been loaded yet: wait rather than judge pairs blind."""


class WhitelistChanged(TransientError):
    """Another write came between our read of the whitelist and our write: try again from a fresh read."""


@dataclass
class WhitelistDeps:
    vault: VaultPort
    catalog: SymbolCatalog


async def handle_whitelist_requested(event: WhitelistRequested, deps: WhitelistDeps, *,
                                     at: datetime) -> list[Event]:
    pairs = normalise_pairs(event.trading_pairs)
    problems = _check(deps.catalog, pairs)
    if problems:
        return rejected(service=SERVICE, action="whitelist", user_id=event.user_id, request_id=event.request_id,
                        binding_id=event.binding_id, reasons=problems, occurred_at=at,
                        details={"scope": "whitelist", "whitelist_unchanged": True})
    current = await deps.vault.read(whitelist_path(event.user_id, event.binding_id))
    record = await _save(deps.vault, event.user_id, event.binding_id, current, event.request_id, at, pairs=pairs)
    # When the whitelist was written: a status sent again after a redelivery keeps that time.
    saved_at = datetime.fromisoformat(record["updated_at"])
    if await deps.vault.read_metadata(binding_path(event.user_id, event.binding_id)) is None:
        # The binding is not stored yet (or was revoked): its own pipeline will pick this whitelist up.
        return [
            status(user_id=event.user_id, state=BindingState.RECEIVED, request_id=event.request_id,
                   binding_id=event.binding_id, occurred_at=saved_at,
                   details={"scope": "whitelist", "waiting_for": "binding", "pairs": pairs}),
            _audit(event.user_id, event.request_id, event.binding_id, "saved_pending_binding", [], pairs),
        ]
    state = binding_state(KeyHealth(record["health"]), whitelist_valid=True)
    return [
        status(user_id=event.user_id, state=state, request_id=event.request_id,
               binding_id=event.binding_id, occurred_at=saved_at, details={"scope": "whitelist", "pairs": pairs}),
        _audit(event.user_id, event.request_id, event.binding_id, state.value, [], pairs),
    ]


async def handle_binding_stored(event: BindingStored, deps: WhitelistDeps, *, at: datetime) -> list[Event]:
    if await deps.vault.read_metadata(binding_path(event.user_id, event.binding_id)) is None:
        # Revoked since it was stored (this is a redelivery): no whitelist for it, and no `active` after `revoked`.
        return [audit(service=SERVICE, action="whitelist", outcome="already_revoked", user_id=event.user_id,
                      request_id=event.request_id, binding_id=event.binding_id,
                      access_key_masked=event.access_key_masked)]
    # Just validated: the key is as healthy as the validator found it.
    health = key_health([], event.warnings)
    pairs = normalise_pairs(event.trading_pairs or [])
    problems = _check(deps.catalog, pairs)
    record = None
    if pairs and not problems:
        # Usually there is no whitelist yet: write it create-only, one Vault call. A conflict (pairs saved
        # before the binding, a rotation, a redelivery) sends us reading, as below.
        try:
            record = await _save(deps.vault, event.user_id, event.binding_id, None, event.request_id, at,
                                 pairs=pairs, health=health)
        except WhitelistChanged:
            pass
    if record is None:
        saved = await deps.vault.read(whitelist_path(event.user_id, event.binding_id))
        if saved is not None and saved.data.get("request_id") != event.request_id and saved.data["pairs"]:
            # An explicit whitelist request wins over the pairs of the bind request (module docstring).
            pairs = list(saved.data["pairs"])
            problems = _check(deps.catalog, pairs)
        if not problems:
            record = await _save(deps.vault, event.user_id, event.binding_id, saved, event.request_id, at,
                                 pairs=pairs, health=health)
    occurred_at = datetime.fromisoformat(record["updated_at"]) if record else at
    state = binding_state(health, whitelist_valid=not problems)
    reasons = [*problems, *event.warnings]
    return [
        status(user_id=event.user_id, state=state, request_id=event.request_id, binding_id=event.binding_id,
               occurred_at=occurred_at, reasons=reasons, access_key_masked=event.access_key_masked,
               details={"pairs": pairs}),
        _audit(event.user_id, event.request_id, event.binding_id, state.value, reasons, pairs),
    ]


async def handle_binding_rechecked(event: BindingRechecked, deps: WhitelistDeps, *, at: datetime) -> list[Event]:
    """A key-health re-check: a status (and audit) only when the key's health changed."""
    if not event.checked:
        return []  # HTX could not be asked: nothing is known, nothing changes (the validator audited it)
    if await deps.vault.read_metadata(binding_path(event.user_id, event.binding_id)) is None:
        return []  # revoked since the sweep started
    current = await deps.vault.read(whitelist_path(event.user_id, event.binding_id))
    previous = KeyHealth(current.data.get("health", KeyHealth.HEALTHY)) if current else KeyHealth.HEALTHY
    health = key_health(event.rejections, event.warnings)
    if health is previous:
        return []
    record = await _save(deps.vault, event.user_id, event.binding_id, current, f"recheck:{event.sweep_request_id}",
                         at, health=health)
    pair_problems = _check(deps.catalog, record["pairs"])
    state = binding_state(health, whitelist_valid=not pair_problems)
    reasons = [*event.rejections, *event.warnings, *(pair_problems if health is not KeyHealth.INVALID else [])]
    return [
        status(user_id=event.user_id, state=state, request_id=event.sweep_request_id, binding_id=event.binding_id,
               occurred_at=datetime.fromisoformat(record["updated_at"]), reasons=reasons,
               access_key_masked=event.access_key_masked,
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


async def _save(vault: VaultPort, user_id: str, binding_id: str, current: KvEntry | None, request_id: str,
                at: datetime, **changes: Any) -> dict[str, Any]:
    """Apply changes to the binding's whitelist record as just read (current), keeping the rest; a redelivered
    request (same request id already written) makes no new version. Returns the record as stored."""
    if current is not None and current.data.get("request_id") == request_id:
        return current.data
    base: dict[str, Any] = current.data if current else {"pairs": [], "health": KeyHealth.HEALTHY.value}
    record = {**base, **changes, "request_id": request_id, "updated_at": at.isoformat()}
    try:
        await vault.write(whitelist_path(user_id, binding_id), record, cas=current.version if current else 0)
    except CasConflict:
        # Someone wrote in between (another instance after a rebalance): retry from a fresh read.
        raise WhitelistChanged("whitelist changed while writing") from None
    return record


def _audit(user_id: str, request_id: str, binding_id: str, outcome: str, reasons: list[Reason],
           pairs: list[str]) -> AuditEvent:
    return audit(service=SERVICE, action="whitelist", outcome=outcome, user_id=user_id, request_id=request_id,
                 binding_id=binding_id, reasons=reasons, details={"pairs": pairs})
