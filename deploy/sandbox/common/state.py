"""The generic part of a sandbox's world: the models every scenario file is made of, and the in-memory bookkeeping
every exchange's endpoints and the admin API read and change (faults, rate-limit windows, placed orders, request
counts, the seeded random source, egress routes). Each exchange's package adds its own users, keys and symbols.

Everything here is synchronous and runs on the server's one event loop, so no locking is needed.
"""

import ipaddress
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field


class StrictModel(BaseModel):
    """A scenario or admin model: a field it does not know is an error, not ignored."""

    model_config = ConfigDict(extra="forbid")


def comma_list(text: str) -> list[str]:
    """The non-empty entries of a comma list such as "readOnly, trade" (how scenario files write a key's
    permissions and bound IPs)."""
    return [entry.strip() for entry in text.split(",") if entry.strip()]


@dataclass(frozen=True)
class EgressRoute:
    """Callers from this network stand for Hash7's egress IP: `egress_ip`, or the scenario's when None. Loopback
    callers always do; a route adds a network, such as docker-compose.yml's, where the services call from."""

    callers: ipaddress.IPv4Network | ipaddress.IPv6Network
    egress_ip: str | None = None

    @classmethod
    def parse(cls, text: str) -> "EgressRoute":
        """From `CIDR` or `CIDR=IP` (a sandbox's --egress-map)."""
        network, mapped, egress_ip = text.partition("=")
        try:
            return cls(ipaddress.ip_network(network, strict=False),
                       str(ipaddress.ip_address(egress_ip)) if mapped else None)
        except ValueError:
            raise ValueError(f"{text!r} is not CIDR or CIDR=IP (e.g. 172.30.70.0/24=203.0.113.10)") from None


class Fault(StrictModel):
    """Trouble injected into one endpoint (or every endpoint, under "*"). Each exchange's pipeline answers it in
    that exchange's words."""

    latency_ms: int = Field(0, ge=0)
    # Fraction of requests answered with error_kind; 1.0 always, 0.0 never.
    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    # The next this-many requests are answered with error_kind, whatever error_rate says.
    fail_next: int = Field(0, ge=0)
    # `gateway-internal-error`: the exchange's own internal-error answer; `bad-gateway`: HTTP 502, HTML body.
    error_kind: Literal["gateway-internal-error", "bad-gateway"] = "gateway-internal-error"
    # Fraction of requests held without an answer for `timeout_hold_ms`, then answered with the exchange's timeout.
    timeout_rate: float = Field(0.0, ge=0.0, le=1.0)
    timeout_hold_ms: int = Field(30_000, ge=0)
    maintenance: bool = False


class EndpointRateLimit(StrictModel):
    requests: int = Field(gt=0)
    window_ms: int = Field(gt=0)


ALL_ENDPOINTS = "*"
# For an endpoint without a limit of its own. HTX documents this as its legacy limit
# (shared/adapters/htx/README.md#rate-limits); for the other sandboxes, whose signed endpoints all have their own
# limits, it is a choice.
FALLBACK_RATE_LIMIT = EndpointRateLimit(requests=10, window_ms=1000)


@dataclass
class _RateWindow:
    started_ms: int
    used: int = 0


@dataclass(frozen=True)
class RateSlot:
    allowed: bool
    remaining: int
    # Epoch ms at which the current window ends.
    expires_at_ms: int


class UnknownEntity(LookupError):
    """The admin API named a user, key or account the sandbox does not have."""


class SandboxBooks:
    """The bookkeeping every sandbox keeps, whatever its exchange; each exchange's state extends it."""

    def __init__(self, egress_ip: str, *, rate_limits: dict[str, EndpointRateLimit], seed: int | None = None,
                 egress_routes: tuple[EgressRoute, ...] = ()) -> None:
        self.egress_ip = egress_ip
        self.egress_routes = egress_routes
        self.faults: dict[str, Fault] = {}
        self.rate_limits: dict[str, EndpointRateLimit] = dict(rate_limits)
        self.orders: list[dict[str, Any]] = []
        self.request_counts: Counter[tuple[str, str]] = Counter()
        self.rng = random.Random(seed)
        self._rate_windows: dict[tuple[int, str], _RateWindow] = {}
        self._next_order_id = 100_000_001

    def fault_for(self, path: str) -> Fault | None:
        return self.faults.get(path) or self.faults.get(ALL_ENDPOINTS)

    def rate_limit_for(self, path: str) -> EndpointRateLimit:
        return self.rate_limits.get(path, FALLBACK_RATE_LIMIT)

    def take_rate_slot(self, uid: int, path: str, now_ms: int) -> RateSlot:
        """Count one request of uid on path in the current fixed window: per UID per endpoint, as every supported
        exchange counts its signed calls (e.g. shared/adapters/htx/README.md#rate-limits)."""
        limit = self.rate_limit_for(path)
        window = self._rate_windows.get((uid, path))
        if window is None or now_ms >= window.started_ms + limit.window_ms:
            window = self._rate_windows[(uid, path)] = _RateWindow(started_ms=now_ms)
        allowed = window.used < limit.requests
        if allowed:
            window.used += 1
        return RateSlot(allowed=allowed, remaining=limit.requests - window.used,
                        expires_at_ms=window.started_ms + limit.window_ms)

    def take_order_id(self) -> int:
        order_id, self._next_order_id = self._next_order_id, self._next_order_id + 1
        return order_id

    def count(self, endpoint: str, outcome: str) -> None:
        self.request_counts[(endpoint, outcome)] += 1

    def request_count_report(self) -> dict[str, dict[str, int]]:
        """{"GET /v2/user/uid": {"total": 3, "ok": 2, "api-signature-not-valid": 1}, ...}"""
        report: dict[str, dict[str, int]] = {}
        for (endpoint, outcome), n in sorted(self.request_counts.items()):
            entry = report.setdefault(endpoint, {"total": 0})
            entry["total"] += n
            entry[outcome] = n
        return report


K = TypeVar("K", bound=BaseModel)


class KeyHolder(Protocol[K]):
    """A scenario user: its uid and the API keys it owns."""

    uid: int
    api_keys: list[K]


U = TypeVar("U", bound=KeyHolder[Any])


class UsersAndKeys(Generic[U, K]):
    """A sandbox's users, each owning a list of API keys, with every key findable by its id (key_id) in one step:
    every signed request looks its key up. A key belongs to one user; put elsewhere, it moves."""

    def __init__(self, users: list[U], key_id: Callable[[K], str]) -> None:
        self._key_id = key_id
        self.users: dict[int, U] = {user.uid: user for user in users}
        # key id → uid of its owner.
        self._key_owners = {key_id(key): user.uid for user in users for key in user.api_keys}

    def find_key(self, key_id: str) -> tuple[U, K] | None:
        uid = self._key_owners.get(key_id)
        if uid is None:
            return None
        user = self.users[uid]
        return user, next(key for key in user.api_keys if self._key_id(key) == key_id)

    def upsert_user(self, user: U) -> None:
        replaced = self.users.get(user.uid)
        for key in [*(replaced.api_keys if replaced else []), *user.api_keys]:
            self._release_key(self._key_id(key))
        self.users[user.uid] = user
        self._key_owners.update({self._key_id(key): user.uid for key in user.api_keys})

    def upsert_key(self, uid: int, key: K) -> None:
        user = self._user(uid)
        self._release_key(self._key_id(key))
        user.api_keys.append(key)
        self._key_owners[self._key_id(key)] = uid

    def update_key(self, key_id: str, changes: dict[str, Any]) -> K:
        """The key with changes applied, validated again (a ValidationError if they do not fit)."""
        found = self.find_key(key_id)
        if found is None:
            raise UnknownEntity(f"no API key {key_id}")
        user, key = found
        updated = type(key).model_validate({**key.model_dump(), **changes})
        user.api_keys[user.api_keys.index(key)] = updated
        return updated

    def delete_key(self, key_id: str) -> None:
        if not self._release_key(key_id):
            raise UnknownEntity(f"no API key {key_id}")

    def _user(self, uid: int) -> U:
        if uid not in self.users:
            raise UnknownEntity(f"no user {uid}")
        return self.users[uid]

    def _release_key(self, key_id: str) -> bool:
        found = self.find_key(key_id)
        if found is not None:
            found[0].api_keys.remove(found[1])
            del self._key_owners[key_id]
        return found is not None
