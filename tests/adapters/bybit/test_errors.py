"""Bybit's envelope parsed and every documented retCode classified (shared/adapters/bybit/README.md#envelopes,
#errors); hostile bodies become ExchangeErrors, never crashes."""

import json

import pytest

from shared.adapters.bybit.errors import classify, parse_response
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, ExchangeTransientError

K = ExchangeErrorKind


def body(document: object) -> bytes:
    return json.dumps(document).encode()


def envelope(code: object, message: object, result: object = None) -> bytes:
    return body({"retCode": code, "retMsg": message, "result": {} if result is None else result,
                 "retExtInfo": {}, "time": 1688639403423})


def refusal(http_status: int, content: bytes) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        parse_response(http_status, content)
    return caught.value


def test_success_returns_the_document():
    document = {"retCode": 0, "retMsg": "OK", "result": {"timeSecond": "1688639403"}, "retExtInfo": {},
                "time": 1688639403423}
    assert parse_response(200, body(document)) == document


@pytest.mark.parametrize(
    ("code", "message", "kind"),
    [
        (10001, "Request parameter error", K.BAD_REQUEST),
        (10002, "The request time exceeds the time window range.", K.TIMESTAMP_OUT_OF_WINDOW),
        (10003, "API key is invalid. Check whether the key and domain are matched, there are 4 env: mainnet, "
                "testnet, mainnet-demo, testnet-demo", K.UNKNOWN_ACCESS_KEY),
        (10003, "API key is invalid.", K.UNKNOWN_ACCESS_KEY),
        (10004, "Error sign, please check your signature generation algorithm.", K.SIGNATURE_MISMATCH),
        (10004, "error sign! origin_string[1751658755149VVE0TZMN9xTBtU1AK05000category=linear]",
         K.SIGNATURE_MISMATCH),
        (10005, "Permission denied, please check your API key permissions.", K.NO_PERMISSION),
        (10006, "Too many visits. Exceeded the API Rate Limit.", K.RATE_LIMITED),
        (10007, "User authentication failed.", K.UNKNOWN_ACCESS_KEY),
        (10008, "Common banned, please check your account mode", K.ABNORMAL_USER),
        (10009, "IP has been banned.", K.FORBIDDEN),
        (10010, "Unmatched IP, please check your API key's bound IP addresses.", K.IP_NOT_BOUND),
        (10016, "Server error.", K.UNAVAILABLE),
        (10017, "Route not found.", K.NOT_FOUND),
        (10018, "Exceeded the IP Rate Limit.", K.RATE_LIMITED),
        (10027, "Transactions are banned.", K.ACCOUNT_RESTRICTED),
        (33004, "Your api key has expired", K.KEY_EXPIRED),
        (-2015, "Your api key has expired", K.KEY_EXPIRED),
        (170121, "Invalid symbol.", K.BAD_REQUEST),
        ("10004", "Error sign", K.SIGNATURE_MISMATCH),
    ],
)
def test_error_codes_are_classified_keeping_bybit_code_and_message(code, message, kind):
    error = refusal(200, envelope(code, message))
    assert (error.kind, error.code, error.message, error.http_status) == (kind, str(code), message, 200)
    assert isinstance(error, ExchangeTransientError) is kind.transient


def test_the_same_code_with_any_text_is_the_same_case():
    assert classify("10010") is K.IP_NOT_BOUND
    assert classify("99999") is K.BAD_REQUEST


@pytest.mark.parametrize(
    ("message", "caller_ip"),
    [
        ("Unmatched IP, please check your API key's bound IP addresses.", None),
        ("Unmatched IP, please check your API key's bound IP addresses. [203.0.113.10]", "203.0.113.10"),
        ("Unmatched IP: 2001:DB8::1", "2001:db8::1"),
        ("Unmatched IP: not-an-ip", None),
    ],
)
def test_caller_ip_is_read_only_when_the_message_names_one(message, caller_ip):
    assert refusal(200, envelope(10010, message)).caller_ip == caller_ip


def test_caller_ip_belongs_to_ip_refusals_only():
    assert refusal(200, envelope(10003, "API key is invalid. [1.2.3.4]")).caller_ip is None


@pytest.mark.parametrize(
    ("http_status", "content", "kind"),
    [
        (401, b"", K.LOGIN_REQUIRED),
        (403, b"access too frequent", K.RATE_LIMITED),
        (403, b"<html><h1>403 Forbidden</h1></html>", K.FORBIDDEN),
        (404, b"", K.NOT_FOUND),
        (429, b"", K.RATE_LIMITED),
        (500, b"", K.UNAVAILABLE),
        (502, b"<html><h1>502 Bad Gateway</h1></html>", K.UNAVAILABLE),
        (503, body({"retCode": 0, "retMsg": "OK", "result": {}}), K.UNAVAILABLE),
        (200, b"<html>captive portal</html>", K.UNAVAILABLE),
        (400, b"bad", K.BAD_REQUEST),
    ],
)
def test_answers_without_an_error_envelope_are_classified_by_http_status(http_status, content, kind):
    error = refusal(http_status, content)
    assert (error.kind, error.http_status, error.code) == (kind, http_status, f"http-{http_status}")


def test_an_error_envelope_wins_over_its_http_status():
    assert refusal(403, envelope(10006, "Too many visits!")).kind is K.RATE_LIMITED


@pytest.mark.parametrize(
    "content",
    [
        body({"hello": "world"}),
        body({"retCode": True, "retMsg": "OK"}),
        body({"retCode": None}),
        body({"retCode": [0]}),
        body({"retCode": {"nested": 0}}),
        body({"retCode": 0.0, "retMsg": "OK"}),
        b"[1, 2]",
        b"\xff\xfe not utf-8",
        b"[" * 100_000 + b"]" * 100_000,
        b'{"retCode": 1' + b"0" * 5000 + b"}",
        b"",
    ],
    ids=["no-retcode", "bool", "null", "list", "object", "float", "array", "bad-utf8", "deep", "huge-int", "empty"],
)
def test_hostile_bodies_are_unavailable_errors_not_crashes(content):
    error = refusal(200, content)
    assert error.kind in (K.UNAVAILABLE, K.BAD_REQUEST)
    assert len(error.message) <= 300


def test_long_or_odd_messages_are_bounded():
    error = refusal(200, body({"retCode": 10001, "retMsg": "x" * 10_000}))
    assert (error.kind, len(error.message)) == (K.BAD_REQUEST, 300)
    nested = refusal(200, body({"retCode": 10001, "retMsg": {"deep": ["x"] * 1000}}))
    assert nested.message == ""


def test_a_non_json_body_is_quoted_briefly():
    error = refusal(502, b"<html>\n <h1>502</h1>" + b"y" * 5000)
    assert error.message.startswith("<html> <h1>502</h1>") and len(error.message) == 200
