"""HTX's answers as typed errors: both envelopes parsed, every failure classified
(shared/adapters/htx/README.md#envelopes, #errors).

`parse_response` is the one place that turns an HTX answer into either the JSON document of a success or
an `ExchangeError` (shared/adapters/exchange/errors.py) carrying HTX's own code and message plus which case it is.
"""

import re
from collections.abc import Mapping
from typing import Any

from shared.adapters.exchange.errors import (
    ExchangeErrorKind,
    exchange_error,
    host_address,
    http_failure,
    json_object,
    scalar_text,
)

# "Signature not valid: Incorrect IP address [IP地址错误]:104.128.67.45" (shared/adapters/htx/README.md#auth-failures).
_APPENDED_IP = re.compile(r"\]\s*:\s*(?P<ip>[0-9A-Fa-f.:]+)\s*$")

SIGNATURE_NOT_VALID = "api-signature-not-valid"
# shared/adapters/htx/README.md#auth-failures: every gateway auth failure shares one err-code; the case is told by
# the English text (the 2018 Chinese-only forms too). Compared lower-case.
_AUTH_KIND_BY_TEXT: tuple[tuple[str, ExchangeErrorKind], ...] = (
    ("incorrect access key", ExchangeErrorKind.UNKNOWN_ACCESS_KEY),
    ("verification failure", ExchangeErrorKind.SIGNATURE_MISMATCH),
    ("invalid submission time", ExchangeErrorKind.TIMESTAMP_OUT_OF_WINDOW),
    ("无效的提交时间", ExchangeErrorKind.TIMESTAMP_OUT_OF_WINDOW),
    ("incorrect ip address", ExchangeErrorKind.IP_NOT_BOUND),
    ("ip地址错误", ExchangeErrorKind.IP_NOT_BOUND),
    ("has expired", ExchangeErrorKind.KEY_EXPIRED),
    ("no permission", ExchangeErrorKind.NO_PERMISSION),
    ("abnormal user status", ExchangeErrorKind.ABNORMAL_USER),
)
_UNRECOGNISED_ENVELOPE = "unrecognised-envelope"
_KIND_BY_CODE: dict[str, ExchangeErrorKind] = {
    "login-required": ExchangeErrorKind.LOGIN_REQUIRED,  # shared/adapters/htx/README.md#auth-failures
    "gateway-internal-error": ExchangeErrorKind.UNAVAILABLE,  # shared/adapters/htx/README.md#other-errors
    "timeout": ExchangeErrorKind.UNAVAILABLE,  # shared/adapters/htx/README.md#other-errors
    "system-maintenance": ExchangeErrorKind.MAINTENANCE,  # shared/adapters/htx/README.md#other-errors
    "method-not-allowed": ExchangeErrorKind.NOT_FOUND,  # shared/adapters/htx/README.md#transport
    # shared/adapters/htx/README.md#rate-limit-errors: no single rate-limit code; these are the documented and
    # observed ones.
    "base-request-exceed-frequency-limit": ExchangeErrorKind.RATE_LIMITED,
    "rate-too-many-requests": ExchangeErrorKind.RATE_LIMITED,
    "base_request_exceed_number_limit": ExchangeErrorKind.RATE_LIMITED,
    "frequent-invoke": ExchangeErrorKind.RATE_LIMITED,
    "base-user-request-exceed-limit": ExchangeErrorKind.RATE_LIMITED,
    "1006": ExchangeErrorKind.RATE_LIMITED,
    "510": ExchangeErrorKind.RATE_LIMITED,
    "40403": ExchangeErrorKind.RATE_LIMITED,
    # v2 numeric codes (shared/adapters/htx/README.md#envelopes).
    "1003": ExchangeErrorKind.SIGNATURE_MISMATCH,
    "1002": ExchangeErrorKind.FORBIDDEN,
    "500": ExchangeErrorKind.UNAVAILABLE,
    _UNRECOGNISED_ENVELOPE: ExchangeErrorKind.UNAVAILABLE,
}


def classify(code: str, message: str) -> ExchangeErrorKind:
    """Which case an HTX error envelope (code, message) is."""
    text = message.lower()
    if code == SIGNATURE_NOT_VALID:
        return next((kind for fragment, kind in _AUTH_KIND_BY_TEXT if fragment in text), ExchangeErrorKind.BAD_REQUEST)
    # `{"err-code":"invalid-parameter","err-msg":"request limit"}` is a rate limit
    # (shared/adapters/htx/README.md#rate-limit-errors).
    if code == "invalid-parameter" and "request limit" in text:
        return ExchangeErrorKind.RATE_LIMITED
    return _KIND_BY_CODE.get(code, ExchangeErrorKind.BAD_REQUEST)


def envelope_failure(document: Mapping[str, Any]) -> tuple[str, str] | None:
    """(code, message) when document is an HTX error envelope, None when it reports success.

    v1: `{"status":"ok"|"error","err-code","err-msg"}` (settings endpoints spell them `err_code`/`err_msg`);
    v2: `{"code":200|<int>,"message"}` (shared/adapters/htx/README.md#envelopes).
    """
    if "status" in document:
        if document["status"] == "ok":
            return None
        code = document.get("err-code", document.get("err_code"))
        message = document.get("err-msg", document.get("err_msg"))
        return scalar_text(code), scalar_text(message)
    if "code" in document:
        if scalar_text(document["code"]) == "200":
            return None
        return scalar_text(document["code"]), scalar_text(document.get("message"))
    return _UNRECOGNISED_ENVELOPE, "the answer has neither `status` nor `code`"


def parse_response(http_status: int, body: bytes) -> dict[str, Any]:
    """The JSON document of a successful answer; otherwise raise the ExchangeError the answer carries."""
    document = json_object(body)
    if document is None:
        raise http_failure(http_status, body)
    failure = envelope_failure(document)
    if failure is not None:
        code, message = failure
        kind = classify(code, message)
        raise exchange_error(kind, code, message, http_status, caller_ip=_appended_ip(message))
    if not 200 <= http_status < 300:
        raise http_failure(http_status, body)
    return document


def _appended_ip(message: str) -> str | None:
    """The address HTX appends after a colon to an IP refusal (shared/adapters/htx/README.md#auth-failures)."""
    found = _APPENDED_IP.search(message)
    return host_address(found["ip"]) if found else None
