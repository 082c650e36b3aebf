"""HTX's answer bodies as the sandbox sends them and the refusals it answers with
(shared/adapters/htx/README.md#envelopes, #errors).

Strings are HTX's own, listed in shared/adapters/htx/README.md; tests compare them byte for byte.
"""

from enum import Enum
from typing import Any

from deploy.sandbox.common.envelopes import Refusal


def v1_ok(data: Any, **extra: Any) -> dict[str, Any]:
    return {"status": "ok", "data": data, **extra}


def v2_ok(data: Any, **extra: Any) -> dict[str, Any]:
    return {"code": 200, "data": data, **extra}


def v1_error(code: str, message: str) -> dict[str, Any]:
    return {"status": "error", "err-code": code, "err-msg": message, "data": None}


def v2_error(code: int, message: str) -> dict[str, Any]:
    return {"code": code, "message": message, "data": None}


class HtxRefusal(Refusal):
    """HTX's refusal: v1 bodies carry `err-code`, v2 bodies `code` (shared/adapters/htx/README.md#envelopes)."""

    code_fields = ("err-code", "code")


class AuthFailure(Enum):
    """Every gateway auth failure is `api-signature-not-valid` with the message
    `Signature not valid: <English> [<Chinese>]`; values are (English, Chinese) from the AUTH2018 table
    (shared/adapters/htx/README.md#auth-failures)."""

    TIMESTAMP_MISSING = ("Submission time is required", "提交时间不能为空")
    BAD_SIGNATURE_METHOD = ("Incorrect signature method", "错误的签名方法")
    BAD_SIGNATURE_VERSION = ("Incorrect signature version", "错误的签名版本")
    UNKNOWN_ACCESS_KEY = ("Incorrect Access key", "Access key错误")
    TIMESTAMP_OUT_OF_WINDOW = ("Invalid submission time or incorrect time format", "无效的提交时间，或时间格式错误")
    VERIFICATION_FAILURE = ("Verification failure", "校验失败")
    ABNORMAL_USER = ("Abnormal user status", "用户状态不正常")
    # Observed with the caller's IP appended after a colon, "IP" upper-case in the Chinese text.
    IP_NOT_BOUND = ("Incorrect IP address", "IP地址错误")
    # Current text unobserved; this is the AUTH2018 table's.
    KEY_EXPIRED = ("API key has expired", "API Key已经过期")
    NO_PERMISSION = ("API key has no permission", "API Key没有权限")

    def refusal(self, suffix: str = "") -> HtxRefusal:
        """Sent on v1 and v2 paths alike: HTX checks signatures at its gateway, before any v1 or v2 service
        sees the request, and the v1 form is the one observed for every message of the table
        (shared/adapters/htx/README.md#gateway-check-order)."""
        english, chinese = self.value
        return HtxRefusal(v1_error("api-signature-not-valid", f"Signature not valid: {english} [{chinese}]{suffix}"))


# shared/adapters/htx/README.md#auth-failures (observed body; DOC21 FAQ Q9 gives the cause, not the text).
def login_required() -> HtxRefusal:
    return HtxRefusal(v1_error("login-required", "The account is not logged in, please log in and try again."))


def method_not_allowed() -> HtxRefusal:
    # Unknown (case-sensitive) path → HTTP 405 `method-not-allowed`; the message text is unknown
    # (shared/adapters/htx/README.md#transport).
    return HtxRefusal(v1_error("method-not-allowed", "Method not allowed"), http_status=405)


def forbidden() -> HtxRefusal:
    # A GET with a body (shared/adapters/htx/README.md#transport), or a sub-user key on a parent-only endpoint,
    # observed as HTTP 403 with a non-JSON body (#other-errors there); the body's exact text is unknown.
    return HtxRefusal("<html><body><h1>403 Forbidden</h1></body></html>", http_status=403)


def maintenance() -> HtxRefusal:
    # shared/adapters/htx/README.md#other-errors
    return HtxRefusal(v1_error("system-maintenance", "System is in maintenance!"))


def gateway_internal_error() -> HtxRefusal:
    # shared/adapters/htx/README.md#other-errors
    return HtxRefusal(v1_error("gateway-internal-error", "Failed to load data. Try again later."))


def bad_gateway() -> HtxRefusal:
    return HtxRefusal("<html><body><h1>502 Bad Gateway</h1></body></html>", http_status=502)


def request_timeout() -> HtxRefusal:
    # shared/adapters/htx/README.md#other-errors
    return HtxRefusal(v1_error("timeout", "Request Timeout"))


def rate_limited(headers: dict[str, str]) -> HtxRefusal:
    # No single documented code; this is an observed v1 body (shared/adapters/htx/README.md#rate-limit-errors).
    # HTTP status unknown (#unknowns there): 200, like every other error body.
    return HtxRefusal(
        v1_error(
            "base-request-exceed-frequency-limit",
            "Frequency of requests has exceeded the limit, please try again later",
        ),
        headers=headers,
    )


def invalid_parameter(message: str) -> HtxRefusal:
    return HtxRefusal(v1_error("invalid-parameter", message))


class OrderFailure(Enum):
    """Refusals of `POST /v1/order/orders/place`; values are (err-code, err-msg)."""

    # shared/adapters/htx/README.md#other-errors (Trading › Error Code).
    SYMBOL_INVALID = ("base-symbol-error", "The symbol is invalid")
    SYMBOL_TRADE_DISABLED = ("base-symbol-trade-disabled", "Trading is disabled for this symbol")
    SYMBOL_PENDING = ("order-disabled", "The symbol is pending and not allowed to place order")
    # The documented code for an operation the user or symbol may not do: the sandbox's answer to API
    # trading disabled on the symbol and to a locked account (HTX's exact answer to either is unknown).
    OPERATION_FORBIDDEN = (
        "base-operation-forbidden",
        "The operation is forbidden for current user or the symbol is not allowed to trade over OTC",
    )
    # shared/adapters/htx/README.md#other-errors names the code; its message is not documented.
    ACCOUNT_UNKNOWN = ("account-account-id-inexistent", "The account id does not exist")

    def refusal(self) -> HtxRefusal:
        code, message = self.value
        return HtxRefusal(v1_error(code, message))
