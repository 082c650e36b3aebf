"""Bybit v5 signing (shared/adapters/bybit/README.md#signing) cross-checked against the two independent
implementations: pybit (Bybit's official SDK) and ccxt. Each library signs the same request with the same key,
timestamp and recv window; our pre-sign text and hex encoding must give the very same `X-BAPI-SIGN`."""

import hashlib
import hmac
import json

import ccxt
import pytest
from pybit import _helpers
from pybit.unified_trading import HTTP
from pydantic import SecretStr

from shared.adapters.bybit.signing import (
    API_KEY_HEADER,
    DEFAULT_RECV_WINDOW_MS,
    RECV_WINDOW_HEADER,
    SIGN_HEADER,
    TIMESTAMP_HEADER,
    compute_signature,
    encode_signature,
    pre_sign_text,
    signed_headers,
)
from shared.adapters.request_signing import LocalHmacSigner

API_KEY = "XXXXXXXXXXhash7key"
SECRET = "YYYYYYYYYYYYYYYYYYYYYYYYYYYYhash7secret"
TIMESTAMP_MS = 1_700_000_000_123


def pybit_session() -> HTTP:
    return HTTP(api_key=API_KEY, api_secret=SECRET, recv_window=DEFAULT_RECV_WINDOW_MS)


def pybit_headers(monkeypatch: pytest.MonkeyPatch, method: str, params: dict[str, object]) -> dict[str, str]:
    """The headers pybit would send for this request, at TIMESTAMP_MS."""
    monkeypatch.setattr(_helpers, "generate_timestamp", lambda: TIMESTAMP_MS)
    session = pybit_session()
    payload = session.prepare_payload(method, dict(params))
    headers: dict[str, str] = session._prepare_headers(payload, DEFAULT_RECV_WINDOW_MS)
    return {**headers, "payload": payload}


def ccxt_signed(method: str, path: str, params: dict[str, object]) -> dict[str, object]:
    exchange = ccxt.bybit({"apiKey": API_KEY, "secret": SECRET})
    exchange.nonce = lambda: TIMESTAMP_MS  # type: ignore[method-assign]
    signed: dict[str, object] = exchange.sign(path, ["private"], method, dict(params))
    return signed


def our_signature(payload: str) -> str:
    return compute_signature(SecretStr(SECRET), pre_sign_text(TIMESTAMP_MS, API_KEY, DEFAULT_RECV_WINDOW_MS, payload))


def test_pre_sign_text_is_the_four_parts_concatenated():
    assert pre_sign_text(1658384314791, "XXXXXXXXXX", 5000, "category=option&symbol=BTC-29JUL22-25000-C") == (
        "1658384314791XXXXXXXXXX5000category=option&symbol=BTC-29JUL22-25000-C")


def test_signature_is_lower_case_hex_of_the_raw_digest():
    text = pre_sign_text(TIMESTAMP_MS, API_KEY, 5000, "")
    digest = hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).digest()
    assert compute_signature(SecretStr(SECRET), text) == digest.hex() == encode_signature(digest)
    assert compute_signature(SecretStr(SECRET), text).islower()


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("GET", {}),
        ("GET", {"category": "spot", "symbol": "BTCUSDT"}),
        ("POST", {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
                  "price": "30000", "orderLinkId": "hash7-1"}),
    ],
    ids=["get-bare", "get-query", "post-body"],
)
def test_pybit_signs_what_we_sign(monkeypatch, method, params):
    headers = pybit_headers(monkeypatch, method, params)
    assert headers[TIMESTAMP_HEADER] == str(TIMESTAMP_MS)
    assert headers[RECV_WINDOW_HEADER] == str(DEFAULT_RECV_WINDOW_MS)
    assert headers[SIGN_HEADER] == our_signature(headers["payload"])


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "v5/user/query-api", {}),
        ("GET", "v5/market/instruments-info", {"category": "spot", "symbol": "BTCUSDT"}),
        ("POST", "v5/order/create", {"category": "spot", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Market",
                                     "qty": "10"}),
    ],
    ids=["get-bare", "get-query", "post-body"],
)
def test_ccxt_signs_what_we_sign(method, path, params):
    signed = ccxt_signed(method, path, params)
    headers = signed["headers"]
    assert isinstance(headers, dict)
    url = str(signed["url"])
    payload = str(signed["body"]) if method == "POST" else url.partition("?")[2]
    assert headers[API_KEY_HEADER] == API_KEY
    assert headers[SIGN_HEADER] == our_signature(payload)


def test_pybit_and_ccxt_bodies_differ_and_each_signs_its_own_bytes(monkeypatch):
    # pybit's body has spaces, ccxt's is compact: the server must verify the bytes it received
    # (shared/adapters/bybit/README.md#signing).
    params = {"category": "spot", "symbol": "BTCUSDT"}
    pybit_payload = pybit_headers(monkeypatch, "POST", params)["payload"]
    ccxt_payload = str(ccxt_signed("POST", "v5/order/create", params)["body"])
    assert pybit_payload == json.dumps(params) != ccxt_payload == json.dumps(params, separators=(",", ":"))
    assert our_signature(pybit_payload) != our_signature(ccxt_payload)


async def test_a_vault_style_signer_gives_the_same_header():
    text = pre_sign_text(TIMESTAMP_MS, API_KEY, DEFAULT_RECV_WINDOW_MS, "category=spot")
    [digest] = await LocalHmacSigner(SecretStr(SECRET)).sign([text])
    assert encode_signature(digest) == compute_signature(SecretStr(SECRET), text)


@pytest.mark.parametrize(
    "tampered",
    [
        pre_sign_text(TIMESTAMP_MS + 1, API_KEY, DEFAULT_RECV_WINDOW_MS, "category=spot"),
        pre_sign_text(TIMESTAMP_MS, API_KEY, 10_000, "category=spot"),
        pre_sign_text(TIMESTAMP_MS, API_KEY, DEFAULT_RECV_WINDOW_MS, "category=linear"),
        pre_sign_text(TIMESTAMP_MS, "other", DEFAULT_RECV_WINDOW_MS, "category=spot"),
    ],
    ids=["timestamp", "recv-window", "query", "api-key"],
)
def test_every_part_is_covered(tampered):
    original = pre_sign_text(TIMESTAMP_MS, API_KEY, DEFAULT_RECV_WINDOW_MS, "category=spot")
    assert compute_signature(SecretStr(SECRET), tampered) != compute_signature(SecretStr(SECRET), original)


def test_signed_headers_names():
    assert signed_headers(API_KEY, TIMESTAMP_MS, 5000, "ab") == {
        "X-BAPI-API-KEY": API_KEY, "X-BAPI-TIMESTAMP": str(TIMESTAMP_MS), "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": "ab"}
