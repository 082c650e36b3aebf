"""OKX's documented answers read into the models (shared/adapters/okx/README.md#account-config, #instruments,
#orders)."""

import pytest
from pydantic import ValidationError

from shared.adapters.okx.models import AccountConfig, Instrument, OrderRequest, OrderResult, SystemTime

# The docs' example, with fields this project does not read.
DOCS_CONFIG = {"acctLv": "2", "acctStpMode": "cancel_maker", "autoLoan": False, "ip": "", "type": "0", "kycLv": "3",
               "label": "v5 test", "level": "Lv1", "mainUid": "44705892343619584", "perm": "read_only,withdraw,trade",
               "posMode": "long_short_mode", "spotTraderInsts": [], "uid": "44705892343619584"}


def test_the_docs_account_config_is_read():
    config = AccountConfig.model_validate(DOCS_CONFIG)
    assert (config.uid, config.main_uid, config.type, config.label, config.kyc_level) == (
        "44705892343619584", "44705892343619584", "0", "v5 test", "3")
    assert config.permissions == ["read_only", "withdraw", "trade"]
    assert config.bound_ips == []
    assert not config.sub_account


@pytest.mark.parametrize(("changes", "sub"), [({"uid": "1"}, True), ({"type": "1"}, True), ({"type": "2"}, True),
                                              ({}, False)])
def test_sub_accounts_are_told_by_uid_or_type(changes, sub):
    assert AccountConfig.model_validate({**DOCS_CONFIG, **changes}).sub_account is sub


def test_ip_lists_are_split():
    config = AccountConfig.model_validate({**DOCS_CONFIG, "ip": "117.37.203.58, 117.37.203.57,,"})
    assert config.bound_ips == ["117.37.203.58", "117.37.203.57"]


@pytest.mark.parametrize("missing", ["uid", "mainUid"])
def test_an_account_config_without_its_ids_is_refused(missing):
    with pytest.raises(ValidationError):
        AccountConfig.model_validate({k: v for k, v in DOCS_CONFIG.items() if k != missing})


def test_the_models_are_frozen():
    config = AccountConfig.model_validate(DOCS_CONFIG)
    with pytest.raises(ValidationError):
        config.perm = "withdraw"  # type: ignore[misc]


def test_system_time_reads_the_string_ms():
    assert SystemTime.model_validate({"ts": "1597026383085"}).ts == 1597026383085


def test_instruments_name_their_pair_and_tradability():
    live = Instrument.model_validate({"instId": "BTC-USDT", "instType": "SPOT", "baseCcy": "BTC", "quoteCcy": "USDT",
                                      "state": "live", "minSz": "0.00001", "lotSz": "0.00000001", "tickSz": "0.1"})
    assert (live.pair, live.inst_id, live.tradable) == ("btcusdt", "BTC-USDT", True)
    for state in ("suspend", "preopen", "test"):
        assert not live.model_copy(update={"state": state}).tradable


def test_the_order_body_is_okx_spelling_without_unset_fields():
    order = OrderRequest(instId="BTC-USDT", side="buy", ordType="limit", sz="0.001", px="30000", clOrdId="h7x1")
    assert order.model_dump(by_alias=True, exclude_none=True) == {
        "instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "sz": "0.001", "px": "30000",
        "clOrdId": "h7x1"}
    market = OrderRequest(instId="BTC-USDT", side="sell", ordType="market", sz="1")
    assert "px" not in market.model_dump(by_alias=True, exclude_none=True)


def test_order_results_are_read():
    result = OrderResult.model_validate({"clOrdId": "oktswap6", "ordId": "312269865356374016", "tag": "",
                                         "ts": "1695190491421", "sCode": "0", "sMsg": "", "subCode": ""})
    assert (result.ord_id, result.cl_ord_id, result.s_code) == ("312269865356374016", "oktswap6", "0")
