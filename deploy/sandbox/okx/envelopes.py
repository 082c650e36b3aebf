"""OKX's answer bodies as the OKX sandbox sends them, and its refusals (shared/adapters/okx/README.md#envelopes,
#errors). Strings are OKX's own, from the error table in that README; tests compare them byte for byte.

A refusal is every sandbox's `Refusal` (deploy/sandbox/common/envelopes.py): a body, an HTTP status and headers.
"""

from enum import Enum
from typing import Any

from deploy.sandbox.common.envelopes import Refusal


def ok(data: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"code": "0", "msg": "", "data": data, **extra}


class Failure(Enum):
    """(code, HTTP status, message) from OKX's error table (shared/adapters/okx/README.md#errors)."""

    BODY_EMPTY = ("50000", 400, "Body for POST request cannot be empty.")
    SERVICE_UNAVAILABLE = ("50001", 503, "Service temporarily unavailable. Please try again later.")
    JSON_SYNTAX = ("50002", 400, "JSON syntax error")
    ENDPOINT_TIMEOUT = ("50004", 400, "API endpoint request timeout. (does not mean that the request was successful "
                                      "or failed, please check the request result).")
    # The table's 429 row for 50011 (shared/adapters/okx/README.md#rate-limits).
    RATE_LIMITED = ("50011", 429, "Too Many Requests")
    SYSTEM_ERROR = ("50026", 500, "System error. Try again later")
    # The README's table has these at HTTP 200 (shared/adapters/okx/README.md#errors).
    ACCOUNT_BLOCKED = ("50007", 200, "Account blocked.")
    ACCOUNT_LIQUIDATING = ("50009", 200, "Account is suspended due to ongoing liquidation.")
    ACCOUNT_STATUS_INVALID = ("50012", 200, "Account status invalid.")
    API_FROZEN = ("50100", 400, "API frozen, please contact customer service.")
    ENVIRONMENT_MISMATCH = ("50101", 401, "APIKey does not match current environment.")
    TIMESTAMP_EXPIRED = ("50102", 401, "Timestamp request expired.")
    KEY_MISSING = ("50103", 401, 'Request header "OK-ACCESS-KEY" cannot be empty.')
    PASSPHRASE_MISSING = ("50104", 401, 'Request header "OK-ACCESS-PASSPHRASE" cannot be empty.')
    PASSPHRASE_INCORRECT = ("50105", 401, 'Request header "OK-ACCESS-PASSPHRASE" incorrect.')
    SIGN_MISSING = ("50106", 401, 'Request header "OK-ACCESS-SIGN" cannot be empty.')
    TIMESTAMP_MISSING = ("50107", 401, 'Request header "OK-ACCESS-TIMESTAMP" cannot be empty.')
    IP_NOT_WHITELISTED = ("50110", 401, "Your IP {ip} is not included in your API key's IP whitelist.")
    INVALID_KEY = ("50111", 401, "Invalid OK-ACCESS-KEY.")
    INVALID_TIMESTAMP = ("50112", 401, "Invalid OK-ACCESS-TIMESTAMP.")
    INVALID_SIGNATURE = ("50113", 401, "Invalid signature.")
    INVALID_METHOD = ("50115", 405, "Invalid request method.")
    NO_PERMISSION = ("50120", 200, "This API key doesn't have permission to use this function")

    def refusal(self, **params: str) -> Refusal:
        code, http_status, message = self.value
        return Refusal(error_body(code, message.format(**params), gateway=http_status == 401), http_status=http_status)


def error_body(code: str, message: str, *, gateway: bool = False) -> dict[str, Any]:
    """The gateway's authentication refusals come without `data` (observed); other refusals carry `"data": []`
    (shared/adapters/okx/README.md#envelopes)."""
    return {"msg": message, "code": code} if gateway else {"code": code, "msg": message, "data": []}


def parameter_empty(name: str) -> Refusal:
    return Refusal(error_body("50014", f"Parameter {name} can not be empty."), http_status=400)


def not_found() -> Refusal:
    # The answer to a path OKX lacks is not documented (shared/adapters/okx/README.md#what-cannot-be-proved).
    return Refusal(error_body("404", "Not Found"), http_status=404)


def bad_gateway() -> Refusal:
    return Refusal("<html><body><h1>502 Bad Gateway</h1></body></html>", http_status=502)


def order_refused(order: dict[str, Any], s_code: str, s_msg: str) -> Refusal:
    """A refused order: code "1", HTTP 200, the reason in data[0] (shared/adapters/okx/README.md#orders)."""
    item = {"clOrdId": str(order.get("clOrdId", "")), "ordId": "", "tag": str(order.get("tag", "")), "ts": "",
            "sCode": s_code, "sMsg": s_msg, "subCode": ""}
    return Refusal({"code": "1", "msg": "Operation failed.", "data": [item]})
