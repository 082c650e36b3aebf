"""The records' signing keys in the real Vault (deploy/bootstrap/event_keys.py): one non-exportable Ed25519 key per
producing party, and `hash7-keys` rotating and retiring them while records keep verifying."""

import json
import os
import subprocess
import sys

import hvac
import pytest
from hvac import exceptions as hvac_errors

from deploy.bootstrap.event_keys import SIGNING_PARTIES
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.layout import TRANSIT_MOUNT, event_signing_key
from shared.contracts.routing import ROUTES, Party, Topic
from shared.runtime.provenance import EventSigner, EventVerifier, OutgoingRecord, Unauthentic

pytestmark = pytest.mark.stack


def hash7_keys(bootstrapped_stack, *arguments: str, vault_addr: str | None = None) -> subprocess.CompletedProcess[str]:
    settings = bootstrapped_stack.settings
    environment = dict(os.environ) | {"HASH7_VAULT_ADDR": vault_addr or settings.vault_addr,
                                      "HASH7_VAULT_TOKEN": bootstrapped_stack.root_token,
                                      "HASH7_RUN_DIR": str(settings.run_dir), "HASH7_VAULT_TIMEOUT_S": "2"}
    return subprocess.run([sys.executable, "-m", "deploy.bootstrap.event_keys", *arguments], env=environment,
                          capture_output=True, text=True, timeout=60)


def test_every_producer_of_the_routing_table_has_a_key_that_can_never_leave_vault(bootstrapped_stack):
    root = hvac.Client(url=bootstrapped_stack.settings.vault_addr, token=bootstrapped_stack.root_token)
    assert {party for route in ROUTES.values() for party in route.producers} == set(SIGNING_PARTIES)
    for party in SIGNING_PARTIES:
        key = root.secrets.transit.read_key(event_signing_key(party.value), mount_point=TRANSIT_MOUNT)["data"]
        assert (key["type"], key["exportable"], key["allow_plaintext_backup"]) == ("ed25519", False, False)
        # Not even the root token gets the private key out.
        with pytest.raises(hvac_errors.InvalidRequest):
            root.secrets.transit.export_key(event_signing_key(party.value), key_type="signing-key",
                                            mount_point=TRANSIT_MOUNT)
        # OpenBao answers a refused backup with a 500 ("exporting is disallowed on the policy").
        with pytest.raises(hvac_errors.VaultError, match="exporting is disallowed"):
            root.secrets.transit.backup_key(event_signing_key(party.value), mount_point=TRANSIT_MOUNT)


async def signed_by_app(app_vault: VaultClient) -> list[tuple[str, bytes]]:
    [record] = await EventSigner(app_vault, Party.APP).sign([OutgoingRecord(Topic.BINDING_REQUESTED, "u1", b"{}", {})])
    return [(name, value.encode()) for name, value in record.headers.items()]


async def verified(settings, headers) -> Party:
    # A fresh verifier, as a service started now would have, with a service's own identity.
    intake = VaultClient(settings.vault_connection(), settings.approle_credentials("intake"))
    return await EventVerifier(intake).producer_of(Topic.BINDING_REQUESTED, ROUTES[Topic.BINDING_REQUESTED].producers,
                                                   b"u1", headers, b"{}")


async def test_a_rotation_keeps_old_records_verifying_until_the_older_versions_are_retired(bootstrapped_stack):
    settings = bootstrapped_stack.settings
    app_vault = VaultClient(settings.vault_connection(), settings.approle_credentials("app"))
    before = await signed_by_app(app_vault)

    rotated = hash7_keys(bootstrapped_stack, "--output", "json", "rotate", "app")
    assert rotated.returncode == 0, rotated.stderr
    [state] = json.loads(rotated.stdout)
    after = await signed_by_app(app_vault)
    assert f"|vault:v{state['latest_version']}:".encode() in dict(after)["x-hash7-certificate"]
    assert await verified(settings, before) is Party.APP and await verified(settings, after) is Party.APP

    # Within the hour after the rotation, producers may still sign with keys the older version certified.
    early = hash7_keys(bootstrapped_stack, "retire", "app")
    assert early.returncode == 1 and "Retire in" in early.stderr and "Traceback" not in early.stderr
    retired = hash7_keys(bootstrapped_stack, "retire", "--force", "app")
    try:
        assert retired.returncode == 0, retired.stderr
        assert f"app              event-app                {state['latest_version']:>6}" in retired.stdout
        with pytest.raises(Unauthentic, match="does not hold or has retired"):
            await verified(settings, before)
        assert await verified(settings, after) is Party.APP
    finally:
        # The session's other tests read records the app signed before: they must verify as they did.
        root = hvac.Client(url=settings.vault_addr, token=bootstrapped_stack.root_token)
        root.secrets.transit.update_key_configuration(event_signing_key("app"), min_decryption_version=1,
                                                      mount_point=TRANSIT_MOUNT)


def test_the_keys_are_listed_for_a_person_and_for_a_machine(bootstrapped_stack):
    table = hash7_keys(bootstrapped_stack, "list")
    machine = hash7_keys(bootstrapped_stack, "--output", "json", "list")
    assert table.returncode == machine.returncode == 0
    assert table.stdout.splitlines()[0].split() == ["party", "key", "latest", "accepted", "from"]
    assert {entry["party"] for entry in json.loads(machine.stdout)} == {party.value for party in SIGNING_PARTIES}


def test_an_unreachable_vault_or_an_unknown_party_is_one_line_not_a_traceback(bootstrapped_stack):
    unreachable = hash7_keys(bootstrapped_stack, "list", vault_addr="http://127.0.0.1:1")
    unknown = hash7_keys(bootstrapped_stack, "rotate", "root")
    for completed in (unreachable, unknown):
        assert completed.returncode != 0 and "Traceback" not in completed.stderr
    assert unreachable.stderr.strip() == (
        "hash7-keys: cannot reach Vault at http://127.0.0.1:1 (HASH7_VAULT_ADDR): is it running?")
    assert "'root' is not one of" in unknown.stderr
