"""OKX's answers (and the order we send) as pydantic models, field names as OKX spells them (aliases) and as we read
them (attributes). Unknown fields are ignored: OKX adds fields over time. OKX sends numbers as strings."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.adapters.exchange.port import Permission
from shared.adapters.htx.models import split_list  # OKX's comma lists read as HTX's: items stripped, blanks dropped

# shared/adapters/okx/README.md#account-config: `perm`'s names.
PERMISSION_BY_NAME = {"read_only": Permission.READ, "trade": Permission.TRADE, "withdraw": Permission.WITHDRAW}
MAIN_ACCOUNT_TYPE = "0"


class OkxModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class AccountConfig(OkxModel):
    """`data[0]` of `GET /api/v5/account/config` (shared/adapters/okx/README.md#account-config)."""

    uid: str = Field(min_length=1)
    main_uid: str = Field(alias="mainUid", min_length=1)
    # 0 main account; 1, 2, 5, 9, 12 kinds of sub-account.
    type: str = MAIN_ACCOUNT_TYPE
    # Comma list of read_only, trade, withdraw.
    perm: str = ""
    # Comma list of IPv4/IPv6 hosts and networks; "" when the key is bound to none.
    ip: str = ""
    label: str = ""
    account_level: str = Field("", alias="acctLv")
    kyc_level: str = Field("", alias="kycLv")

    @property
    def permissions(self) -> list[str]:
        return split_list(self.perm)

    @property
    def bound_ips(self) -> list[str]:
        return split_list(self.ip)

    @property
    def sub_account(self) -> bool:
        return self.uid != self.main_uid or self.type != MAIN_ACCOUNT_TYPE


class SystemTime(OkxModel):
    """`data[0]` of `GET /api/v5/public/time` (shared/adapters/okx/README.md#clock): epoch ms as a string."""

    ts: int


class Instrument(OkxModel):
    """One entry of `GET /api/v5/public/instruments?instType=SPOT` (shared/adapters/okx/README.md#instruments)."""

    inst_id: str = Field(alias="instId", min_length=1)
    inst_type: str = Field("SPOT", alias="instType")
    base_ccy: str = Field(alias="baseCcy")
    quote_ccy: str = Field(alias="quoteCcy")
    # live, suspend, preopen, test (other states belong to other instrument types).
    state: str
    min_size: str = Field("", alias="minSz")
    lot_size: str = Field("", alias="lotSz")
    tick_size: str = Field("", alias="tickSz")

    @property
    def pair(self) -> str:
        return f"{self.base_ccy}{self.quote_ccy}".lower()

    @property
    def tradable(self) -> bool:
        return self.state == "live"


class OrderRequest(OkxModel):
    """The body of `POST /api/v5/trade/order` for a spot order without margin (shared/adapters/okx/README.md#orders).
    Dumped by alias, without the unset fields."""

    inst_id: str = Field(alias="instId")
    td_mode: Literal["cash"] = Field("cash", alias="tdMode")
    side: Literal["buy", "sell"]
    ord_type: Literal["limit", "market"] = Field(alias="ordType")
    sz: str
    px: str | None = None
    cl_ord_id: str | None = Field(None, alias="clOrdId", max_length=32)


class OrderResult(OkxModel):
    """`data[0]` of `POST /api/v5/trade/order`: accepted when `sCode` is "0"."""

    ord_id: str = Field("", alias="ordId")
    cl_ord_id: str = Field("", alias="clOrdId")
    s_code: str = Field(alias="sCode")
    s_msg: str = Field("", alias="sMsg")
    tag: str = ""
