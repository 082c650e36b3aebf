"""Stores of the typed Vault records (shared.adapters.vault.records) over the Vault port. They own the storage
mechanics — paths, create-only writes, check-and-set, write-once paths, the access-key index — so that handlers
read as the decisions they make.

The conflict policy, the one for every store:
- A check-and-set write (on the version the caller read, or create-only where it read nothing) that loses
  re-reads the path. When the record there is our own (the same request id: a redelivery of this request got
  there first), that is the outcome. Otherwise the store raises ConcurrentWrite, a TransientError: the runtime
  retries the message in place (shared/runtime/processing.py), and the handler decides again from fresh reads.
- A create-or-read (a write-once path, or a create-only write made without reading first, to save a Vault call)
  hands back whichever record holds the path: deciding what it means is the caller's business. A path that
  refuses a create-only write yet reads as empty (its latest version deleted, by hand or by a delete-after
  setting) will not change by waiting: VanishedRecord is a plain failure, which the runtime dead-letters
  after its bounded attempts rather than retrying for ever.
- A record that does not read as its type raises UnreadableRecord, naming the fields, never their values.
"""

import asyncio
import base64
import bisect
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar

import structlog
from pydantic import ValidationError

from shared.adapters.vault.client import CasConflict, KeyExists, VaultPort
from shared.adapters.vault.layout import (
    ACCESS_KEY_INDEX_FOLDER,
    ACCESS_KEY_INDEX_KEY,
    BINDINGS_FOLDER,
    SWEEP_RUNNING_PATH,
    access_key_index_path,
    binding_exchange_path,
    binding_path,
    exchange_key,
    key_check_key,
    key_import_path,
    revocation_path,
    sweep_marker_path,
    sweep_progress_path,
    user_bindings_folder,
    user_whitelists_folder,
    whitelist_path,
)
from shared.adapters.vault.records import (
    AccessKeyIndexEntry,
    BindingExchange,
    BindingRecord,
    KeyHealth,
    KeyImport,
    KeyRef,
    RecheckableBinding,
    RunningSweep,
    SweepClaim,
    SweepProgress,
    Tombstone,
    VaultRecord,
    WhitelistRecord,
)
from shared.contracts.events import SweepCursor
from shared.contracts.exchanges import ExchangeName
from shared.runtime.errors import TransientError

log = structlog.get_logger(__name__)
R = TypeVar("R", bound=VaultRecord)
# Records written on behalf of one request, whose request id tells our own write from another's.
OfARequest = TypeVar("OfARequest", BindingRecord, WhitelistRecord, KeyImport, RunningSweep)


class ConcurrentWrite(TransientError):
    """Another writer changed a Vault path between our read and our write: decide again from fresh reads."""


class VanishedRecord(Exception):
    """A path refused a create-only write, yet holds no readable version (module docstring)."""


class UnreadableRecord(Exception):
    """What Vault holds at a path is not a record of the expected type."""


@dataclass(frozen=True)
class Versioned(Generic[R]):
    """A record with its KV version (a check-and-set writes on it)."""

    record: R
    version: int
    # Vault's id of the read, as its audit log records it; "" for a record as we wrote it.
    vault_request_id: str = ""


async def _read(vault: VaultPort, path: str, kind: type[R]) -> Versioned[R] | None:
    entry = await vault.read(path)
    if entry is None:
        return None
    try:
        record = kind.from_vault(entry.data)
    except ValidationError as error:
        # pydantic's own message quotes the input, which may hold a key: name the fields only.
        fields = ", ".join(".".join(str(part) for part in problem["loc"]) or "record"
                           for problem in error.errors(include_input=False))
        raise UnreadableRecord(f"{path} is not a {kind.__name__} (fields: {fields})") from None
    return Versioned(record, entry.version, entry.request_id)


async def _check_and_set(vault: VaultPort, path: str, record: OfARequest,
                         expected: Versioned[OfARequest] | None) -> Versioned[OfARequest]:
    """Write record on the version expected (None: create-only); our own write when it lost (module docstring)."""
    try:
        return Versioned(record, await vault.write(path, record.to_vault(), cas=expected.version if expected else 0))
    except CasConflict:
        there = await _read(vault, path, type(record))
    if there is None or there.record.request_id != record.request_id:
        raise ConcurrentWrite(f"{path} changed while writing")
    return there


async def _create_or_read(vault: VaultPort, path: str, record: R) -> Versioned[R]:
    """Write record create-only; when the path is taken, the record there instead."""
    try:
        return Versioned(record, await vault.write(path, record.to_vault(), cas=0))
    except CasConflict:
        there = await _read(vault, path, type(record))
    if there is None:
        raise VanishedRecord(f"{path} refuses a create-only write but holds no readable version")
    return there


async def _create_once(vault: VaultPort, path: str, record: R) -> R:
    """The record at a write-once path: the one already there, or this one. Read first: these paths are usually
    taken already, and a create-only write to a taken one is a denied request in Vault's audit log."""
    existing = await _read(vault, path, type(record))
    return existing.record if existing is not None else (await _create_or_read(vault, path, record)).record


@dataclass(frozen=True)
class StoredVersion:
    """A binding's current version in Vault and the time Vault recorded with its write: the order of the facts
    about it (a health judgement older than the key it judges is stale)."""

    version: int
    written_at: datetime


# A sweep's page lists this many users' folders at once: one at a time, a page is its size in round trips in a row
# (deploy/bench/sweep_pages.py), and many more would crowd out the Vault calls of bindings being stored (they share
# the client's threads: shared/adapters/vault/client.py).
_USER_LISTS_AT_ONCE = 8


class Bindings:
    """Binding credentials (BindingRecord) by user and binding id."""

    def __init__(self, vault: VaultPort) -> None:
        self._vault = vault

    async def read(self, user_id: str, binding_id: str) -> Versioned[BindingRecord] | None:
        return await _read(self._vault, binding_path(user_id, binding_id), BindingRecord)

    async def exists(self, user_id: str, binding_id: str) -> bool:
        """Whether the binding is stored, without reading it."""
        return await self._vault.read_metadata(binding_path(user_id, binding_id)) is not None

    async def save(self, record: BindingRecord, current: Versioned[BindingRecord]) -> Versioned[BindingRecord]:
        """Write record as the version after current (a rotation). Vault drops the version replaced within the
        same write, data included: the mount keeps one version per key (shared/adapters/vault/README.md#kv-history),
        so a redelivered rotation has nothing left to clean up."""
        return await _check_and_set(self._vault, binding_path(record.user_id, record.binding_id), record, current)

    async def create_or_read(self, record: BindingRecord) -> Versioned[BindingRecord]:
        """Write a new binding create-only; when its path is taken, the record there instead."""
        return await _create_or_read(self._vault, binding_path(record.user_id, record.binding_id), record)

    async def delete(self, user_id: str, binding_id: str) -> None:
        """Every version: nothing is left to undelete."""
        await self._vault.delete_all(binding_path(user_id, binding_id))

    async def stored_version(self, user_id: str, binding_id: str) -> StoredVersion | None:
        """The binding's current version and when Vault wrote it, without reading it."""
        metadata = await self._vault.read_metadata(binding_path(user_id, binding_id))
        if metadata is None:
            return None
        version = int(metadata["current_version"])
        written = metadata["versions"][str(version)]["created_time"]
        return StoredVersion(version, datetime.fromisoformat(written))

    async def recheckable(self, user_id: str, binding_id: str) -> RecheckableBinding | None:
        """What a key-health recheck needs of the binding stored now; None when it is gone, or was stored before its
        secret moved into Transit (logged, so a skipped key is not unseen; the bootstrap moves such secrets:
        deploy/bootstrap/exchange_key_migration.py)."""
        entry = await self._vault.read(binding_path(user_id, binding_id))
        if entry is None:
            return None
        try:
            return RecheckableBinding.from_vault(entry.data)
        except ValidationError:
            log.warning("recheck_binding_skipped", user_id=user_id, binding_id=binding_id,
                        reason="no exchange key in Transit to recheck with")
            return None

    async def ids_of(self, user_id: str) -> list[str]:
        """The ids of the user's stored bindings (a list shows ids only, never a record)."""
        return await self._vault.list(user_bindings_folder(user_id))

    async def ids_after(self, after: SweepCursor | None, limit: int) -> list[SweepCursor]:
        """Up to `limit` stored bindings (user and binding ids: a list shows ids only, never a record) after `after`,
        by user id then binding id; None: from the first. Vault's KV LIST has no paging, so the users' folder is
        listed whole each time (user ids only); users' own folders only while the page has room, a few at once."""
        users = sorted(folder.rstrip("/") for folder in await self._vault.list(BINDINGS_FOLDER))
        index = bisect.bisect_left(users, after.user_id) if after is not None else 0
        page: list[SweepCursor] = []
        while len(page) < limit and index < len(users):
            # Every user listed has a binding at least, so a batch no larger than the room left lists no more
            # users than the page can take (the cursor's own user aside).
            batch = users[index:index + min(limit - len(page), _USER_LISTS_AT_ONCE)]
            index += len(batch)
            listed = await asyncio.gather(*(self._vault.list(user_bindings_folder(user_id)) for user_id in batch))
            for user_id, names in zip(batch, listed, strict=True):
                binding_ids = sorted(names)
                if after is not None and user_id == after.user_id:
                    binding_ids = binding_ids[bisect.bisect_right(binding_ids, after.binding_id):]
                page += (SweepCursor(user_id=user_id, binding_id=binding_id)
                         for binding_id in binding_ids[:limit - len(page)])
        return page


class Whitelists:
    """Each binding's whitelist and key health (WhitelistRecord)."""

    def __init__(self, vault: VaultPort) -> None:
        self._vault = vault

    async def read(self, user_id: str, binding_id: str) -> Versioned[WhitelistRecord] | None:
        return await _read(self._vault, whitelist_path(user_id, binding_id), WhitelistRecord)

    async def create_or_read(self, user_id: str, binding_id: str,
                             record: WhitelistRecord) -> Versioned[WhitelistRecord]:
        return await _create_or_read(self._vault, whitelist_path(user_id, binding_id), record)

    async def save(self, user_id: str, binding_id: str, current: Versioned[WhitelistRecord] | None, request_id: str,
                   at: datetime, *, pairs: list[str] | None = None, pairs_as_of: datetime | None = None,
                   health: KeyHealth | None = None, health_as_of: datetime | None = None,
                   applied_binding_version: int | None = None) -> WhitelistRecord:
        """Apply the changes given to the whitelist as just read (current), keeping the rest; a redelivered
        request (its request id already written) makes no new version. Returns the record as stored."""
        if current is not None and current.record.request_id == request_id:
            return current.record
        # No whitelist yet: no pairs, and the key as healthy as the validator found it.
        before = current.record if current is not None else WhitelistRecord(health=KeyHealth.HEALTHY,
                                                                             request_id="", updated_at=at)
        record = WhitelistRecord(
            pairs=before.pairs if pairs is None else pairs, pairs_as_of=pairs_as_of or before.pairs_as_of,
            health=health or before.health, health_as_of=health_as_of or before.health_as_of,
            applied_binding_version=applied_binding_version or before.applied_binding_version,
            request_id=request_id, updated_at=at)
        return (await _check_and_set(self._vault, whitelist_path(user_id, binding_id), record, current)).record

    async def delete(self, user_id: str, binding_id: str) -> None:
        await self._vault.delete_all(whitelist_path(user_id, binding_id))

    async def binding_ids(self, user_id: str) -> list[str]:
        """The binding ids the user has whitelists for (a list shows ids only)."""
        return [name for name in await self._vault.list(user_whitelists_folder(user_id)) if not name.endswith("/")]


class BindingExchanges:
    """Which exchange each binding's key is on (BindingExchange): the vault-writer writes it once, before the binding
    (so a stored binding always has one); the whitelist service reads it, since it may not read bindings."""

    def __init__(self, vault: VaultPort) -> None:
        self._vault = vault

    async def note_once(self, user_id: str, binding_id: str, exchange: str) -> None:
        """Note the binding's exchange, unless noted before."""
        await _create_once(self._vault, binding_exchange_path(user_id, binding_id), BindingExchange(exchange=exchange))

    async def of_stored(self, user_id: str, binding_id: str) -> str:
        """The exchange of a binding that is stored. Bindings stored before Bybit and OKX have no note: all HTX's."""
        noted = await _read(self._vault, binding_exchange_path(user_id, binding_id), BindingExchange)
        return noted.record.exchange if noted is not None else ExchangeName.HTX


class Tombstones:
    """What revocations leave behind (Tombstone), by user and binding id."""

    def __init__(self, vault: VaultPort) -> None:
        self._vault = vault

    async def read(self, user_id: str, binding_id: str) -> Tombstone | None:
        found = await _read(self._vault, revocation_path(user_id, binding_id), Tombstone)
        return found.record if found is not None else None

    async def leave_once(self, user_id: str, binding_id: str, tombstone: Tombstone) -> Tombstone:
        """The binding's tombstone: the one a revocation left before, or this one."""
        return await _create_once(self._vault, revocation_path(user_id, binding_id), tombstone)


@dataclass(frozen=True)
class SweepInCharge:
    """The sweep that sweep-running names, and how far it got (None: its first page has not started)."""

    entry: Versioned[RunningSweep]
    progress: SweepProgress | None

    @property
    def sweep_id(self) -> str:
        return self.entry.record.sweep_id

    @property
    def finished(self) -> bool:
        return self.progress is not None and self.progress.finished

    def over_by(self, at: datetime) -> bool:
        """Whether it finished and its last page's re-checks had their turn by at: only then may the next sweep
        start, so two sweeps' re-checks never queue side by side."""
        return (self.progress is not None and self.progress.finished
                and (self.progress.turn_ends_at or self.progress.updated_at) <= at)

    @property
    def due_at(self) -> datetime:
        """When it was due to move next: its page in progress's turn's end, else that page's start, else (no page
        yet) when it took sweep-running."""
        if self.progress is None:
            return self.entry.record.taken_at
        return self.progress.turn_ends_at or self.progress.updated_at


class SweepClaims:
    """Who runs each key-health sweep (SweepClaim), how far it got (SweepProgress), and which one runs now
    (RunningSweep: one record, so that one sweep runs at a time)."""

    def __init__(self, vault: VaultPort) -> None:
        self._vault = vault

    async def claim(self, sweep_id: str, claim: SweepClaim) -> SweepClaim:
        """The sweep's claim: one made before, or this one."""
        return await _create_once(self._vault, sweep_marker_path(sweep_id), claim)

    async def started_at(self, sweep_id: str) -> datetime:
        """When Vault wrote the sweep's claim: on the same clock as the bindings' writes, whose health the sweep
        judges anew (shared/adapters/vault/records.py WhitelistRecord.health_as_of)."""
        entry = await self._vault.read(sweep_marker_path(sweep_id))
        if entry is None or entry.written_at is None:
            raise VanishedRecord(f"{sweep_marker_path(sweep_id)} is gone since it was claimed")
        return entry.written_at

    async def progress(self, sweep_id: str) -> Versioned[SweepProgress] | None:
        """How far the sweep got; None before its first page started."""
        return await _read(self._vault, sweep_progress_path(sweep_id), SweepProgress)

    async def advance(self, sweep_id: str, progress: SweepProgress,
                      current: Versioned[SweepProgress] | None) -> SweepProgress:
        """Record progress as the version after current (None: the first). Each page writes a record of its own, so
        unlike _check_and_set's, a lost write is never ours: ConcurrentWrite, and the handler decides again."""
        path = sweep_progress_path(sweep_id)
        try:
            await self._vault.write(path, progress.to_vault(), cas=current.version if current else 0)
        except CasConflict:
            raise ConcurrentWrite(f"{path} changed while writing") from None
        return progress

    async def in_charge(self, sweep_id: str | None = None,
                        its_progress: Versioned[SweepProgress] | None = None) -> SweepInCharge | None:
        """The sweep running now, or the last one to run; None before any sweep started under this record. Given
        sweep_id and the progress the caller already read of it, that progress is not read again when sweep_id is
        the one running (every page of the running sweep)."""
        entry = await _read(self._vault, SWEEP_RUNNING_PATH, RunningSweep)
        if entry is None:
            return None
        progress = its_progress if entry.record.sweep_id == sweep_id else await self.progress(entry.record.sweep_id)
        return SweepInCharge(entry, progress.record if progress is not None else None)

    async def take_charge(self, running: RunningSweep, current: SweepInCharge | None) -> RunningSweep:
        """Name this sweep the running one in place of current (None: no sweep ran before). Check-and-set: of two
        sweeps starting at once one wins, the other gets ConcurrentWrite and its handler decides again; a write of
        ours that landed unseen is found as ours."""
        entry = current.entry if current is not None else None
        return (await _check_and_set(self._vault, SWEEP_RUNNING_PATH, running, entry)).record


class IndexMove(StrEnum):
    """What moving one access-key claim to the index key's latest version found (AccessKeyIndex.move_to_latest)."""

    CURRENT = "current"  # already under the latest version
    MOVED = "moved"  # now under the latest version, its older entry deleted
    DROPPED = "dropped"  # its binding was revoked: the older entry a release could not see is deleted
    WAITING = "waiting"  # its binding is not stored (yet) under this access key: a request in flight
    DUPLICATE = "duplicate"  # another binding holds the access key under the latest version
    # Not an index entry at all (nothing of ours writes one so): left as it is for ops to look at. No claim of ours,
    # so it does not hold the rotation up.
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class IndexEntry:
    path: str
    holder: AccessKeyIndexEntry


class AccessKeyIndex:
    """One binding per access key across all users. Entries are kept under an HMAC of the key, never the key.

    Rotating the HMAC key changes every key's path (shared/adapters/vault/layout.py). Claims are written under the
    latest version and checked under every version still in use (min_decryption_version up), so a claim made before
    a rotation still counts; `hash7-admin rotate-transit` (deploy/admin/rotation.py) moves every claim to the latest
    version before it retires the older ones. Until a rotation, a claim costs the same calls as before."""

    def __init__(self, vault: VaultPort) -> None:
        self._vault = vault

    async def _paths(self, access_key: str) -> tuple[str, list[str]]:
        """The key's path under the latest version, and under each older version still in use."""
        latest = await self._vault.hmac(ACCESS_KEY_INDEX_KEY, access_key)
        latest_version = int(latest.split(":")[1].removeprefix("v"))
        older = []
        if latest_version > 1:
            for version in await self._vault.live_versions(ACCESS_KEY_INDEX_KEY):
                if version < latest_version:
                    digest = (await self._vault.hmac_batch(ACCESS_KEY_INDEX_KEY, version, [access_key])).digests[0]
                    older.append(access_key_index_path(base64.b64encode(digest).decode()))
        return access_key_index_path(latest), older

    async def holder(self, access_key: str) -> IndexEntry | None:
        """The claim on the key, under whichever version in use it was made."""
        latest, older = await self._paths(access_key)
        for path in (latest, *older):
            found = await _read(self._vault, path, AccessKeyIndexEntry)
            if found is not None:
                return IndexEntry(path, found.record)
        return None

    async def claim(self, access_key: str, user_id: str, binding_id: str) -> bool:
        """True when the key is (now) indexed to this binding, False when another binding holds it.
        Create-only write under the latest version; claims under older versions in use are read first."""
        latest, older = await self._paths(access_key)
        for path in older:
            earlier = await _read(self._vault, path, AccessKeyIndexEntry)
            if earlier is not None and not earlier.record.names(user_id, binding_id):
                return False
        entry = AccessKeyIndexEntry(user_id=user_id, binding_id=binding_id)
        holder = await _create_or_read(self._vault, latest, entry)
        return holder.record.names(user_id, binding_id)

    async def release(self, access_key: str, user_id: str, binding_id: str) -> None:
        """Free this binding's claims on the key, under every version in use: one made before a rotation of the index
        key and not moved yet would otherwise keep counting."""
        latest, older = await self._paths(access_key)
        for path in (latest, *older):
            await self.release_path(path, user_id, binding_id)

    async def release_path(self, index_path: str, user_id: str, binding_id: str) -> None:
        """Free the entry at index_path if this binding holds it."""
        holder = await _read(self._vault, index_path, AccessKeyIndexEntry)
        if holder is not None and holder.record.names(user_id, binding_id):
            await self._vault.delete_all(index_path)

    async def entry_paths(self) -> list[str]:
        """Every claim's path (a list shows HMACs only)."""
        return [ACCESS_KEY_INDEX_FOLDER + name for name in await self._vault.list(ACCESS_KEY_INDEX_FOLDER)]

    async def move_to_latest(self, index_path: str, bindings: Bindings, tombstones: Tombstones) -> IndexMove:
        """Move the claim at index_path under the latest version of the index key: create there first, then delete
        here, so the key stays claimed throughout. Idempotent; a claim already gone counts as dropped."""
        try:
            found = await _read(self._vault, index_path, AccessKeyIndexEntry)
        except UnreadableRecord:
            return IndexMove.UNREADABLE
        if found is None:
            return IndexMove.DROPPED
        user_id, binding_id = found.record.user_id, found.record.binding_id
        stored = await bindings.read(user_id, binding_id)
        if stored is None:
            if await tombstones.read(user_id, binding_id) is None:
                return IndexMove.WAITING
            await self._vault.delete_all(index_path)
            return IndexMove.DROPPED
        latest, older = await self._paths(stored.record.access_key)
        if index_path == latest:
            return IndexMove.CURRENT
        if index_path not in older:
            # A claim for another key of this binding: a rotation to or from it is in flight.
            return IndexMove.WAITING
        if not (await _create_or_read(self._vault, latest, found.record)).record.names(user_id, binding_id):
            return IndexMove.DUPLICATE
        await self._vault.delete_all(index_path)
        return IndexMove.MOVED


class ExchangeKeys:
    """Exchange secrets as non-exportable Transit HMAC keys (shared/adapters/vault/README.md#exchange-keys): one per
    stored binding, one per key check. A redelivery never imports twice: every import first looks at what is there.

    - A key check's key, and a new binding's key, are named by ids no other request shares (a new binding's id is its
      request's), so one found already there is this request's own, left by a delivery that did not finish.
    - A rotation notes, before it imports, which request imports which version (KeyImport), and imports only when
      the key is not yet at that version: a rotation delivered again finds its own import, and a later rotation never
      takes an earlier one's version for its own. One user's rotations are stored one at a time, in partition order
      (shared/runtime/lanes.py); an import that meets another all the same is retried (ConcurrentWrite).
    """

    def __init__(self, vault: VaultPort) -> None:
        self._vault = vault

    async def import_for_check(self, user_id: str, request_id: str, wrapped: str) -> KeyRef:
        """The key the validator proves a request's secret with. Raises ImportRefused."""
        return await self._created(key_check_key(user_id, request_id), wrapped)

    async def discard_check(self, user_id: str, request_id: str) -> None:
        await self._vault.delete_key(key_check_key(user_id, request_id))

    async def store_new(self, user_id: str, binding_id: str, wrapped: str) -> KeyRef:
        """A new binding's key, its secret as version 1. Raises ImportRefused."""
        return await self._created(exchange_key(user_id, binding_id), wrapped)

    async def store_rotation(self, user_id: str, binding_id: str, request_id: str, wrapped: str) -> KeyRef:
        """The version of the binding's key that holds a rotation's secret (class docstring). Raises ImportRefused."""
        name, path = exchange_key(user_id, binding_id), key_import_path(user_id, binding_id)
        noted = await _read(self._vault, path, KeyImport)
        latest = await self._vault.key_version(name) or 0
        if noted is not None and noted.record.request_id == request_id:
            if latest >= noted.record.version:
                return KeyRef(name, noted.record.version)
        else:
            noted = await _check_and_set(self._vault, path, KeyImport(request_id=request_id, version=latest + 1),
                                         noted)
        version = noted.record.version
        if latest == 0:
            await self._created(name, wrapped)  # its key deleted by hand: the rotation's secret becomes version 1
        else:
            await self._vault.import_hmac_key_version(name, wrapped)
        if await self._vault.key_version(name) != version:
            raise ConcurrentWrite(f"another import went into {name} while importing version {version}")
        return KeyRef(name, version)

    async def destroy(self, user_id: str, binding_id: str) -> None:
        """Delete the binding's key, every version, and its import note: nothing can sign with the secret again."""
        await self._vault.delete_key(exchange_key(user_id, binding_id))
        await self._vault.delete_all(key_import_path(user_id, binding_id))

    async def _created(self, name: str, wrapped: str) -> KeyRef:
        """Version 1 of key name: imported now, or found there already (class docstring). Imported without looking
        first: the key is usually new, and a look would cost every binding a Vault call."""
        try:
            await self._vault.import_hmac_key(name, wrapped)
        except KeyExists:
            pass
        return KeyRef(name, 1)
