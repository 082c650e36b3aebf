"""vault-writer: stores validated credentials in KV v2 exactly once, keeps one binding per access key
across all users, rotates and revokes; and starts key-health sweeps (it is the service that may list and
read stored bindings)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.contracts.events import (
    BindingStored, BindingValidated, Event, MalformedEvent, RecheckRequested, RevokeRequested, SweepRequested,
    derived_event_id,
)
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.contracts.states import BindingState
from shared.contracts.outcomes import audit, malformed, rejected, status
from shared.contracts.secrets import mask_access_key
from shared.adapters.vault.client import CasConflict, KvEntry, UnsealFailed, VaultPort
from shared.adapters.vault.layout import (
    ACCESS_KEY_INDEX_KEY, BINDING_SECRET_KEY, access_key_index_path, binding_path, revocation_path, sweep_marker_path,
    whitelist_path,
)
from services.vault_writer.records import (
    credential_record, index_holds, index_record, revocation_record, sweep_marker,
)

SERVICE = "vault-writer"
DELETE_ON_HTX = ("Delete the key {key} on HTX too: HTX app → avatar → Settings → Trading Settings → "
                 "API Management → Delete.")


@dataclass
class VaultWriterDeps:
    vault: VaultPort


async def handle_binding_validated(event: BindingValidated, deps: VaultWriterDeps, *, at: datetime) -> list[Event]:
    vault = deps.vault
    masked = mask_access_key(event.access_key)
    path = binding_path(event.user_id, event.binding_id)
    # Only a rotation replaces a stored binding, so only a rotation reads it first. A new binding is written
    # create-only: one Vault call fewer on the usual path, and a conflict means we stored it before.
    current = await vault.read(path) if event.replaces_binding_id else None
    if current is not None and current.data.get("request_id") == event.request_id:
        return await _stored_before(vault, event, path, masked, current)
    if event.replaces_binding_id and current is None:
        return _rejected(event.user_id, event.request_id, event.binding_id, masked,
                         [reason(ReasonCode.BINDING_UNKNOWN, binding_id=event.binding_id)], action="store", at=at)
    if current is None and await vault.read(revocation_path(event.user_id, event.binding_id)) is not None:
        # A new binding's id is its request's, so a tombstone means this very request was stored, then revoked,
        # and is now redelivered (a crash before our commit): the user's revocation stands.
        return [audit(service=SERVICE, action="store", outcome="already_revoked", user_id=event.user_id,
                      request_id=event.request_id, binding_id=event.binding_id, access_key_masked=masked)]

    try:
        secret_key = await vault.unseal(BINDING_SECRET_KEY, event.secret_key_sealed.get_secret_value(), event.user_id)
    except UnsealFailed:
        return _rejected(event.user_id, event.request_id, event.binding_id, masked,
                         [reason(ReasonCode.SECRET_UNREADABLE)], action="store", at=at)

    # Claim the access key first: of two users racing for one key, exactly one wins the create-only write.
    if not await _claim_index(vault, await _index_path(vault, event.access_key), event.user_id, event.binding_id):
        return _rejected(event.user_id, event.request_id, event.binding_id, masked,
                         [reason(ReasonCode.KEY_ALREADY_BOUND)], action="store", at=at)

    replaced = None
    if current is not None and current.data["access_key"] != event.access_key:
        old_key = current.data["access_key"]
        replaced = {"rotated_from": mask_access_key(old_key), "replaced_index_path": await _index_path(vault, old_key)}
    record = credential_record(event, secret_key, at, replaced)
    try:
        version = await vault.write(path, record, cas=current.version if current else 0)
    except CasConflict:
        written = await vault.read(path)
        if written is None or written.data.get("request_id") != event.request_id:
            raise  # another write came in between: the message is tried again (a bounded number of times)
        return await _stored_before(vault, event, path, masked, written)
    await _release_replaced_index(vault, record, event.user_id, event.binding_id)
    return _stored(event, path, version, masked, record)


async def _stored_before(vault: VaultPort, event: BindingValidated, path: str, masked: str,
                         current: KvEntry) -> list[Event]:
    """Redelivered after our write: finish what may not have finished, and say so again, identically."""
    await _release_replaced_index(vault, current.data, event.user_id, event.binding_id)
    return _stored(event, path, current.version, masked, current.data)


async def handle_revoke_requested(event: RevokeRequested, deps: VaultWriterDeps, *, at: datetime) -> list[Event]:
    vault = deps.vault
    path = binding_path(event.user_id, event.binding_id)
    current = await vault.read(path)
    if current is None:
        tombstone = await vault.read(revocation_path(event.user_id, event.binding_id))
        if tombstone is None:
            return _rejected(event.user_id, event.request_id, event.binding_id, None,
                             [reason(ReasonCode.BINDING_UNKNOWN, binding_id=event.binding_id)], action="revoke", at=at)
        return _revoked(event, tombstone.data)

    access_key = current.data["access_key"]
    masked = mask_access_key(access_key)
    # Tombstone first: if we crash half-way, the redelivered revoke finishes the job.
    revocation = await _create_once(vault, revocation_path(event.user_id, event.binding_id),
                                    revocation_record(event.request_id, masked, at))
    await _release_index(vault, await _index_path(vault, access_key), event.user_id, event.binding_id)
    await vault.delete_all(whitelist_path(event.user_id, event.binding_id))
    await vault.delete_all(path)
    return _revoked(event, revocation)


async def handle_sweep_requested(event: SweepRequested, deps: VaultWriterDeps, *, at: datetime) -> list[Event]:
    """Ask the validator to re-check every stored binding. Several instances (or timers) may request the
    same sweep: the first to claim its marker runs it; a redelivery of that claim's own request runs it
    again (rechecks are idempotent), anyone else's is skipped."""
    vault = deps.vault
    if not await _claim_sweep(vault, event, at):
        return [audit(service=SERVICE, action="health_sweep", outcome="already_claimed", user_id=None,
                      request_id=event.request_id, details={"sweep_id": event.sweep_id})]
    rechecks: list[Event] = []
    for user_folder in await vault.list("bindings/"):
        user_id = user_folder.rstrip("/")
        for binding_id in await vault.list(f"bindings/{user_id}/"):
            record = await vault.read(binding_path(user_id, binding_id))
            if record is None or "secret_key_sealed" not in record.data:
                continue
            rechecks.append(RecheckRequested(
                event_id=derived_event_id("recheck", event.request_id, user_id, binding_id),
                sweep_request_id=event.request_id, user_id=user_id, binding_id=binding_id,
                exchange=record.data["exchange"], access_key=record.data["access_key"],
                secret_key_sealed=record.data["secret_key_sealed"],
            ))
    return [*rechecks, audit(service=SERVICE, action="health_sweep", outcome="started", user_id=None,
                             request_id=event.request_id,
                             details={"sweep_id": event.sweep_id, "bindings": len(rechecks)})]


def on_malformed(error: MalformedEvent, *, at: datetime) -> list[Event]:
    return malformed(error, at=at, service=SERVICE, action="consume")


async def _claim_sweep(vault: VaultPort, event: SweepRequested, at: datetime) -> bool:
    claim = await _create_once(vault, sweep_marker_path(event.sweep_id), sweep_marker(event.request_id, at))
    return claim["request_id"] == event.request_id


async def _create_once(vault: VaultPort, path: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record at a write-once path (a sweep claim, a tombstone): the one already there, or this one.
    Read first: these paths are usually taken already, and a create-only write to a taken one is a denied
    request in Vault's audit log."""
    existing = await vault.read(path)
    return existing.data if existing is not None else await _create_or_read(vault, path, record)


async def _create_or_read(vault: VaultPort, path: str, record: dict[str, Any]) -> dict[str, Any]:
    """Write record create-only; when the path is taken, the record there instead."""
    try:
        await vault.write(path, record, cas=0)
        return record
    except CasConflict:
        existing = await vault.read(path)
        if existing is None:
            raise  # taken a moment ago, gone since: the message is tried again (a bounded number of times)
    return existing.data


async def _index_path(vault: VaultPort, access_key: str) -> str:
    return access_key_index_path(await vault.hmac(ACCESS_KEY_INDEX_KEY, access_key))


async def _claim_index(vault: VaultPort, index_path: str, user_id: str, binding_id: str) -> bool:
    """True when the access key is (now) indexed to this binding, False when another binding holds it.
    Create-only write first: a fresh key (the usual case) costs one Vault call, not a read and a write."""
    return index_holds(await _create_or_read(vault, index_path, index_record(user_id, binding_id)), user_id, binding_id)


async def _release_index(vault: VaultPort, index_path: str, user_id: str, binding_id: str) -> None:
    existing = await vault.read(index_path)
    if existing is not None and index_holds(existing.data, user_id, binding_id):
        await vault.delete_all(index_path)


async def _release_replaced_index(vault: VaultPort, record: dict[str, Any], user_id: str, binding_id: str) -> None:
    if "replaced_index_path" in record:
        await _release_index(vault, record["replaced_index_path"], user_id, binding_id)


def _stored(event: BindingValidated, path: str, version: int, masked: str, record: dict[str, Any]) -> list[Event]:
    # The time recorded with the write, so that saying it again (after a redelivery) says the same thing.
    stored_at = datetime.fromisoformat(record["stored_at"])
    details: dict[str, Any] = {"vault_version": version}
    if "rotated_from" in record:
        details |= {"rotated_from": record["rotated_from"],
                    "next_step": DELETE_ON_HTX.format(key=record["rotated_from"])}
    stored = BindingStored(
        event_id=derived_event_id("stored", event.user_id, event.request_id),
        binding_id=event.binding_id, request_id=event.request_id, user_id=event.user_id, exchange=event.exchange,
        access_key_masked=masked, vault_path=path, vault_version=version, trading_pairs=event.trading_pairs,
        warnings=event.warnings, rotated=event.replaces_binding_id is not None, stored_at=stored_at,
    )
    return [
        stored,
        status(user_id=event.user_id, state=BindingState.STORED, request_id=event.request_id,
               binding_id=event.binding_id, occurred_at=stored_at, access_key_masked=masked, reasons=event.warnings,
               details=details),
        audit(service=SERVICE, action="store", outcome="stored", user_id=event.user_id, request_id=event.request_id,
              binding_id=event.binding_id, access_key_masked=masked, reasons=event.warnings,
              details={"vault_path": path, "vault_version": version, "rotated": stored.rotated}),
    ]


def _revoked(event: RevokeRequested, revocation: dict[str, Any]) -> list[Event]:
    masked = revocation["access_key_masked"]
    return [
        status(user_id=event.user_id, state=BindingState.REVOKED, request_id=event.request_id,
               binding_id=event.binding_id, occurred_at=datetime.fromisoformat(revocation["revoked_at"]),
               access_key_masked=masked,
               details={"next_step": DELETE_ON_HTX.format(key=masked)}),
        audit(service=SERVICE, action="revoke", outcome="revoked", user_id=event.user_id,
              request_id=event.request_id, binding_id=event.binding_id, access_key_masked=masked),
    ]


def _rejected(user_id: str, request_id: str | None, binding_id: str | None, masked: str | None,
              problems: list[Reason], action: str, at: datetime) -> list[Event]:
    return rejected(service=SERVICE, action=action, user_id=user_id, request_id=request_id, binding_id=binding_id,
                    reasons=problems, occurred_at=at, access_key_masked=masked)
