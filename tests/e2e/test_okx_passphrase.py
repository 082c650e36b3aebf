"""An OKX key's passphrase through the real pipeline, against the OKX sandbox (README.md#the-passphrases-path): the
app seals it, the validator opens it to ask OKX, the vault-writer stores it sealed. The demo "good" key, with its
passphrase, becomes active; the demo key whose user mistypes the passphrase is rejected key_invalid."""

import base64

import pytest
from pydantic import SecretStr

from shared.adapters.vault.layout import BINDING_PASSPHRASE_KEY, KV_MOUNT, TRANSIT_MOUNT, binding_path
from shared.contracts.reasons import ReasonCode
from shared.contracts.states import BindingState as S
from tests.e2e.helpers import SECRETS_USED, TERMINAL, WAIT_S, new_user, states

pytestmark = pytest.mark.stack


async def bind_okx(client, okx_sandbox, label: str, user: str):
    access_key, secret, passphrase = okx_sandbox.handed(label)
    # The leak scan (tests/e2e/test_no_secret_leaks.py) looks for these too.
    SECRETS_USED.update({secret, passphrase})
    request_id = await client.bind(user, access_key, SecretStr(secret), exchange="okx",
                                   passphrase=SecretStr(passphrase), trading_pairs=["BTC/USDT"])
    return await client.wait_for(request_id, TERMINAL, WAIT_S), passphrase


async def test_the_good_okx_key_with_its_passphrase_becomes_active_and_its_passphrase_is_stored_sealed(
        client, okx_sandbox, vault_admin):
    user = new_user()
    timeline, passphrase = await bind_okx(client, okx_sandbox, "good", user)
    assert states(timeline) == [S.RECEIVED, S.VALIDATED, S.STORED, S.ACTIVE], [s.reasons for s in timeline]
    assert all(s.exchange == "okx" for s in timeline)

    record = vault_admin.secrets.kv.v2.read_secret_version(
        path=binding_path(user, timeline[0].binding_id), mount_point=KV_MOUNT,
        raise_on_deleted_version=False)["data"]["data"]
    assert passphrase not in str(record)
    opened = vault_admin.secrets.transit.decrypt_data(
        name=BINDING_PASSPHRASE_KEY, ciphertext=record["passphrase_sealed"],
        context=base64.b64encode(user.encode()).decode(), mount_point=TRANSIT_MOUNT)
    assert base64.b64decode(opened["data"]["plaintext"]).decode() == passphrase


async def test_the_okx_key_whose_passphrase_is_mistyped_is_rejected_key_invalid(client, okx_sandbox):
    timeline, _ = await bind_okx(client, okx_sandbox, "wrong-passphrase", new_user())
    assert states(timeline) == [S.RECEIVED, S.REJECTED]
    assert timeline[-1].reason_codes == [ReasonCode.KEY_INVALID]


async def test_an_okx_request_without_its_passphrase_is_refused_by_intake_and_goes_no_further(
        client, okx_sandbox, pipeline):
    access_key, secret, _ = okx_sandbox.handed("good")
    user = new_user()
    # The app's client refuses it itself: this is what a careless app would send, built past that check.
    request = await client.binding_request(user, access_key, SecretStr(secret), exchange="htx")
    await client.submit(request.model_copy(update={"exchange": "okx"}))
    timeline = await client.wait_for(request.request_id, TERMINAL, WAIT_S, user_id=user)
    assert states(timeline) == [S.REJECTED]
    assert timeline[-1].reason_codes == [ReasonCode.MALFORMED_REQUEST]
    assert "an OKX key needs its passphrase" in timeline[-1].reasons[0].message
