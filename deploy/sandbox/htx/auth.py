"""How HTX's gateway checks a signed request, as pure functions of what was received
(shared/adapters/htx/README.md#canonical-form, #gateway-check-order).

The canonical form is rebuilt from the request as received: the query is decoded, `Signature` dropped, and
the rest re-encoded with upper-case hex and re-sorted, so a client that signed lower-case escapes, or an
unsorted or differently encoded query, fails exactly as it would against HTX.
"""

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

from deploy.sandbox.common.network import effective_client_ip, ip_is_bound
from deploy.sandbox.htx.envelopes import AuthFailure, forbidden, login_required
from deploy.sandbox.htx.scenario import HtxSandboxState, ScenarioApiKey, ScenarioUser
from shared.adapters.htx.signing import (
    ACCESS_KEY_PARAM,
    SIGNATURE_METHOD,
    SIGNATURE_METHOD_PARAM,
    SIGNATURE_PARAM,
    SIGNATURE_VERSION,
    SIGNATURE_VERSION_PARAM,
    TIMESTAMP_PARAM,
    compute_signature,
    parse_timestamp,
    pre_sign_text,
)

# HTX's signing section says "The value is valid within 5 minutes", while the FAQ of the same document says "less
# than 1 minute" (shared/adapters/htx/README.md#signing). The sandbox takes the 5 minutes, in both directions.
TIMESTAMP_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    # The raw query string, still percent-encoded, exactly as received.
    query_string: str
    # The Host header as received (with its port, if the client sent one).
    host: str
    client_ip: str


@dataclass(frozen=True)
class Caller:
    user: ScenarioUser
    key: ScenarioApiKey


def authenticate(request: ReceivedRequest, state: HtxSandboxState, now: datetime) -> Caller:
    """The caller of a signed request, or raise the Refusal HTX would answer with.

    Order (shared/adapters/htx/README.md#gateway-check-order): auth parameters present and supported, key known,
    timestamp in window, signature, then user status, IP binding and expiry (whose relative order HTX does not
    document).
    """
    params = parse_qsl(request.query_string, keep_blank_values=True)
    auth = dict(params)
    if not auth.get(ACCESS_KEY_PARAM) or not auth.get(SIGNATURE_PARAM):
        raise login_required()
    if not auth.get(TIMESTAMP_PARAM):
        raise AuthFailure.TIMESTAMP_MISSING.refusal()
    if auth.get(SIGNATURE_METHOD_PARAM) != SIGNATURE_METHOD:
        # HTX also documents Ed25519, for self-generated keys (shared/adapters/htx/README.md#signing); the
        # sandbox's keys are all HMAC keys.
        raise AuthFailure.BAD_SIGNATURE_METHOD.refusal()
    if auth.get(SIGNATURE_VERSION_PARAM) != SIGNATURE_VERSION:
        raise AuthFailure.BAD_SIGNATURE_VERSION.refusal()
    found = state.find_key(auth[ACCESS_KEY_PARAM])
    if found is None:
        raise AuthFailure.UNKNOWN_ACCESS_KEY.refusal()
    user, key = found
    if not _timestamp_in_window(auth[TIMESTAMP_PARAM], now):
        raise AuthFailure.TIMESTAMP_OUT_OF_WINDOW.refusal()
    signed_params = [(name, value) for name, value in params if name != SIGNATURE_PARAM]
    if not any(
        hmac.compare_digest(
            compute_signature(key.secret_key, pre_sign_text(request.method, host, request.path, signed_params)),
            auth[SIGNATURE_PARAM],
        )
        for host in signed_host_candidates(request.host)
    ):
        raise AuthFailure.VERIFICATION_FAILURE.refusal()
    if user.state != "normal":
        raise AuthFailure.ABNORMAL_USER.refusal()
    caller_ip = effective_client_ip(request.client_ip, state.egress_ip, state.egress_routes)
    if key.bound_ips and not ip_is_bound(caller_ip, key.bound_ips):
        raise AuthFailure.IP_NOT_BOUND.refusal(suffix=f":{caller_ip}")
    if key.status == "expired":
        raise AuthFailure.KEY_EXPIRED.refusal()
    return Caller(user=user, key=key)


def authorize(caller: Caller, permission: str, parent_only: bool) -> None:
    """Raise the Refusal for a key that lacks the endpoint's permission, or a sub-user on a parent-only
    endpoint (shared/adapters/htx/README.md#auth-failures, #other-errors)."""
    if permission not in caller.key.permissions:
        raise AuthFailure.NO_PERMISSION.refusal()
    if parent_only and caller.user.parent_uid is not None:
        raise forbidden()


def signed_host_candidates(host_header: str) -> set[str]:
    """The hosts a client may have signed: the Host header as received, and without its port, since some
    clients sign the bare host while their HTTP library sends the port
    (shared/adapters/htx/README.md#signing, #canonical-form)."""
    host = host_header.lower()
    candidates = {host}
    try:
        parts = urlsplit(f"//{host}")
        has_port = parts.port is not None
    except ValueError:
        return candidates
    if has_port:
        candidates.add(host[: host.rfind(":")])
    if parts.hostname:
        # An IPv6 host without its brackets, as urlparse(url).hostname gives the official SDK.
        candidates.add(parts.hostname)
    return candidates


def _timestamp_in_window(text: str, now: datetime) -> bool:
    try:
        return abs(now - parse_timestamp(text)) <= TIMESTAMP_WINDOW
    except ValueError:
        return False
