"""The HTX sandbox's world: the scenario file's models and the in-memory state the HTX endpoints and the admin
API read and change (users, keys, accounts, symbols, market status), on the generic bookkeeping of
deploy/sandbox/common/state.py (faults, rate-limit windows, placed orders, counts).

Everything here is synchronous and runs on the server's one event loop, so no locking is needed.
"""

import json
from decimal import Decimal
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from deploy.sandbox.common.program import DemoKey
from deploy.sandbox.common.state import (
    EgressRoute,
    EndpointRateLimit,
    SandboxBooks,
    StrictModel,
    UnknownEntity,
    UsersAndKeys,
    comma_list,
)

# shared/adapters/htx/README.md#v2-settings-symbols: the eight symbol states of the settings endpoints.
SymbolState = Literal["unknown", "not-online", "pre-online", "online", "suspend", "offline", "transfer-board", "fuse"]


class ScenarioApiKey(StrictModel):
    access_key: str = Field(min_length=1)
    secret_key: SecretStr
    note: str = ""
    # shared/adapters/htx/README.md#api-key-query: comma list of readOnly, trade, withdraw.
    permission: str = "readOnly"
    # Comma list of IPv4/IPv6 hosts and networks; "" = not bound.
    ip_addresses: str = ""
    valid_days: int = -1
    status: Literal["normal", "expired"] = "normal"
    create_time: int = 1700000000000
    update_time: int | None = None

    @property
    def permissions(self) -> set[str]:
        return set(comma_list(self.permission))

    @property
    def bound_ips(self) -> list[str]:
        return comma_list(self.ip_addresses)


class ScenarioAccount(StrictModel):
    id: int
    type: str = "spot"
    subtype: str = ""
    state: Literal["working", "lock"] = "working"


class ScenarioUser(StrictModel):
    uid: int
    # Set for a sub-user: its keys are refused on parent-only endpoints (shared/adapters/htx/README.md#api-key-query).
    parent_uid: int | None = None
    # `abnormal` makes every signed call fail with "Abnormal user status" (shared/adapters/htx/README.md#auth-failures).
    state: Literal["normal", "abnormal"] = "normal"
    accounts: list[ScenarioAccount] = Field(default_factory=list)
    api_keys: list[ScenarioApiKey] = Field(default_factory=list)


class ScenarioSymbol(StrictModel):
    symbol: str
    base: str
    quote: str
    state: SymbolState = "online"
    api_trading: Literal["enabled", "disabled"] = "enabled"
    trade_enabled: bool = True
    partition: str = "main"
    tags: str = ""
    price_precision: int = 2
    amount_precision: int = 6
    value_precision: int = 8
    min_order_amount: Decimal = Decimal("0.0001")
    max_order_amount: Decimal = Decimal("1000")
    min_order_value: Decimal = Decimal("5")


class ScenarioMarketStatus(StrictModel):
    # shared/adapters/htx/README.md#clock-and-market-status: 1 normal, 2 halted, 3 cancel-only.
    market_status: Literal[1, 2, 3] = 1
    halt_start_time: int | None = None
    halt_end_time: int | None = None
    halt_reason: Literal[2, 3] | None = None
    affected_symbols: str | None = None


class Scenario(StrictModel):
    # Requests arriving on loopback (and from htx-sandbox --egress-map networks) count as coming from this address.
    egress_ip: str
    users: list[ScenarioUser] = Field(default_factory=list)
    symbols: list[ScenarioSymbol] = Field(default_factory=list)
    market_status: ScenarioMarketStatus = Field(default_factory=ScenarioMarketStatus)

    @classmethod
    def load(cls, path: Path) -> "Scenario":
        return cls.model_validate(json.loads(path.read_text()))

    def demo_keys(self) -> list[DemoKey]:
        return [DemoKey(key.note, key.access_key, key.secret_key) for user in self.users for key in user.api_keys]


# shared/adapters/htx/README.md#rate-limits: the limits HTX marks, per UID and endpoint.
DOCUMENTED_RATE_LIMITS = {
    "/v1/account/accounts": EndpointRateLimit(requests=100, window_ms=2000),
    "/v1/order/orders/place": EndpointRateLimit(requests=100, window_ms=2000),
}
# shared/adapters/htx/README.md#rate-limits: unmarked endpoints fall under the legacy 10 per second per key
# (deploy/sandbox/common/state.py FALLBACK_RATE_LIMIT); the sandbox counts per UID, like the marked ones, so one rule
# serves every signed endpoint.


class HtxSandboxState(SandboxBooks, UsersAndKeys[ScenarioUser, ScenarioApiKey]):
    """The generic bookkeeping and users with keys (deploy/sandbox/common/state.py), with HTX's accounts, symbols
    and market status."""

    def __init__(self, scenario: Scenario, seed: int | None = None,
                 egress_routes: tuple[EgressRoute, ...] = ()) -> None:
        SandboxBooks.__init__(self, scenario.egress_ip, rate_limits=DOCUMENTED_RATE_LIMITS, seed=seed,
                              egress_routes=egress_routes)
        UsersAndKeys.__init__(self, scenario.users, lambda key: key.access_key)
        self.symbols: dict[str, ScenarioSymbol] = {s.symbol: s for s in scenario.symbols}
        self.market_status = scenario.market_status

    def upsert_account(self, uid: int, account: ScenarioAccount) -> None:
        user = self._user(uid)
        user.accounts = [a for a in user.accounts if a.id != account.id] + [account]

    def set_account_state(self, account_id: int, state: str) -> ScenarioAccount:
        for user in self.users.values():
            for index, account in enumerate(user.accounts):
                if account.id == account_id:
                    user.accounts[index] = ScenarioAccount.model_validate({**account.model_dump(), "state": state})
                    return user.accounts[index]
        raise UnknownEntity(f"no account {account_id}")

    def upsert_symbol(self, symbol: ScenarioSymbol) -> None:
        self.symbols[symbol.symbol] = symbol

