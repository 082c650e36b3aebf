"""Both envelopes parsed, and every HTX failure classified (shared/adapters/htx/README.md#envelopes, #errors)."""

import json

import pytest

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, ExchangeTransientError, exchange_error
from shared.adapters.htx.errors import classify, parse_response

K = ExchangeErrorKind


def body(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


def v1_error(code: str, message: str) -> bytes:
    return body({"status": "error", "err-code": code, "err-msg": message, "data": None})


def refusal(http_status: int, content: bytes) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        parse_response(http_status, content)
    return caught.value


@pytest.mark.parametrize(
    "document",
    [
        {"status": "ok", "data": 1629715504949},
        {"code": 200, "data": 63628520},
        {"code": 200, "message": "success", "data": [], "ok": True},
        {"status": "ok", "data": [], "ts": "1641870869718", "full": 1},
    ],
    ids=["v1", "v2-bare", "v2-full", "settings"],
)
def test_successful_envelopes_return_the_document(document):
    assert parse_response(200, body(document)) == document


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Signature not valid: Incorrect Access key [Access key错误]", K.UNKNOWN_ACCESS_KEY),
        ("Signature not valid: Verification failure [校验失败]", K.SIGNATURE_MISMATCH),
        ("Signature not valid: Invalid submission time or incorrect time format [无效的提交时间，或时间格式错误]",
         K.TIMESTAMP_OUT_OF_WINDOW),
        ("Signature not valid: 无效的提交时间", K.TIMESTAMP_OUT_OF_WINDOW),
        ("Signature not valid: Incorrect IP address [IP地址错误]:104.128.67.45", K.IP_NOT_BOUND),
        ("Signature not valid: ip地址错误", K.IP_NOT_BOUND),
        ("Signature not valid: API key has expired [API Key已经过期]", K.KEY_EXPIRED),
        ("APIkey has expired", K.KEY_EXPIRED),
        ("Signature not valid: API key has no permission [API Key没有权限]", K.NO_PERMISSION),
        ("Signature not valid: Abnormal user status [用户状态不正常]", K.ABNORMAL_USER),
        ("Signature not valid: Incorrect signature version [错误的签名版本]", K.BAD_REQUEST),
        ("Signature not valid: Submission time is required [提交时间不能为空]", K.BAD_REQUEST),
    ],
)
def test_auth_failures_are_told_apart_by_their_text(message, kind):
    error = refusal(200, v1_error("api-signature-not-valid", message))
    assert (error.kind, error.code, error.message, error.http_status) == (kind, "api-signature-not-valid", message, 200)
    assert not error.transient


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (v1_error("login-required", "The account is not logged in, please log in and try again."), K.LOGIN_REQUIRED),
        (v1_error("gateway-internal-error", "Failed to load data. Try again later."), K.UNAVAILABLE),
        (body({"ts": 1571653730865, "status": "error", "err-code": "timeout", "err-msg": "Request Timeout"}),
         K.UNAVAILABLE),
        (v1_error("system-maintenance", "System is in maintenance!"), K.MAINTENANCE),
        (v1_error("base-request-exceed-frequency-limit", "Frequency of requests has exceeded the limit"),
         K.RATE_LIMITED),
        (v1_error("rate-too-many-requests", "exceeded rate limit"), K.RATE_LIMITED),
        (body({"ts": 1687004814731, "status": "error", "err-code": "invalid-parameter", "err-msg": "request limit"}),
         K.RATE_LIMITED),
        (v1_error("invalid-parameter", "invalid symbol"), K.BAD_REQUEST),
        (v1_error("base-symbol-error", "The symbol is invalid"), K.BAD_REQUEST),
        (body({"code": 1003, "message": "invalid signature"}), K.SIGNATURE_MISMATCH),
        (body({"code": 1002, "message": "forbidden"}), K.FORBIDDEN),
        (body({"code": 1006, "message": "Exceed rate limit"}), K.RATE_LIMITED),
        (body({"code": 2002, "message": "invalid field value"}), K.BAD_REQUEST),
        (body({"status": "error", "err_code": "invalid-parameter", "err_msg": "invalid ts"}), K.BAD_REQUEST),
    ],
    ids=lambda value: value.name if isinstance(value, ExchangeErrorKind) else None,
)
def test_error_envelopes_of_both_styles_are_classified(content, kind):
    error = refusal(200, content)
    assert error.kind is kind
    assert isinstance(error, ExchangeTransientError) is kind.transient


def test_v2_and_settings_errors_keep_htx_code_and_message():
    v2 = refusal(200, body({"code": 1003, "message": "invalid signature"}))
    settings = refusal(200, body({"status": "error", "err_code": "invalid-parameter", "err_msg": "invalid ts"}))
    assert (v2.code, v2.message) == ("1003", "invalid signature")
    assert (settings.code, settings.message) == ("invalid-parameter", "invalid ts")


@pytest.mark.parametrize(
    ("http_status", "content", "kind"),
    [
        (405, v1_error("method-not-allowed", "Method not allowed"), K.NOT_FOUND),
        (405, b"", K.NOT_FOUND),
        (404, b"<html>Not Found</html>", K.NOT_FOUND),
        (403, b"<html><h1>403 Forbidden</h1></html>", K.FORBIDDEN),
        (429, b"", K.RATE_LIMITED),
        (500, b"", K.UNAVAILABLE),
        (502, b"<html><h1>502 Bad Gateway</h1></html>", K.UNAVAILABLE),
        (503, body({"status": "ok", "data": None}), K.UNAVAILABLE),
        (200, b"<html>captive portal</html>", K.UNAVAILABLE),
        (200, body({"hello": "world"}), K.UNAVAILABLE),
        (200, b"[1, 2]", K.UNAVAILABLE),
        (400, b"bad", K.BAD_REQUEST),
    ],
)
def test_answers_without_an_error_envelope_are_classified_by_http_status(http_status, content, kind):
    error = refusal(http_status, content)
    assert (error.kind, error.http_status) == (kind, http_status)


def test_a_non_json_body_is_quoted_briefly_in_the_message():
    error = refusal(403, b"<html>\n  <h1>403 Forbidden</h1>\n" + b"x" * 500 + b"</html>")
    assert error.code == "http-403"
    assert error.message.startswith("<html> <h1>403 Forbidden</h1>")
    assert len(error.message) == 200


@pytest.mark.parametrize(
    ("message", "caller_ip"),
    [
        ("Signature not valid: Incorrect IP address [IP地址错误]:104.128.67.45", "104.128.67.45"),
        ("Signature not valid: Incorrect IP address [IP地址错误]:2001:DB8::1", "2001:db8::1"),
        ("Signature not valid: Incorrect IP address [IP地址错误]", None),
        ("Signature not valid: ip地址错误", None),
    ],
)
def test_the_ip_htx_appends_is_read_from_the_message(message, caller_ip):
    assert refusal(200, v1_error("api-signature-not-valid", message)).caller_ip == caller_ip


def test_caller_ip_belongs_to_ip_refusals_only():
    error = exchange_error(K.UNKNOWN_ACCESS_KEY, "api-signature-not-valid", "Incorrect Access key [x]:1.2.3.4")
    assert error.caller_ip is None


def test_the_error_class_follows_the_kind():
    assert type(exchange_error(K.MAINTENANCE, "system-maintenance", "m")) is ExchangeTransientError
    assert type(exchange_error(K.KEY_EXPIRED, "api-signature-not-valid", "m")) is ExchangeError
    assert {k for k in K if k.transient} == {K.RATE_LIMITED, K.MAINTENANCE, K.UNAVAILABLE}


def test_the_exception_text_names_kind_code_and_message():
    error = exchange_error(K.SIGNATURE_MISMATCH, "api-signature-not-valid",
                      "Signature not valid: Verification failure [校验失败]")
    assert str(error) == (
        "signature_mismatch: [api-signature-not-valid] Signature not valid: Verification failure [校验失败]"
    )


def test_unknown_codes_are_bad_requests():
    assert classify("something-new", "whatever") is K.BAD_REQUEST
    assert classify("api-signature-not-valid", "Signature not valid: something new") is K.BAD_REQUEST
