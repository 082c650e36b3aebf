"""A passphrase no HTTP header can carry as it is (a line break, a control or non-ASCII character), against the real
OKX sandbox: refused before anything is sent (so never retried), as a key OKX would not accept (key_invalid for the
validator), and its value in no error text, repr or log line (shared/adapters/okx/README.md#signing)."""

import pytest
from pydantic import SecretStr

from services.validator.inspection import inspect_key
from services.validator.verdict import KeyPolicy
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.okx.client import ACCOUNT_CONFIG_PATH, OkxExchange
from shared.adapters.okx.signing import passphrase_is_sendable
from shared.adapters.request_signing import LocalHmacSigner
from shared.contracts.reasons import ReasonCode

pytestmark = pytest.mark.stack

HOSTILE = ["Pass\r\nX-Injected: 1", "Pass\nword1", "Pass\x00word1", "Pass\tword1", "Passwörd1", "Pass🔑word1",
           " Password1", "Password1 ", "Pass\x7fword1"]
POLICY = KeyPolicy(egress_ips=("203.0.113.10", "203.0.113.11"), expiry_warning_days=7)


@pytest.fixture
def sandbox(clean_okx_sandbox):
    return clean_okx_sandbox


@pytest.fixture
async def okx(sandbox):
    exchange = OkxExchange(sandbox.base_url, timeout_s=2.0, retry_budget_s=1.0, backoff_base_s=0.02,
                           backoff_cap_s=0.1)
    yield exchange
    await exchange.aclose()


def hostile_credentials(sandbox, passphrase: str) -> ExchangeCredentials:
    api_key, secret, _ = sandbox.handed("good")
    return ExchangeCredentials(api_key, LocalHmacSigner(SecretStr(secret)), passphrase=SecretStr(passphrase))


@pytest.mark.parametrize("passphrase", HOSTILE)
async def test_an_unsendable_passphrase_is_refused_unsent_and_unseen(okx, sandbox, capfd, caplog, passphrase):
    credentials = hostile_credentials(sandbox, passphrase)
    with pytest.raises(ExchangeError) as caught:
        await okx.describe_key(credentials)
    error = caught.value
    assert (error.kind, error.code, error.transient) == (
        ExchangeErrorKind.SIGNATURE_MISMATCH, "passphrase-unsendable", False)
    assert f"GET {ACCOUNT_CONFIG_PATH}" not in sandbox.admin.request_counts()
    out, err = capfd.readouterr()
    for text in (str(error), repr(error), error.message, repr(credentials), out, err, caplog.text):
        assert passphrase not in text


@pytest.mark.parametrize("passphrase", HOSTILE)
async def test_the_validator_calls_it_an_invalid_key(okx, sandbox, passphrase):
    inspection = await inspect_key(okx, hostile_credentials(sandbox, passphrase), POLICY)
    assert [r.code for r in inspection.verdict.rejections] == [ReasonCode.KEY_INVALID]
    assert all(passphrase not in r.message + r.hint for r in inspection.verdict.rejections)


@pytest.mark.parametrize(("passphrase", "sendable"), [
    ("Password1", True), ("Pass word!~", True), ("!", True), ("", False), *((p, False) for p in HOSTILE)])
def test_what_is_sendable(passphrase, sendable):
    assert passphrase_is_sendable(passphrase) is sendable
