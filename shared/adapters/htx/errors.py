"""HTX's answers as typed errors: both envelopes parsed, every failure classified
(shared/adapters/htx/README.md#envelopes, #errors).

`parse_response` is the one place that turns an HTTP answer into either the JSON document of a success or
an `HtxError` carrying HTX's own code and message plus which case it is (`HtxErrorKind`). Transient cases
raise `HtxTransientError`, so a caller can retry them or tell the user to try later.
"""

import ipaddress
import json
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any


class HtxErrorKind(StrEnum):
    LOGIN_REQUIRED = "login_required"
    UNKNOWN_ACCESS_KEY = "unknown_access_key"
    SIGNATURE_MISMATCH = "signature_mismatch"
    TIMESTAMP_OUT_OF_WINDOW = "timestamp_out_of_window"
    IP_NOT_BOUND = "ip_not_bound"
    KEY_EXPIRED = "key_expired"
    NO_PERMISSION = "no_permission"
    ABNORMAL_USER = "abnormal_user"
    RATE_LIMITED = "rate_limited"
    MAINTENANCE = "maintenance"
    UNAVAILABLE = "unavailable"
    # HTTP 403: a sub-user key on a parent-only endpoint, or a GET that carries a body
    # (shared/adapters/htx/README.md#transport, #other-errors).
    FORBIDDEN = "forbidden"
    # HTTP 405 `method-not-allowed`: unknown (case-sensitive) path (shared/adapters/htx/README.md#transport).
    NOT_FOUND = "not_found"
    # Anything else HTX refused: a bad parameter, symbol or account, a malformed auth parameter.
    BAD_REQUEST = "bad_request"
    # An answer we refuse to read: larger than the endpoint's cap, or in an encoding we cannot decode
    # (shared/adapters/htx/README.md#answer-limits). Not transient: asking again would fetch the same answer.
    UNREADABLE_ANSWER = "unreadable_answer"

    @property
    def transient(self) -> bool:
        return self in _TRANSIENT_KINDS


_TRANSIENT_KINDS = frozenset({HtxErrorKind.RATE_LIMITED, HtxErrorKind.MAINTENANCE, HtxErrorKind.UNAVAILABLE})


class HtxError(Exception):
    """HTX refused a request, or could not be asked. `code` and `message` are HTX's own (for failures
    that never reached HTX, such as a network error, `code` names the failure instead)."""

    def __init__(self, kind: HtxErrorKind, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(f"{kind}: [{code}] {message}")
        self.kind = kind
        self.code = code
        self.message = message
        self.http_status = http_status

    @property
    def transient(self) -> bool:
        return self.kind.transient

    @property
    def caller_ip(self) -> str | None:
        """For IP_NOT_BOUND: the address HTX saw, which it appends after a colon
        (shared/adapters/htx/README.md#auth-failures)."""
        if self.kind is not HtxErrorKind.IP_NOT_BOUND:
            return None
        found = _APPENDED_IP.search(self.message)
        if found is None:
            return None
        try:
            return str(ipaddress.ip_address(found["ip"]))
        except ValueError:
            return None


class HtxTransientError(HtxError):
    """Network trouble, a 5xx, `gateway-internal-error`, maintenance or a rate limit: worth retrying later."""


def htx_error(kind: HtxErrorKind, code: str, message: str, http_status: int | None = None) -> HtxError:
    """The error of the right class for kind."""
    error_class = HtxTransientError if kind.transient else HtxError
    return error_class(kind, code, message, http_status)


# "Signature not valid: Incorrect IP address [IP地址错误]:104.128.67.45" (shared/adapters/htx/README.md#auth-failures).
_APPENDED_IP = re.compile(r"\]\s*:\s*(?P<ip>[0-9A-Fa-f.:]+)\s*$")

SIGNATURE_NOT_VALID = "api-signature-not-valid"
# shared/adapters/htx/README.md#auth-failures: every gateway auth failure shares one err-code; the case is told by
# the English text (the 2018 Chinese-only forms too). Compared lower-case.
_AUTH_KIND_BY_TEXT: tuple[tuple[str, HtxErrorKind], ...] = (
    ("incorrect access key", HtxErrorKind.UNKNOWN_ACCESS_KEY),
    ("verification failure", HtxErrorKind.SIGNATURE_MISMATCH),
    ("invalid submission time", HtxErrorKind.TIMESTAMP_OUT_OF_WINDOW),
    ("无效的提交时间", HtxErrorKind.TIMESTAMP_OUT_OF_WINDOW),
    ("incorrect ip address", HtxErrorKind.IP_NOT_BOUND),
    ("ip地址错误", HtxErrorKind.IP_NOT_BOUND),
    ("has expired", HtxErrorKind.KEY_EXPIRED),
    ("no permission", HtxErrorKind.NO_PERMISSION),
    ("abnormal user status", HtxErrorKind.ABNORMAL_USER),
)
_UNRECOGNISED_ENVELOPE = "unrecognised-envelope"
_KIND_BY_CODE: dict[str, HtxErrorKind] = {
    "login-required": HtxErrorKind.LOGIN_REQUIRED,  # shared/adapters/htx/README.md#auth-failures
    "gateway-internal-error": HtxErrorKind.UNAVAILABLE,  # shared/adapters/htx/README.md#other-errors
    "timeout": HtxErrorKind.UNAVAILABLE,  # shared/adapters/htx/README.md#other-errors
    "system-maintenance": HtxErrorKind.MAINTENANCE,  # shared/adapters/htx/README.md#other-errors
    "method-not-allowed": HtxErrorKind.NOT_FOUND,  # shared/adapters/htx/README.md#transport
    # shared/adapters/htx/README.md#rate-limit-errors: no single rate-limit code; these are the documented and
    # observed ones.
    "base-request-exceed-frequency-limit": HtxErrorKind.RATE_LIMITED,
    "rate-too-many-requests": HtxErrorKind.RATE_LIMITED,
    "base_request_exceed_number_limit": HtxErrorKind.RATE_LIMITED,
    "frequent-invoke": HtxErrorKind.RATE_LIMITED,
    "base-user-request-exceed-limit": HtxErrorKind.RATE_LIMITED,
    "1006": HtxErrorKind.RATE_LIMITED,
    "510": HtxErrorKind.RATE_LIMITED,
    "40403": HtxErrorKind.RATE_LIMITED,
    # v2 numeric codes (shared/adapters/htx/README.md#envelopes).
    "1003": HtxErrorKind.SIGNATURE_MISMATCH,
    "1002": HtxErrorKind.FORBIDDEN,
    "500": HtxErrorKind.UNAVAILABLE,
    _UNRECOGNISED_ENVELOPE: HtxErrorKind.UNAVAILABLE,
}


def classify(code: str, message: str) -> HtxErrorKind:
    """Which case an HTX error envelope (code, message) is."""
    text = message.lower()
    if code == SIGNATURE_NOT_VALID:
        return next((kind for fragment, kind in _AUTH_KIND_BY_TEXT if fragment in text), HtxErrorKind.BAD_REQUEST)
    # `{"err-code":"invalid-parameter","err-msg":"request limit"}` is a rate limit
    # (shared/adapters/htx/README.md#rate-limit-errors).
    if code == "invalid-parameter" and "request limit" in text:
        return HtxErrorKind.RATE_LIMITED
    return _KIND_BY_CODE.get(code, HtxErrorKind.BAD_REQUEST)


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
        return _scalar_text(code), _scalar_text(message)
    if "code" in document:
        if _scalar_text(document["code"]) == "200":
            return None
        return _scalar_text(document["code"]), _scalar_text(document.get("message"))
    return _UNRECOGNISED_ENVELOPE, "the answer has neither `status` nor `code`"


# HTX's own codes and messages are a few dozen characters; longer ones are cut before they reach logs and errors.
_MAX_TEXT = 300


def _scalar_text(value: object) -> str:
    """An envelope field as text: a string or number, cut to _MAX_TEXT; anything else (a list, an object, which
    could be nested deep enough to break str()) as empty."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)[:_MAX_TEXT]
    return ""


def parse_response(http_status: int, body: bytes) -> dict[str, Any]:
    """The JSON document of a successful answer; otherwise raise the HtxError the answer carries."""
    document = _json_object(body)
    if document is None:
        raise htx_error(_kind_for_http_status(http_status), f"http-{http_status}", _excerpt(body), http_status)
    failure = envelope_failure(document)
    if failure is not None:
        code, message = failure
        raise htx_error(classify(code, message), code, message, http_status)
    if not 200 <= http_status < 300:
        raise htx_error(_kind_for_http_status(http_status), f"http-{http_status}", _excerpt(body), http_status)
    return document


def _json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is none. ValueError covers bad JSON and bad UTF-8, and an
    integer too long to convert; RecursionError is what json raises for nesting deeper than the stack."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _kind_for_http_status(http_status: int) -> HtxErrorKind:
    if http_status == 403:
        return HtxErrorKind.FORBIDDEN
    if http_status in (404, 405):
        return HtxErrorKind.NOT_FOUND
    if http_status == 429:
        return HtxErrorKind.RATE_LIMITED
    if http_status >= 500 or 200 <= http_status < 300:
        # A 2xx that is not an HTX envelope is a proxy or gateway page, not HTX's answer.
        return HtxErrorKind.UNAVAILABLE
    return HtxErrorKind.BAD_REQUEST


def _excerpt(body: bytes, limit: int = 200) -> str:
    # Only the start is decoded: the body may be megabytes.
    text = " ".join(body[: limit * 4].decode("utf-8", errors="replace").split())
    return text[:limit] or "(empty body)"
