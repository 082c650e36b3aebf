"""The records' signing keys (shared/contracts/provenance.py): one Ed25519 Transit key per party that produces
a topic in the routing table, created by the bootstrap, rotated and retired by `hash7-keys` with an admin token.

A rotation without downtime: `hash7-keys rotate <party>` adds a version, which certifies the party's short-lived
signing keys from their next renewal on (shared/contracts/provenance.py); verifiers meet the new version on a
certificate and read the public keys again (shared/runtime/provenance.py), while records certified by the older
version still verify. A certificate's lifetime after the rotation, once every consumer has read past the older
records (no lag), `hash7-keys retire <party>` makes Vault's minimum version the latest: verifiers stop accepting
the older version and what it certified within a minute, and records still signed under it become dead letters.
"""

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import click
import hvac
from hvac import exceptions as hvac_errors

from deploy.admin import admin_vault, run_admin_program
from deploy.bootstrap.progress import BootstrapError, Outcome, Progress
from shared.adapters.vault.layout import TRANSIT_MOUNT, event_signing_key
from shared.clients.console import program_options
from shared.contracts.provenance import CERTIFICATE_LIFETIME_S
from shared.contracts.routing import ROUTES, Party

# Every party that produces some topic signs what it produces.
SIGNING_PARTIES = tuple(sorted({party for route in ROUTES.values() for party in route.producers}))


@dataclass(frozen=True)
class SigningKeyState:
    party: str
    key: str
    latest_version: int
    min_version: int


def ensure_event_signing_keys(client: hvac.Client, progress: Progress) -> None:
    for party in SIGNING_PARTIES:
        name = event_signing_key(party.value)
        subject = f"vault transit signing key {name}"
        try:
            key = client.secrets.transit.read_key(name, mount_point=TRANSIT_MOUNT)["data"]
        except hvac_errors.InvalidPath:
            # Not exportable, no plaintext backup: the private key can never leave Vault.
            client.secrets.transit.create_key(name, key_type="ed25519", exportable=False,
                                              allow_plaintext_backup=False, mount_point=TRANSIT_MOUNT)
            progress.record(subject, Outcome.CREATED, "ed25519")
            continue
        if key["type"] != "ed25519" or key["exportable"] or key["allow_plaintext_backup"]:
            raise BootstrapError(
                f"Transit key {name} exists as {key['type']} (exportable={key['exportable']}, plaintext backup="
                f"{key['allow_plaintext_backup']}); Hash7 needs a non-exportable ed25519 key there. Delete it or "
                "choose another Vault"
            )
        progress.record(subject, Outcome.PRESENT, f"version {key['latest_version']}")


def signing_policy(role: str) -> str:
    """What a role's policy grants for records (deploy/bootstrap/vault_setup.py appends it to the role's file):
    signing with its own key when the routing table has it produce a topic, reading every public key."""
    own = ""
    if role in {party.value for party in SIGNING_PARTIES}:
        own = (f'\n# Sign the records it produces: the private key never leaves Vault; no other role signs as {role}.\n'
               f'path "{TRANSIT_MOUNT}/sign/{event_signing_key(role)}" {{\n  capabilities = ["update"]\n}}\n')
    return own + ("\n# Read the public halves of every producer's signing key, to verify what it reads.\n"
                  f'path "{TRANSIT_MOUNT}/keys/{event_signing_key("*")}" {{\n  capabilities = ["read"]\n}}\n')


def signing_key_states(client: hvac.Client) -> list[SigningKeyState]:
    return [_state(client, party) for party in SIGNING_PARTIES]


def rotate(client: hvac.Client, party: Party) -> SigningKeyState:
    client.secrets.transit.rotate_key(event_signing_key(party.value), mount_point=TRANSIT_MOUNT)
    return _state(client, party)


def retire_older_versions(client: hvac.Client, party: Party, *, force: bool = False) -> SigningKeyState:
    """Only the latest version verifies from now on (within verifiers' key refresh, a minute), and with it only
    the short-lived keys it certified. Refused within a certificate's lifetime of the latest rotation (unless
    forced): until then, producers still sign with keys the older version certified, and their records would
    become dead letters."""
    name = event_signing_key(party.value)
    key = client.secrets.transit.read_key(name, mount_point=TRANSIT_MOUNT)["data"]
    latest = int(key["latest_version"])
    rotated_at = datetime.fromisoformat(key["keys"][str(latest)]["creation_time"])
    wait_s = CERTIFICATE_LIFETIME_S - (datetime.now(UTC) - rotated_at).total_seconds()
    if wait_s > 0 and not force:
        raise BootstrapError(f"{name} version {latest} is {CERTIFICATE_LIFETIME_S - wait_s:.0f} s old: producers may "
                             f"still sign with keys version {latest - 1} certified. Retire in {wait_s:.0f} s, or "
                             "with --force to refuse their records now")
    client.secrets.transit.update_key_configuration(name, min_decryption_version=latest, mount_point=TRANSIT_MOUNT)
    return _state(client, party)


def _state(client: hvac.Client, party: Party) -> SigningKeyState:
    name = event_signing_key(party.value)
    try:
        key = client.secrets.transit.read_key(name, mount_point=TRANSIT_MOUNT)["data"]
    except hvac_errors.InvalidPath:
        raise BootstrapError(f"Vault has no signing key {name}: run the bootstrap first") from None
    return SigningKeyState(party.value, name, int(key["latest_version"]), int(key["min_decryption_version"]))


# ---- hash7-keys --------------------------------------------------------------------------------------------

PROGRAM = "hash7-keys"
_PARTY = click.Choice([party.value for party in SIGNING_PARTIES])


@click.group(help=__doc__)
@program_options(PROGRAM)
def cli() -> None:
    pass


@cli.command("list", help="Each party's signing key: its latest version and the oldest one still accepted.")
@click.pass_obj
def list_keys(output: str) -> None:
    _show(output, signing_key_states(admin_vault()))


@cli.command("rotate", help="Add a version to PARTY's key: Transit signs with it from now on, older versions still "
                             "verify.")
@click.argument("party", type=_PARTY)
@click.pass_obj
def rotate_command(output: str, party: str) -> None:
    _show(output, [rotate(admin_vault(), Party(party))])


@cli.command("retire", help="Accept only the latest version of PARTY's key, and the keys it certified (an hour "
                             "after a rotation at the earliest, once consumers have read past older records).")
@click.argument("party", type=_PARTY)
@click.option("--force", is_flag=True, help="Within the hour too: records producers still sign with keys the "
                                             "older version certified become dead letters.")
@click.pass_obj
def retire_command(output: str, party: str, force: bool) -> None:
    _show(output, [retire_older_versions(admin_vault(), Party(party), force=force)])


def _show(output: str, states: list[SigningKeyState]) -> None:
    if output == "json":
        click.echo(json.dumps([asdict(state) for state in states], indent=2))
        return
    click.echo(f"{'party':<16} {'key':<24} {'latest':>6} {'accepted from':>13}")
    for state in states:
        click.echo(f"{state.party:<16} {state.key:<24} {state.latest_version:>6} {state.min_version:>13}")


def main() -> None:
    run_admin_program(cli, PROGRAM)


if __name__ == "__main__":
    main()
