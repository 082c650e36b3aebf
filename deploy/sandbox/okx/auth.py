"""How OKX's gateway checks a signed request, as a pure function of what was received
(shared/adapters/okx/README.md#signing, #clock, #what-cannot-be-proved for the order of the checks).

The signature is checked over the timestamp, method, path with its raw query and the body exactly as received, so
a client that signed anything else fails as it would against OKX.
"""

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from deploy.sandbox.common.network import effective_client_ip, ip_is_bound
from deploy.sandbox.okx.envelopes import Failure
from deploy.sandbox.okx.scenario import OkxApiKey, OkxSandboxState, OkxUser
from shared.adapters.okx.signing import (
    ACCESS_KEY_HEADER,
    PASSPHRASE_HEADER,
    SIGNATURE_HEADER,
    SIMULATED_TRADING_HEADER,
    TIMESTAMP_HEADER,
    compute_signature,
    parse_timestamp,
    pre_sign_text,
    request_path,
)

# shared/adapters/okx/README.md#clock: OKX states 30 s for its WebSocket login; the sandbox applies it to REST, in
# both directions.
TIMESTAMP_WINDOW = timedelta(seconds=30)
# Checked in this order, each refused with its own code when empty (shared/adapters/okx/README.md#errors).
_REQUIRED_HEADERS = (
    (ACCESS_KEY_HEADER, Failure.KEY_MISSING),
    (PASSPHRASE_HEADER, Failure.PASSPHRASE_MISSING),
    (SIGNATURE_HEADER, Failure.SIGN_MISSING),
    (TIMESTAMP_HEADER, Failure.TIMESTAMP_MISSING),
)

# shared/adapters/okx/README.md#account-config: the account's own refusals. OKX does not say where they come among the
# gateway's checks; the sandbox's choice is last, after the key's own (#what-cannot-be-proved).
_ACCOUNT_REFUSALS = {"blocked": Failure.ACCOUNT_BLOCKED, "liquidating": Failure.ACCOUNT_LIQUIDATING,
                     "invalid": Failure.ACCOUNT_STATUS_INVALID}


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    # The raw query string, still percent-encoded, exactly as received.
    query_string: str
    # Header lookups are case-insensitive, as HTTP's are (starlette's Headers).
    headers: Mapping[str, str]
    body: bytes
    client_ip: str


def authenticate(request: ReceivedRequest, state: OkxSandboxState, now: datetime) -> tuple[OkxUser, OkxApiKey]:
    """The caller of a signed request, or raise the Refusal OKX would answer with, in the sandbox's order
    (shared/adapters/okx/README.md#what-cannot-be-proved)."""
    for header, missing in _REQUIRED_HEADERS:
        if not request.headers.get(header):
            raise missing.refusal()
    found = state.find_key(request.headers[ACCESS_KEY_HEADER])
    if found is None:
        raise Failure.INVALID_KEY.refusal()
    user, key = found
    timestamp = request.headers[TIMESTAMP_HEADER]
    try:
        sent_at = parse_timestamp(timestamp)
    except ValueError:
        raise Failure.INVALID_TIMESTAMP.refusal() from None
    if abs(now - sent_at) > TIMESTAMP_WINDOW:
        raise Failure.TIMESTAMP_EXPIRED.refusal()
    if not hmac.compare_digest(request.headers[PASSPHRASE_HEADER].encode(),
                               key.passphrase.get_secret_value().encode()):
        raise Failure.PASSPHRASE_INCORRECT.refusal()
    text = pre_sign_text(timestamp, request.method, request_path(request.path, request.query_string),
                         request.body.decode("utf-8", errors="replace"))
    if not hmac.compare_digest(compute_signature(key.secret_key, text).encode(),
                               request.headers[SIGNATURE_HEADER].encode()):
        raise Failure.INVALID_SIGNATURE.refusal()
    if (request.headers.get(SIMULATED_TRADING_HEADER, "0") == "1") != key.demo:
        raise Failure.ENVIRONMENT_MISMATCH.refusal()
    caller_ip = effective_client_ip(request.client_ip, state.egress_ip, state.egress_routes)
    if key.bound_ips and not ip_is_bound(caller_ip, key.bound_ips):
        raise Failure.IP_NOT_WHITELISTED.refusal(ip=caller_ip)
    if key.frozen:
        raise Failure.API_FROZEN.refusal()
    refused_account = _ACCOUNT_REFUSALS.get(user.status)
    if refused_account is not None:
        raise refused_account.refusal()
    return user, key
