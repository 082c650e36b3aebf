"""The Bybit sandbox over raw HTTP: Bybit's envelope and exact texts for every check of
shared/adapters/bybit/README.md#sandbox-check-order, each refusal classified by the adapter's parser
(shared/adapters/bybit/errors.py) as the case it is, and the admin API's faults, limits and records."""

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from shared.adapters.bybit.client import LIMIT_HEADER, LIMIT_RESET_HEADER, LIMIT_STATUS_HEADER
from shared.adapters.bybit.errors import parse_response
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from tests.deploy.sandbox.bybit.signed import auth_headers, now_ms, signed_get, signed_post

pytestmark = pytest.mark.stack

K = ExchangeErrorKind
QUERY_API = "/v5/user/query-api"
ORDER = "/v5/order/create"
BUY = {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
       "price": "30000", "orderLinkId": "h7-1"}
TEXTS = {
    10001: "Request parameter error",
    10002: "The request time exceeds the time window range.",
    10003: "API key is invalid. Check whether the key and domain are matched, there are 4 env: mainnet, testnet, "
           "mainnet-demo, testnet-demo",
    10004: "Error sign, please check your signature generation algorithm.",
    10005: "Permission denied, please check your API key permissions.",
    10006: "Too many visits. Exceeded the API Rate Limit.",
    10008: "Common banned, please check your account mode",
    10010: "Unmatched IP, please check your API key's bound IP addresses.",
    10016: "Server error.",
    10027: "Transactions are banned.",
    33004: "Your api key has expired",
}


@pytest.fixture
def sandbox(clean_bybit_sandbox):
    return clean_bybit_sandbox


def classified(response: httpx.Response) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        parse_response(response.status_code, response.content)
    return caught.value


def assert_refused(response: httpx.Response, code: int, kind: ExchangeErrorKind, message: str | None = None) -> None:
    """HTTP 200, Bybit's envelope, the exact code and text, classified as kind."""
    assert response.status_code == 200, response.text
    document = response.json()
    assert (document["retCode"], document["retMsg"], document["result"], document["retExtInfo"]) == (
        code, message or TEXTS[code], {}, {})
    assert abs(document["time"] - now_ms()) < 5_000
    error = classified(response)
    assert (error.kind, error.code, error.message) == (kind, str(code), message or TEXTS[code])


def result(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    document = parse_response(response.status_code, response.content)
    assert (document["retCode"], document["retMsg"], document["retExtInfo"]) == (0, "OK", {})
    return document["result"]


# ---- public endpoints ----------------------------------------------------------------------------------------


def test_server_time_follows_the_clock(sandbox):
    time_result = result(httpx.get(f"{sandbox.base_url}/v5/market/time"))
    assert abs(int(time_result["timeNano"]) // 1_000_000 - now_ms()) < 5_000
    assert int(time_result["timeSecond"]) == int(time_result["timeNano"]) // 10**9


def test_spot_instruments_list_every_symbol_with_its_status(sandbox):
    listed = result(httpx.get(f"{sandbox.base_url}/v5/market/instruments-info", params={"category": "spot"}))
    assert listed["category"] == "spot"
    assert {(i["symbol"], i["baseCoin"], i["quoteCoin"], i["status"]) for i in listed["list"]} == {
        ("BTCUSDT", "BTC", "USDT", "Trading"), ("ETHUSDT", "ETH", "USDT", "Trading"),
        ("ARBUSDT", "ARB", "USDT", "PreLaunch"), ("LUNAUSDT", "LUNA", "USDT", "Closed")}
    one = result(httpx.get(f"{sandbox.base_url}/v5/market/instruments-info",
                           params={"category": "spot", "symbol": "ETHUSDT"}))
    assert [i["symbol"] for i in one["list"]] == ["ETHUSDT"]
    trading = result(httpx.get(f"{sandbox.base_url}/v5/market/instruments-info",
                               params={"category": "spot", "status": "Trading"}))
    assert {i["symbol"] for i in trading["list"]} == {"BTCUSDT", "ETHUSDT"}


def test_other_categories_are_refused(sandbox):
    response = httpx.get(f"{sandbox.base_url}/v5/market/instruments-info", params={"category": "linear"})
    assert_refused(response, 10001, K.BAD_REQUEST, "Illegal category")


def test_unknown_paths_and_get_bodies_answer_bybit_http_statuses(sandbox):
    assert httpx.get(f"{sandbox.base_url}/v5/nope").status_code == 404
    assert httpx.post(f"{sandbox.base_url}/v5/market/time").status_code == 404
    assert classified(httpx.get(f"{sandbox.base_url}/v5/nope")).kind is K.NOT_FOUND
    with_body = httpx.request("GET", f"{sandbox.base_url}/v5/market/time", content=b"{}")
    assert with_body.status_code == 403 and classified(with_body).kind is K.FORBIDDEN


# ---- the key, as query-api describes it ---------------------------------------------------------------------


def test_the_good_key_is_described(sandbox):
    response = signed_get(sandbox, "good", QUERY_API)
    info = result(response)
    assert (info["apiKey"], info["readOnly"], info["ips"], info["userID"], info["isMaster"], info["parentUid"]) == (
        sandbox.api_key("good"), 0, ["203.0.113.10", "203.0.113.11"], 70000001, True, "0")
    assert info["permissions"]["Spot"] == ["SpotTrade"] and info["permissions"]["Wallet"] == []
    assert (info["deadlineDay"], info["expiredAt"], info["secret"]) == (-1, "", "")
    assert response.headers[LIMIT_HEADER] == "10" and response.headers[LIMIT_STATUS_HEADER] == "9"
    assert abs(int(response.headers[LIMIT_RESET_HEADER]) - now_ms()) < 5_000


@pytest.mark.parametrize(
    ("note", "expected"),
    [
        ("with-withdraw", {"Wallet": ["Withdraw"]}),
        ("with-transfer", {"Wallet": ["AccountTransfer", "SubMemberTransfer"]}),
        ("read-only", {"readOnly": 1}),
        ("no-spot-trade", {"Spot": [], "ContractTrade": ["Order", "Position"]}),
        ("no-ip", {"ips": ["*"], "deadlineDay": 90}),
        ("ip-incomplete", {"ips": ["203.0.113.10"]}),
        ("ip-wide-cidr", {"ips": ["203.0.113.10", "203.0.113.11", "203.0.113.0/24"]}),
        ("expiring-soon", {"deadlineDay": 3}),
        ("sub-account", {"isMaster": False, "parentUid": "70000001", "Wallet": ["SubMemberTransferList"]}),
    ],
)
def test_each_verdict_key_is_described_as_the_scenario_says(sandbox, note, expected):
    info = result(signed_get(sandbox, note, QUERY_API))
    seen = {name: info["permissions"][name] if name in info["permissions"] else info[name] for name in expected}
    assert seen == expected
    if info["deadlineDay"] >= 0:
        expiry = datetime.fromisoformat(info["expiredAt"].replace("Z", "+00:00"))
        assert abs(expiry - (datetime.now(UTC) + timedelta(days=info["deadlineDay"]))) < timedelta(minutes=1)


# ---- authentication, in order ------------------------------------------------------------------------------


@pytest.mark.parametrize("dropped", ["X-BAPI-API-KEY", "X-BAPI-SIGN", "X-BAPI-TIMESTAMP"])
def test_a_missing_auth_header_is_http_401(sandbox, dropped):
    headers = auth_headers(sandbox.api_key("good"), sandbox.secret("good"), "")
    del headers[dropped]
    response = httpx.get(f"{sandbox.base_url}{QUERY_API}", headers=headers)
    assert (response.status_code, response.content) == (401, b"")
    assert classified(response).kind is K.LOGIN_REQUIRED


def test_an_unknown_key_is_10003(sandbox):
    headers = auth_headers("H7SBXNOSUCHKEY0000", "whatever", "")
    assert_refused(httpx.get(f"{sandbox.base_url}{QUERY_API}", headers=headers), 10003, K.UNKNOWN_ACCESS_KEY)


@pytest.mark.parametrize(
    ("offset_ms", "recv_window_ms", "accepted"),
    [(-6_000, 5_000, False), (-4_000, 5_000, True), (-12_000, 20_000, True), (900, 5_000, True),
     (3_000, 5_000, False)],
    ids=["stale", "within", "wider-window", "slightly-ahead", "too-far-ahead"],
)
def test_the_time_window(sandbox, offset_ms, recv_window_ms, accepted):
    response = signed_get(sandbox, "good", QUERY_API, timestamp_ms=now_ms() + offset_ms,
                          recv_window_ms=recv_window_ms)
    if accepted:
        result(response)
    else:
        assert_refused(response, 10002, K.TIMESTAMP_OUT_OF_WINDOW)


@pytest.mark.parametrize("recv_window", ["5s", "²", "-1", "9" * 40])
def test_a_malformed_recv_window_is_a_parameter_error(sandbox, recv_window):
    headers = {**auth_headers(sandbox.api_key("good"), sandbox.secret("good"), ""),
               "X-BAPI-RECV-WINDOW": recv_window.encode("latin-1")}
    assert_refused(httpx.get(f"{sandbox.base_url}{QUERY_API}", headers=headers), 10001, K.BAD_REQUEST)


@pytest.mark.parametrize("timestamp", ["soon", "²", "1e12", "9" * 40])
def test_a_malformed_timestamp_is_out_of_the_window(sandbox, timestamp):
    headers = {**auth_headers(sandbox.api_key("good"), sandbox.secret("good"), ""),
               "X-BAPI-TIMESTAMP": timestamp.encode("latin-1")}
    assert_refused(httpx.get(f"{sandbox.base_url}{QUERY_API}", headers=headers), 10002, K.TIMESTAMP_OUT_OF_WINDOW)


def test_wrong_secrets_and_tampering_are_10004(sandbox):
    assert_refused(signed_get(sandbox, "good", QUERY_API, secret="not-the-secret"), 10004, K.SIGNATURE_MISMATCH)
    assert_refused(signed_get(sandbox, "secret-mismatch", QUERY_API), 10004, K.SIGNATURE_MISMATCH)
    listed = "/v5/market/instruments-info"
    assert_refused(signed_get(sandbox, "good", QUERY_API, "category=spot", sent_query="category=linear"),
                   10004, K.SIGNATURE_MISMATCH)
    result(signed_get(sandbox, "good", listed, "category=spot"))  # public: signature headers are not checked
    assert_refused(signed_post(sandbox, "good", ORDER, BUY, sent_body='{"category":"spot","qty":"1000"}'),
                   10004, K.SIGNATURE_MISMATCH)
    assert sandbox.admin.orders() == []


def test_the_signature_covers_the_exact_body_bytes(sandbox):
    # pybit's spaced JSON and ccxt's compact JSON are both accepted, each over its own bytes.
    spaced = '{"category": "spot", "symbol": "BTCUSDT", "side": "Sell", "orderType": "Market", "qty": "0.5"}'
    headers = auth_headers(sandbox.api_key("good"), sandbox.secret("good"), spaced)
    assert result(httpx.post(f"{sandbox.base_url}{ORDER}", headers=headers, content=spaced.encode()))["orderId"]


def test_ip_binding(sandbox):
    assert_refused(signed_get(sandbox, "ip-foreign", QUERY_API), 10010, K.IP_NOT_BOUND)
    assert classified(signed_get(sandbox, "ip-foreign", QUERY_API)).caller_ip is None
    for note in ("ip-incomplete", "ip-wide-cidr", "no-ip"):
        result(signed_get(sandbox, note, QUERY_API))
    sandbox.admin.update_key(sandbox.api_key("good"), ips=["198.51.100.0/24"])
    assert_refused(signed_get(sandbox, "good", QUERY_API), 10010, K.IP_NOT_BOUND)


def test_expired_and_banned(sandbox):
    assert_refused(signed_get(sandbox, "expired", QUERY_API), 33004, K.KEY_EXPIRED)
    assert_refused(signed_get(sandbox, "banned", QUERY_API), 10027, K.ACCOUNT_RESTRICTED)
    sandbox.admin.update_key(sandbox.api_key("good"), valid_days=0)
    assert_refused(signed_get(sandbox, "good", QUERY_API), 33004, K.KEY_EXPIRED)


def test_a_common_banned_user_is_refused_10008_before_the_trading_ban(sandbox):
    user = sandbox.user("banned")
    sandbox.admin.put_user({**user, "common_banned": True})
    assert_refused(signed_get(sandbox, "banned", QUERY_API), 10008, K.ABNORMAL_USER)
    sandbox.admin.put_user({**sandbox.user("good"), "common_banned": True})
    assert_refused(signed_get(sandbox, "good", QUERY_API), 10008, K.ABNORMAL_USER)
    # The key's own checks come first (shared/adapters/bybit/README.md#sandbox-check-order).
    assert_refused(signed_get(sandbox, "good", QUERY_API, secret="x"), 10004, K.SIGNATURE_MISMATCH)


def test_the_signature_is_checked_before_the_ip_and_expiry(sandbox):
    assert_refused(signed_get(sandbox, "ip-foreign", QUERY_API, secret="x"), 10004, K.SIGNATURE_MISMATCH)
    assert_refused(signed_get(sandbox, "expired", QUERY_API, timestamp_ms=now_ms() - 60_000), 10002,
                   K.TIMESTAMP_OUT_OF_WINDOW)


# ---- orders --------------------------------------------------------------------------------------------------


def test_a_signed_order_is_placed_and_recorded(sandbox):
    placed = result(signed_post(sandbox, "good", ORDER, BUY))
    [recorded] = sandbox.admin.orders()
    assert placed == {"orderId": recorded["order_id"], "orderLinkId": "h7-1"}
    assert (recorded["symbol"], recorded["side"], recorded["order_type"], recorded["qty"], recorded["price"],
            recorded["uid"]) == ("BTCUSDT", "Buy", "Limit", "0.001", "30000", 70000001)


@pytest.mark.parametrize("note", ["read-only", "no-spot-trade"])
def test_keys_without_spot_trade_cannot_order(sandbox, note):
    assert_refused(signed_post(sandbox, note, ORDER, BUY), 10005, K.NO_PERMISSION)
    assert sandbox.admin.orders() == []


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"symbol": "ARBUSDT"}, "params error: symbol invalid"),
        ({"symbol": "LUNAUSDT"}, "params error: symbol invalid"),
        ({"symbol": "DOGEUSDT"}, "params error: symbol invalid"),
        ({"category": "linear"}, "params error: category invalid"),
        ({"side": "buy"}, "params error: side invalid"),
        ({"qty": "0"}, "params error: qty invalid"),
        ({"price": None}, "params error: price invalid"),
    ],
)
def test_bad_orders_are_parameter_errors(sandbox, changes, message):
    body = {k: v for k, v in {**BUY, **changes}.items() if v is not None}
    assert_refused(signed_post(sandbox, "good", ORDER, body), 10001, K.BAD_REQUEST, message)


# ---- rate limits, faults, counts ---------------------------------------------------------------------------


def test_the_per_uid_rate_limit(sandbox):
    sandbox.admin.set_rate_limit(QUERY_API, requests=2, window_ms=60_000)
    statuses = [signed_get(sandbox, "good", QUERY_API) for _ in range(3)]
    assert [r.headers[LIMIT_STATUS_HEADER] for r in statuses] == ["1", "0", "0"]
    assert_refused(statuses[2], 10006, K.RATE_LIMITED)
    assert int(statuses[2].headers[LIMIT_RESET_HEADER]) > now_ms() + 50_000
    result(signed_get(sandbox, "with-withdraw", QUERY_API))  # another UID, another window


def test_injected_faults_answer_bybit_way(sandbox):
    time_url = f"{sandbox.base_url}/v5/market/time"
    sandbox.admin.set_fault("/v5/market/time", fail_next=1)
    assert_refused(httpx.get(time_url), 10016, K.UNAVAILABLE)
    result(httpx.get(time_url))
    sandbox.admin.set_fault("/v5/market/time", fail_next=1, error_kind="bad-gateway")
    assert classified(httpx.get(time_url)).http_status == 502
    sandbox.admin.set_fault("*", ip_rate_limited=True)
    limited = signed_get(sandbox, "good", QUERY_API)
    assert (limited.status_code, limited.text, classified(limited).kind) == (403, "access too frequent",
                                                                            K.RATE_LIMITED)
    sandbox.admin.set_fault("/v5/market/time", maintenance=True)
    assert classified(httpx.get(time_url)).kind is K.UNAVAILABLE
    sandbox.admin.clear_faults()
    sandbox.admin.set_fault("/v5/market/time", latency_ms=300)
    started = time.monotonic()
    result(httpx.get(time_url))
    assert time.monotonic() - started >= 0.3


def test_an_injected_timeout_is_held_then_answered(sandbox):
    sandbox.admin.set_fault("/v5/market/time", timeout_rate=1.0, timeout_hold_ms=200)
    assert_refused(httpx.get(f"{sandbox.base_url}/v5/market/time"), 10000, K.UNAVAILABLE, "Server Timeout")


def test_request_counts_name_bybit_codes(sandbox):
    signed_get(sandbox, "good", QUERY_API)
    signed_get(sandbox, "expired", QUERY_API)
    httpx.get(f"{sandbox.base_url}/v5/nope")
    counts = sandbox.admin.request_counts()
    assert counts[f"GET {QUERY_API}"] == {"total": 2, "ok": 1, "33004": 1}
    assert counts["GET /v5/nope"] == {"total": 1, "http-404": 1}


def test_admin_upserts_users_keys_and_symbols(sandbox):
    sandbox.admin.put_symbol({"symbol": "ARBUSDT", "base_coin": "ARB", "quote_coin": "USDT", "status": "Trading"})
    result(signed_post(sandbox, "good", ORDER, {**BUY, "symbol": "ARBUSDT"}))
    sandbox.admin.put_user({"uid": 71000000, "api_keys": [
        {"api_key": "H7SBXNEWKEY0000000", "secret": "s3cret", "permissions": {"Spot": ["SpotTrade"]}}]})
    headers = auth_headers("H7SBXNEWKEY0000000", "s3cret", "")
    assert result(httpx.get(f"{sandbox.base_url}{QUERY_API}", headers=headers))["userID"] == 71000000
    sandbox.admin.delete_key("H7SBXNEWKEY0000000")
    assert_refused(httpx.get(f"{sandbox.base_url}{QUERY_API}", headers=auth_headers("H7SBXNEWKEY0000000",
                                                                                    "s3cret", "")),
                   10003, K.UNKNOWN_ACCESS_KEY)
    with pytest.raises(httpx.HTTPStatusError):
        sandbox.admin.update_key("H7SBXNOSUCHKEY0000", note="x")
    changed = sandbox.admin.update_key(sandbox.api_key("secret-mismatch"), note="renamed", valid_days=None)
    assert changed["note"] == "renamed" and "secret" not in changed and "offered_secret" not in changed
