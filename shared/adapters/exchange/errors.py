"""What an exchange's refusal means, in the same words for every exchange.

Each adapter reads its exchange's envelopes (HTX: shared/adapters/htx/errors.py) and raises `ExchangeError`
carrying the exchange's own code and message plus which case it is (`ExchangeErrorKind`). Transient cases raise
`ExchangeTransientError`, so a caller can retry them or tell the user to try later. Callers decide on the kind,
never on an exchange's code.
"""

import ipaddress
import json
from enum import StrEnum
from typing import Any


class ExchangeErrorKind(StrEnum):
    LOGIN_REQUIRED = "login_required"
    UNKNOWN_ACCESS_KEY = "unknown_access_key"
    SIGNATURE_MISMATCH = "signature_mismatch"
    TIMESTAMP_OUT_OF_WINDOW = "timestamp_out_of_window"
    IP_NOT_BOUND = "ip_not_bound"
    KEY_EXPIRED = "key_expired"
    NO_PERMISSION = "no_permission"
    # The exchange refuses the key's user or the key itself as not in normal standing (frozen, banned, abnormal).
    ABNORMAL_USER = "abnormal_user"
    # The account may not trade (Bybit's "Transactions are banned", OKX's "Account blocked"): said of the account,
    # not the key.
    ACCOUNT_RESTRICTED = "account_restricted"
    RATE_LIMITED = "rate_limited"
    MAINTENANCE = "maintenance"
    UNAVAILABLE = "unavailable"
    # HTTP 403: a sub-user key on a parent-only endpoint, or a GET that carries a body
    # (shared/adapters/htx/README.md#transport, #other-errors).
    FORBIDDEN = "forbidden"
    # An unknown path.
    NOT_FOUND = "not_found"
    # Anything else the exchange refused: a bad parameter, symbol or account, a malformed auth parameter.
    BAD_REQUEST = "bad_request"
    # An answer we refuse to read: larger than the endpoint's cap, or in an encoding we cannot decode
    # (shared/adapters/htx/README.md#answer-limits). Not transient: asking again would fetch the same answer.
    UNREADABLE_ANSWER = "unreadable_answer"

    @property
    def transient(self) -> bool:
        return self in _TRANSIENT_KINDS


_TRANSIENT_KINDS = frozenset({ExchangeErrorKind.RATE_LIMITED, ExchangeErrorKind.MAINTENANCE,
                              ExchangeErrorKind.UNAVAILABLE})


class ExchangeError(Exception):
    """The exchange refused a request, or could not be asked. `code` and `message` are the exchange's own (for
    failures that never reached it, such as a network error, `code` names the failure instead). `caller_ip`, for
    IP_NOT_BOUND, is the address the exchange says it saw, when its message names one."""

    def __init__(self, kind: ExchangeErrorKind, code: str, message: str, http_status: int | None = None,
                 *, caller_ip: str | None = None) -> None:
        super().__init__(f"{kind}: [{code}] {message}")
        self.kind = kind
        self.code = code
        self.message = message
        self.http_status = http_status
        self.caller_ip = caller_ip if kind is ExchangeErrorKind.IP_NOT_BOUND else None

    @property
    def transient(self) -> bool:
        return self.kind.transient


class ExchangeTransientError(ExchangeError):
    """Network trouble, a 5xx, maintenance or a rate limit: worth retrying later."""


def exchange_error(kind: ExchangeErrorKind, code: str, message: str, http_status: int | None = None,
                   *, caller_ip: str | None = None) -> ExchangeError:
    """The error of the right class for kind."""
    error_class = ExchangeTransientError if kind.transient else ExchangeError
    return error_class(kind, code, message, http_status, caller_ip=caller_ip)


def host_address(text: str | None) -> str | None:
    """text as a normalised IP address, or None when it is not one (an exchange's message is untrusted)."""
    if text is None:
        return None
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None


# Exchanges' own codes and messages are a few dozen characters; longer ones are cut before they reach logs and
# errors.
_MAX_TEXT = 300


def scalar_text(value: object) -> str:
    """An envelope field as text: a string or number, cut to _MAX_TEXT; anything else (a list, an object, which
    could be nested deep enough to break str()) as empty."""
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)[:_MAX_TEXT]
    return ""


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is none. ValueError covers bad JSON and bad UTF-8, and an
    integer too long to convert; RecursionError is what json raises for nesting deeper than the stack."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def kind_for_http_status(http_status: int) -> ExchangeErrorKind:
    """The case an HTTP status tells, for an answer that carries no envelope of the exchange's."""
    if http_status == 403:
        return ExchangeErrorKind.FORBIDDEN
    if http_status in (404, 405):
        return ExchangeErrorKind.NOT_FOUND
    if http_status == 429:
        return ExchangeErrorKind.RATE_LIMITED
    if http_status >= 500 or 200 <= http_status < 300:
        # A 2xx that is not the exchange's envelope is a proxy or gateway page, not the exchange's answer.
        return ExchangeErrorKind.UNAVAILABLE
    return ExchangeErrorKind.BAD_REQUEST


def excerpt(body: bytes, limit: int = 200) -> str:
    # Only the start is decoded: the body may be megabytes.
    text = " ".join(body[: limit * 4].decode("utf-8", errors="replace").split())
    return text[:limit] or "(empty body)"


def http_failure(http_status: int, body: bytes) -> ExchangeError:
    """The error for an answer that is not the exchange's JSON envelope."""
    return exchange_error(kind_for_http_status(http_status), f"http-{http_status}", excerpt(body), http_status)
