"""How Bybit checks a signed request, as pure functions of what was received
(shared/adapters/bybit/README.md#signing, #clock, #sandbox-check-order).

The signature is verified over the exact query string or body received, never a re-serialisation: pybit and ccxt
send differently spaced JSON and both are accepted by Bybit.
"""

import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from deploy.sandbox.bybit.envelopes import RetCode, missing_auth
from deploy.sandbox.bybit.scenario import BybitApiKey, BybitSandboxState, BybitUser
from deploy.sandbox.common.network import effective_client_ip, ip_is_bound
from shared.adapters.bybit.models import NO_IP_BINDING, SPOT_GROUP, SPOT_TRADE
from shared.adapters.bybit.signing import (
    API_KEY_HEADER,
    DEFAULT_RECV_WINDOW_MS,
    RECV_WINDOW_HEADER,
    SIGN_HEADER,
    TIMESTAMP_HEADER,
    compute_signature,
    pre_sign_text,
)

# shared/adapters/bybit/README.md#clock: a timestamp may be at most this far ahead of the server's clock.
MAX_AHEAD_MS = 1000


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    # Header names in any case (Starlette's headers are case-insensitive).
    headers: Mapping[str, str]
    # The raw query string, exactly as received.
    query_string: str
    body: bytes
    client_ip: str


@dataclass(frozen=True)
class Caller:
    user: BybitUser
    key: BybitApiKey


def authenticate(request: ReceivedRequest, state: BybitSandboxState, now_ms: int) -> Caller:
    """The caller of a signed request, or raise the refusal Bybit would answer with, in the order of
    shared/adapters/bybit/README.md#sandbox-check-order."""
    api_key = request.headers.get(API_KEY_HEADER, "")
    signature = request.headers.get(SIGN_HEADER, "")
    timestamp = request.headers.get(TIMESTAMP_HEADER, "")
    if not api_key or not signature or not timestamp:
        raise missing_auth()
    record = state.key_record(api_key)
    if record is None:
        raise RetCode.INVALID_KEY.refusal(now_ms)
    recv_window_text = request.headers.get(RECV_WINDOW_HEADER, str(DEFAULT_RECV_WINDOW_MS))
    if not _is_ascii_integer(recv_window_text):
        raise RetCode.PARAMS.refusal(now_ms)
    if not _in_window(timestamp, int(recv_window_text), now_ms):
        raise RetCode.TIME_WINDOW.refusal(now_ms)
    payload = _signed_payload(request)
    expected = None if payload is None else compute_signature(
        record.key.secret, pre_sign_text(timestamp, api_key, recv_window_text, payload))
    if expected is None or not hmac.compare_digest(expected.encode(), signature.encode()):
        raise RetCode.SIGN.refusal(now_ms)
    caller_ip = effective_client_ip(request.client_ip, state.egress_ip, state.egress_routes)
    if not ip_allowed(caller_ip, record.key.ips):
        raise RetCode.UNMATCHED_IP.refusal(now_ms)
    if record.key.expired:
        raise RetCode.KEY_EXPIRED.refusal(now_ms)
    user = state.member_of(record)
    if user.common_banned:
        raise RetCode.COMMON_BANNED.refusal(now_ms)
    if user.banned:
        raise RetCode.BANNED.refusal(now_ms)
    return Caller(user=user, key=record.key)


def require_spot_trade(caller: Caller, now_ms: int) -> None:
    """shared/adapters/bybit/README.md#orders: a read-write key with SpotTrade, else 10005."""
    if caller.key.read_only or SPOT_TRADE not in caller.key.permissions.get(SPOT_GROUP, []):
        raise RetCode.PERMISSION.refusal(now_ms)


def ip_allowed(caller_ip: str, entries: list[str]) -> bool:
    """`*` lets every address in; otherwise the caller must be one of the hosts or inside one of the networks."""
    if NO_IP_BINDING in entries:
        return True
    try:
        return ip_is_bound(caller_ip, entries)
    except ValueError:
        return False


def _in_window(timestamp: str, recv_window_ms: int, now_ms: int) -> bool:
    """shared/adapters/bybit/README.md#clock: server_time - recv_window <= timestamp < server_time + 1000."""
    if not _is_ascii_integer(timestamp):
        return False
    return now_ms - recv_window_ms <= int(timestamp) < now_ms + MAX_AHEAD_MS


def _is_ascii_integer(text: str) -> bool:
    # str.isdigit alone lets "²" through, which int() refuses.
    return text.isascii() and text.isdigit() and len(text) <= 20


def _signed_payload(request: ReceivedRequest) -> str | None:
    """The query string of a GET, the body of a POST, as received; None when the body is not UTF-8 (it cannot have
    been signed as text)."""
    if request.method == "GET":
        return request.query_string
    try:
        return request.body.decode()
    except UnicodeDecodeError:
        return None
