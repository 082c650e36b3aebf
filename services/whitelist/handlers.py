"""whitelist: keeps, per binding, exactly the pairs the bot may trade, and says when a binding is active.

A binding is `active` only when it is stored and its whitelist is non-empty and valid; otherwise it is
`awaiting_whitelist`. Pairs may come with the binding request (carried on binding.stored) or later on
whitelist.requested, in either order; an explicit whitelist request wins over pairs in the bind request,
because the app can only send it after it learnt the binding id, i.e. later."""

from dataclasses import dataclass
from typing import Any

from shared.contracts.events import BindingStored, MalformedEvent, WhitelistRequested, utc_now
from shared.contracts.pairs import normalise_pairs
from shared.contracts.reasons import Reason, ReasonCode
from shared.contracts.states import BindingState
from shared.errors import TransientError
from shared.outcomes import Outgoing, audit, malformed, rejected, status
from shared.vault import CasConflict, VaultPort
from shared.vault_layout import binding_path, whitelist_path
from services.whitelist.catalog import SymbolCatalog

SERVICE = "whitelist"


class CatalogNotLoaded(TransientError):
    """HTX's symbol list has not been loaded yet: wait rather than judge pairs blind."""


@dataclass
class WhitelistDeps:
    vault: VaultPort
    catalog: SymbolCatalog


async def handle_whitelist_requested(event: WhitelistRequested, deps: WhitelistDeps) -> list[Outgoing]:
    pairs = normalise_pairs(event.trading_pairs)
    problems = _check(deps.catalog, pairs)
    if problems:
        return rejected(service=SERVICE, action="whitelist", user_id=event.user_id, request_id=event.request_id,
                        binding_id=event.binding_id, reasons=problems,
                        details={"scope": "whitelist", "whitelist_unchanged": True})
    await _save(deps.vault, event.user_id, event.binding_id, pairs, event.request_id)
    if await deps.vault.read_metadata(binding_path(event.user_id, event.binding_id)) is None:
        # The binding is not stored yet (or was revoked): its own pipeline will pick this whitelist up.
        return [
            status(user_id=event.user_id, state=BindingState.RECEIVED, request_id=event.request_id,
                   binding_id=event.binding_id, details={"scope": "whitelist", "waiting_for": "binding", "pairs": pairs}),
            _audit(event.user_id, event.request_id, event.binding_id, "saved_pending_binding", [], pairs),
        ]
    return [
        status(user_id=event.user_id, state=BindingState.ACTIVE, request_id=event.request_id,
               binding_id=event.binding_id, details={"scope": "whitelist", "pairs": pairs}),
        _audit(event.user_id, event.request_id, event.binding_id, "active", [], pairs),
    ]


async def handle_binding_stored(event: BindingStored, deps: WhitelistDeps) -> list[Outgoing]:
    saved = await deps.vault.read(whitelist_path(event.user_id, event.binding_id))
    if saved is not None and saved.data.get("request_id") != event.request_id:
        pairs = list(saved.data["pairs"])
    else:
        pairs = normalise_pairs(event.trading_pairs or [])
    problems = _check(deps.catalog, pairs)
    if problems:
        state = BindingState.AWAITING_WHITELIST
    else:
        await _save(deps.vault, event.user_id, event.binding_id, pairs, event.request_id)
        expiring = any(w.code == ReasonCode.KEY_EXPIRING for w in event.warnings)
        state = BindingState.EXPIRING if expiring else BindingState.ACTIVE
    reasons = [*problems, *event.warnings]
    return [
        status(user_id=event.user_id, state=state, request_id=event.request_id, binding_id=event.binding_id,
               reasons=reasons, access_key_masked=event.access_key_masked, details={"pairs": pairs}),
        _audit(event.user_id, event.request_id, event.binding_id, state.value, reasons, pairs),
    ]


def on_malformed(error: MalformedEvent) -> list[Outgoing]:
    return malformed(error, service=SERVICE, action="whitelist", details={"scope": "whitelist"})


def _check(catalog: SymbolCatalog, pairs: list[str]) -> list[Reason]:
    if not catalog.loaded:
        raise CatalogNotLoaded("HTX symbol list not loaded yet")
    return catalog.problems(pairs)


async def _save(vault: VaultPort, user_id: str, binding_id: str, pairs: list[str], request_id: str) -> None:
    """Write the whitelist unless this very request already did (redelivery makes no new version)."""
    path = whitelist_path(user_id, binding_id)
    current = await vault.read(path)
    if current is not None and current.data.get("request_id") == request_id:
        return
    record: dict[str, Any] = {"pairs": pairs, "request_id": request_id, "updated_at": utc_now().isoformat()}
    try:
        await vault.write(path, record, cas=current.version if current else 0)
    except CasConflict:
        # Someone wrote in between (another instance after a rebalance): retry from a fresh read.
        raise TransientError("whitelist changed while writing") from None


def _audit(user_id: str, request_id: str, binding_id: str, outcome: str, reasons: list[Reason],
           pairs: list[str]) -> Outgoing:
    return audit(service=SERVICE, action="whitelist", outcome=outcome, user_id=user_id, request_id=request_id,
                 binding_id=binding_id, reasons=reasons, details={"pairs": pairs})
