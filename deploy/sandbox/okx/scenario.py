"""The OKX sandbox's world: the scenario file's models and the in-memory state its endpoints and admin API read and
change (users, keys, spot instruments), on top of the generic bookkeeping every sandbox keeps (faults, rate-limit
windows, placed orders, request counts: deploy/sandbox/common/state.py's SandboxBooks, inherited).

Everything here is synchronous and runs on the server's one event loop, so no locking is needed.
"""

import json
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from deploy.sandbox.common.program import DemoKey
from deploy.sandbox.common.state import (
    EgressRoute,
    EndpointRateLimit,
    SandboxBooks,
    StrictModel,
    UsersAndKeys,
    comma_list,
)

# shared/adapters/okx/README.md#account-config: 0 main account; the others kinds of sub-account.
AccountType = Literal["0", "1", "2", "5", "9", "12"]
# shared/adapters/okx/README.md#instruments: the spot states.
InstrumentState = Literal["live", "suspend", "preopen", "test"]
# shared/adapters/okx/README.md#account-config: an account OKX refuses outright (50007 blocked, 50009 liquidating,
# 50012 status invalid) and the ordinary one.
AccountStatus = Literal["normal", "blocked", "liquidating", "invalid"]

ACCOUNT_CONFIG_PATH = "/api/v5/account/config"
ORDER_PATH = "/api/v5/trade/order"
# shared/adapters/okx/README.md#rate-limits: per User ID. OKX counts orders per User ID and instrument; the sandbox
# counts them per User ID, which is stricter.
DOCUMENTED_RATE_LIMITS = {
    ACCOUNT_CONFIG_PATH: EndpointRateLimit(requests=5, window_ms=2000),
    ORDER_PATH: EndpointRateLimit(requests=60, window_ms=2000),
}


class OkxApiKey(StrictModel):
    api_key: str = Field(min_length=1)
    secret_key: SecretStr
    passphrase: SecretStr
    label: str = ""
    # Comma list of read_only, trade, withdraw (shared/adapters/okx/README.md#account-config).
    perm: str = "read_only"
    # Comma list of IPv4/IPv6 hosts and networks; "" = not bound.
    ip: str = ""
    # A demo-trading key: accepted only with `x-simulated-trading: 1` (shared/adapters/okx/README.md#demo-trading).
    demo: bool = False
    # Refused on every private call with 50100 (shared/adapters/okx/README.md#account-config).
    frozen: bool = False
    # What the key's user hands Hash7 when it is not what OKX holds (a mistyped secret or passphrase); the sandbox
    # never reads these, the tests sign with them.
    handed_secret_key: SecretStr | None = None
    handed_passphrase: SecretStr | None = None

    @property
    def permissions(self) -> set[str]:
        return set(comma_list(self.perm))

    @property
    def bound_ips(self) -> list[str]:
        return comma_list(self.ip)


class OkxUser(StrictModel):
    uid: int
    # The main account of a sub-account; None for a main account (its own mainUid).
    main_uid: int | None = None
    type: AccountType = "0"
    acct_lv: Literal["1", "2", "3", "4"] = "1"
    kyc_lv: Literal["0", "1", "2", "3"] = "2"
    # Not "normal": every signed call of the account's keys is refused with that state's code.
    status: AccountStatus = "normal"
    api_keys: list[OkxApiKey] = Field(default_factory=list)


class OkxInstrument(StrictModel):
    inst_id: str = Field(min_length=1)
    base_ccy: str
    quote_ccy: str
    state: InstrumentState = "live"
    min_sz: str = "0.00001"
    lot_sz: str = "0.00000001"
    tick_sz: str = "0.1"


class OkxScenario(StrictModel):
    # Requests arriving on loopback (and from --egress-map networks) count as coming from this address.
    egress_ip: str
    users: list[OkxUser] = Field(default_factory=list)
    instruments: list[OkxInstrument] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "OkxScenario":
        return cls.model_validate(json.loads(path.read_text()))

    def demo_keys(self) -> list[DemoKey]:
        return [DemoKey(key.label, key.api_key, key.handed_secret_key or key.secret_key,
                        key.handed_passphrase or key.passphrase)
                for user in self.users for key in user.api_keys]


class OkxSandboxState(SandboxBooks, UsersAndKeys[OkxUser, OkxApiKey]):
    """The generic bookkeeping and users with keys (deploy/sandbox/common/state.py), with OKX's instruments."""

    def __init__(self, scenario: OkxScenario, seed: int | None = None,
                 egress_routes: tuple[EgressRoute, ...] = ()) -> None:
        SandboxBooks.__init__(self, scenario.egress_ip, rate_limits=DOCUMENTED_RATE_LIMITS, seed=seed,
                              egress_routes=egress_routes)
        UsersAndKeys.__init__(self, scenario.users, lambda key: key.api_key)
        self.instruments: dict[str, OkxInstrument] = {i.inst_id: i for i in scenario.instruments}

    def upsert_instrument(self, instrument: OkxInstrument) -> None:
        self.instruments[instrument.inst_id] = instrument

