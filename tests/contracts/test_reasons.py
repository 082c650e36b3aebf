"""Reason codes are the same on every exchange; their words are each exchange's own."""

import pytest

from shared.contracts.exchanges import ExchangeName
from shared.contracts.reasons import API_PAGES, EXCHANGE_HINTS, MESSAGES, NEUTRAL_HINTS, ReasonCode, reason

# Every placeholder a message or hint may name, as the services fill them.
DETAILS = {"problem": "no user id", "status": "frozen", "missing_ips": ["203.0.113.11"],
           "foreign_ips": ["198.51.100.0/24"], "egress_ips": ["203.0.113.10", "203.0.113.11"], "valid_days": 3,
           "pairs": ["btcusdt"], "binding_id": "b-1", "permissions": ["AccountTransfer"]}


def test_every_code_has_a_message_and_exactly_one_source_of_hints():
    assert set(MESSAGES) == set(ReasonCode)
    for exchange in ExchangeName:
        hinted_here = set(EXCHANGE_HINTS[exchange])
        # Each code's hint is either the same everywhere or the exchange's own, never both and never neither.
        assert hinted_here | set(NEUTRAL_HINTS) == set(ReasonCode), exchange
        assert not hinted_here & set(NEUTRAL_HINTS), exchange


@pytest.mark.parametrize("exchange", [*ExchangeName, None, "kraken"])
@pytest.mark.parametrize("code", list(ReasonCode))
def test_every_code_has_words_for_every_exchange_with_nothing_left_unfilled(code, exchange):
    said = reason(code, exchange, **DETAILS)
    assert said.code is code and said.message and said.hint
    assert "{" not in said.message + said.hint and "}" not in said.message + said.hint


@pytest.mark.parametrize("exchange", list(ExchangeName))
@pytest.mark.parametrize("code", sorted(set(ReasonCode) - set(NEUTRAL_HINTS)))
def test_a_key_hint_names_its_exchange_and_no_other(code, exchange):
    said = reason(code, exchange, **DETAILS)
    assert exchange.display_name in said.hint
    # Every hint but the account's (a matter for the exchange's support) leads to the exchange's API key page.
    assert code is ReasonCode.ACCOUNT_LOCKED or API_PAGES[exchange] in said.hint
    others = {other.display_name for other in ExchangeName if other is not exchange}
    assert not any(name in said.message + said.hint for name in others), (code, exchange)


def test_messages_name_the_exchange_and_details_fill_message_and_hint():
    filled = reason(ReasonCode.IP_BINDING_INCOMPLETE, "okx", missing_ips=["203.0.113.11"])
    assert "203.0.113.11" in filled.message and "203.0.113.11" in filled.hint
    assert reason(ReasonCode.KEY_EXPIRED, "bybit").message == "This API key has expired on Bybit."
    assert "HTX" in reason(ReasonCode.KEY_INVALID, "htx").message
    # An exchange Hash7 does not support is named as the request gave it, with hints for any exchange.
    unsupported = reason(ReasonCode.UNSUPPORTED_EXCHANGE, None, exchange="kraken")
    assert "'kraken'" in unsupported.message and "HTX, Bybit or OKX" in unsupported.hint
