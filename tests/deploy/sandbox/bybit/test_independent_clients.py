"""Two independent Bybit clients against the sandbox, each pointed at it and otherwise unchanged: ccxt's `bybit`
class (its `urls['api']` entries set to the sandbox's base URL) through its implicit v5 methods, and pybit's
`HTTP` (Bybit's official SDK; its `endpoint` attribute, which __post_init__ builds from testnet/domain/tld, set to
the sandbox's base URL). Their signed calls are accepted; their tampered or wrongly signed calls are refused with
Bybit's exact codes and texts, as each library surfaces them (shared/adapters/bybit/README.md#errors)."""

import json
import time
from typing import Any

import ccxt
import pytest
from pybit import _helpers
from pybit.exceptions import FailedRequestError, InvalidRequestError
from pybit.unified_trading import HTTP

pytestmark = pytest.mark.stack

SIGN_TEXT = "Error sign, please check your signature generation algorithm."
INVALID_KEY_TEXT = ("API key is invalid. Check whether the key and domain are matched, there are 4 env: mainnet, "
                    "testnet, mainnet-demo, testnet-demo")


@pytest.fixture
def sandbox(clean_bybit_sandbox):
    return clean_bybit_sandbox


# ---- ccxt ----------------------------------------------------------------------------------------------------


def ccxt_client(sandbox, note: str | None = None, *, api_key: str | None = None,
                secret: str | None = None) -> ccxt.bybit:
    options: dict[str, Any] = {}
    if note is not None or api_key is not None:
        options = {"apiKey": api_key or sandbox.api_key(note), "secret": secret or sandbox.secret(note)}
    exchange = ccxt.bybit(options)
    exchange.urls["api"] = {name: sandbox.base_url for name in exchange.urls["api"]}
    return exchange


def ccxt_refusal(call, error_class: type[Exception]) -> dict[str, Any]:
    """The Bybit envelope ccxt quotes in its exception (`bybit <body>`), after checking the exception's class."""
    with pytest.raises(error_class) as caught:
        call()
    text = str(caught.value)
    assert text.startswith("bybit {")
    quoted: dict[str, Any] = json.loads(text.removeprefix("bybit "))
    return quoted


def test_ccxt_public_calls(sandbox):
    exchange = ccxt_client(sandbox)
    server = exchange.publicGetV5MarketTime()
    assert abs(int(server["result"]["timeNano"]) // 1_000_000 - time.time() * 1000) < 5_000
    listed = exchange.publicGetV5MarketInstrumentsInfo({"category": "spot"})
    assert {(i["symbol"], i["status"]) for i in listed["result"]["list"]} >= {("BTCUSDT", "Trading"),
                                                                              ("ARBUSDT", "PreLaunch")}


def test_ccxt_signed_calls_are_accepted(sandbox):
    exchange = ccxt_client(sandbox, "good")
    info = exchange.privateGetV5UserQueryApi()["result"]
    assert (info["apiKey"], info["userID"], info["ips"]) == (sandbox.api_key("good"), 70000001,
                                                             ["203.0.113.10", "203.0.113.11"])
    placed = exchange.privatePostV5OrderCreate({"category": "spot", "symbol": "BTCUSDT", "side": "Buy",
                                                "orderType": "Limit", "qty": "0.001", "price": "30000",
                                                "orderLinkId": "ccxt-1"})["result"]
    [recorded] = sandbox.admin.orders()
    assert placed == {"orderId": recorded["order_id"], "orderLinkId": "ccxt-1"}
    assert (recorded["symbol"], recorded["qty"], recorded["price"]) == ("BTCUSDT", "0.001", "30000")


def test_ccxt_wrong_secret_unknown_key_and_stale_timestamp(sandbox):
    wrong = ccxt_client(sandbox, "good", secret="not-the-secret")
    assert ccxt_refusal(wrong.privateGetV5UserQueryApi, ccxt.AuthenticationError)["retMsg"] == SIGN_TEXT
    unknown = ccxt_client(sandbox, api_key="H7SBXNOSUCHKEY0000", secret="whatever")
    refused = ccxt_refusal(unknown.privateGetV5UserQueryApi, ccxt.AuthenticationError)
    assert (refused["retCode"], refused["retMsg"]) == (10003, INVALID_KEY_TEXT)
    stale = ccxt_client(sandbox, "good")
    stale.nonce = lambda: int(time.time() * 1000) - 60_000
    refused = ccxt_refusal(stale.privateGetV5UserQueryApi, ccxt.InvalidNonce)
    assert (refused["retCode"], refused["retMsg"]) == (10002, "The request time exceeds the time window range.")


def test_ccxt_query_altered_after_signing_is_refused(sandbox):
    exchange = ccxt_client(sandbox, "good")
    send = exchange.fetch

    def tampering(url, method="GET", headers=None, body=None):
        return send(url.replace("note=mine", "note=theirs"), method, headers, body)

    exchange.fetch = tampering
    refused = ccxt_refusal(lambda: exchange.privateGetV5UserQueryApi({"note": "mine"}), ccxt.AuthenticationError)
    assert (refused["retCode"], refused["retMsg"]) == (10004, SIGN_TEXT)


def test_ccxt_surfaces_ip_expiry_ban_and_permission_refusals(sandbox):
    cases = [("ip-foreign", ccxt.PermissionDenied, 10010), ("expired", ccxt.AuthenticationError, 33004),
             ("banned", ccxt.PermissionDenied, 10027)]
    for note, error_class, code in cases:
        assert ccxt_refusal(ccxt_client(sandbox, note).privateGetV5UserQueryApi, error_class)["retCode"] == code
    read_only = ccxt_client(sandbox, "read-only")
    refused = ccxt_refusal(lambda: read_only.privatePostV5OrderCreate(
        {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "10"}),
        ccxt.PermissionDenied)
    assert refused["retCode"] == 10005
    assert sandbox.admin.orders() == []


# ---- pybit ---------------------------------------------------------------------------------------------------


def pybit_session(sandbox, note: str | None = None, *, secret: str | None = None, **options: Any) -> HTTP:
    credentials = {} if note is None else {"api_key": sandbox.api_key(note),
                                           "api_secret": secret or sandbox.secret(note)}
    session = HTTP(**credentials, **options)
    session.endpoint = sandbox.base_url
    return session


def pybit_refusal(call) -> InvalidRequestError:
    with pytest.raises(InvalidRequestError) as caught:
        call()
    return caught.value


def test_pybit_public_calls(sandbox):
    session = pybit_session(sandbox)
    assert abs(int(session.get_server_time()["result"]["timeSecond"]) - time.time()) < 5
    listed = session.get_instruments_info(category="spot", symbol="ETHUSDT")["result"]["list"]
    assert [(i["symbol"], i["baseCoin"], i["quoteCoin"], i["status"]) for i in listed] == [
        ("ETHUSDT", "ETH", "USDT", "Trading")]


def test_pybit_signed_calls_are_accepted(sandbox):
    # pybit's POST body is json.dumps with spaces; the sandbox verifies the bytes it received.
    session = pybit_session(sandbox, "good")
    info = session.get_api_key_information()["result"]
    assert (info["readOnly"], info["permissions"]["Spot"], info["isMaster"]) == (0, ["SpotTrade"], True)
    placed = session.place_order(category="spot", symbol="ETHUSDT", side="Sell", orderType="Market", qty="0.5",
                                 orderLinkId="pybit-1")["result"]
    [recorded] = sandbox.admin.orders()
    assert placed == {"orderId": recorded["order_id"], "orderLinkId": "pybit-1"}
    assert (recorded["side"], recorded["order_type"], recorded["qty"]) == ("Sell", "Market", "0.5")


def test_pybit_wrong_secret_and_unknown_key(sandbox):
    refused = pybit_refusal(pybit_session(sandbox, "good", secret="not-the-secret").get_api_key_information)
    assert (refused.status_code, refused.message) == (10004, SIGN_TEXT)
    refused = pybit_refusal(pybit_session(sandbox, "secret-mismatch").get_api_key_information)
    assert refused.status_code == 10004
    unknown = HTTP(api_key="H7SBXNOSUCHKEY0000", api_secret="whatever")
    unknown.endpoint = sandbox.base_url
    refused = pybit_refusal(unknown.get_api_key_information)
    assert (refused.status_code, refused.message) == (10003, INVALID_KEY_TEXT)


def test_pybit_query_altered_after_signing_is_refused(sandbox):
    session = pybit_session(sandbox, "good")
    send = session.client.send

    def tampering(prepared, **kwargs):
        prepared.url = prepared.url.replace("note=mine", "note=theirs")
        return send(prepared, **kwargs)

    session.client.send = tampering
    refused = pybit_refusal(lambda: session.get_api_key_information(note="mine"))
    assert (refused.status_code, refused.message) == (10004, SIGN_TEXT)


def test_pybit_stale_timestamp_is_retried_with_wider_windows_then_given_up(sandbox, monkeypatch):
    # pybit retries 10002 itself, widening X-BAPI-RECV-WINDOW by 2.5 s each time; a timestamp a minute old stays
    # outside every window it tries, so it gives up with its own error.
    monkeypatch.setattr(_helpers, "generate_timestamp", lambda: int(time.time() * 1000) - 60_000)
    session = pybit_session(sandbox, "good", retry_delay=0)
    with pytest.raises(FailedRequestError) as caught:
        session.get_api_key_information()
    assert caught.value.message == "Bad Request. Retries exceeded maximum."
    assert sandbox.admin.request_counts()["GET /v5/user/query-api"] == {"total": 3, "10002": 3}
    strict = pybit_session(sandbox, "good", retry_codes={10006})
    refused = pybit_refusal(strict.get_api_key_information)
    assert (refused.status_code, refused.message) == (10002, "The request time exceeds the time window range.")


def test_pybit_surfaces_ip_expiry_ban_and_permission_refusals(sandbox):
    for note, code in [("ip-foreign", 10010), ("expired", 33004), ("banned", 10027)]:
        assert pybit_refusal(pybit_session(sandbox, note).get_api_key_information).status_code == code
    no_trade = pybit_session(sandbox, "no-spot-trade")
    refused = pybit_refusal(lambda: no_trade.place_order(category="spot", symbol="BTCUSDT", side="Buy",
                                                         orderType="Market", qty="10"))
    assert (refused.status_code, refused.message) == (10005,
                                                      "Permission denied, please check your API key permissions.")
