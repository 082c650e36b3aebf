"""The Bybit sandbox's world: its scenario file's models and the in-memory state its endpoints and admin API read
and change. The generic bookkeeping (faults, rate-limit windows, placed orders, request counts, the seeded random
source, egress routes) is deploy/sandbox/common/state.py's `SandboxBooks`, inherited; only users, keys and symbols are
Bybit's.

Everything here is synchronous and runs on the server's one event loop, so no locking is needed.
"""

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr

from deploy.sandbox.common.program import DemoKey
from deploy.sandbox.common.state import EgressRoute, EndpointRateLimit, Fault, SandboxBooks, StrictModel, UnknownEntity
from shared.adapters.bybit.client import ORDER_CREATE_PATH, QUERY_API_PATH

# shared/adapters/bybit/README.md#instruments: the instrument status enum.
InstrumentStatus = Literal["PreLaunch", "Trading", "Delivering", "Closed"]



class BybitApiKey(StrictModel):
    api_key: str = Field(min_length=1)
    secret: SecretStr
    note: str = ""
    # shared/adapters/bybit/README.md#key-info: 0 read and write, 1 read only.
    read_only: Literal[0, 1] = 0
    # Group → permission names, as query-api lists them: {"Spot": ["SpotTrade"], "Wallet": ["Withdraw"]}.
    permissions: dict[str, list[str]] = Field(default_factory=dict)
    # ["*"] = bound to no IP; entries may be hosts or networks (shared/adapters/bybit/README.md#key-info).
    ips: list[str] = Field(default_factory=lambda: ["*"])
    # Days left; None = does not expire; 0 = expired (every signed call refused with 33004).
    valid_days: int | None = Field(None, ge=0)
    type: Literal[1, 2] = 1
    # The secret the demo's user hands Hash7 for this key when it is not the key's own, so a signature refusal can be
    # played end to end; the sandbox never reads it.
    offered_secret: SecretStr | None = None
    created_at: str = "2026-01-01T00:00:00Z"

    @property
    def expired(self) -> bool:
        return self.valid_days == 0

    def expires_at(self, now: datetime) -> datetime | None:
        return None if self.valid_days is None else now + timedelta(days=self.valid_days)


class BybitUser(StrictModel):
    uid: int
    # Set for a sub-account: its keys answer isMaster false and this parentUid.
    parent_uid: int | None = None
    # A banned account: every signed call is refused with 10027 (shared/adapters/bybit/README.md#what-cannot-be-proved).
    banned: bool = False
    # Every signed call refused with 10008 `Common banned` (shared/adapters/bybit/README.md#what-cannot-be-proved).
    common_banned: bool = False
    uta: Literal[0, 1] = 1
    api_keys: list[BybitApiKey] = Field(default_factory=list)


class BybitSymbol(StrictModel):
    symbol: str = Field(min_length=1)
    base_coin: str
    quote_coin: str
    status: InstrumentStatus = "Trading"
    base_precision: str = "0.000001"
    quote_precision: str = "0.00000001"
    min_order_qty: str = "0.000048"
    max_order_qty: str = "71.73956243"
    tick_size: str = "0.01"


class BybitScenario(StrictModel):
    # Requests arriving on loopback (and from --egress-map networks) count as coming from this address.
    egress_ip: str
    users: list[BybitUser] = Field(default_factory=list)
    symbols: list[BybitSymbol] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "BybitScenario":
        return cls.model_validate(json.loads(path.read_text()))

    def demo_keys(self) -> list[DemoKey]:
        return [DemoKey(key.note, key.api_key, key.offered_secret or key.secret)
                for user in self.users for key in user.api_keys]


class BybitFault(Fault):
    """Trouble injected into one endpoint (or every one, under "*"). The inherited error kinds answer Bybit's way:
    `gateway-internal-error` is Bybit's 10016 envelope, `bad-gateway` an HTTP 502 page; a timeout is held, then
    answered 10000 `Server Timeout`; `maintenance` is an HTTP 503 page (Bybit documents no maintenance code: a
    choice)."""

    # HTTP 403 `access too frequent`: Bybit's per-IP limit (shared/adapters/bybit/README.md#rate-limits).
    ip_rate_limited: bool = False


# shared/adapters/bybit/README.md#rate-limits: per UID and endpoint, as ccxt's cost table has them.
BYBIT_RATE_LIMITS = {
    QUERY_API_PATH: EndpointRateLimit(requests=10, window_ms=1000),
    ORDER_CREATE_PATH: EndpointRateLimit(requests=20, window_ms=1000),
}


@dataclass(frozen=True)
class KeyRecord:
    uid: int
    key: BybitApiKey


class BybitSandboxState(SandboxBooks):
    """The generic bookkeeping (deploy/sandbox/common/state.py), with Bybit's users, keys and symbols."""

    def __init__(self, scenario: BybitScenario, seed: int | None = None,
                 egress_routes: tuple[EgressRoute, ...] = ()) -> None:
        super().__init__(scenario.egress_ip, rate_limits=BYBIT_RATE_LIMITS, seed=seed, egress_routes=egress_routes)
        self.members: dict[int, BybitUser] = {}
        self.keys: dict[str, KeyRecord] = {}
        for user in scenario.users:
            self.put_member(user)
        self.instruments: dict[str, BybitSymbol] = {s.symbol: s for s in scenario.symbols}

    def key_record(self, api_key: str) -> KeyRecord | None:
        return self.keys.get(api_key)

    def member_of(self, record: KeyRecord) -> BybitUser:
        return self.members[record.uid]

    def put_member(self, user: BybitUser) -> None:
        """Add or replace a user with exactly its listed keys; a key listed elsewhere moves here."""
        self.keys = {name: record for name, record in self.keys.items() if record.uid != user.uid}
        self.members[user.uid] = user.model_copy(update={"api_keys": []})
        for key in user.api_keys:
            self.keys[key.api_key] = KeyRecord(user.uid, key)

    def put_key(self, uid: int, key: BybitApiKey) -> None:
        if uid not in self.members:
            raise UnknownEntity(f"no user {uid}")
        self.keys[key.api_key] = KeyRecord(uid, key)

    def put_symbol(self, symbol: BybitSymbol) -> None:
        self.instruments[symbol.symbol] = symbol

    def change_key(self, api_key: str, changes: dict[str, Any]) -> BybitApiKey:
        record = self._existing(api_key)
        updated = BybitApiKey.model_validate({**record.key.model_dump(), "secret": record.key.secret, **changes})
        self.keys[api_key] = KeyRecord(record.uid, updated)
        return updated

    def drop_key(self, api_key: str) -> None:
        self._existing(api_key)
        del self.keys[api_key]

    def _existing(self, api_key: str) -> KeyRecord:
        record = self.keys.get(api_key)
        if record is None:
            raise UnknownEntity(f"no API key {api_key}")
        return record
