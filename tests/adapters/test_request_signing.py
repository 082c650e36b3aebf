"""Request signers against HTX's signing vectors (shared/adapters/htx/README.md#test-vectors): the local one, and
Transit signing with the vector's secret imported into the real OpenBao as the services import a user's. Neither
ever shows the secret."""

import uuid

import pytest
from pydantic import SecretStr

from shared.adapters.htx.signing import encode_signature
from shared.adapters.request_signing import LocalHmacSigner
from shared.adapters.vault.client import VaultClient
from shared.adapters.vault.key_import import wrap_for_import
from shared.adapters.vault.stores import ExchangeKeys
from shared.adapters.vault.transit_signer import TransitHmacSigner
from shared.runtime.logging import redact

# Vectors 1, 3 and 5 (the POST) of shared/adapters/htx/README.md#test-vectors: secret, signed text, signature.
GO_SDK = ("secret", "GET\napi.huobi.pro\n/v1/account/history\naccount-id=1&currency=btcusdt",
          "HUP3n78npIuTzVKyjEOrPictRKEUTRoYs7Ld5y38hmA=")
PYTHON_SDK = ("456", "GET\nhost\n/url\nAccessKeyId=123&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=123",
              "Hhiaq8xYQPiBZOyWV37MdQutLo4f0ZOHiJtG3p+nILc=")
# 32 bytes: a secret Transit imports as it is.
OWN_SECRET = "b0xxxxxx-c6xxxxxx-94xxxxxx-dxxxx"
OWN_PLACE = (OWN_SECRET, "POST\napi.huobi.pro\n/v1/order/orders/place\nAccessKeyId=e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx"
             "&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2024-01-02T03%3A04%3A05",
             "qQJcOrt05IWeQ3StgxqQQZPJNLexxu+r1dnlWx8sk7Y=")
OWN_UID_TEXT = ("GET\napi.huobi.pro\n/v2/user/uid\nAccessKeyId=e2xxxxxx-99xxxxxx-84xxxxxx-7xxxx"
                "&SignatureMethod=HmacSHA256&SignatureVersion=2&Timestamp=2024-01-02T03%3A04%3A05")
OWN_UID_SIGNATURE = "eN2brXLL9Ps/uZOWoDH64NT29LgPVdGl9duKSsmxgG4="


@pytest.mark.parametrize(("secret", "text", "signature"), [GO_SDK, PYTHON_SDK, OWN_PLACE], ids=["go", "py", "own"])
async def test_the_local_signer_gives_the_documented_signatures(secret, text, signature):
    [digest] = await LocalHmacSigner(SecretStr(secret)).sign([text])
    assert len(digest) == 32 and encode_signature(digest) == signature


async def test_a_batch_is_signed_text_by_text_in_order():
    _, place_text, place_signature = OWN_PLACE
    digests = await LocalHmacSigner(SecretStr(OWN_SECRET)).sign([OWN_UID_TEXT, place_text, OWN_UID_TEXT])
    assert [encode_signature(digest) for digest in digests] == [OWN_UID_SIGNATURE, place_signature, OWN_UID_SIGNATURE]
    assert await LocalHmacSigner(SecretStr(OWN_SECRET)).sign([]) == []


async def test_another_secret_gives_another_signature():
    _, text, signature = OWN_PLACE
    [digest] = await LocalHmacSigner(SecretStr(OWN_SECRET[:-1] + "y")).sign([text])
    assert encode_signature(digest) != signature


def test_the_local_signer_never_shows_its_secret():
    signer = LocalHmacSigner(SecretStr(OWN_SECRET))
    shown = [repr(signer), str(signer), f"{signer!r}", repr(vars(signer)), str(redact(signer)),
             str(redact({"signer": signer}))]
    assert all(OWN_SECRET not in text for text in shown)
    assert repr(signer) == "LocalHmacSigner(**********)"


@pytest.mark.stack
async def test_transit_signs_the_documented_order_with_the_imported_secret(bootstrapped_stack):
    # As in the running system: the app wraps, the vault-writer imports, the trading engine signs.
    settings = bootstrapped_stack.settings
    app, writer, engine = (VaultClient(settings.vault_connection(), settings.approle_credentials(role))
                           for role in ("app", "vault-writer", "trading-engine"))
    keys, binding_id = ExchangeKeys(writer), uuid.uuid4().hex
    key = await keys.store_new("request-signing-user", binding_id,
                               wrap_for_import(await app.wrapping_key(), SecretStr(OWN_SECRET)))
    try:
        signer = TransitHmacSigner(engine, key)
        _, place_text, place_signature = OWN_PLACE
        digests = await signer.sign([place_text, OWN_UID_TEXT])
    finally:
        await keys.destroy("request-signing-user", binding_id)

    assert [encode_signature(digest) for digest in digests] == [place_signature, OWN_UID_SIGNATURE]
    assert len(signer.vault_request_ids) == 1 and OWN_SECRET not in repr(signer)
