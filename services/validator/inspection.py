"""Ask HTX about one key and give the verdict on it: the validator's call sequence.

1. `GET /v1/common/timestamp` (at most once a minute): measure clock skew and sign with HTX's time, so our
   clock cannot fail keys.
2. `GET /v2/user/uid`: proves access key, signature and IP binding valid; gives the UID.
3. `GET /v2/user/api-key?uid=…&accessKey=…`: permissions, bound IPs, validity, status. Parent keys only:
   HTX refuses a sub-account key with HTTP 403, which is itself the verdict `sub_account_key`.
4. `GET /v1/account/accounts`: the spot account and whether it is locked.

HTX refusing the key (unknown key, bad signature, IP not bound, expired, abnormal user, no permission) is
an answer about the key and becomes a reason. Transient trouble is raised as `ExchangeTransientError` once the
client's retry budget is spent, and any other refusal as `ExchangeError`: neither says anything about the key.
"""

from dataclasses import dataclass
from typing import Self

import structlog

from services.validator.verdict import KeyPolicy, KeyVerdict, verdict_for
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.models import Account, ApiKeyInfo
from shared.contracts.events import HtxKeyFacts
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.contracts.secrets import mask_access_key

log = structlog.get_logger()

# Beyond this, our clock is worth an operator's look even though signing corrects for it.
NOTABLE_CLOCK_SKEW_S = 5.0
# Clocks drift slowly and HTX accepts ±5 min, so one measurement serves a minute of inspections. Measuring
# for every key would cap validation at HTX's 10 unsigned requests a second per IP.
CLOCK_SYNC_MAX_AGE_S = 60.0

_REASON_BY_REFUSAL: dict[ExchangeErrorKind, ReasonCode] = {
    ExchangeErrorKind.UNKNOWN_ACCESS_KEY: ReasonCode.KEY_INVALID,
    ExchangeErrorKind.SIGNATURE_MISMATCH: ReasonCode.KEY_INVALID,
    ExchangeErrorKind.KEY_EXPIRED: ReasonCode.KEY_EXPIRED,
    ExchangeErrorKind.ABNORMAL_USER: ReasonCode.KEY_DISABLED,
    # Every call of the sequence needs only Read, so a permission refusal means Read is missing.
    ExchangeErrorKind.NO_PERMISSION: ReasonCode.PERMISSION_READ_MISSING,
}


@dataclass(frozen=True)
class KeyInspection:
    """What checking one key came to: at bind time, and again at each key-health re-check."""

    verdict: KeyVerdict
    # What HTX told us about the key; None when it would not describe it (refused, a sub-account key) or was
    # never asked.
    facts: HtxKeyFacts | None = None
    # False when HTX could not be asked: the verdict then says exchange_unavailable, nothing about the key.
    checked: bool = True

    @classmethod
    def refused(cls, refusal: Reason, *, checked: bool = True) -> Self:
        return cls(KeyVerdict(rejections=[refusal]), checked=checked)

    @property
    def accepted(self) -> bool:
        return self.verdict.accepted


async def inspect_key(client: HtxClient, credentials: ExchangeCredentials, policy: KeyPolicy) -> KeyInspection:
    """HTX's facts about the key and the verdict on them; see the module docstring for the sequence."""
    skew_s = await client.sync_clock_if_older_than(CLOCK_SYNC_MAX_AGE_S)
    if skew_s is not None and abs(skew_s) > NOTABLE_CLOCK_SKEW_S:
        log.warning("htx.clock_skew", skew_s=round(skew_s, 3))
    try:
        uid = await client.uid(credentials)
        credentials = credentials.with_owner(str(uid))
        api_key, sub_account = await _describe_key(client, credentials, uid)
        if api_key is None and not sub_account:
            # HTX knows the key (it answered /v2/user/uid) but does not list it under its own UID.
            return KeyInspection.refused(reason(ReasonCode.KEY_INVALID))
        accounts = await client.accounts(credentials)
    except ExchangeError as error:
        refusal = _reason_for_refusal(error, policy)
        if refusal is None:
            raise
        log.info("htx.key_refused", access_key_masked=mask_access_key(credentials.access_key), kind=error.kind)
        return KeyInspection.refused(refusal)
    verdict = verdict_for(api_key, accounts, policy, sub_account=sub_account)
    facts = _facts(uid, api_key, accounts) if api_key is not None else None
    return KeyInspection(verdict=verdict, facts=facts)


async def _describe_key(client: HtxClient, credentials: ExchangeCredentials, uid: int) -> tuple[ApiKeyInfo | None, bool]:
    """(the key's entry, whether it is a sub-account key)."""
    try:
        return await client.api_key(credentials, uid), False
    except ExchangeError as error:
        # The endpoint is parent-only: a sub-user key gets HTTP 403.
        if error.kind is ExchangeErrorKind.FORBIDDEN:
            return None, True
        raise


def _reason_for_refusal(error: ExchangeError, policy: KeyPolicy) -> Reason | None:
    if error.kind is ExchangeErrorKind.IP_NOT_BOUND:
        # HTX names the address it saw: that egress IP is missing from the key's list.
        missing = [error.caller_ip] if error.caller_ip else list(policy.egress_ips)
        return reason(ReasonCode.IP_BINDING_INCOMPLETE, missing_ips=missing, egress_ips=list(policy.egress_ips))
    code = _REASON_BY_REFUSAL.get(error.kind)
    if code is None:
        return None
    # Only key_disabled's message names a status; HTX's refusal says the user is abnormal.
    return reason(code, status="abnormal user status")


def _facts(uid: int, api_key: ApiKeyInfo, accounts: list[Account]) -> HtxKeyFacts:
    spot = next((a for a in accounts if a.type == "spot"), None)
    return HtxKeyFacts(
        uid=uid,
        spot_account_id=spot.id if spot else None,
        permissions=api_key.permissions,
        ip_addresses=api_key.bound_ips,
        valid_days=api_key.valid_days,
        key_status=api_key.status,
    )
