"""`hash7-admin rotate-transit` (deploy/admin/rotation.py) on the running pipeline: rotating the access-key-index key
keeps one binding per access key, and rotating binding-secret keeps sealed secrets openable."""

import json

import pytest
from pydantic import SecretStr

from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.layout import (
    ACCESS_KEY_INDEX_KEY,
    BINDING_PASSPHRASE_KEY,
    BINDING_SECRET_KEY,
    TRANSIT_MOUNT,
    access_key_index_path,
)
from shared.adapters.vault.stores import AccessKeyIndex
from shared.clients.binding_client import BindingClient
from shared.contracts.reasons import ReasonCode
from shared.contracts.states import BindingState
from tests.clients.hash7_process import hash7_environment, run_hash7
from tests.e2e.helpers import bind, fresh_key, new_user
from tests.vault_admin import transit_key

pytestmark = pytest.mark.stack


@pytest.fixture
async def client(pipeline):
    async with BindingClient(pipeline.settings) as binding_client:
        yield binding_client


def admin(bootstrapped_stack, *args: str) -> tuple[int, dict | None, str]:
    done = run_hash7(["--output", "json", *args],
                     hash7_environment(bootstrapped_stack.settings, HASH7_VAULT_TOKEN=bootstrapped_stack.root_token),
                     module="deploy.admin")
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, done.stderr


async def test_an_access_key_claimed_before_the_index_key_rotates_stays_claimed(client, htx_sandbox, bootstrapped_stack,
                                                                               vault_admin):
    key = fresh_key(htx_sandbox)
    assert (await bind(client, new_user(), key, trading_pairs=["btcusdt"]))[-1].state == BindingState.ACTIVE
    before = transit_key(vault_admin, ACCESS_KEY_INDEX_KEY)
    assert before is not None

    # The rotation's first step alone, as when the command stops right after it: the claim is under the older version.
    vault_admin.secrets.transit.rotate_key(ACCESS_KEY_INDEX_KEY, mount_point=TRANSIT_MOUNT)
    during = await bind(client, new_user(), key, trading_pairs=["btcusdt"])
    assert during[-1].reason_codes == [ReasonCode.KEY_ALREADY_BOUND]

    # The command carries on with that rotation (no second one), moves every claim, then retires the older version.
    code, rotation, err = admin(bootstrapped_stack, "rotate-transit", ACCESS_KEY_INDEX_KEY)
    assert code == 0, err
    latest = before["latest_version"] + 1
    assert rotation is not None and (rotation["latest_version"], rotation["min_decryption_version"]) == (latest, latest)
    assert rotation["claims"].get("moved", 0) >= 1 and not rotation["claims"].get("waiting")
    settings = bootstrapped_stack.settings
    writer = VaultClient(settings.vault_connection(), settings.approle_credentials("vault-writer"))
    holder = await AccessKeyIndex(writer).holder(key.access_key)
    latest_path = access_key_index_path(await writer.hmac(ACCESS_KEY_INDEX_KEY, key.access_key))
    assert holder is not None and holder.path == latest_path

    after = await bind(client, new_user(), key, trading_pairs=["btcusdt"])
    assert after[-1].reason_codes == [ReasonCode.KEY_ALREADY_BOUND]

    # A second run rotates again, and finds every claim under the version before it.
    code, again, err = admin(bootstrapped_stack, "rotate-transit", ACCESS_KEY_INDEX_KEY)
    assert code == 0, err
    assert again is not None and again["latest_version"] == latest + 1 and again["claims"].get("moved", 0) >= 1


async def rotate_with_one_sealed_before(bootstrapped_stack, key: str, opener: str) -> None:
    """Seal as the app, rotate key with hash7-admin, seal again: both open for the role opener, the older still with
    its own version."""
    settings = bootstrapped_stack.settings
    app = VaultClient(settings.vault_connection(), settings.approle_credentials("app"))
    opening = VaultClient(settings.vault_connection(), settings.approle_credentials(opener))
    user = new_user()
    # In flight, in a dead letter, or (a passphrase) in a stored binding: sealed before the rotation.
    sealed_before = await app.seal(key, SecretStr("sealed-before-the-rotation"), user)

    code, rotation, err = admin(bootstrapped_stack, "rotate-transit", key)
    assert code == 0, err
    assert rotation is not None and rotation["latest_version"] > rotation["min_decryption_version"]

    sealed_after = await app.seal(key, SecretStr("sealed-after-the-rotation"), user)
    assert sealed_after.startswith(f"vault:v{rotation['latest_version']}:")
    assert not sealed_before.startswith(f"vault:v{rotation['latest_version']}:")
    for sealed, text in ((sealed_before, "sealed-before-the-rotation"), (sealed_after, "sealed-after-the-rotation")):
        assert (await opening.unseal(key, sealed, user)).get_secret_value() == text


async def test_secrets_sealed_before_binding_secret_rotates_still_open(client, htx_sandbox, bootstrapped_stack):
    await rotate_with_one_sealed_before(bootstrapped_stack, BINDING_SECRET_KEY, "vault-writer")
    # And a binding sealed with the new version goes through the pipeline.
    bound = await bind(client, new_user(), fresh_key(htx_sandbox), trading_pairs=["btcusdt"])
    assert bound[-1].state == BindingState.ACTIVE


@pytest.mark.parametrize("opener", ["validator", "trading-engine"])
async def test_passphrases_sealed_before_binding_passphrase_rotates_still_open_for_those_who_send_them(
        bootstrapped_stack, opener):
    await rotate_with_one_sealed_before(bootstrapped_stack, BINDING_PASSPHRASE_KEY, opener)


@pytest.mark.parametrize(("key", "names"), [("exchange-key-0123", "hash7 bind --replaces"),
                                            ("event-intake", "hash7-keys"), ("nonsense", "access-key-index")])
def test_keys_rotated_another_way_are_refused_in_one_line(bootstrapped_stack, key, names):
    code, _, err = admin(bootstrapped_stack, "rotate-transit", key)
    assert code == 1 and names in err and len(err.strip().splitlines()) == 1, err
