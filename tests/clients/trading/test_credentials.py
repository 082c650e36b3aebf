"""BindingStore against an in-memory Vault: what a binding holds, how long it is cached, rotation and
revocation, that it signs with the binding's Transit key and that the secret is never read out of Vault."""

import pytest
from pydantic import SecretStr

from shared.adapters.request_signing import LocalHmacSigner, RequestSigner
from shared.adapters.vault.layout import binding_path, exchange_key, whitelist_path
from shared.adapters.vault.records import KeyRef
from shared.clients.trading.credentials import BindingNotFound, BindingStore
from shared.contracts.secrets import mask_access_key
from shared.runtime.logging import redact
from tests.clients.trading.fakes import (
    ACCESS_KEY,
    BINDING,
    HTX_UID,
    SECRET_KEY,
    SPOT_ACCOUNT_ID,
    USER,
    store_binding,
    store_whitelist,
)

TTL_S = 30.0
NEW_ACCESS_KEY = "f0e1d2c3-b4a59687-78695a4b-3c2d1e"
NEW_SECRET_KEY = "rotated-secret-0a1b2c3d-never-shown"
SIGNED_TEXT = "POST\napi.huobi.pro\n/v1/order/orders/place\nAccessKeyId=x"


async def signs_with(signer: RequestSigner, secret: str) -> bool:
    """Whether signer's digest is the HMAC with secret (computed here, apart from Vault)."""
    return await signer.sign([SIGNED_TEXT]) == await LocalHmacSigner(SecretStr(secret)).sign([SIGNED_TEXT])


@pytest.fixture
def store(vault, clock):
    return BindingStore(vault, TTL_S, clock)


async def test_a_binding_holds_the_credentials_account_and_normalised_whitelist(vault, store):
    await store_binding(vault)
    await store_whitelist(vault, ["BTC/USDT", "eth-usdt"])

    binding = await store.get(USER, BINDING)

    assert (binding.exchange, binding.access_key, binding.owner_uid, binding.trading_account_id) == (
        "htx", ACCESS_KEY, HTX_UID, SPOT_ACCOUNT_ID)
    assert binding.signing_key == KeyRef(exchange_key(USER, BINDING), 1)
    assert binding.whitelist == ("btcusdt", "ethusdt") and binding.allows("ethusdt") and not binding.allows("xrpusdt")
    assert binding.health is None and not binding.invalid and binding.version == 1
    credentials = binding.credentials(store.signer(binding))
    assert (credentials.access_key, credentials.owner_uid) == (ACCESS_KEY, HTX_UID)
    assert await signs_with(credentials.signer, SECRET_KEY)


async def test_the_engine_reads_no_secret_out_of_vault(vault, store):
    await store_binding(vault)
    binding = await store.get(USER, BINDING)

    # Neither the KV record the engine reads nor anything the binding holds carries the secret, in any field.
    [record] = vault.versions[binding_path(USER, BINDING)]
    assert "secret_key" not in record and "secret_key_sealed" not in record
    assert SECRET_KEY not in str(record) and SECRET_KEY not in str(vars(binding))
    # What signs names the key version the record names: Vault holds the secret. (And another secret is told apart.)
    signer = store.signer(binding)
    assert signer.key == binding.signing_key and not await signs_with(signer, NEW_SECRET_KEY)


async def test_the_secret_is_in_no_repr_and_the_access_key_only_masked(vault, store):
    await store_binding(vault)
    binding = await store.get(USER, BINDING)

    signer = store.signer(binding)
    shown = [repr(binding), str(binding), f"{binding}", str(redact(binding)), repr(signer),
             repr(binding.credentials(signer))]

    assert all(SECRET_KEY not in text and ACCESS_KEY not in text for text in shown)
    assert mask_access_key(ACCESS_KEY) in repr(binding) and binding.access_key_masked == mask_access_key(ACCESS_KEY)


async def test_a_binding_without_a_whitelist_allows_nothing_and_health_invalid_is_read(vault, store, clock):
    await store_binding(vault)
    assert (await store.get(USER, BINDING)).whitelist == ()

    await store_whitelist(vault, ["btcusdt"], health="invalid")
    clock.advance(TTL_S)
    binding = await store.get(USER, BINDING)
    assert binding.invalid and binding.health == "invalid"


async def test_a_binding_is_served_from_memory_until_the_ttl_then_a_rotation_is_picked_up(vault, store, clock):
    await store_binding(vault)
    await store_whitelist(vault, ["btcusdt"])
    first = await store.get(USER, BINDING)

    await store_binding(vault, access_key=NEW_ACCESS_KEY, secret_key=NEW_SECRET_KEY)
    reads = vault.reads
    clock.advance(TTL_S - 0.1)
    assert await store.get(USER, BINDING) is first and vault.reads == reads

    clock.advance(0.1)
    rotated = await store.get(USER, BINDING)
    assert rotated.version == 2 and rotated.access_key == NEW_ACCESS_KEY and rotated.whitelist == ("btcusdt",)
    assert rotated.signing_key == KeyRef(exchange_key(USER, BINDING), 2)
    assert await signs_with(store.signer(rotated), NEW_SECRET_KEY)


async def test_refresh_reads_vault_now_and_what_it_read_is_cached(vault, store):
    await store_binding(vault)
    await store.get(USER, BINDING)
    await store_binding(vault, access_key=NEW_ACCESS_KEY, secret_key=NEW_SECRET_KEY)

    assert (await store.refresh(USER, BINDING)).access_key == NEW_ACCESS_KEY
    reads = vault.reads
    assert (await store.get(USER, BINDING)).access_key == NEW_ACCESS_KEY and vault.reads == reads


async def test_a_revoked_binding_is_not_found_once_its_ttl_is_over(vault, store, clock):
    await store_binding(vault)
    await store_whitelist(vault, ["btcusdt"])
    await store.get(USER, BINDING)

    # What the vault-writer does on revocation.
    await vault.delete_all(whitelist_path(USER, BINDING))
    await vault.delete_all(binding_path(USER, BINDING))
    clock.advance(TTL_S)

    with pytest.raises(BindingNotFound, match=f"binding {BINDING} of user {USER} has no credentials in Vault"):
        await store.get(USER, BINDING)
    with pytest.raises(BindingNotFound):
        await store.refresh(USER, BINDING)


async def test_absence_is_not_cached(vault, store):
    with pytest.raises(BindingNotFound):
        await store.get(USER, BINDING)
    await store_binding(vault)
    assert (await store.get(USER, BINDING)).access_key == ACCESS_KEY


async def test_with_a_ttl_of_zero_every_get_reads_vault(vault, clock):
    store = BindingStore(vault, 0, clock)
    await store_binding(vault)
    await store.get(USER, BINDING)
    reads = vault.reads
    await store.get(USER, BINDING)
    assert vault.reads > reads


async def test_no_secret_stays_in_memory_past_the_ttl(vault, store, clock):
    await store_binding(vault)
    await store.get(USER, BINDING)
    clock.advance(TTL_S)

    with pytest.raises(BindingNotFound):
        await store.get(USER, "another-binding")
    # Looking at the private cache is the only way to see what the store still holds.
    assert store._cache == {}
