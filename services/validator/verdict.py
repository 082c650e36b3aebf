"""The key verdict: a pure function from what an exchange said about a key and Hash7's policy to reasons.

Every failing check is reported, not just the first, so the user can fix everything in one visit to the exchange's
API key page. Rules, the same on every exchange: a main-account key; no withdraw or transfer permission; trade and
read present; bound to every Hash7 egress IP and to nothing else (a network, however narrow, is not one of our
hosts); key status normal; account able to trade; a warning when the key expires within the policy's threshold.
"""

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from shared.adapters.exchange.port import KeyDescription, KeyEntry, KeyStatus, Permission
from shared.contracts.reasons import Reason, ReasonCode, reason

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# What an exchange lists (IP entries, status words) is untrusted text of any length and count, and it reaches the
# user in a reason: each piece is shown printable and cut, and only so many pieces. The bounds are our choice: an
# IP entry or a status word is a few dozen characters, and a key lists a handful of IPs (HTX and OKX allow 20).
MAX_SHOWN_CHARS = 64
MAX_SHOWN_ENTRIES = 20


def shown(text: str) -> str:
    """text as a reason may show it: each character that is not printable (a control character, an ANSI escape's
    ESC, a bidirectional override) as `?`, and no longer than MAX_SHOWN_CHARS (cut with `…`)."""
    head = "".join(c if c.isprintable() else "?" for c in text[:MAX_SHOWN_CHARS + 1])
    return head if len(head) <= MAX_SHOWN_CHARS else head[:MAX_SHOWN_CHARS - 1] + "…"


def shown_entries(entries: Sequence[str]) -> list[str]:
    """The first MAX_SHOWN_ENTRIES entries, each shown(), then how many more there are."""
    listed = [shown(entry) for entry in entries[:MAX_SHOWN_ENTRIES]]
    if len(entries) > MAX_SHOWN_ENTRIES:
        listed.append(f"and {len(entries) - MAX_SHOWN_ENTRIES} more")
    return listed


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
    """How a key's bound entries compare with the egress IPs. Entries are reported as the exchange listed them."""

    missing: list[str]
    foreign: list[str]


def check_ip_binding(bound_entries: Iterable[str], egress: Sequence[IpAddress]) -> IpBindingCheck:
    """An entry counts as one of our IPs only if it is exactly that host (a /32 or /128 of it is the same);
    any other host or network is foreign, even a network that contains our IP, because it lets other
    machines use the key too."""
    matched: set[IpAddress] = set()
    # A dict keeps the exchange's order and drops repeats in one pass, however many entries it lists.
    foreign: dict[str, None] = {}
    for entry in (e.strip() for e in bound_entries):
        host = _single_host(entry)
        if host is not None and host in egress:
            matched.add(host)
        elif entry:
            foreign[entry] = None
    return IpBindingCheck(missing=[str(ip) for ip in egress if ip not in matched], foreign=list(foreign))


def _single_host(entry: str) -> IpAddress | None:
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None
    return network.network_address if network.num_addresses == 1 else None


def verdict_for(description: KeyDescription, policy: KeyPolicy, exchange: str) -> KeyVerdict:
    """The verdict on a key from what exchange said about it."""
    rejections: list[Reason] = []
    warnings: list[Reason] = []
    if description.sub_account:
        rejections.append(reason(ReasonCode.SUB_ACCOUNT_KEY, exchange))
    if description.key is not None:
        rejections += _permission_rejections(description.key, exchange)
        rejections += _ip_rejections(description.key, policy, exchange)
        rejections += _status_rejections(description.key, exchange)
        warnings += _expiry_warnings(description.key, policy, exchange)
    if description.account_problem is not None:
        rejections.append(reason(ReasonCode.ACCOUNT_LOCKED, exchange, status=shown(description.account_problem)))
    return KeyVerdict(rejections=rejections, warnings=warnings)


def _permission_rejections(key: KeyEntry, exchange: str) -> list[Reason]:
    rejections = []
    if Permission.WITHDRAW in key.permissions:
        rejections.append(reason(ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN, exchange))
    if Permission.TRANSFER in key.permissions:
        rejections.append(reason(ReasonCode.PERMISSION_TRANSFER_FORBIDDEN, exchange,
                                 permissions=list(key.listed_permissions)))
    if Permission.TRADE not in key.permissions:
        rejections.append(reason(ReasonCode.PERMISSION_TRADE_MISSING, exchange))
    if Permission.READ not in key.permissions:
        rejections.append(reason(ReasonCode.PERMISSION_READ_MISSING, exchange))
    return rejections


def _ip_rejections(key: KeyEntry, policy: KeyPolicy, exchange: str) -> list[Reason]:
    egress_ips = list(policy.egress_ips)
    if not key.bound_ips:
        return [reason(ReasonCode.IP_BINDING_MISSING, exchange, egress_ips=egress_ips)]
    check = check_ip_binding(key.bound_ips, policy.egress_addresses)
    rejections = []
    if check.missing:
        rejections.append(reason(ReasonCode.IP_BINDING_INCOMPLETE, exchange, missing_ips=check.missing,
                                 egress_ips=egress_ips))
    if check.foreign:
        rejections.append(reason(ReasonCode.IP_BINDING_FOREIGN, exchange, foreign_ips=shown_entries(check.foreign),
                                 egress_ips=egress_ips))
    return rejections


def _status_rejections(key: KeyEntry, exchange: str) -> list[Reason]:
    if key.status is KeyStatus.EXPIRED:
        return [reason(ReasonCode.KEY_EXPIRED, exchange, status=shown(key.status_text))]
    if key.status is KeyStatus.DISABLED:
        return [reason(ReasonCode.KEY_DISABLED, exchange, status=shown(key.status_text))]
    return []


def _expiry_warnings(key: KeyEntry, policy: KeyPolicy, exchange: str) -> list[Reason]:
    if key.status is KeyStatus.NORMAL and key.valid_days is not None and key.valid_days <= policy.expiry_warning_days:
        return [reason(ReasonCode.KEY_EXPIRING, exchange, valid_days=key.valid_days)]
    return []
