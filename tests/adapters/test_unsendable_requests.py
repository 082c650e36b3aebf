"""The shared transport (shared/adapters/exchange/http.py) against a real sandbox over HTTP: a header value its HTTP
stack refuses (a line break or control character that h11 will not write; a non-ASCII character httpx cannot
encode) ends as a non-transient ExchangeError named by the failure's class only, never retried, and the value is in
no error text. Bybit's access key header stands in for any header an adapter fills from a user's input."""

import pytest
from pydantic import SecretStr

from shared.adapters.bybit.client import BybitExchange
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.exchange.http import REQUEST_UNSENDABLE
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.request_signing import LocalHmacSigner

pytestmark = pytest.mark.stack


@pytest.fixture
async def bybit(clean_bybit_sandbox):
    exchange = BybitExchange(clean_bybit_sandbox.base_url, timeout_s=2.0, retry_budget_s=1.0)
    yield exchange
    await exchange.aclose()


@pytest.mark.parametrize("access_key", ["H7SBX01GOOD0000K00\r\nX-Injected: 1", "H7SBX01\x00GOOD", "H7SBX01\nGOOD",
                                        "H7SBX01GÖÖD", "H7SBX01🔑"])
async def test_a_header_the_stack_refuses_is_a_typed_error_without_its_value(clean_bybit_sandbox, bybit, capfd,
                                                                              access_key):
    credentials = ExchangeCredentials(access_key, LocalHmacSigner(SecretStr("secret")))
    with pytest.raises(ExchangeError) as caught:
        await bybit.describe_key(credentials)
    error = caught.value
    assert (error.kind, error.code, error.transient) == (ExchangeErrorKind.BAD_REQUEST, REQUEST_UNSENDABLE, False)
    assert error.message in ("the request could not be sent (LocalProtocolError)",
                             "the request could not be sent (UnicodeEncodeError)")
    assert "GET /v5/user/query-api" not in clean_bybit_sandbox.admin.request_counts()
    out, err = capfd.readouterr()
    for text in (str(error), repr(error), out, err):
        assert access_key not in text
        assert "Injected" not in text
