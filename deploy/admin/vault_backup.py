"""`hash7-admin backup` and `hash7-admin restore`: Vault's raft snapshot, the only backup of the exchange keys
(Transit refuses to export or back them up: shared/adapters/vault/README.md#exchange-keys). A snapshot is encrypted
with the barrier of the Vault it came from: it opens only with that Vault's unseal key, and its root token is the
one that works after a restore, so keep both with it (tests/deploy/test_raft_snapshot.py shows what a restore into
another server takes)."""

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import click
import hvac
import requests
from hvac import exceptions as hvac_errors
from rich.progress import DownloadColumn, Progress, SpinnerColumn, TextColumn, TransferSpeedColumn

from deploy.admin import PROGRAM, admin_vault, cli
from deploy.admin.identity import load_settings
from deploy.bootstrap.private_files import make_private_dir, replacing_private_file
from deploy.bootstrap.vault_setup import approle_login
from shared.adapters.vault.layout import BACKUP_ROLE
from shared.clients.console import JSON, Waiting, output_format, stderr, stdout
from shared.runtime.config import AppRoleCredentials, Settings

_CHUNK_BYTES = 1 << 16
INSTALL_TIMEOUT_S = 120.0
# backup-every's file names: they sort by time, so the oldest are the first to go.
SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX = "vault-", ".snap"
KEEP_KEYS_NOTE = ("It opens only with the unseal key of the Vault it came from, whose root token is the one that "
                  "works after a restore: keep both with it.")


@dataclass(frozen=True)
class Snapshot:
    file: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class Restored(Snapshot):
    sealed: bool


def _reasons(error: hvac_errors.VaultError) -> str:
    """Vault's reasons on one line (it lists them indented, over several)."""
    return " ".join(" ".join(map(str, error.errors or [str(error)])).split())


def _transfer(what: str) -> Progress:
    return Progress(SpinnerColumn(), TextColumn(what, markup=False), DownloadColumn(), TransferSpeedColumn(),
                    console=stderr, transient=True)


def _print(snapshot: Snapshot, line: str) -> None:
    if output_format() == JSON:
        # Not print_json_line: its redaction takes a SHA-256 in hex for a secret, and nothing here is one.
        click.echo(json.dumps(asdict(snapshot), ensure_ascii=True))
        return
    stdout.print(line, markup=False)
    stdout.print(f"{snapshot.bytes} bytes, sha256 {snapshot.sha256}", markup=False)


def _sealed_once_answering(vault: hvac.Client) -> bool:
    """Whether Vault is sealed, once it answers again: it answers nothing while it installs a snapshot (some
    seconds for the embedded stack's)."""
    deadline = time.monotonic() + INSTALL_TIMEOUT_S
    while True:
        try:
            return bool(vault.sys.is_sealed())
        except (requests.Timeout, requests.ConnectionError):
            if time.monotonic() > deadline:
                raise click.ClickException(f"Vault did not answer within {INSTALL_TIMEOUT_S:.0f} s of the restore: "
                                           "see its log") from None
            time.sleep(0.5)


@cli.command()
@click.option("--to", "target", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The file to write the snapshot to (created 0600).")
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
def backup(target: Path, force: bool) -> None:
    """Take a raft snapshot of Vault (every binding, exchange key, policy and AppRole) into a file."""
    if target.exists() and not force:
        raise click.ClickException(f"{target} exists: choose another file, or pass --force to replace it")
    snapshot = _take_snapshot(admin_vault(), target)
    _print(snapshot, f"Snapshot written to {target}. {KEEP_KEYS_NOTE}")


def _take_snapshot(vault: hvac.Client, target: Path) -> Snapshot:
    try:
        answer = vault.sys.take_raft_snapshot()
    except hvac_errors.VaultError as error:
        raise click.ClickException(f"Vault took no snapshot: {_reasons(error)}") from None
    digest, size = hashlib.sha256(), 0
    # Streamed: read while the answer is open, written to a staging file that replaces the target only when whole.
    with _transfer("Taking the snapshot") as progress, replacing_private_file(target) as staged:
        task = progress.add_task("snapshot", total=None)
        for chunk in answer.iter_content(_CHUNK_BYTES):
            staged.write(chunk)
            digest.update(chunk)
            size += len(chunk)
            progress.update(task, completed=size)
    return Snapshot(str(target), size, digest.hexdigest())


@cli.command("backup-every")
@click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The folder the snapshots go to (created 0700), one file per snapshot.")
@click.option("--interval", type=click.FloatRange(min=1), required=True, help="Seconds between two snapshots.")
@click.option("--keep", type=click.IntRange(min=1), default=24, show_default=True,
              help="How many snapshots to keep: the oldest go once a newer one is whole.")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Stop after this many (default: never).")
def backup_every(folder: Path, interval: float, keep: int, rounds: int | None) -> None:
    """Take a raft snapshot into a folder on a schedule, as the `backup` AppRole (deploy/vault/policies/backup.hcl:
    the snapshot and nothing else), keeping the newest KEEP. A round that fails (Vault down or sealed) says so on
    one line and the schedule goes on."""
    settings = load_settings()
    try:
        credentials = settings.approle_credentials(BACKUP_ROLE)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    make_private_dir(folder)
    taken = 0
    while rounds is None or taken < rounds:
        target = folder / f"{SNAPSHOT_PREFIX}{datetime.now(UTC):%Y%m%dT%H%M%S%fZ}{SNAPSHOT_SUFFIX}"
        try:
            vault = _backup_vault(settings, credentials.current())
            try:
                snapshot = _take_snapshot(vault, target)
            finally:
                # Its one use is over: not left live for the token's hour.
                vault.auth.token.revoke_self()
        except (click.ClickException, hvac_errors.VaultError, requests.RequestException, OSError) as error:
            message = error.format_message() if isinstance(error, click.ClickException) else _one_line(error)
            stderr.print(f"{PROGRAM}: no snapshot this round: {message}", markup=False)
        else:
            _print(snapshot, f"Snapshot written to {target}.")
            for older in sorted(folder.glob(f"{SNAPSHOT_PREFIX}*{SNAPSHOT_SUFFIX}"))[:-keep]:
                older.unlink()
        taken += 1
        if rounds is None or taken < rounds:
            time.sleep(interval)


def _backup_vault(settings: Settings, credentials: AppRoleCredentials) -> hvac.Client:
    """A client logged in as the backup role, for one snapshot: the interval may outlast a token."""
    return approle_login(settings.vault_connection(), credentials)


def _one_line(error: Exception) -> str:
    if isinstance(error, hvac_errors.VaultError):
        return _reasons(error)
    if isinstance(error, OSError) and not isinstance(error, requests.RequestException):
        return f"{error.filename}: {error.strerror}"
    # A requests error names the URL and the reason, never a token.
    return " ".join(str(error).split()) or type(error).__name__


@cli.command()
@click.option("--from", "source", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="A snapshot file written by `hash7-admin backup`.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def restore(source: Path, yes: bool) -> None:
    """Replace everything Vault holds with a snapshot (a forced restore: into this Vault or a new one).

    Whatever was written since the snapshot is lost, tokens and secret ids included. Into a new Vault (its own
    init), the server seals itself: unseal it with the snapshot source's unseal key, then use the source's root
    token."""
    if not yes:
        click.confirm(f"Replace everything this Vault holds with {source}? {KEEP_KEYS_NOTE}", abort=True,
                      err=True)
    content = source.read_bytes()
    vault = admin_vault()
    with Waiting(f"Restoring {len(content)} bytes into Vault") as waiting:
        try:
            vault.sys.force_restore_raft_snapshot(content)
        except hvac_errors.VaultError as error:
            raise click.ClickException(f"Vault refused {source} as a snapshot: {_reasons(error)}") from None
        waiting.update("Vault installs the snapshot")
        sealed = _sealed_once_answering(vault)
    restored = Restored(str(source), len(content), hashlib.sha256(content).hexdigest(), sealed)
    if restored.sealed:
        line = (f"Restored {source}. Vault sealed itself: the snapshot came from another Vault. Unseal it with that "
                "Vault's unseal key; that Vault's root token is the one that works now.")
    else:
        line = f"Restored {source}. Vault is unsealed; tokens issued after the snapshot no longer work."
    _print(restored, line + " Services log in again on their own, except with a secret id rotated after the "
                            "snapshot: run `hash7-admin rotate-secret-id ROLE` for each such role.")
