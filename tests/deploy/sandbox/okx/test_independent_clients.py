"""Two independent OKX clients against the OKX sandbox, each pointed at it and otherwise unchanged:

- ccxt's `okx` class, with `urls['api']` set to the sandbox, calling its implicit methods;
- python-okx, OKX's official SDK, with `domain=` the sandbox and flag "0" (production).

Their signed calls are accepted; tampered ones (wrong secret, wrong passphrase, a path altered after signing, a stale
timestamp, an unknown key) are refused with OKX's exact code and message as each library surfaces them: ccxt as an
exception whose text is `okx <the body>`, python-okx as the returned body (it raises nothing for a refusal)."""

import json
from datetime import UTC, datetime, timedelta

import ccxt
import httpx
import okx.Account
import okx.PublicData
import okx.Trade
import pytest
from okx import utils as okx_utils

pytestmark = pytest.mark.stack

CONFIG = "/api/v5/account/config"
INVALID_SIGNATURE = {"msg": "Invalid signature.", "code": "50113"}
WRONG_PASSPHRASE = {"msg": 'Request header "OK-ACCESS-PASSPHRASE" incorrect.', "code": "50105"}
STALE = {"msg": "Timestamp request expired.", "code": "50102"}
UNKNOWN_KEY = {"msg": "Invalid OK-ACCESS-KEY.", "code": "50111"}


@pytest.fixture
def sandbox(clean_okx_sandbox):
    return clean_okx_sandbox


# ---- ccxt ------------------------------------------------------------------------------------------------


def ccxt_okx(sandbox, label: str = "good", **overrides: str) -> ccxt.okx:
    api_key, secret, passphrase = sandbox.handed(label)
    exchange = ccxt.okx({"apiKey": api_key, "secret": secret, "password": passphrase, **overrides})
    exchange.urls["api"] = {"rest": sandbox.base_url}
    return exchange


def ccxt_refusal(call, error_class: type[Exception]) -> dict:
    """The body ccxt quotes in its exception (`okx {...}`)."""
    with pytest.raises(error_class) as caught:
        call()
    name, _, quoted = str(caught.value).partition(" ")
    assert name == "okx"
    return json.loads(quoted)


def test_ccxt_public_calls(sandbox):
    exchange = ccxt_okx(sandbox)
    [now] = exchange.publicGetPublicTime()["data"]
    assert abs(int(now["ts"]) - datetime.now(UTC).timestamp() * 1000) < 5_000
    listed = {i["instId"]: i["state"] for i in exchange.publicGetPublicInstruments({"instType": "SPOT"})["data"]}
    assert (listed["BTC-USDT"], listed["ETH-USDT"], listed["LUNA-USDT"]) == ("live", "live", "suspend")


def test_ccxt_reads_the_account_config(sandbox):
    user, key = sandbox.entry("good")
    [config] = ccxt_okx(sandbox).privateGetAccountConfig()["data"]
    assert (config["uid"], config["mainUid"], config["perm"], config["ip"]) == (
        str(user["uid"]), str(user["uid"]), key["perm"], key["ip"])


def test_ccxt_places_an_order(sandbox):
    answer = ccxt_okx(sandbox).privatePostTradeOrder(
        {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "px": "30000"})
    [item] = answer["data"]
    assert item["sCode"] == "0"
    [recorded] = sandbox.admin.orders()
    # ccxt's broker id is added after the body is built, so it never travels (shared/adapters/okx/README.md#orders).
    assert (recorded["ord_id"], recorded["inst_id"], recorded["px"], recorded["cl_ord_id"], recorded["tag"]) == (
        item["ordId"], "BTC-USDT", "30000", None, None)


def test_ccxt_with_a_wrong_secret_is_refused(sandbox):
    exchange = ccxt_okx(sandbox, "secret-mismatch")
    assert ccxt_refusal(exchange.privateGetAccountConfig, ccxt.AuthenticationError) == INVALID_SIGNATURE


def test_ccxt_with_a_wrong_passphrase_is_refused(sandbox):
    exchange = ccxt_okx(sandbox, "wrong-passphrase")
    assert ccxt_refusal(exchange.privateGetAccountConfig, ccxt.AuthenticationError) == WRONG_PASSPHRASE


def test_ccxt_with_a_stale_clock_is_refused(sandbox):
    exchange = ccxt_okx(sandbox)
    exchange.options["timeDifference"] = 60_000  # ccxt's nonce() is its clock minus this
    assert ccxt_refusal(exchange.privateGetAccountConfig, ccxt.InvalidNonce) == STALE


def test_ccxt_with_an_unknown_key_is_refused(sandbox):
    exchange = ccxt_okx(sandbox, apiKey="00000000-0000-0000-0000-000000000000")
    assert ccxt_refusal(exchange.privateGetAccountConfig, ccxt.AuthenticationError) == UNKNOWN_KEY


def test_a_ccxt_request_altered_after_signing_is_refused(sandbox):
    exchange = ccxt_okx(sandbox)
    exchange.options["timeDifference"] = 0
    signed = exchange.sign("account/config", ["private"], "GET", {"a": "1"})
    assert httpx.get(signed["url"], headers=signed["headers"], timeout=5).json()["code"] == "0"
    tampered = httpx.get(signed["url"].replace("a=1", "a=2"), headers=signed["headers"], timeout=5)
    assert (tampered.status_code, tampered.json()) == (401, INVALID_SIGNATURE)


def test_ccxt_with_a_read_only_key_cannot_place_orders(sandbox):
    exchange = ccxt_okx(sandbox, "read-only")
    order = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "10"}
    body = ccxt_refusal(lambda: exchange.privatePostTradeOrder(order), ccxt.ExchangeError)
    assert body == {"code": "50120", "msg": "This API key doesn't have permission to use this function", "data": []}


# ---- python-okx ------------------------------------------------------------------------------------------


def sdk_args(sandbox, label: str = "good") -> dict:
    api_key, secret, passphrase = sandbox.handed(label)
    return {"api_key": api_key, "api_secret_key": secret, "passphrase": passphrase, "flag": "0",
            "domain": sandbox.base_url}


def test_python_okx_public_calls(sandbox):
    public = okx.PublicData.PublicAPI(flag="0", domain=sandbox.base_url)
    [now] = public.get_system_time()["data"]
    assert abs(int(now["ts"]) - datetime.now(UTC).timestamp() * 1000) < 5_000
    listed = {i["instId"]: (i["baseCcy"], i["quoteCcy"]) for i in public.get_instruments("SPOT")["data"]}
    assert listed["ETH-USDT"] == ("ETH", "USDT")


def test_python_okx_reads_the_account_config(sandbox):
    user, key = sandbox.entry("sub-account")
    answer = okx.Account.AccountAPI(**sdk_args(sandbox, "sub-account")).get_account_config()
    assert answer["code"] == "0"
    [config] = answer["data"]
    assert (config["uid"], config["mainUid"], config["type"], config["perm"]) == (
        str(user["uid"]), str(user["main_uid"]), "1", key["perm"])


def test_python_okx_places_an_order_with_its_spaced_json_body(sandbox):
    # python-okx sends json.dumps(params) with spaces and empty fields, and signs exactly that.
    answer = okx.Trade.TradeAPI(**sdk_args(sandbox)).place_order(
        instId="ETH-USDT", tdMode="cash", side="sell", ordType="market", sz="0.5", clOrdId="sdk1")
    assert answer["code"] == "0", answer
    [recorded] = sandbox.admin.orders()
    assert (recorded["inst_id"], recorded["side"], recorded["ord_type"], recorded["sz"], recorded["cl_ord_id"]) == (
        "ETH-USDT", "sell", "market", "0.5", "sdk1")


@pytest.mark.parametrize(
    ("label", "answer"),
    [("secret-mismatch", INVALID_SIGNATURE), ("wrong-passphrase", WRONG_PASSPHRASE)],
)
def test_python_okx_with_wrong_credentials_gets_okx_answer(sandbox, label, answer):
    assert okx.Account.AccountAPI(**sdk_args(sandbox, label)).get_account_config() == answer


def test_python_okx_with_an_unknown_key_gets_okx_answer(sandbox):
    args = {**sdk_args(sandbox), "api_key": "00000000-0000-0000-0000-000000000000"}
    assert okx.Account.AccountAPI(**args).get_account_config() == UNKNOWN_KEY


def test_python_okx_with_a_stale_clock_gets_okx_answer(sandbox, monkeypatch):
    stale = (datetime.now(UTC) - timedelta(minutes=2)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    monkeypatch.setattr(okx_utils, "get_timestamp", lambda: stale)
    assert okx.Account.AccountAPI(**sdk_args(sandbox)).get_account_config() == STALE


def test_a_python_okx_signature_on_another_path_is_refused(sandbox):
    api_key, secret, passphrase = sandbox.handed("good")
    timestamp = okx_utils.get_timestamp()
    sign = okx_utils.sign(okx_utils.pre_hash(timestamp, "GET", "/api/v5/account/balance", "", debug=False), secret)
    headers = okx_utils.get_header(api_key, sign, timestamp, passphrase, "0", debug=False)
    response = httpx.get(f"{sandbox.base_url}{CONFIG}", headers=headers, timeout=5)
    assert (response.status_code, response.json()) == (401, INVALID_SIGNATURE)


def test_python_okx_demo_flag_with_a_production_key_is_refused(sandbox):
    args = {**sdk_args(sandbox), "flag": "1"}
    assert okx.Account.AccountAPI(**args).get_account_config() == {
        "msg": "APIKey does not match current environment.", "code": "50101"}
