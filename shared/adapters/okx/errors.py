"""OKX's answers as typed errors (shared/adapters/okx/README.md#envelopes, #errors).

`parse_response` is the one place that turns an OKX answer into either the JSON document of a success or an
`ExchangeError` (shared/adapters/exchange/errors.py) carrying OKX's own code and message plus which case it is.
A refused order (`code` "1" with the reason per order) is raised with the order's `sCode`/`sMsg`.
"""

import re
from collections.abc import Mapping
from typing import Any

from shared.adapters.exchange.errors import (
    ExchangeError,
    ExchangeErrorKind,
    exchange_error,
    host_address,
    http_failure,
    json_object,
    scalar_text,
)

K = ExchangeErrorKind
SUCCESS = "0"
# shared/adapters/okx/README.md#envelopes: a refused order, and a bulk call that partly succeeded.
OPERATION_FAILED = "1"
PARTIAL_SUCCESS = "2"
_UNRECOGNISED_ENVELOPE = "unrecognised-envelope"

# shared/adapters/okx/README.md#errors: the table's kinds.
_KIND_BY_CODE: dict[str, ExchangeErrorKind] = {
    # "Service temporarily unavailable": refused up front, like HTX's maintenance (a POST may be sent again).
    "50001": K.MAINTENANCE,
    "50004": K.UNAVAILABLE,
    "50005": K.UNAVAILABLE,
    "50011": K.RATE_LIMITED,
    "50013": K.UNAVAILABLE,
    "50026": K.UNAVAILABLE,
    "50030": K.NO_PERMISSION,
    "50061": K.RATE_LIMITED,
    "50007": K.ACCOUNT_RESTRICTED,
    "50009": K.ACCOUNT_RESTRICTED,
    "50012": K.ACCOUNT_RESTRICTED,
    "50100": K.ABNORMAL_USER,
    # A demo-trading key on production or the reverse: to this environment the key does not exist
    # (shared/adapters/okx/README.md#errors).
    "50101": K.UNKNOWN_ACCESS_KEY,
    "50102": K.TIMESTAMP_OUT_OF_WINDOW,
    "50103": K.LOGIN_REQUIRED,
    "50104": K.LOGIN_REQUIRED,
    "50105": K.SIGNATURE_MISMATCH,
    "50106": K.LOGIN_REQUIRED,
    "50107": K.LOGIN_REQUIRED,
    "50110": K.IP_NOT_BOUND,
    "50111": K.UNKNOWN_ACCESS_KEY,
    "50112": K.TIMESTAMP_OUT_OF_WINDOW,
    "50113": K.SIGNATURE_MISMATCH,
    "50114": K.SIGNATURE_MISMATCH,
    "50115": K.BAD_REQUEST,
    "50119": K.UNKNOWN_ACCESS_KEY,
    "50120": K.NO_PERMISSION,
    _UNRECOGNISED_ENVELOPE: K.UNAVAILABLE,
}

# "Your IP 203.0.113.10 is not included in your API key's IP whitelist." (shared/adapters/okx/README.md#errors).
_NAMED_IP = re.compile(r"\bIP\s+(?P<ip>[0-9A-Fa-f.:]+?)\s+is not included", re.IGNORECASE)


def classify(code: str) -> ExchangeErrorKind:
    """Which case an OKX code is; the text is never needed (shared/adapters/okx/README.md#errors)."""
    return _KIND_BY_CODE.get(code, K.BAD_REQUEST)


def parse_response(http_status: int, body: bytes) -> dict[str, Any]:
    """The JSON document of a successful answer; otherwise raise the ExchangeError the answer carries."""
    document = json_object(body)
    if document is None:
        raise http_failure(http_status, body)
    code = scalar_text(document.get("code"))
    if not code:
        # Not OKX's envelope (a proxy's JSON, or a code that is no string): unusable, like a non-JSON answer.
        raise exchange_error(K.UNAVAILABLE, _UNRECOGNISED_ENVELOPE, "the answer has no usable `code`", http_status)
    if code == SUCCESS:
        if not 200 <= http_status < 300:
            raise http_failure(http_status, body)
        return document
    if code in (OPERATION_FAILED, PARTIAL_SUCCESS):
        refused = first_refused_item(document)
        if refused is not None:
            raise refused_item_error(refused, http_status)
    message = scalar_text(document.get("msg"))
    raise exchange_error(classify(code), code, message, http_status, caller_ip=_named_ip(message))


def first_refused_item(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The first entry of `data` whose `sCode` is not "0" (shared/adapters/okx/README.md#orders), if any."""
    data = document.get("data")
    if not isinstance(data, list):
        return None
    for item in data[:100]:
        if isinstance(item, Mapping) and scalar_text(item.get("sCode")) not in ("", SUCCESS):
            return item
    return None


def refused_item_error(item: Mapping[str, Any], http_status: int | None = None) -> ExchangeError:
    """An order's own refusal: its sCode read as any OKX code (50011 is a rate limit there too), else BAD_REQUEST."""
    code = scalar_text(item.get("sCode"))
    message = scalar_text(item.get("sMsg"))
    return exchange_error(classify(code), code, message, http_status, caller_ip=_named_ip(message))


def _named_ip(message: str) -> str | None:
    found = _NAMED_IP.search(message)
    return host_address(found["ip"]) if found else None
