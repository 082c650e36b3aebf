"""Ask an exchange about one key and give the verdict on it.

The exchange's adapter describes the key (shared/adapters/exchange/port.py; HTX's calls:
shared/adapters/htx/exchange.py). The exchange refusing the key (unknown key, bad signature, IP not bound,
expired, abnormal user, no permission) is an answer about the key and becomes a reason. Transient trouble is raised
as `ExchangeTransientError` once the client's retry budget is spent, and any other refusal as `ExchangeError`:
neither says anything about the key.
"""

from dataclasses import dataclass
from typing import Self

import structlog

from services.validator.verdict import KeyPolicy, KeyVerdict, verdict_for
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.exchange.port import Exchange, ExchangeCredentials, KeyDescription
from shared.contracts.events import KeyFacts
from shared.contracts.reasons import Reason, ReasonCode, reason
from shared.contracts.secrets import mask_access_key

log = structlog.get_logger()

_REASON_BY_REFUSAL: dict[ExchangeErrorKind, ReasonCode] = {
    ExchangeErrorKind.UNKNOWN_ACCESS_KEY: ReasonCode.KEY_INVALID,
    ExchangeErrorKind.SIGNATURE_MISMATCH: ReasonCode.KEY_INVALID,
    ExchangeErrorKind.KEY_EXPIRED: ReasonCode.KEY_EXPIRED,
    ExchangeErrorKind.ABNORMAL_USER: ReasonCode.KEY_DISABLED,
    ExchangeErrorKind.ACCOUNT_RESTRICTED: ReasonCode.ACCOUNT_LOCKED,
    # Describing a key needs only Read on every exchange, so a permission refusal means Read is missing.
    ExchangeErrorKind.NO_PERMISSION: ReasonCode.PERMISSION_READ_MISSING,
    # LOGIN_REQUIRED is left out on purpose: on HTX it means the request carried no AccessKeyId or Signature
    # (shared/adapters/htx/README.md#auth-failures), on OKX a missing auth header (shared/adapters/okx/README.md#errors)
    # and on Bybit a 401 without Bybit's envelope: each says our request or the stored record is wrong, not the
    # user's key, so telling them to bind a new key would mislead. It stays exchange_unavailable.
}
# The status a refused key or account is reported in: words of ours, never the exchange's text (untrusted input).
_REFUSED_STATUS = {ReasonCode.KEY_DISABLED: "abnormal user status",
                   ReasonCode.ACCOUNT_LOCKED: "restricted by the exchange"}


@dataclass(frozen=True)
class KeyInspection:
    """What checking one key came to: at bind time, and again at each key-health re-check."""

    verdict: KeyVerdict
    # What the exchange told us about the key; None when it would not describe it (refused, a sub-account key on
    # HTX) or was never asked.
    facts: KeyFacts | None = None
    # False when the exchange could not be asked: the verdict then says exchange_unavailable, nothing about the key.
    checked: bool = True

    @classmethod
    def refused(cls, refusal: Reason, *, checked: bool = True) -> Self:
        return cls(KeyVerdict(rejections=[refusal]), checked=checked)

    @property
    def accepted(self) -> bool:
        return self.verdict.accepted


async def inspect_key(exchange: Exchange, credentials: ExchangeCredentials, policy: KeyPolicy) -> KeyInspection:
    """The exchange's facts about the key and the verdict on them."""
    try:
        description = await exchange.describe_key(credentials)
    except ExchangeError as error:
        refusal = _reason_for_refusal(error, policy, exchange.name)
        if refusal is None:
            raise
        log.info("exchange.key_refused", exchange=exchange.name, kind=error.kind,
                 access_key_masked=mask_access_key(credentials.access_key))
        return KeyInspection.refused(refusal)
    verdict = verdict_for(description, policy, exchange.name)
    return KeyInspection(verdict=verdict, facts=_facts(description))


def _reason_for_refusal(error: ExchangeError, policy: KeyPolicy, exchange: str) -> Reason | None:
    if error.kind is ExchangeErrorKind.IP_NOT_BOUND:
        # The exchange may name the address it saw: that egress IP is missing from the key's list.
        missing = [error.caller_ip] if error.caller_ip else list(policy.egress_ips)
        return reason(ReasonCode.IP_BINDING_INCOMPLETE, exchange, missing_ips=missing,
                      egress_ips=list(policy.egress_ips))
    code = _REASON_BY_REFUSAL.get(error.kind)
    if code is None:
        return None
    return reason(code, exchange, status=_REFUSED_STATUS.get(code, ""))


def _facts(description: KeyDescription) -> KeyFacts | None:
    key = description.key
    if key is None:
        return None
    return KeyFacts(
        owner_uid=description.owner_uid, trading_account_id=description.trading_account_id,
        permissions=list(key.listed_permissions), ip_addresses=list(key.bound_ips), valid_days=key.valid_days,
        key_status=key.status_text,
    )
