"""Bybit's answer bodies as the sandbox sends them, and the refusals it answers with
(shared/adapters/bybit/README.md#envelopes, #errors). Texts are Bybit's own, listed in the README; tests compare them
byte for byte."""

from enum import Enum
from typing import Any

from deploy.sandbox.common.envelopes import Refusal


def envelope(code: int, message: str, result: Any, now_ms: int) -> dict[str, Any]:
    return {"retCode": code, "retMsg": message, "result": result, "retExtInfo": {}, "time": now_ms}


def ok(result: Any, now_ms: int) -> dict[str, Any]:
    return envelope(0, "OK", result, now_ms)


class BybitRefusal(Refusal):
    """A refusal whose outcome, in the request counts, is Bybit's retCode (or the HTTP status of a bare answer)."""

    code_fields = ("retCode",)


class RetCode(Enum):
    """(retCode, retMsg) of V5DOC's error page (shared/adapters/bybit/README.md#errors)."""

    SERVER_TIMEOUT = (10000, "Server Timeout")
    PARAMS = (10001, "Request parameter error")
    TIME_WINDOW = (10002, "The request time exceeds the time window range.")
    INVALID_KEY = (10003, "API key is invalid. Check whether the key and domain are matched, there are 4 env: "
                          "mainnet, testnet, mainnet-demo, testnet-demo")
    SIGN = (10004, "Error sign, please check your signature generation algorithm.")
    PERMISSION = (10005, "Permission denied, please check your API key permissions.")
    RATE_LIMIT = (10006, "Too many visits. Exceeded the API Rate Limit.")
    COMMON_BANNED = (10008, "Common banned, please check your account mode")
    UNMATCHED_IP = (10010, "Unmatched IP, please check your API key's bound IP addresses.")
    SERVER_ERROR = (10016, "Server error.")
    BANNED = (10027, "Transactions are banned.")
    KEY_EXPIRED = (33004, "Your api key has expired")

    def refusal(self, now_ms: int, *, message: str | None = None,
                headers: dict[str, str] | None = None) -> BybitRefusal:
        """Bybit answers these at HTTP 200 (shared/adapters/bybit/README.md#envelopes)."""
        code, text = self.value
        return BybitRefusal(envelope(code, message or text, {}, now_ms), headers=headers)


def bare(http_status: int, text: str = "") -> BybitRefusal:
    """An answer without Bybit's envelope; its statuses are documented, its bodies are not
    (shared/adapters/bybit/README.md#envelopes): the sandbox's are a choice."""
    return BybitRefusal(text, http_status=http_status)


def missing_auth() -> BybitRefusal:
    return bare(401)


def not_found() -> BybitRefusal:
    return bare(404)


def get_with_body() -> BybitRefusal:
    return bare(403)


def ip_rate_limited() -> BybitRefusal:
    return bare(403, "access too frequent")


def bad_gateway() -> BybitRefusal:
    return bare(502, "<html><body><h1>502 Bad Gateway</h1></body></html>")


def maintenance() -> BybitRefusal:
    return bare(503, "<html><body><h1>503 Service Temporarily Unavailable</h1></body></html>")
