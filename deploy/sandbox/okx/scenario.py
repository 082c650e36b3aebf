"""The OKX sandbox's world: the scenario file's models and the in-memory state its endpoints and admin API read and
change (users, keys, spot instruments), on top of the generic bookkeeping the HTX sandbox already keeps (faults,
rate-limit windows, placed orders, request counts: deploy/sandbox/scenario.py's SandboxState, reused whole).

Everything here is synchronous and runs on the server's one event loop, so no locking is needed.
"""

import json
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from deploy.sandbox.scenario import (
    EgressRoute,
    EndpointRateLimit,
    Fault,
    SandboxState,
    Scenario,
    UnknownEntity,
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


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OkxApiKey(_Model):
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
        return {p.strip() for p in self.perm.split(",") if p.strip()}

    @property
    def bound_ips(self) -> list[str]:
        return [ip.strip() for ip in self.ip.split(",") if ip.strip()]


class OkxUser(_Model):
    uid: int
    # The main account of a sub-account; None for a main account (its own mainUid).
    main_uid: int | None = None
    type: AccountType = "0"
    acct_lv: Literal["1", "2", "3", "4"] = "1"
    kyc_lv: Literal["0", "1", "2", "3"] = "2"
    # Not "normal": every signed call of the account's keys is refused with that state's code.
    status: AccountStatus = "normal"
    api_keys: list[OkxApiKey] = Field(default_factory=list)


class OkxInstrument(_Model):
    inst_id: str = Field(min_length=1)
    base_ccy: str
    quote_ccy: str
    state: InstrumentState = "live"
    min_sz: str = "0.00001"
    lot_sz: str = "0.00000001"
    tick_sz: str = "0.1"


class OkxScenario(_Model):
    # Requests arriving on loopback (and from --egress-map networks) count as coming from this address.
    egress_ip: str
    users: list[OkxUser] = Field(default_factory=list)
    instruments: list[OkxInstrument] = Field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> "OkxScenario":
        return cls.model_validate(json.loads(path.read_text()))


class OkxSandboxState:
    def __init__(self, scenario: OkxScenario, seed: int | None = None,
                 egress_routes: tuple[EgressRoute, ...] = ()) -> None:
        self.egress_ip = scenario.egress_ip
        self.egress_routes = egress_routes
        self.users: dict[int, OkxUser] = {user.uid: user for user in scenario.users}
        self._key_owners = {key.api_key: user.uid for user in scenario.users for key in user.api_keys}
        self.instruments: dict[str, OkxInstrument] = {i.inst_id: i for i in scenario.instruments}
        # The HTX sandbox's bookkeeping, with no HTX users or symbols: faults, rate windows, orders, counts.
        self.books = SandboxState(Scenario(egress_ip=scenario.egress_ip), seed=seed, egress_routes=egress_routes)
        self.books.rate_limits = dict(DOCUMENTED_RATE_LIMITS)

    # The admin handlers shared with the HTX sandbox (deploy/sandbox/admin.py) read these by name.
    @property
    def faults(self) -> dict[str, Fault]:
        return self.books.faults

    @property
    def rate_limits(self) -> dict[str, EndpointRateLimit]:
        return self.books.rate_limits

    @property
    def orders(self) -> list[dict[str, Any]]:
        return self.books.orders

    @property
    def rng(self) -> random.Random:
        return self.books.rng

    def request_count_report(self) -> dict[str, dict[str, int]]:
        return self.books.request_count_report()

    # ---- lookups ---------------------------------------------------------------------------------------

    def find_key(self, api_key: str) -> tuple[OkxUser, OkxApiKey] | None:
        uid = self._key_owners.get(api_key)
        if uid is None:
            return None
        user = self.users[uid]
        return user, next(key for key in user.api_keys if key.api_key == api_key)

    # ---- changes by the admin API ----------------------------------------------------------------------

    def upsert_user(self, user: OkxUser) -> None:
        replaced = self.users.get(user.uid)
        for key in [*(replaced.api_keys if replaced else []), *user.api_keys]:
            self._release_key(key.api_key)
        self.users[user.uid] = user
        self._key_owners.update({key.api_key: user.uid for key in user.api_keys})

    def upsert_key(self, uid: int, key: OkxApiKey) -> None:
        if uid not in self.users:
            raise UnknownEntity(f"no user {uid}")
        self._release_key(key.api_key)
        self.users[uid].api_keys.append(key)
        self._key_owners[key.api_key] = uid

    def update_key(self, api_key: str, changes: dict[str, Any]) -> OkxApiKey:
        found = self.find_key(api_key)
        if found is None:
            raise UnknownEntity(f"no API key {api_key}")
        user, key = found
        updated = OkxApiKey.model_validate({**key.model_dump(), **changes})
        user.api_keys[user.api_keys.index(key)] = updated
        return updated

    def upsert_instrument(self, instrument: OkxInstrument) -> None:
        self.instruments[instrument.inst_id] = instrument

    def _release_key(self, api_key: str) -> bool:
        found = self.find_key(api_key)
        if found is not None:
            found[0].api_keys.remove(found[1])
            del self._key_owners[api_key]
        return found is not None
