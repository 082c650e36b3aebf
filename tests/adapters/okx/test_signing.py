"""OKX signing (shared/adapters/okx/README.md#signing) checked against two independent implementations on the same
inputs: python-okx's own `okx.utils` (OKX's official SDK) and ccxt's `okx.sign`. OKX publishes no test vector."""

import json
from datetime import UTC, datetime

import ccxt
import pytest
from okx import utils as okx_utils
from pydantic import SecretStr

from shared.adapters.okx.signing import (
    ACCESS_KEY_HEADER,
    PASSPHRASE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    compute_signature,
    format_timestamp,
    parse_timestamp,
    pre_sign_text,
    request_path,
)

SECRET = "22582BD0CFF14C41EDBF1AB98506286D"  # the docs' example secret key
MOMENT = datetime(2020, 12, 8, 9, 8, 57, 715_000, tzinfo=UTC)
TIMESTAMP = "2020-12-08T09:08:57.715Z"


def test_timestamp_is_iso_utc_with_milliseconds():
    assert format_timestamp(MOMENT) == TIMESTAMP
    assert parse_timestamp(TIMESTAMP) == MOMENT


@pytest.mark.parametrize("text", ["2020-12-08T09:08:57Z", "2020-12-08T09:08:57.715", "2020-12-08 09:08:57.715Z",
                                  "1607418537715", "2020-12-08T09:08:57.715123Z", ""])
def test_other_timestamp_forms_are_refused(text):
    with pytest.raises(ValueError):
        parse_timestamp(text)


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/api/v5/account/config", "", ""),
        ("GET", "/api/v5/account/balance", "ccy=BTC", ""),
        ("POST", "/api/v5/trade/order", "",
         '{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"b15","side":"buy","ordType":"limit","px":"2.15","sz":"2"}'),
    ],
)
def test_signature_matches_python_okx(method, path, query, body):
    path_with_query = request_path(path, query)
    ours = compute_signature(SecretStr(SECRET), pre_sign_text(TIMESTAMP, method, path_with_query, body))
    theirs = okx_utils.sign(okx_utils.pre_hash(TIMESTAMP, method, path_with_query, body, debug=False), SECRET)
    assert ours == theirs.decode()
    assert ours == okx_utils.signature(TIMESTAMP, method, path_with_query, body, SECRET).decode()


def ccxt_signed(path: str, method: str, params: dict) -> dict:
    exchange = ccxt.okx({"apiKey": "key-1", "secret": SECRET, "password": "pass-1"})
    exchange.nonce = lambda: int(MOMENT.timestamp() * 1000)
    return exchange.sign(path, ["private"], method, params)


def test_get_signature_matches_ccxt():
    signed = ccxt_signed("account/balance", "GET", {"ccy": "BTC"})
    headers = signed["headers"]
    assert headers[TIMESTAMP_HEADER] == TIMESTAMP
    assert (headers[ACCESS_KEY_HEADER], headers[PASSPHRASE_HEADER]) == ("key-1", "pass-1")
    text = pre_sign_text(TIMESTAMP, "GET", request_path("/api/v5/account/balance", "ccy=BTC"))
    assert headers[SIGNATURE_HEADER] == compute_signature(SecretStr(SECRET), text)


def test_post_signature_matches_ccxt_over_the_body_it_sends():
    order = {"instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "limit", "px": "2.15", "sz": "2",
             "clOrdId": "b15"}
    signed = ccxt_signed("trade/order", "POST", dict(order))
    assert json.loads(signed["body"]) == order
    text = pre_sign_text(TIMESTAMP, "POST", "/api/v5/trade/order", signed["body"])
    assert signed["headers"][SIGNATURE_HEADER] == compute_signature(SecretStr(SECRET), text)


def test_what_is_signed_matters():
    base = compute_signature(SecretStr(SECRET), pre_sign_text(TIMESTAMP, "GET", "/api/v5/account/balance?ccy=BTC"))
    others = [
        pre_sign_text(TIMESTAMP, "get", "/api/v5/account/balance?ccy=BTC"),  # upper-cased: the same
        pre_sign_text(TIMESTAMP, "GET", "/api/v5/account/balance"),  # the query is part of the path
        pre_sign_text("2020-12-08T09:08:57.716Z", "GET", "/api/v5/account/balance?ccy=BTC"),
        pre_sign_text(TIMESTAMP, "GET", "/api/v5/account/balance?ccy=ETH"),
    ]
    signatures = [compute_signature(SecretStr(SECRET), text) for text in others]
    assert signatures[0] == base
    assert base not in signatures[1:]
