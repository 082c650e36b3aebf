"""The OKX sandbox over raw HTTP: each auth check answered with OKX's exact code, message, envelope and HTTP status
(shared/adapters/okx/README.md#errors), in the sandbox's order (#what-cannot-be-proved), and each classified by the
adapter's parser (shared/adapters/okx/errors.py) as the case it is. Also the endpoints, faults and the admin API."""

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.okx.errors import parse_response
from shared.adapters.okx.signing import compute_signature, format_timestamp, pre_sign_text, request_path

pytestmark = pytest.mark.stack

K = ExchangeErrorKind
CONFIG = "/api/v5/account/config"
ORDER = "/api/v5/trade/order"


@pytest.fixture
def sandbox(clean_okx_sandbox):
    return clean_okx_sandbox


def signed_headers(sandbox, label: str, method: str, path: str, query: str = "", body: str = "", *,
                   moment: datetime | None = None, timestamp: str | None = None, secret: str | None = None,
                   passphrase: str | None = None, demo: bool = False) -> dict[str, str]:
    api_key, handed_secret, handed_passphrase = sandbox.handed(label)
    stamp = timestamp or format_timestamp(moment or datetime.now(UTC))
    text = pre_sign_text(stamp, method, request_path(path, query), body)
    headers = {"OK-ACCESS-KEY": api_key, "OK-ACCESS-TIMESTAMP": stamp,
               "OK-ACCESS-SIGN": compute_signature(SecretStr(secret or handed_secret), text),
               "OK-ACCESS-PASSPHRASE": passphrase or handed_passphrase, "Content-Type": "application/json"}
    if demo:
        headers["x-simulated-trading"] = "1"
    return headers


def send(sandbox, method: str, path: str, query: str = "", body: str = "", headers: dict[str, str] | None = None
         ) -> httpx.Response:
    url = f"{sandbox.base_url}{request_path(path, query)}"
    return httpx.request(method, url, content=body.encode(), headers=headers or {}, timeout=5.0)


def signed(sandbox, label: str, method: str = "GET", path: str = CONFIG, query: str = "", body: str = "",
           **options) -> httpx.Response:
    headers = signed_headers(sandbox, label, method, path, query, body, **options)
    return send(sandbox, method, path, query, body, headers)


def refused(response: httpx.Response, http_status: int, code: str, message: str, kind: ExchangeErrorKind,
            *, gateway: bool = True) -> ExchangeError:
    """The exact answer, and how the adapter's parser classifies it."""
    assert response.status_code == http_status, response.text
    expected = {"msg": message, "code": code} if gateway else {"code": code, "msg": message, "data": []}
    assert response.json() == expected
    with pytest.raises(ExchangeError) as caught:
        parse_response(response.status_code, response.content)
    assert (caught.value.kind, caught.value.code, caught.value.message) == (kind, code, message)
    return caught.value


def config_of(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    document = parse_response(response.status_code, response.content)
    [config] = document["data"]
    return config


# ---- the good key and the verdicts the config shows ------------------------------------------------------


def test_the_good_key_reads_its_config(sandbox):
    user, _ = sandbox.entry("good")
    config = config_of(signed(sandbox, "good"))
    assert (config["uid"], config["mainUid"], config["type"], config["perm"], config["ip"], config["label"]) == (
        str(user["uid"]), str(user["uid"]), "0", "read_only,trade", "203.0.113.10,203.0.113.11", "good")


@pytest.mark.parametrize(
    ("label", "field", "value"),
    [
        ("with-withdraw", "perm", "read_only,trade,withdraw"),
        ("read-only", "perm", "read_only"),
        ("no-ip", "ip", ""),
        ("ip-incomplete", "ip", "203.0.113.10"),
        ("ip-range", "ip", "203.0.113.0/24"),
    ],
)
def test_each_key_reports_what_it_is(sandbox, label, field, value):
    assert config_of(signed(sandbox, label))[field] == value


def test_a_sub_account_names_its_main_account(sandbox):
    user, _ = sandbox.entry("sub-account")
    config = config_of(signed(sandbox, "sub-account"))
    assert (config["uid"], config["mainUid"], config["type"]) == (str(user["uid"]), str(user["main_uid"]), "1")
    assert config["uid"] != config["mainUid"]


# ---- refusals, in the sandbox's order --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dropped", "code", "header"),
    [("OK-ACCESS-KEY", "50103", "OK-ACCESS-KEY"), ("OK-ACCESS-PASSPHRASE", "50104", "OK-ACCESS-PASSPHRASE"),
     ("OK-ACCESS-SIGN", "50106", "OK-ACCESS-SIGN"), ("OK-ACCESS-TIMESTAMP", "50107", "OK-ACCESS-TIMESTAMP")],
)
def test_a_missing_header_is_named(sandbox, dropped, code, header):
    headers = signed_headers(sandbox, "good", "GET", CONFIG)
    del headers[dropped]
    refused(send(sandbox, "GET", CONFIG, headers=headers), 401, code,
            f'Request header "{header}" cannot be empty.', K.LOGIN_REQUIRED)


def test_an_unknown_key_is_refused(sandbox):
    headers = signed_headers(sandbox, "good", "GET", CONFIG)
    headers["OK-ACCESS-KEY"] = "00000000-0000-0000-0000-000000000000"
    refused(send(sandbox, "GET", CONFIG, headers=headers), 401, "50111", "Invalid OK-ACCESS-KEY.",
            K.UNKNOWN_ACCESS_KEY)


@pytest.mark.parametrize("timestamp", ["2020-12-08T09:08:57Z", "1607418537715", "2020-12-08 09:08:57.715Z"])
def test_a_malformed_timestamp_is_refused(sandbox, timestamp):
    refused(signed(sandbox, "good", timestamp=timestamp), 401, "50112", "Invalid OK-ACCESS-TIMESTAMP.",
            K.TIMESTAMP_OUT_OF_WINDOW)


@pytest.mark.parametrize("offset_s", [-45, 45])
def test_a_timestamp_out_of_the_window_is_refused(sandbox, offset_s):
    moment = datetime.now(UTC) + timedelta(seconds=offset_s)
    refused(signed(sandbox, "good", moment=moment), 401, "50102", "Timestamp request expired.",
            K.TIMESTAMP_OUT_OF_WINDOW)


@pytest.mark.parametrize("offset_s", [-20, 20])
def test_a_timestamp_inside_the_window_is_accepted(sandbox, offset_s):
    assert config_of(signed(sandbox, "good", moment=datetime.now(UTC) + timedelta(seconds=offset_s)))


def test_a_wrong_passphrase_is_refused(sandbox):
    refused(signed(sandbox, "wrong-passphrase"), 401, "50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.',
            K.SIGNATURE_MISMATCH)


def test_the_passphrase_is_checked_before_the_signature(sandbox):
    response = signed(sandbox, "good", passphrase="nope", secret="not-the-secret")
    assert response.json()["code"] == "50105"


def test_a_wrong_secret_is_refused(sandbox):
    refused(signed(sandbox, "secret-mismatch"), 401, "50113", "Invalid signature.", K.SIGNATURE_MISMATCH)


def test_the_query_is_signed(sandbox):
    headers = signed_headers(sandbox, "good", "GET", CONFIG, query="a=1")
    refused(send(sandbox, "GET", CONFIG, query="a=2", headers=headers), 401, "50113", "Invalid signature.",
            K.SIGNATURE_MISMATCH)
    assert config_of(send(sandbox, "GET", CONFIG, query="a=1", headers=headers))


def test_the_body_is_signed_as_received(sandbox):
    body = '{"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "10"}'
    headers = signed_headers(sandbox, "good", "POST", ORDER, body=body)
    refused(send(sandbox, "POST", ORDER, body=body.replace(" ", ""), headers=headers), 401, "50113",
            "Invalid signature.", K.SIGNATURE_MISMATCH)
    assert send(sandbox, "POST", ORDER, body=body, headers=headers).json()["code"] == "0"


def test_a_production_key_with_the_demo_header_is_refused(sandbox):
    refused(signed(sandbox, "good", demo=True), 401, "50101", "APIKey does not match current environment.",
            K.UNKNOWN_ACCESS_KEY)


def test_a_demo_key_needs_the_demo_header(sandbox):
    refused(signed(sandbox, "demo"), 401, "50101", "APIKey does not match current environment.",
            K.UNKNOWN_ACCESS_KEY)
    assert config_of(signed(sandbox, "demo", demo=True))["label"] == "demo"


def test_a_foreign_ip_binding_refuses_the_caller_and_names_it(sandbox):
    error = refused(signed(sandbox, "ip-foreign"), 401, "50110",
                    "Your IP 203.0.113.10 is not included in your API key's IP whitelist.", K.IP_NOT_BOUND)
    assert error.caller_ip == "203.0.113.10"


def test_a_frozen_key_is_refused(sandbox):
    refused(signed(sandbox, "frozen"), 400, "50100", "API frozen, please contact customer service.",
            K.ABNORMAL_USER, gateway=False)


@pytest.mark.parametrize(("status", "code", "message"), [
    ("blocked", "50007", "Account blocked."),
    ("liquidating", "50009", "Account is suspended due to ongoing liquidation."),
    ("invalid", "50012", "Account status invalid."),
])
def test_an_account_in_a_refused_state_is_refused_after_the_keys_own_checks(sandbox, status, code, message):
    user, _ = sandbox.entry("good")
    sandbox.admin.put_user({**user, "status": status})
    refused(signed(sandbox, "good"), 200, code, message, K.ACCOUNT_RESTRICTED, gateway=False)
    refused(signed(sandbox, "good", passphrase="not-it"), 401, "50105",
            'Request header "OK-ACCESS-PASSPHRASE" incorrect.', K.SIGNATURE_MISMATCH)
    sandbox.admin.put_user({**user, "status": "normal"})
    assert config_of(signed(sandbox, "good"))["uid"] == str(user["uid"])


def test_a_read_only_key_cannot_place_orders(sandbox):
    body = json.dumps({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "10"})
    refused(signed(sandbox, "read-only", "POST", ORDER, body=body), 200, "50120",
            "This API key doesn't have permission to use this function", K.NO_PERMISSION, gateway=False)
    assert sandbox.admin.orders() == []


# ---- endpoints -------------------------------------------------------------------------------------------


def test_public_time_is_the_server_clock(sandbox):
    document = parse_response(200, send(sandbox, "GET", "/api/v5/public/time").content)
    assert abs(int(document["data"][0]["ts"]) - datetime.now(UTC).timestamp() * 1000) < 5_000


def test_instruments_list_spot_only(sandbox):
    response = send(sandbox, "GET", "/api/v5/public/instruments", "instType=SPOT")
    listed = {i["instId"]: (i["baseCcy"], i["quoteCcy"], i["state"]) for i in response.json()["data"]}
    assert listed == {"BTC-USDT": ("BTC", "USDT", "live"), "ETH-USDT": ("ETH", "USDT", "live"),
                      "LUNA-USDT": ("LUNA", "USDT", "suspend"), "NEW-USDT": ("NEW", "USDT", "preopen")}
    assert send(sandbox, "GET", "/api/v5/public/instruments", "instType=SWAP").json()["data"] == []
    refused(send(sandbox, "GET", "/api/v5/public/instruments"), 400, "50014", "Parameter instType can not be empty.",
            K.BAD_REQUEST, gateway=False)


def test_an_order_is_placed_and_recorded(sandbox):
    body = json.dumps({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001",
                       "px": "30000", "clOrdId": "h7a1"}, separators=(",", ":"))
    document = parse_response(200, signed(sandbox, "good", "POST", ORDER, body=body).content)
    [item] = document["data"]
    assert (item["sCode"], item["clOrdId"]) == ("0", "h7a1")
    [recorded] = sandbox.admin.orders()
    assert (recorded["ord_id"], recorded["inst_id"], recorded["side"], recorded["ord_type"], recorded["sz"],
            recorded["px"], recorded["cl_ord_id"]) == (item["ordId"], "BTC-USDT", "buy", "limit", "0.001", "30000",
                                                       "h7a1")


@pytest.mark.parametrize(
    ("order", "s_code", "s_msg"),
    [
        ({"instId": "DOGE-USDT"}, "51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist."),
        ({"instId": "LUNA-USDT"}, "51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist."),
        ({"tdMode": "cross"}, "51000", "Parameter tdMode error"),
        ({"ordType": "limit"}, "51000", "Parameter px error"),
    ],
)
def test_a_refused_order_is_code_1_with_its_scode(sandbox, order, s_code, s_msg):
    body = json.dumps({"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "10", **order})
    response = signed(sandbox, "good", "POST", ORDER, body=body)
    assert response.status_code == 200
    assert response.json()["code"] == "1"
    with pytest.raises(ExchangeError) as caught:
        parse_response(response.status_code, response.content)
    assert (caught.value.code, caught.value.message, caught.value.kind) == (s_code, s_msg, K.BAD_REQUEST)
    assert sandbox.admin.orders() == []


@pytest.mark.parametrize(
    ("body", "http_status", "code", "message"),
    [("", 400, "50000", "Body for POST request cannot be empty."),
     ("{not json", 400, "50002", "JSON syntax error"),
     ('{"instId":"BTC-USDT"}', 400, "50014", "Parameter tdMode can not be empty.")],
)
def test_malformed_order_bodies_are_refused(sandbox, body, http_status, code, message):
    refused(signed(sandbox, "good", "POST", ORDER, body=body), http_status, code, message, K.BAD_REQUEST,
            gateway=False)


def test_unknown_paths_and_methods(sandbox):
    refused(send(sandbox, "GET", "/api/v5/nope"), 404, "404", "Not Found", K.BAD_REQUEST, gateway=False)
    refused(send(sandbox, "POST", CONFIG), 405, "50115", "Invalid request method.", K.BAD_REQUEST, gateway=False)


# ---- faults, rate limits and the admin API ---------------------------------------------------------------


def test_the_rate_limit_is_per_user_and_endpoint(sandbox):
    sandbox.admin.set_rate_limit(CONFIG, requests=2, window_ms=60_000)
    assert config_of(signed(sandbox, "good")) and config_of(signed(sandbox, "good"))
    error = refused(signed(sandbox, "good"), 429, "50011", "Too Many Requests", K.RATE_LIMITED, gateway=False)
    assert error.transient
    assert config_of(signed(sandbox, "with-withdraw"))


@pytest.mark.parametrize(
    ("fault", "http_status", "code", "message", "kind"),
    [
        ({"maintenance": True}, 503, "50001", "Service temporarily unavailable. Please try again later.",
         K.MAINTENANCE),
        ({"fail_next": 1}, 500, "50026", "System error. Try again later", K.UNAVAILABLE),
        ({"timeout_rate": 1.0, "timeout_hold_ms": 10}, 400, "50004",
         "API endpoint request timeout. (does not mean that the request was successful or failed, please check "
         "the request result).", K.UNAVAILABLE),
    ],
)
def test_injected_faults_answer_as_okx(sandbox, fault, http_status, code, message, kind):
    sandbox.admin.set_fault(CONFIG, **fault)
    refused(signed(sandbox, "good"), http_status, code, message, kind, gateway=False)


def test_a_bad_gateway_fault_is_a_bare_502(sandbox):
    sandbox.admin.set_fault("*", fail_next=1, error_kind="bad-gateway")
    response = send(sandbox, "GET", "/api/v5/public/time")
    assert response.status_code == 502
    with pytest.raises(ExchangeError) as caught:
        parse_response(response.status_code, response.content)
    assert caught.value.kind is K.UNAVAILABLE
    assert send(sandbox, "GET", "/api/v5/public/time").status_code == 200


def test_admin_changes_keys_and_instruments_and_counts_requests(sandbox):
    api_key, _, _ = sandbox.handed("good")
    changed = sandbox.admin.update_key(api_key, ip="198.51.100.1", perm="read_only")
    assert (changed["ip"], changed["perm"]) == ("198.51.100.1", "read_only")
    assert "secret_key" not in changed and "passphrase" not in changed
    assert signed(sandbox, "good").json()["code"] == "50110"
    sandbox.admin.put_instrument({"inst_id": "BTC-USDT", "base_ccy": "BTC", "quote_ccy": "USDT", "state": "suspend"})
    states = {i["instId"]: i["state"] for i in
              send(sandbox, "GET", "/api/v5/public/instruments", "instType=SPOT").json()["data"]}
    assert states["BTC-USDT"] == "suspend"
    counts = sandbox.admin.request_counts()
    assert counts[f"GET {CONFIG}"] == {"total": 1, "50110": 1}


def test_admin_puts_users_and_keys(sandbox):
    key = {"api_key": "new-key-1", "secret_key": "S3CRET", "passphrase": "pp", "label": "added",
           "perm": "read_only", "ip": "203.0.113.10"}
    sandbox.admin.put_user({"uid": 777, "api_keys": []})
    sandbox.admin.put_key(777, key)
    headers = {"OK-ACCESS-KEY": "new-key-1", "OK-ACCESS-PASSPHRASE": "pp"}
    stamp = format_timestamp(datetime.now(UTC))
    headers |= {"OK-ACCESS-TIMESTAMP": stamp,
                "OK-ACCESS-SIGN": compute_signature(SecretStr("S3CRET"), pre_sign_text(stamp, "GET", CONFIG))}
    assert config_of(send(sandbox, "GET", CONFIG, headers=headers))["uid"] == "777"
    with pytest.raises(httpx.HTTPStatusError):
        sandbox.admin.put_user({"uid": 778, "api_keys": [], "nonsense": 1})
