"""Bybit's documented answers read into the models (shared/adapters/bybit/README.md#key-info, #instruments,
#orders, #clock)."""

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.adapters.bybit.models import ApiKeyInfo, InstrumentsPage, OrderRequest, OrderResult, ServerTime

NOW = datetime(2023, 10, 17, 7, 20, 25, tzinfo=UTC)
# V5DOC's example answer of /v5/user/query-api (trimmed of fields we ignore, plus one unknown field).
DOC_KEY = {
    "id": "13770661", "note": "XXXXXX", "apiKey": "XXXXXX", "readOnly": 0, "secret": "",
    "permissions": {"ContractTrade": ["Order", "Position"], "Spot": ["SpotTrade"],
                    "Wallet": ["AccountTransfer", "SubMemberTransfer"], "Options": ["OptionsTrade"],
                    "Derivatives": [], "CopyTrading": [], "BlockTrade": [], "Exchange": [], "NFT": [],
                    "Affiliate": [], "Earn": []},
    "ips": ["*"], "type": 1, "deadlineDay": 66, "expiredAt": "2023-12-22T07:20:25Z",
    "createdAt": "2022-10-16T02:24:40Z", "unified": 0, "uta": 0, "userID": 24617703, "inviterID": 0,
    "vipLevel": "No VIP", "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "", "isMaster": True,
    "parentUid": "0", "kycLevel": "LEVEL_DEFAULT", "kycRegion": "", "somethingNew": {"x": 1},
}


def key(**changes: object) -> ApiKeyInfo:
    return ApiKeyInfo.model_validate({**DOC_KEY, **changes})


def test_the_documented_key_answer():
    info = key()
    assert (info.user_id, info.read_only, info.bound_ips, info.sub_account) == (24617703, 0, (), False)
    assert (info.can_trade_spot, info.can_transfer, info.can_withdraw) == (True, True, False)
    assert info.valid_days(NOW) == 66
    assert "Spot:SpotTrade" in info.listed_permissions and "Wallet:SubMemberTransfer" in info.listed_permissions


@pytest.mark.parametrize(
    ("changes", "trade", "withdraw", "transfer"),
    [
        ({"readOnly": 1}, False, False, True),
        ({"permissions": {"Spot": []}}, False, False, False),
        ({"permissions": {"Wallet": ["Withdraw"], "Spot": ["SpotTrade"]}}, True, True, False),
        ({"permissions": {"Wallet": ["SubMemberTransferList"]}}, False, False, True),
        ({"permissions": {}}, False, False, False),
    ],
)
def test_permissions(changes, trade, withdraw, transfer):
    info = key(**changes)
    assert (info.can_trade_spot, info.can_withdraw, info.can_transfer) == (trade, withdraw, transfer)


@pytest.mark.parametrize(
    ("changes", "days"),
    [
        ({"expiredAt": "", "deadlineDay": -1}, None),
        ({"expiredAt": None, "deadlineDay": 0}, None),
        ({"expiredAt": "2023-10-20T07:20:25Z", "deadlineDay": 90}, 3),
        ({"expiredAt": "2023-10-01T00:00:00Z", "deadlineDay": 0}, 0),
        ({"expiredAt": "2023-10-19T19:20:25Z", "deadlineDay": None}, 3),
        ({"expiredAt": "garbage", "deadlineDay": 10}, 0),
        ({"expiredAt": "2023-12-22T07:20:25", "deadlineDay": None}, 66),
    ],
)
def test_valid_days(changes, days):
    assert key(**changes).valid_days(NOW) == days


def test_ip_lists_and_sub_accounts():
    info = key(ips=["203.0.113.10", " 203.0.113.11 "], isMaster=False, parentUid="24617703")
    assert (info.bound_ips, info.sub_account) == (("203.0.113.10", "203.0.113.11"), True)


@pytest.mark.parametrize(
    ("ips", "bound"),
    [
        (["*"], ()),
        ([" * "], ()),
        ([], ()),
        # A "*" among addresses still lets every address in, so it stays an entry the verdict refuses as foreign.
        (["*", "203.0.113.10", "203.0.113.11"], ("*", "203.0.113.10", "203.0.113.11")),
        (["203.0.113.10", "*"], ("203.0.113.10", "*")),
        (["*", "*"], ()),
    ],
)
def test_a_star_is_no_binding_only_when_alone(ips, bound):
    assert key(ips=ips).bound_ips == bound


def test_missing_or_mistyped_fields_are_refused():
    with pytest.raises(ValidationError):
        ApiKeyInfo.model_validate({k: v for k, v in DOC_KEY.items() if k != "userID"})
    with pytest.raises(ValidationError):
        key(ips="*")


def test_instruments_and_time_and_orders():
    page = InstrumentsPage.model_validate({"category": "spot", "list": [
        {"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "status": "Trading", "innovation": "0"},
        {"symbol": "ARBUSDT", "baseCoin": "ARB", "quoteCoin": "USDT", "status": "PreLaunch"}]})
    assert [(i.symbol, i.tradable) for i in page.entries] == [("BTCUSDT", True), ("ARBUSDT", False)]
    assert ServerTime.model_validate({"timeSecond": "1688639403", "timeNano": "1688639403423213947"}).epoch_ms == (
        1688639403423)
    with pytest.raises(ValidationError):
        ServerTime.model_validate({"timeSecond": "-1", "timeNano": "x"})
    assert OrderRequest(symbol="BTCUSDT", side="Buy", order_type="Market", qty="10").body() == {
        "category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market", "qty": "10"}
    assert OrderResult.model_validate({"orderId": "1321003749386327552", "orderLinkId": "x"}).order_id == (
        "1321003749386327552")
