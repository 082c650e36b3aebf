"""The key verdict: a pure function from what HTX said about a key and Hash7's policy to reasons.

Every failing check is reported, not just the first, so the user can fix everything in one visit to HTX's
API Management screen. Rules: no withdraw permission; trade and read present; bound to
every Hash7 egress IP and to nothing else; key status normal; spot account working; a warning when the
key expires within the policy's threshold.
"""

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shared.adapters.htx.models import Account, ApiKeyInfo
from shared.contracts.reasons import Reason, ReasonCode, reason

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The permission tokens of HTX's /v2/user/api-key, compared lower-case.
READ_PERMISSION = "readonly"
TRADE_PERMISSION = "trade"
WITHDRAW_PERMISSION = "withdraw"
# /v2/user/api-key's validDays -1 means permanently valid.
NEVER_EXPIRES = -1


@dataclass(frozen=True)
class KeyPolicy:
    """What Hash7 requires of a key: bound to exactly these egress IPs; warn this many days before expiry."""

    egress_ips: tuple[str, ...]
    expiry_warning_days: int

    def __post_init__(self) -> None:
        if not self.egress_ips:
            raise ValueError("the policy needs at least one egress IP")
        # Normalised text (IPv6 compressed, lower-case); raises ValueError on anything but a host address.
        object.__setattr__(self, "egress_ips", tuple(str(ipaddress.ip_address(ip.strip())) for ip in self.egress_ips))

    @property
    def egress_addresses(self) -> tuple[IpAddress, ...]:
        return tuple(ipaddress.ip_address(ip) for ip in self.egress_ips)


@dataclass(frozen=True)
class KeyVerdict:
    """Every reason to refuse the key (none: accepted), and every warning worth telling its owner."""

    rejections: list[Reason] = field(default_factory=list)
    warnings: list[Reason] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return not self.rejections


@dataclass(frozen=True)
class IpBindingCheck:
    """How a key's bound entries compare with the egress IPs. Entries are reported as HTX listed them."""

    missing: list[str]
    foreign: list[str]


def check_ip_binding(bound_entries: Iterable[str], egress: Sequence[IpAddress]) -> IpBindingCheck:
    """An entry counts as one of our IPs only if it is exactly that host (a /32 or /128 of it is the same);
    any other host or network is foreign, even a network that contains our IP, because it lets other
    machines use the key too."""
    matched: set[IpAddress] = set()
    foreign: list[str] = []
    for entry in (e.strip() for e in bound_entries):
        host = _single_host(entry)
        if host is not None and host in egress:
            matched.add(host)
        elif entry and entry not in foreign:
            foreign.append(entry)
    return IpBindingCheck(missing=[str(ip) for ip in egress if ip not in matched], foreign=foreign)


def _single_host(entry: str) -> IpAddress | None:
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None
    return network.network_address if network.num_addresses == 1 else None


def verdict_for(
    api_key: ApiKeyInfo | None,
    accounts: Sequence[Account],
    policy: KeyPolicy,
    *,
    sub_account: bool = False,
) -> KeyVerdict:
    """The verdict on a key from HTX's answers.

    api_key is the key's `/v2/user/api-key` entry; it may be None only for a sub-account key, which that
    parent-only endpoint refuses to describe.
    """
    if api_key is None and not sub_account:
        raise ValueError("a key that is not a sub-account key must come with its /v2/user/api-key entry")
    rejections: list[Reason] = []
    warnings: list[Reason] = []
    if sub_account:
        rejections.append(reason(ReasonCode.SUB_ACCOUNT_KEY))
    if api_key is not None:
        rejections += _permission_rejections(api_key)
        rejections += _ip_rejections(api_key, policy)
        rejections += _status_rejections(api_key)
        warnings += _expiry_warnings(api_key, policy)
    rejections += _account_rejections(accounts)
    return KeyVerdict(rejections=rejections, warnings=warnings)


def _permission_rejections(api_key: ApiKeyInfo) -> list[Reason]:
    granted = {p.lower() for p in api_key.permissions}
    rejections = []
    if WITHDRAW_PERMISSION in granted:
        rejections.append(reason(ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN))
    if TRADE_PERMISSION not in granted:
        rejections.append(reason(ReasonCode.PERMISSION_TRADE_MISSING))
    if READ_PERMISSION not in granted:
        rejections.append(reason(ReasonCode.PERMISSION_READ_MISSING))
    return rejections


def _ip_rejections(api_key: ApiKeyInfo, policy: KeyPolicy) -> list[Reason]:
    egress_ips = list(policy.egress_ips)
    if not api_key.bound_ips:
        return [reason(ReasonCode.IP_BINDING_MISSING, egress_ips=egress_ips)]
    check = check_ip_binding(api_key.bound_ips, policy.egress_addresses)
    rejections = []
    if check.missing:
        rejections.append(reason(ReasonCode.IP_BINDING_INCOMPLETE, missing_ips=check.missing, egress_ips=egress_ips))
    if check.foreign:
        rejections.append(reason(ReasonCode.IP_BINDING_FOREIGN, foreign_ips=check.foreign, egress_ips=egress_ips))
    return rejections


def _status_rejections(api_key: ApiKeyInfo) -> list[Reason]:
    # HTX lists a key's status as `normal` or `expired`; anything else is treated as disabled.
    if api_key.status == "expired":
        return [reason(ReasonCode.KEY_EXPIRED, status=api_key.status)]
    if api_key.status != "normal":
        return [reason(ReasonCode.KEY_DISABLED, status=api_key.status)]
    return []


def _expiry_warnings(api_key: ApiKeyInfo, policy: KeyPolicy) -> list[Reason]:
    expires = api_key.valid_days != NEVER_EXPIRES
    if api_key.status == "normal" and expires and api_key.valid_days <= policy.expiry_warning_days:
        return [reason(ReasonCode.KEY_EXPIRING, valid_days=api_key.valid_days)]
    return []


def _account_rejections(accounts: Sequence[Account]) -> list[Reason]:
    # HTX lists an account's state as `working` or `lock`; the bot trades on spot only.
    if any(a.type == "spot" and a.state != "working" for a in accounts):
        return [reason(ReasonCode.ACCOUNT_LOCKED)]
    return []
