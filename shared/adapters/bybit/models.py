"""Bybit's answers (and the one request body we send) as pydantic models, field names as Bybit spells them
(aliases) and as we read them (attributes). Unknown fields are ignored: Bybit adds fields over time
(shared/adapters/bybit/README.md#key-info, #instruments, #orders, #clock)."""

import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# shared/adapters/bybit/README.md#key-info
NO_IP_BINDING = "*"
SPOT_GROUP = "Spot"
SPOT_TRADE = "SpotTrade"
WALLET_GROUP = "Wallet"
WITHDRAW = "Withdraw"
TRANSFERS = frozenset({"AccountTransfer", "SubMemberTransfer", "SubMemberTransferList"})
# shared/adapters/bybit/README.md#instruments
TRADING = "Trading"


class BybitModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class ServerTime(BybitModel):
    """`result` of `GET /v5/market/time`: both values are decimal strings."""

    time_second: str = Field(alias="timeSecond", pattern=r"^\d{1,12}$")
    time_nano: str = Field(alias="timeNano", pattern=r"^\d{1,21}$")

    @property
    def epoch_ms(self) -> int:
        return int(self.time_nano) // 1_000_000


class ApiKeyInfo(BybitModel):
    """`result` of `GET /v5/user/query-api`: the calling key and its owner."""

    api_key: str = Field(alias="apiKey")
    note: str = ""
    # 0 read and write, 1 read only.
    read_only: int = Field(alias="readOnly")
    # Group name → granted permission names, e.g. {"Spot": ["SpotTrade"], "Wallet": ["Withdraw"]}.
    permissions: dict[str, list[str]] = Field(default_factory=dict)
    # ["*"] when the key is bound to no IP.
    ips: list[str] = Field(default_factory=list)
    type: int | None = None
    deadline_day: int | None = Field(None, alias="deadlineDay")
    expired_at: str | None = Field(None, alias="expiredAt")
    created_at: str | None = Field(None, alias="createdAt")
    uta: int | None = None
    user_id: int = Field(alias="userID")
    is_master: bool = Field(alias="isMaster")
    # "0" for a main account's key.
    parent_uid: str = Field("0", alias="parentUid")

    @property
    def listed_permissions(self) -> tuple[str, ...]:
        """Every granted permission as `Group:Name`, sorted, for the binding's facts and the audit."""
        return tuple(sorted(f"{group}:{name}" for group, names in self.permissions.items() for name in names))

    def grants(self, group: str, names: frozenset[str] | set[str]) -> bool:
        return any(name in names for name in self.permissions.get(group, []))

    @property
    def can_trade_spot(self) -> bool:
        """shared/adapters/bybit/README.md#key-info: a read-write key with SpotTrade."""
        return self.read_only == 0 and self.grants(SPOT_GROUP, {SPOT_TRADE})

    @property
    def can_withdraw(self) -> bool:
        return self.grants(WALLET_GROUP, {WITHDRAW})

    @property
    def can_transfer(self) -> bool:
        return self.grants(WALLET_GROUP, TRANSFERS)

    @property
    def bound_ips(self) -> tuple[str, ...]:
        """The key's IP entries as listed, empty when it is bound to none (only `*`, or no entries).
        A `*` next to other entries still lets every address in (shared/adapters/bybit/README.md#key-info), so it is
        kept: the verdict then refuses it as an entry that is not one of our hosts."""
        entries = tuple(ip.strip() for ip in self.ips if ip.strip())
        return () if set(entries) <= {NO_IP_BINDING} else entries

    @property
    def sub_account(self) -> bool:
        return not self.is_master or self.parent_uid not in ("", "0")

    def valid_days(self, now: datetime) -> int | None:
        """Whole days left, None when the key does not expire. `expiredAt` decides whether it expires (Bybit fills it
        only for expiring keys); the smaller of its days and `deadlineDay` is the answer
        (shared/adapters/bybit/README.md#key-info). An `expiredAt` we cannot read counts as expired (0): the safe
        side for a key binding."""
        if not self.expired_at:
            return None
        try:
            expiry = datetime.fromisoformat(self.expired_at.replace("Z", "+00:00"))
        except ValueError:
            return 0
        if expiry.tzinfo is None:
            expiry = expiry.replace(tzinfo=UTC)
        # Started days count whole, as Bybit's own deadlineDay does for a key created moments ago.
        days = max(0, math.ceil((expiry - now).total_seconds() / 86_400))
        if self.deadline_day is not None and self.deadline_day >= 0:
            days = min(days, self.deadline_day)
        return days


class Instrument(BybitModel):
    """One entry of `GET /v5/market/instruments-info?category=spot`."""

    symbol: str
    base_coin: str = Field(alias="baseCoin")
    quote_coin: str = Field(alias="quoteCoin")
    status: str

    @property
    def tradable(self) -> bool:
        return self.status == TRADING


class InstrumentsPage(BybitModel):
    category: str
    entries: list[Instrument] = Field(alias="list")
    # Spot is not paginated (shared/adapters/bybit/README.md#instruments).
    next_page_cursor: str = Field("", alias="nextPageCursor")


class OrderRequest(BybitModel):
    """The JSON body of `POST /v5/order/create` for a spot order."""

    category: Literal["spot"] = "spot"
    symbol: str
    side: Literal["Buy", "Sell"]
    order_type: Literal["Limit", "Market"] = Field(alias="orderType")
    qty: str
    price: str | None = None
    order_link_id: str | None = Field(None, alias="orderLinkId", max_length=36)

    def body(self) -> dict[str, str]:
        return self.model_dump(by_alias=True, exclude_none=True)


class OrderResult(BybitModel):
    order_id: str = Field(alias="orderId", min_length=1)
    order_link_id: str = Field("", alias="orderLinkId")
