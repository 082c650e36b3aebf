"""OKX's envelopes parsed and every failure classified (shared/adapters/okx/README.md#envelopes, #errors), hostile
bodies included."""

import json

import pytest

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, ExchangeTransientError
from shared.adapters.okx.errors import classify, parse_response

K = ExchangeErrorKind


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def okx_error(code: str, msg: str, **extra: object) -> bytes:
    return body({"code": code, "msg": msg, "data": [], **extra})


def refusal(http_status: int, content: bytes) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        parse_response(http_status, content)
    return caught.value


@pytest.mark.parametrize(
    "document",
    [
        {"code": "0", "msg": "", "data": [{"ts": "1597026383085"}]},
        {"code": "0", "msg": "", "data": [{"ordId": "1", "sCode": "0", "sMsg": ""}], "inTime": "1", "outTime": "2"},
        {"code": "0", "msg": "", "data": []},
    ],
    ids=["time", "order", "empty"],
)
def test_successful_envelopes_return_the_document(document):
    assert parse_response(200, body(document)) == document


# (HTTP status, code, message, kind): shared/adapters/okx/README.md#errors, the table's rows.
TABLE = [
    (401, "50103", 'Request header "OK-ACCESS-KEY" cannot be empty.', K.LOGIN_REQUIRED),
    (401, "50104", 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.', K.LOGIN_REQUIRED),
    (401, "50106", 'Request header "OK-ACCESS-SIGN" cannot be empty.', K.LOGIN_REQUIRED),
    (401, "50107", 'Request header "OK-ACCESS-TIMESTAMP" cannot be empty.', K.LOGIN_REQUIRED),
    (401, "50111", "Invalid OK-ACCESS-KEY.", K.UNKNOWN_ACCESS_KEY),
    (401, "50111", "Invalid OK-ACCESS-KEY", K.UNKNOWN_ACCESS_KEY),
    (200, "50119", "API key doesn't exist", K.UNKNOWN_ACCESS_KEY),
    (401, "50113", "Invalid signature.", K.SIGNATURE_MISMATCH),
    (401, "50105", 'Request header "OK-ACCESS-PASSPHRASE" incorrect.', K.SIGNATURE_MISMATCH),
    (401, "50114", "Invalid authorization.", K.SIGNATURE_MISMATCH),
    (401, "50102", "Timestamp request expired.", K.TIMESTAMP_OUT_OF_WINDOW),
    (401, "50112", "Invalid OK-ACCESS-TIMESTAMP.", K.TIMESTAMP_OUT_OF_WINDOW),
    (401, "50110", "Your IP 203.0.113.99 is not included in your API key's IP whitelist.", K.IP_NOT_BOUND),
    (200, "50120", "This API key doesn't have permission to use this function", K.NO_PERMISSION),
    (200, "50030", "You don't have permission to use this API endpoint", K.NO_PERMISSION),
    (400, "50100", "API frozen, please contact customer service.", K.ABNORMAL_USER),
    (200, "50007", "Account blocked.", K.ACCOUNT_RESTRICTED),
    (200, "50009", "Account is suspended due to ongoing liquidation.", K.ACCOUNT_RESTRICTED),
    (200, "50012", "Account status invalid.", K.ACCOUNT_RESTRICTED),
    (401, "50101", "APIKey does not match current environment.", K.UNKNOWN_ACCESS_KEY),
    (429, "50011", "Too Many Requests", K.RATE_LIMITED),
    (200, "50011", "Rate limit reached. Please refer to API documentation and throttle requests accordingly.",
     K.RATE_LIMITED),
    (200, "50061", "You've reached the maximum order rate limit for this account.", K.RATE_LIMITED),
    (503, "50001", "Service temporarily unavailable. Please try again later.", K.MAINTENANCE),
    (429, "50013", "Systems are busy. Please try again later.", K.UNAVAILABLE),
    (500, "50026", "System error. Try again later", K.UNAVAILABLE),
    (400, "50004", "API endpoint request timeout. (does not mean that the request was successful or failed, please "
                   "check the request result).", K.UNAVAILABLE),
    (405, "50115", "Invalid request method.", K.BAD_REQUEST),
    (400, "51000", "Parameter sz error", K.BAD_REQUEST),
]


@pytest.mark.parametrize(("http_status", "code", "message", "kind"), TABLE)
def test_error_codes_are_classified_with_okx_code_message_and_status(http_status, code, message, kind):
    error = refusal(http_status, okx_error(code, message))
    assert (error.kind, error.code, error.message, error.http_status) == (kind, code, message, http_status)
    assert isinstance(error, ExchangeTransientError) is kind.transient


def test_gateway_refusals_without_data_are_read():
    # The observed 401 body (shared/adapters/okx/README.md#envelopes).
    error = refusal(401, b'{"msg":"Invalid OK-ACCESS-KEY","code":"50111"}')
    assert (error.kind, error.code, error.message) == (K.UNKNOWN_ACCESS_KEY, "50111", "Invalid OK-ACCESS-KEY")


@pytest.mark.parametrize(
    ("message", "caller_ip"),
    [
        ("Your IP 203.0.113.99 is not included in your API key's IP whitelist.", "203.0.113.99"),
        ("Your IP 2A02:C207::1 is not included in your API key's IP whitelist.", "2a02:c207::1"),
        ("Your IP  is not included in your API key's IP whitelist.", None),
        ("Your IP not-an-ip is not included in your API key's IP whitelist.", None),
        ("Your IP is not included in your API key's IP whitelist", None),
    ],
)
def test_the_ip_okx_names_is_read_from_the_message(message, caller_ip):
    assert refusal(401, okx_error("50110", message)).caller_ip == caller_ip


def test_a_refused_order_raises_its_own_code_and_message():
    document = {"code": "1", "msg": "Operation failed.", "data": [
        {"clOrdId": "c1", "ordId": "", "sCode": "51008", "sMsg": "Order failed. Insufficient USDT balance in account",
         "tag": ""}]}
    error = refusal(200, body(document))
    assert (error.kind, error.code, error.message) == (
        K.BAD_REQUEST, "51008", "Order failed. Insufficient USDT balance in account")


def test_a_refused_order_for_the_rate_limit_is_transient():
    error = refusal(200, body({"code": "1", "msg": "", "data": [{"sCode": "50011", "sMsg": "Rate limit reached."}]}))
    assert error.kind is K.RATE_LIMITED and error.transient


def test_operation_failed_without_items_keeps_the_envelope():
    error = refusal(200, body({"code": "1", "msg": "Operation failed.", "data": "oops"}))
    assert (error.kind, error.code, error.message) == (K.BAD_REQUEST, "1", "Operation failed.")


@pytest.mark.parametrize(
    ("http_status", "content", "kind"),
    [
        (404, b"<html>Not Found</html>", K.NOT_FOUND),
        (403, b"<html>403 Forbidden</html>", K.FORBIDDEN),
        (429, b"", K.RATE_LIMITED),
        (502, b"<html>502 Bad Gateway</html>", K.UNAVAILABLE),
        (200, b"<html>captive portal</html>", K.UNAVAILABLE),
        (200, b"[1, 2]", K.UNAVAILABLE),
        (400, b"bad", K.BAD_REQUEST),
        (503, body({"code": "0", "msg": "", "data": []}), K.UNAVAILABLE),
    ],
)
def test_answers_without_an_okx_envelope_are_classified_by_http_status(http_status, content, kind):
    error = refusal(http_status, content)
    assert (error.kind, error.http_status) == (kind, http_status)


@pytest.mark.parametrize(
    "content",
    [
        body({"hello": "world"}),
        b"[" * 100_000 + b"]" * 100_000,
        b'{"code": ' + b"9" * 5000 + b"}",
        b"\xff\xfe\x00garbage",
        body({"code": {"nested": [1, 2]}, "msg": ["x"] * 10}),
        body({"code": None}),
    ],
    ids=["no-code", "deep", "huge-int", "not-utf8", "code-object", "code-null"],
)
def test_hostile_bodies_raise_typed_errors(content):
    error = refusal(200, content)
    assert isinstance(error, ExchangeError)
    assert len(error.message) <= 300


@pytest.mark.parametrize("document", [{"hello": "world"}, {"code": None}, {"code": ["0"]}, {"code": ""}])
def test_json_without_a_usable_code_is_unavailable(document):
    error = refusal(200, body(document))
    assert (error.kind, error.code) == (K.UNAVAILABLE, "unrecognised-envelope")


def test_long_messages_are_cut():
    error = refusal(200, okx_error("51000", "x" * 10_000))
    assert len(error.message) == 300


def test_an_order_list_of_junk_is_not_trusted():
    junk = {"code": "1", "msg": "Operation failed.", "data": [None, 5, "x", {"sCode": {"a": 1}}] * 1000}
    error = refusal(200, body(junk))
    assert (error.code, error.kind) == ("1", K.BAD_REQUEST)


def test_unknown_codes_are_bad_requests():
    assert classify("59999") is K.BAD_REQUEST
