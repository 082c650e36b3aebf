"""An independent HTX client against the sandbox: `huobi-sdk-hash-7` (Hash7's fork of HTX's official Python
SDK, unchanged signing code: shared/adapters/htx/README.md#hash7-sdk), pointed at the sandbox with its `url=`
argument. Its signed calls are accepted, and its tampered or wrongly signed calls are refused with HTX's exact
message.

The SDK signs the bare host (`urlparse(url).hostname`) while its HTTP library sends the port in the Host
header, exactly the case shared/adapters/htx/README.md#signing describes, so these calls also prove the sandbox
accepts a signed host without the port.

`AccountClient` is not imported: the SDK imports aiohttp there without declaring it; its `get_accounts` is
a one-line call of `GetAccountsService`, used directly instead.
"""

import json
import time

import pytest
import requests
from huobi.client.generic import GenericClient
from huobi.client.subuser import SubuserClient
from huobi.client.trade import TradeClient
from huobi.connection.impl.restapi_invoker import check_response
from huobi.constant import OrderSource, OrderType
from huobi.exception.huobi_api_exception import HuobiApiException
from huobi.service.account.get_accounts import GetAccountsService
from huobi.utils.api_signature import create_signature
from huobi.utils.url_params_builder import UrlParamsBuilder

pytestmark = pytest.mark.stack

VERIFICATION_FAILURE = {"status": "error", "err-code": "api-signature-not-valid",
                        "err-msg": "Signature not valid: Verification failure [校验失败]", "data": None}


@pytest.fixture
def sandbox(clean_htx_sandbox):
    return clean_htx_sandbox


def sdk_options(sandbox, note: str, secret: str | None = None) -> dict[str, str]:
    key = sandbox.key_entry(note)
    return {"api_key": key["access_key"], "secret_key": secret or key["secret_key"], "url": sandbox.base_url}


def sdk_refusal(call) -> str:
    with pytest.raises(HuobiApiException) as caught:
        call()
    return caught.value.error_message


def test_public_calls(sandbox):
    generic = GenericClient(url=sandbox.base_url)
    assert abs(generic.get_exchange_timestamp() - time.time() * 1000) < 5_000
    btc = next(s for s in generic.get_exchange_symbols() if s.symbol == "btcusdt")
    assert (btc.base_currency, btc.quote_currency, btc.state) == ("btc", "usdt", "online")
    market = {s["symbol"]: s for s in generic.get_exchange_symbols_v2()}
    assert (market["xrpusdt"]["state"], market["xrpusdt"]["at"]) == ("online", "disabled")


def test_signed_reads_are_accepted(sandbox):
    options = sdk_options(sandbox, "good")
    sub_users = SubuserClient(**options)
    uid = sub_users.get_uid()
    assert uid == sandbox.user("good")["uid"]
    [entry] = sub_users.get_user_apikey_info(uid, options["api_key"])
    assert (entry.accessKey, entry.permission, entry.ipAddresses, entry.validDays, entry.status) == (
        options["api_key"], "readOnly,trade", "203.0.113.10,203.0.113.11", -1, "normal")
    accounts = GetAccountsService({}).request(**options)
    assert [(a.id, a.type, a.state) for a in accounts if a.type == "spot"] == [(10000011, "spot", "working")]


def test_a_signed_order_is_placed_and_recorded(sandbox):
    order_id = TradeClient(**sdk_options(sandbox, "good")).create_order(
        "btcusdt", 10000011, OrderType.BUY_LIMIT, 0.001, 30000, OrderSource.SPOT_API, client_order_id="sdk-1")
    [recorded] = sandbox.admin.orders()
    assert (recorded["order_id"], recorded["symbol"], recorded["type"], recorded["amount"], recorded["price"],
            recorded["source"], recorded["client_order_id"]) == (
        order_id, "btcusdt", "buy-limit", "0.001", "30000", "spot-api", "sdk-1")


def test_a_wrong_secret_is_refused_with_htx_message(sandbox):
    message = sdk_refusal(SubuserClient(**sdk_options(sandbox, "good", secret="not-the-secret")).get_uid)
    assert message == "[Executing] api-signature-not-valid: Signature not valid: Verification failure [校验失败]"


def test_a_tampered_signed_url_is_refused_with_htx_message(sandbox):
    options = sdk_options(sandbox, "good")
    uid, sub_uid = sandbox.user("good")["uid"], sandbox.user("sub-user")["uid"]
    builder = UrlParamsBuilder()
    builder.put_url("uid", uid)
    builder.put_url("accessKey", options["api_key"])
    url = f"{sandbox.base_url}/v2/user/api-key"
    create_signature(options["api_key"], options["secret_key"], "GET", url, builder)
    signed_url = url + builder.build_url()
    assert requests.get(signed_url, timeout=5).json()["code"] == 200
    tampered = requests.get(signed_url.replace(f"uid={uid}", f"uid={sub_uid}"), timeout=5).json()
    assert tampered == VERIFICATION_FAILURE
    with pytest.raises(HuobiApiException):
        check_response(tampered)


def test_the_ip_refusal_names_the_caller(sandbox):
    message = sdk_refusal(SubuserClient(**sdk_options(sandbox, "ip-not-bound")).get_uid)
    assert message == ("[Executing] api-signature-not-valid: "
                       "Signature not valid: Incorrect IP address [IP地址错误]:203.0.113.10")


def test_a_read_only_key_cannot_place_orders(sandbox):
    trade = TradeClient(**sdk_options(sandbox, "read-only"))
    message = sdk_refusal(
        lambda: trade.create_order("btcusdt", 10000031, OrderType.BUY_MARKET, 5, None, OrderSource.API)
    )
    assert message == (
        "[Executing] api-signature-not-valid: Signature not valid: API key has no permission [API Key没有权限]"
    )


def test_a_sub_user_on_the_parent_only_endpoint_gets_htx_bare_403(sandbox):
    # The SDK fails to parse HTX's non-JSON 403 answer (shared/adapters/htx/README.md#envelopes).
    options = sdk_options(sandbox, "sub-user")
    with pytest.raises(json.JSONDecodeError):
        SubuserClient(**options).get_user_apikey_info(sandbox.user("sub-user")["uid"], options["api_key"])
