"""HTX's answers (and the one request body we send) as pydantic models, field names as HTX spells them
(aliases) and as we read them (attributes). Unknown fields are ignored: HTX adds fields over time."""

from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer


class HtxModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


def split_list(text: str) -> list[str]:
    """HTX's comma-separated lists ("trade,readOnly", "1.1.1.1, 2.2.2.2"), items stripped, blanks dropped."""
    return [item.strip() for item in text.split(",") if item.strip()]


class ApiKeyInfo(HtxModel):
    """One entry of `GET /v2/user/api-key` (shared/adapters/htx/README.md#api-key-query)."""

    access_key: str = Field(alias="accessKey")
    note: str = ""
    # Comma list of `readOnly`, `trade`, `withdraw`, in any order.
    permission: str = ""
    # Comma list of IPv4/IPv6 hosts and IPv4 networks; "" when the key is bound to none.
    ip_addresses: str = Field("", alias="ipAddresses")
    # Remaining days; -1 means permanently valid.
    valid_days: int = Field(-1, alias="validDays")
    # `normal` or `expired`.
    status: str
    create_time: int | None = Field(None, alias="createTime")
    update_time: int | None = Field(None, alias="updateTime")

    @property
    def permissions(self) -> list[str]:
        return split_list(self.permission)

    @property
    def bound_ips(self) -> list[str]:
        return split_list(self.ip_addresses)


class Account(HtxModel):
    """One entry of `GET /v1/account/accounts` (shared/adapters/htx/README.md#accounts)."""

    id: int
    type: str
    subtype: str = ""
    # `working` or `lock`.
    state: str


class SymbolV1(HtxModel):
    """One entry of `GET /v1/common/symbols` (shared/adapters/htx/README.md#v1-symbols)."""

    symbol: str
    base_currency: str = Field(alias="base-currency")
    quote_currency: str = Field(alias="quote-currency")
    state: str
    # `enabled` | `disabled`; absent on old answers.
    api_trading: str | None = Field(None, alias="api-trading")
    symbol_partition: str | None = Field(None, alias="symbol-partition")
    price_precision: int | None = Field(None, alias="price-precision")
    amount_precision: int | None = Field(None, alias="amount-precision")
    value_precision: int | None = Field(None, alias="value-precision")
    min_order_value: Decimal | None = Field(None, alias="min-order-value")


class SymbolV2(HtxModel):
    """One entry of `GET /v2/settings/common/symbols` (shared/adapters/htx/README.md#v2-settings-symbols); this
    list has no api-trading flag."""

    symbol: str = Field(alias="sc")
    display_name: str | None = Field(None, alias="dn")
    base_currency: str = Field(alias="bc")
    quote_currency: str = Field(alias="qc")
    state: str
    trade_enabled: bool = Field(alias="te")
    white_enabled: bool = Field(False, alias="whe")
    country_disabled: bool = Field(False, alias="cd")
    trade_open_at: int | None = Field(None, alias="toa")
    tags: str = ""


class MarketSymbol(HtxModel):
    """One entry of `GET /v1/settings/common/market-symbols` (shared/adapters/htx/README.md#market-symbols)."""

    symbol: str
    base_currency: str = Field(alias="bc")
    quote_currency: str = Field(alias="qc")
    state: str
    api_trading: str | None = Field(None, alias="at")
    price_precision: int | None = Field(None, alias="pp")
    amount_precision: int | None = Field(None, alias="ap")
    value_precision: int | None = Field(None, alias="vp")
    min_order_amount: Decimal | None = Field(None, alias="minoa")
    max_order_amount: Decimal | None = Field(None, alias="maxoa")
    min_order_value: Decimal | None = Field(None, alias="minov")
    tags: str = ""


class MarketStatus(HtxModel):
    """`GET /v2/market-status` (shared/adapters/htx/README.md#clock-and-market-status)."""

    NORMAL: ClassVar[int] = 1
    HALTED: ClassVar[int] = 2
    CANCEL_ONLY: ClassVar[int] = 3

    market_status: int = Field(alias="marketStatus")
    halt_start_time: int | None = Field(None, alias="haltStartTime")
    halt_end_time: int | None = Field(None, alias="haltEndTime")
    # 2 emergency maintenance, 3 scheduled maintenance.
    halt_reason: int | None = Field(None, alias="haltReason")
    # Comma list of symbols, or `all`.
    affected_symbols: str | None = Field(None, alias="affectedSymbols")


# HTX documents account-id as a string in the order body (shared/adapters/htx/README.md#order-placement).
_AsString = PlainSerializer(str, return_type=str)


class NewOrder(HtxModel):
    """The JSON body of `POST /v1/order/orders/place`."""

    account_id: Annotated[int, _AsString] = Field(alias="account-id")
    symbol: str
    # e.g. `buy-limit`, `sell-limit`, `buy-market`, `sell-market`.
    type: str
    amount: Decimal
    price: Decimal | None = None
    source: str | None = None
    client_order_id: str | None = Field(None, alias="client-order-id")

    def to_body(self) -> dict[str, str]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
