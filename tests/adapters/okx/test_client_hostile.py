"""OkxExchange fed answers no real OKX sends (an in-process transport;
streamed bodies, as the transport reads them): each ends as a typed ExchangeError, never
another exception, and no order is sent twice after an answer that may mean OKX acted."""

import json
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.exchange.port import ExchangeCredentials, SpotOrder
from shared.adapters.okx.client import ACCOUNT_CONFIG_PATH, ORDER_PATH, OkxExchange
from shared.adapters.request_signing import LocalHmacSigner

K = ExchangeErrorKind
CREDENTIALS = ExchangeCredentials("key-1", LocalHmacSigner(SecretStr("secret")), passphrase=SecretStr("pass"))
TIME = {"code": "0", "msg": "", "data": [{"ts": "1700000000000"}]}


def exchange_answering(status: int, content: bytes, seen: list[httpx.Request]) -> OkxExchange:
    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v5/public/time":
            return httpx.Response(200, stream=httpx.ByteStream(json.dumps(TIME).encode()))
        return httpx.Response(status, stream=httpx.ByteStream(content))

    return OkxExchange("https://okx.test", transport=httpx.MockTransport(answer), retry_budget_s=0.2,
                       backoff_base_s=0.01, backoff_cap_s=0.02)


@pytest.mark.parametrize(
    ("content", "kind"),
    [
        (json.dumps({"code": "0", "msg": "", "data": []}).encode(), K.UNAVAILABLE),
        (json.dumps({"code": "0", "msg": "", "data": [{"perm": "trade"}]}).encode(), K.UNAVAILABLE),
        (json.dumps({"code": "0", "msg": "", "data": {"uid": "1"}}).encode(), K.UNAVAILABLE),
        (b"<html>hello</html>", K.UNAVAILABLE),
        (b"{" * 50_000, K.UNAVAILABLE),
        (b"x" * (70 * 1024), K.UNREADABLE_ANSWER),
    ],
    ids=["no-data", "no-uid", "data-object", "html", "deep", "too-large"],
)
async def test_hostile_config_answers_are_typed_errors(content, kind):
    seen: list[httpx.Request] = []
    okx = exchange_answering(200, content, seen)
    try:
        with pytest.raises(ExchangeError) as caught:
            await okx.describe_key(CREDENTIALS)
        assert caught.value.kind is kind
    finally:
        await okx.aclose()


async def test_the_signed_request_carries_okx_headers_and_no_secret():
    seen: list[httpx.Request] = []
    config = {"code": "0", "msg": "", "data": [{"uid": "1", "mainUid": "1", "perm": "read_only", "ip": ""}]}
    okx = exchange_answering(200, json.dumps(config).encode(), seen)
    try:
        await okx.describe_key(CREDENTIALS)
    finally:
        await okx.aclose()
    signed = next(r for r in seen if r.url.path == ACCOUNT_CONFIG_PATH)
    assert {h: signed.headers[h] for h in ("OK-ACCESS-KEY", "OK-ACCESS-PASSPHRASE")} == {
        "OK-ACCESS-KEY": "key-1", "OK-ACCESS-PASSPHRASE": "pass"}
    assert signed.headers["OK-ACCESS-TIMESTAMP"].endswith("Z") and signed.headers["OK-ACCESS-SIGN"]
    assert "x-simulated-trading" not in signed.headers
    assert b"secret" not in signed.url.raw_path


async def test_an_order_is_not_sent_again_after_an_ambiguous_answer():
    seen: list[httpx.Request] = []
    instruments = {"code": "0", "msg": "", "data": [
        {"instId": "BTC-USDT", "instType": "SPOT", "baseCcy": "BTC", "quoteCcy": "USDT", "state": "live"}]}

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/api/v5/public/time":
            return httpx.Response(200, stream=httpx.ByteStream(json.dumps(TIME).encode()))
        if request.url.path == "/api/v5/public/instruments":
            return httpx.Response(200, stream=httpx.ByteStream(json.dumps(instruments).encode()))
        busy = {"code": "50026", "msg": "System error. Try again later", "data": []}
        return httpx.Response(500, stream=httpx.ByteStream(json.dumps(busy).encode()))

    okx = OkxExchange("https://okx.test", transport=httpx.MockTransport(answer), retry_budget_s=0.5,
                      backoff_base_s=0.01, backoff_cap_s=0.02)
    try:
        with pytest.raises(ExchangeError) as caught:
            await okx.place_order(CREDENTIALS, SpotOrder("btcusdt", "buy", "market", Decimal("5")), None)
    finally:
        await okx.aclose()
    assert (caught.value.kind, caught.value.code) == (K.UNAVAILABLE, "50026")
    assert [r.url.path for r in seen].count(ORDER_PATH) == 1
    assert json.loads(next(r for r in seen if r.url.path == ORDER_PATH).content) == {
        "instId": "BTC-USDT", "tdMode": "cash", "side": "buy", "ordType": "market", "sz": "5"}
