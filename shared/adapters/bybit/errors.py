"""Bybit's answers as typed errors (shared/adapters/bybit/README.md#envelopes, #errors).

`parse_response` is the one place that turns a Bybit answer into either the JSON document of a success or an
`ExchangeError` (shared/adapters/exchange/errors.py) carrying Bybit's own `retCode` and `retMsg` plus which case it
is. Cases are told by `retCode` alone: Bybit's texts for one code vary between answers
(shared/adapters/bybit/README.md#errors).
"""

import re
from collections.abc import Mapping
from typing import Any

from shared.adapters.exchange.errors import (
    ExchangeError,
    ExchangeErrorKind,
    excerpt,
    exchange_error,
    host_address,
    json_object,
    kind_for_http_status,
    scalar_text,
)

SUCCESS_CODE = "0"
_UNRECOGNISED_ENVELOPE = "unrecognised-envelope"

# shared/adapters/bybit/README.md#errors: the table there, code by code.
_KIND_BY_CODE: dict[str, ExchangeErrorKind] = {
    "10000": ExchangeErrorKind.UNAVAILABLE,
    "10001": ExchangeErrorKind.BAD_REQUEST,
    "10002": ExchangeErrorKind.TIMESTAMP_OUT_OF_WINDOW,
    "10003": ExchangeErrorKind.UNKNOWN_ACCESS_KEY,
    "10004": ExchangeErrorKind.SIGNATURE_MISMATCH,
    "10005": ExchangeErrorKind.NO_PERMISSION,
    "10006": ExchangeErrorKind.RATE_LIMITED,
    "10007": ExchangeErrorKind.UNKNOWN_ACCESS_KEY,
    "10008": ExchangeErrorKind.ABNORMAL_USER,
    "10009": ExchangeErrorKind.FORBIDDEN,
    "10010": ExchangeErrorKind.IP_NOT_BOUND,
    "10016": ExchangeErrorKind.UNAVAILABLE,
    "10017": ExchangeErrorKind.NOT_FOUND,
    "10018": ExchangeErrorKind.RATE_LIMITED,
    "10027": ExchangeErrorKind.ACCOUNT_RESTRICTED,
    "33004": ExchangeErrorKind.KEY_EXPIRED,
    "-2015": ExchangeErrorKind.KEY_EXPIRED,
    _UNRECOGNISED_ENVELOPE: ExchangeErrorKind.UNAVAILABLE,
}
# Bybit's 10010 text names no address today (shared/adapters/bybit/README.md#errors); should one appear, in
# brackets or after a colon at the end, it is the caller's.
_NAMED_IP = re.compile(r"(?:\[\s*(?P<bracketed>[0-9A-Fa-f.:]+)\s*\]|:\s*(?P<trailing>[0-9A-Fa-f.:]+))\s*\.?\s*$")
# shared/adapters/bybit/README.md#envelopes: the IP rate limit's 403 page.
_IP_RATE_LIMIT_TEXT = "too frequent"


def classify(code: str) -> ExchangeErrorKind:
    """Which case a Bybit `retCode` is."""
    return _KIND_BY_CODE.get(code, ExchangeErrorKind.BAD_REQUEST)


def envelope_failure(document: Mapping[str, Any]) -> tuple[str, str] | None:
    """(retCode, retMsg) when document is a Bybit error envelope, None when it reports success."""
    if "retCode" not in document:
        return _UNRECOGNISED_ENVELOPE, "the answer has no `retCode`"
    code = document["retCode"]
    # A JSON true is no retCode, though Python's int would take it for 1.
    if isinstance(code, bool) or not isinstance(code, int | str):
        return _UNRECOGNISED_ENVELOPE, "the answer's `retCode` is not a number"
    text = scalar_text(code).strip()
    if text == SUCCESS_CODE:
        return None
    return text, scalar_text(document.get("retMsg"))


def parse_response(http_status: int, body: bytes) -> dict[str, Any]:
    """The JSON document of a successful answer; otherwise raise the ExchangeError the answer carries. Bybit's own
    error envelope wins over the HTTP status; a 2xx is required only of success."""
    document = json_object(body)
    failure = envelope_failure(document) if document is not None else (_UNRECOGNISED_ENVELOPE, "")
    succeeded = 200 <= http_status < 300
    if failure is None and succeeded and document is not None:
        return document
    if failure is None or (failure[0] == _UNRECOGNISED_ENVELOPE and (document is None or not succeeded)):
        raise http_failure(http_status, body)
    code, message = failure
    raise exchange_error(classify(code), code, message, http_status, caller_ip=named_ip(message))


def http_failure(http_status: int, body: bytes) -> ExchangeError:
    """The error for an answer that is not Bybit's envelope (shared/adapters/bybit/README.md#envelopes)."""
    text = excerpt(body)
    if http_status == 401:
        kind = ExchangeErrorKind.LOGIN_REQUIRED
    elif http_status == 403 and _IP_RATE_LIMIT_TEXT in text.lower():
        kind = ExchangeErrorKind.RATE_LIMITED
    else:
        kind = kind_for_http_status(http_status)
    return exchange_error(kind, f"http-{http_status}", text, http_status)


def named_ip(message: str) -> str | None:
    """The address a refusal's text ends with, if any."""
    found = _NAMED_IP.search(message)
    if found is None:
        return None
    return host_address(found["bracketed"] or found["trailing"])
