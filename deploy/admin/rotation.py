"""`hash7-admin rotate-transit KEY`: rotate one of Hash7's own Transit keys without breaking what rests on it.

- access-key-index: the index paths are HMACs of the access keys, so a new version gives every key a new path.
  Claims are checked under every version still in use (shared/adapters/vault/stores.py AccessKeyIndex), so the
  one-binding-per-key check holds throughout. The command rotates, moves every claim under the new version (as the
  vault-writer, whose index it is), and only then retires the older versions (min_decryption_version). Stopped
  half-way, it is run again: it finds the rotation unfinished and carries on without rotating twice.
- binding-secret: a new version seals from now on; older versions still open (min_decryption_version is not
  raised), so sealed secrets in flight on the topics and in dead letters stay readable. Vault itself holds no
  sealed secret to re-wrap: a stored binding's secret is its own Transit key.
- binding-passphrase: the same, but stored bindings do hold passphrases sealed with it (OKX), under the version they
  were sealed with; they stay readable because older versions are never retired here. (Re-wrapping them, so older
  versions could be retired, is not done: our choice, as nothing yet needs those versions gone.)

Exchange keys rotate with the user's key (`hash7 bind --replaces`), event signing keys with `hash7-keys`."""

from collections import Counter
from dataclasses import dataclass, field

import click
import hvac
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from deploy.admin import admin_vault, cli
from deploy.admin.identity import load_settings
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.layout import (
    ACCESS_KEY_INDEX_KEY,
    BINDING_PASSPHRASE_KEY,
    BINDING_SECRET_KEY,
    EVENT_SIGNING_KEY_PREFIX,
    EXCHANGE_KEY_PREFIX,
    KEY_CHECK_PREFIX,
    TRANSIT_MOUNT,
)
from shared.adapters.vault.stores import AccessKeyIndex, Bindings, IndexMove, Tombstones
from shared.clients.console import EXIT_FAILED, JSON, output_format, print_json_line, run, stderr, stdout
from shared.contracts.routing import Party
from shared.runtime.config import Settings
from shared.runtime.errors import CredentialsMissing

REFUSALS = {
    EXCHANGE_KEY_PREFIX: "an exchange key rotates with the user's HTX key: bind the new key with `hash7 bind "
                         "--replaces BINDING`",
    KEY_CHECK_PREFIX: "a key-check key lives only while the validator proves one request's key: nothing to rotate",
    EVENT_SIGNING_KEY_PREFIX: "an event signing key rotates with `hash7-keys rotate PARTY`, then `hash7-keys retire`",
}


# The keys the app seals with: rotated in place, every older version still opening what it sealed.
_SEALING_KEYS = (BINDING_SECRET_KEY, BINDING_PASSPHRASE_KEY)


@dataclass(frozen=True)
class TransitRotation:
    key: str
    latest_version: int
    min_decryption_version: int
    # access-key-index only: what moving the claims under the latest version found, by outcome.
    claims: dict[IndexMove, int] = field(default_factory=dict)


def _versions(vault: hvac.Client, key: str) -> tuple[int, int]:
    """(latest version, min_decryption_version) of a Transit key."""
    data = vault.secrets.transit.read_key(key, mount_point=TRANSIT_MOUNT)["data"]
    return int(data["latest_version"]), int(data["min_decryption_version"])


@cli.command("rotate-transit")
@click.argument("key")
@click.option("--leave-waiting", is_flag=True,
              help="access-key-index: retire the older versions even though some claims wait for a binding that is "
                   "not stored (requests that died: see `hash7 dead-letters`); those claims stop counting.")
def rotate_transit(key: str, leave_waiting: bool) -> None:
    """Rotate Transit key KEY: access-key-index, binding-secret or binding-passphrase.

    access-key-index: rotate, move every access-key claim under the new version, then retire the older versions
    (one binding per access key holds throughout); stopped half-way, run it again. binding-secret: secrets are
    sealed with the new version from now on; those sealed before still open. binding-passphrase: the same, and the
    passphrases stored sealed in bindings still open."""
    refusal = next((reason for prefix, reason in REFUSALS.items() if key.startswith(prefix)), None)
    if refusal is not None:
        raise click.ClickException(f"{key}: {refusal}")
    if key not in (ACCESS_KEY_INDEX_KEY, *_SEALING_KEYS):
        raise click.ClickException(f"{key!r} is not a Transit key hash7-admin rotates: {ACCESS_KEY_INDEX_KEY}, "
                                   f"{BINDING_SECRET_KEY} or {BINDING_PASSPHRASE_KEY}")
    vault = admin_vault()
    if key in _SEALING_KEYS:
        vault.secrets.transit.rotate_key(key, mount_point=TRANSIT_MOUNT)
        _print(TransitRotation(key, *_versions(vault, key)))
        return
    settings = load_settings()
    run(settings, _rotate_access_key_index(settings, vault, leave_waiting=leave_waiting))


async def _rotate_access_key_index(settings: Settings, vault: hvac.Client, *, leave_waiting: bool) -> int:
    # Found before anything changes: the claims are moved as the vault-writer, whose index it is.
    try:
        credentials = settings.approle_credentials(Party.VAULT_WRITER.value)
    except RuntimeError as exc:
        raise CredentialsMissing(str(exc)) from None
    latest, oldest = _versions(vault, ACCESS_KEY_INDEX_KEY)
    if latest == oldest:
        vault.secrets.transit.rotate_key(ACCESS_KEY_INDEX_KEY, mount_point=TRANSIT_MOUNT)
        latest += 1
    else:
        stderr.print(f"Carrying on with the unfinished rotation to version {latest}.", markup=False)
    writer = VaultClient(settings.vault_connection(), credentials)
    claims = await _move_claims(AccessKeyIndex(writer), Bindings(writer), Tombstones(writer))
    if claims[IndexMove.UNREADABLE]:
        stderr.print(f"{claims[IndexMove.UNREADABLE]} entr(ies) under the access-key index are not index entries "
                     "(nothing of ours writes them so): left as they are, for you to look at.", markup=False)
    if claims[IndexMove.DUPLICATE] or (claims[IndexMove.WAITING] and not leave_waiting):
        _print(TransitRotation(ACCESS_KEY_INDEX_KEY, latest, oldest, dict(claims)))
        stderr.print(f"Not finished: {claims[IndexMove.WAITING]} claim(s) wait for their binding to be stored, "
                     f"{claims[IndexMove.DUPLICATE]} access key(s) are claimed by two bindings. Older versions stay "
                     "in use; run this again once the requests in flight are done.", markup=False)
        return EXIT_FAILED
    vault.secrets.transit.update_key_configuration(ACCESS_KEY_INDEX_KEY, min_decryption_version=latest,
                                                   mount_point=TRANSIT_MOUNT)
    _print(TransitRotation(ACCESS_KEY_INDEX_KEY, *_versions(vault, ACCESS_KEY_INDEX_KEY), dict(claims)))
    return 0


async def _move_claims(index: AccessKeyIndex, bindings: Bindings, tombstones: Tombstones) -> Counter[IndexMove]:
    """Move every claim under the latest version, pass after pass until a pass changes nothing: a claim a
    vault-writer made under the older version while a pass ran is seen by the next one. Claims moved and dropped
    over all passes; current, waiting and duplicate as the last pass found them."""
    changed: Counter[IndexMove] = Counter()
    while True:
        paths = await index.entry_paths()
        found: Counter[IndexMove] = Counter()
        with Progress(TextColumn("Moving access-key claims to the new version"), BarColumn(), MofNCompleteColumn(),
                      console=stderr, transient=True) as progress:
            task = progress.add_task("claims", total=len(paths))
            for path in paths:
                found[await index.move_to_latest(path, bindings, tombstones)] += 1
                progress.advance(task)
        moved_or_dropped = Counter({outcome: found[outcome] for outcome in (IndexMove.MOVED, IndexMove.DROPPED)})
        if not +moved_or_dropped:
            return found + changed
        changed += moved_or_dropped


def _print(rotation: TransitRotation) -> None:
    if output_format() == JSON:
        print_json_line(rotation)
        return
    stdout.print(f"{rotation.key}: version {rotation.latest_version} is the latest; versions "
                 f"{rotation.min_decryption_version} to {rotation.latest_version} are in use.", markup=False)
    if rotation.key == BINDING_SECRET_KEY:
        stdout.print("Secrets sealed with older versions (in flight, in dead letters) still open: do not raise its "
                     "min_decryption_version while any may still be read. Vault stores no sealed secret to re-wrap.",
                     markup=False)
    elif rotation.key == BINDING_PASSPHRASE_KEY:
        stdout.print("Passphrases sealed with older versions (stored in bindings, in flight, in dead letters) still "
                     "open: do not raise its min_decryption_version, stored bindings hold them.", markup=False)
    elif rotation.claims:
        stdout.print("Claims: " + ", ".join(f"{count} {outcome}" for outcome, count in rotation.claims.items()),
                     markup=False)
