"""Exchange keys on the real OpenBao, each step as the role that takes it in the running system: the validator's
key-check keys, the vault-writer's binding keys (new, redelivered, rotated, destroyed), and the trading engine
signing through Vault with digests equal to HMAC-SHA256 under the secret
(shared/adapters/vault/README.md#exchange-keys).
"""

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass

import hvac
import pytest
from pydantic import SecretStr

from shared.adapters.htx.signing import pre_sign_text
from shared.adapters.vault import key_import
from shared.adapters.vault.client import ImportRefused, KeyExists, KeyMissing, VaultClient
from shared.adapters.vault.key_import import NotImportable, wrap_for_import
from shared.adapters.vault.layout import TRANSIT_MOUNT, exchange_key, key_import_path
from shared.adapters.vault.records import KeyRef
from shared.adapters.vault.stores import ExchangeKeys
from shared.adapters.vault.transit_signer import TransitHmacSigner
from tests.services.vaults import Crash

pytestmark = pytest.mark.stack

USER = "exchange-keys-user"
FIRST_SECRET = "first-secret-0123456789abcdef-xyz"
ROTATED_SECRET = "rotated-secret-fedcba9876543210-q"
DEAD_SECRET = "dead-lettered-secret-0246813579-z"
TEXT = pre_sign_text("GET", "api.huobi.pro", "/v1/account/accounts", [
    ("AccessKeyId", "ak-0001"), ("SignatureMethod", "HmacSHA256"), ("SignatureVersion", "2"),
    ("Timestamp", "2024-05-01T12:00:00"),
])


def local_digest(secret: str, text: str = TEXT) -> bytes:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha256).digest()


@dataclass(frozen=True)
class Roles:
    app: VaultClient
    validator: VaultClient
    writer: VaultClient
    engine: VaultClient
    root: hvac.Client
    wrapping_key: str

    def wrap(self, secret: str) -> str:
        return wrap_for_import(self.wrapping_key, SecretStr(secret))

    async def signs_as(self, key: KeyRef, secret: str) -> bool:
        """Whether this key version signs as secret does, asked as the trading engine."""
        return (await TransitHmacSigner(self.engine, key).sign([TEXT])) == [local_digest(secret)]


@pytest.fixture(scope="module")
async def roles(bootstrapped_stack) -> Roles:
    settings = bootstrapped_stack.settings

    def client(role: str) -> VaultClient:
        return VaultClient(settings.vault_connection(), settings.approle_credentials(role))

    app = client("app")
    return Roles(app, client("validator"), client("vault-writer"), client("trading-engine"),
                 hvac.Client(url=settings.vault_addr, token=bootstrapped_stack.root_token), await app.wrapping_key())


async def test_a_key_check_key_is_imported_once_signs_with_the_secret_and_is_gone_once_discarded(roles):
    checks, request_id = ExchangeKeys(roles.validator), uuid.uuid4().hex
    key = await checks.import_for_check(USER, request_id, roles.wrap(FIRST_SECRET))
    # A redelivery that finds the key imported keeps it: a second import (of anything) never happens.
    again = await checks.import_for_check(USER, request_id, roles.wrap(ROTATED_SECRET))

    assert again == key and key.version == 1
    signer = TransitHmacSigner(roles.validator, key)
    assert await signer.sign([TEXT]) == [local_digest(FIRST_SECRET)]
    await checks.discard_check(USER, request_id)
    assert await roles.validator.key_version(key.name) is None
    with pytest.raises(KeyMissing):
        await signer.sign([TEXT])
    await checks.discard_check(USER, request_id)


async def test_a_binding_key_is_created_once_rotated_once_and_each_version_signs_with_its_own_secret(roles):
    keys, binding_id = ExchangeKeys(roles.writer), uuid.uuid4().hex
    first = await keys.store_new(USER, binding_id, roles.wrap(FIRST_SECRET))
    redelivered = await keys.store_new(USER, binding_id, roles.wrap(ROTATED_SECRET))
    rotated = await keys.store_rotation(USER, binding_id, "r2", roles.wrap(ROTATED_SECRET))
    # The rotation's redelivery (its record not stored yet) finds its own version 2, and imports nothing.
    rotation_redelivered = await keys.store_rotation(USER, binding_id, "r2", roles.wrap(FIRST_SECRET))

    name = exchange_key(USER, binding_id)
    assert [first, redelivered, rotated, rotation_redelivered] == [
        KeyRef(name, 1), KeyRef(name, 1), KeyRef(name, 2), KeyRef(name, 2)]
    assert await roles.writer.key_version(name) == 2
    assert await roles.signs_as(first, FIRST_SECRET) and await roles.signs_as(rotated, ROTATED_SECRET)


async def test_a_destroyed_binding_key_signs_no_more_in_any_version_and_destroying_again_changes_nothing(roles):
    keys, binding_id = ExchangeKeys(roles.writer), uuid.uuid4().hex
    first = await keys.store_new(USER, binding_id, roles.wrap(FIRST_SECRET))
    rotated = await keys.store_rotation(USER, binding_id, "r2", roles.wrap(ROTATED_SECRET))

    await keys.destroy(USER, binding_id)

    for version in (first, rotated):
        with pytest.raises(KeyMissing):
            await TransitHmacSigner(roles.engine, version).sign([TEXT])
    assert await roles.writer.key_version(first.name) is None
    assert await roles.writer.read(key_import_path(USER, binding_id)) is None  # the rotation's note went with it
    await keys.destroy(USER, binding_id)


async def test_a_rotation_after_one_dead_lettered_past_its_import_gets_a_version_of_its_own(roles):
    keys, binding_id = ExchangeKeys(roles.writer), uuid.uuid4().hex
    await keys.store_new(USER, binding_id, roles.wrap(FIRST_SECRET))
    # Imported as version 2, then dead-lettered before its record was stored: no record ever names version 2.
    dead = await keys.store_rotation(USER, binding_id, "r2", roles.wrap(DEAD_SECRET))

    later = await keys.store_rotation(USER, binding_id, "r3", roles.wrap(ROTATED_SECRET))
    later_again = await keys.store_rotation(USER, binding_id, "r3", roles.wrap(ROTATED_SECRET))

    name = exchange_key(USER, binding_id)
    assert (dead, later, later_again) == (KeyRef(name, 2), KeyRef(name, 3), KeyRef(name, 3))
    assert await roles.writer.key_version(name) == 3
    assert await roles.signs_as(later, ROTATED_SECRET) and not await roles.signs_as(later, DEAD_SECRET)


async def test_a_rotation_redelivered_after_a_crash_between_its_note_and_its_import_imports_once(roles, monkeypatch):
    keys, binding_id = ExchangeKeys(roles.writer), uuid.uuid4().hex
    await keys.store_new(USER, binding_id, roles.wrap(FIRST_SECRET))
    importing = roles.writer.import_hmac_key_version

    async def dies_before_importing(key: str, ciphertext: str) -> None:
        monkeypatch.setattr(roles.writer, "import_hmac_key_version", importing)
        raise Crash(key)

    monkeypatch.setattr(roles.writer, "import_hmac_key_version", dies_before_importing)
    with pytest.raises(Crash):
        await keys.store_rotation(USER, binding_id, "r2", roles.wrap(ROTATED_SECRET))
    name = exchange_key(USER, binding_id)
    assert await roles.writer.key_version(name) == 1

    redelivered = await keys.store_rotation(USER, binding_id, "r2", roles.wrap(ROTATED_SECRET))
    # Crashed again, after the import and before its record: delivered once more, it imports nothing.
    once_more = await keys.store_rotation(USER, binding_id, "r2", roles.wrap(ROTATED_SECRET))

    assert redelivered == once_more == KeyRef(name, 2) and await roles.writer.key_version(name) == 2
    assert await roles.signs_as(redelivered, ROTATED_SECRET)


async def test_the_transit_signer_gives_the_htx_digests_and_names_each_call_by_its_own_vault_request_id(roles):
    key = await ExchangeKeys(roles.writer).store_new(USER, uuid.uuid4().hex, roles.wrap(FIRST_SECRET))
    signer = TransitHmacSigner(roles.engine, key)
    texts = [TEXT, TEXT.replace("ak-0001", "ak-0002")]

    assert await signer.sign(texts) == [local_digest(FIRST_SECRET, text) for text in texts]
    assert await signer.sign(texts[:1]) == [local_digest(FIRST_SECRET)]
    first_call, second_call = signer.vault_request_ids
    assert first_call and second_call and first_call != second_call


async def test_signing_with_a_missing_key_or_a_version_the_key_does_not_have_is_key_missing(roles):
    key = await ExchangeKeys(roles.writer).store_new(USER, uuid.uuid4().hex, roles.wrap(FIRST_SECRET))
    for absent in (KeyRef(exchange_key(USER, uuid.uuid4().hex), 1), KeyRef(key.name, 2)):
        with pytest.raises(KeyMissing) as refused:
            await roles.engine.hmac_batch(absent.name, absent.version, [TEXT])
        assert FIRST_SECRET not in str(refused.value)


async def test_a_secret_shorter_than_transit_accepts_is_not_wrapped_and_is_not_quoted(roles):
    short = "s" * (key_import.HMAC_KEY_MIN_BYTES - 1)
    with pytest.raises(NotImportable) as refused:
        roles.wrap(short)
    assert short not in str(refused.value)


def _wrong_shapes(roles: Roles, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Import ciphertexts a rogue app could seal: each must be refused by Transit, not retried as trouble."""
    wrapped = base64.b64decode(roles.wrap(FIRST_SECRET))
    tampered = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    # A secret Transit refuses for its size, wrapped by a client that skipped our check.
    monkeypatch.setattr(key_import, "HMAC_KEY_MIN_BYTES", 1)
    undersized = roles.wrap("s" * 31)
    return {"not base64": "!!!", "too short": base64.b64encode(b"x" * 16).decode(),
            "tampered": base64.b64encode(tampered).decode(), "31 bytes": undersized}


async def test_a_wrong_shaped_import_is_refused_as_a_new_key_and_as_a_version(roles, monkeypatch):
    existing = await ExchangeKeys(roles.writer).store_new(USER, uuid.uuid4().hex, roles.wrap(FIRST_SECRET))
    for shape, ciphertext in _wrong_shapes(roles, monkeypatch).items():
        with pytest.raises(ImportRefused):
            await roles.writer.import_hmac_key(exchange_key(USER, uuid.uuid4().hex), ciphertext)
        with pytest.raises(ImportRefused):
            await roles.writer.import_hmac_key_version(existing.name, ciphertext)
        assert await roles.writer.key_version(existing.name) == 1, shape
    assert await roles.signs_as(existing, FIRST_SECRET)


async def test_importing_into_a_taken_name_is_key_exists_and_leaves_the_key_as_it_was(roles):
    key = await ExchangeKeys(roles.writer).store_new(USER, uuid.uuid4().hex, roles.wrap(FIRST_SECRET))
    with pytest.raises(KeyExists):
        await roles.writer.import_hmac_key(key.name, roles.wrap(ROTATED_SECRET))
    assert await roles.writer.key_version(key.name) == 1 and await roles.signs_as(key, FIRST_SECRET)


async def test_an_imported_key_is_non_exportable_without_a_plaintext_backup(roles):
    key = await ExchangeKeys(roles.writer).store_new(USER, uuid.uuid4().hex, roles.wrap(FIRST_SECRET))
    settings = roles.root.secrets.transit.read_key(key.name, mount_point=TRANSIT_MOUNT)["data"]

    assert (settings["type"], settings["imported_key"]) == ("hmac", True)
    assert (settings["exportable"], settings["allow_plaintext_backup"], settings["deletion_allowed"]) == (
        False, False, False)


async def test_deleting_an_absent_key_does_nothing(roles):
    await roles.writer.delete_key(exchange_key(USER, uuid.uuid4().hex))
    await ExchangeKeys(roles.validator).discard_check(USER, uuid.uuid4().hex)
