"""HtxClient against a hostile HTX over a real socket (tests/adapters/htx/hostile.py): whatever it sends, each
call ends as an ExchangeError within its deadline, reads no further than the answer's cap, and does not ask again
for an answer it refused to read."""

import asyncio
import gzip
import json
import time
import tracemalloc
from collections.abc import Awaitable
from decimal import Decimal

import pytest
from pydantic import SecretStr

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, ExchangeTransientError
from shared.adapters.exchange.http import ANSWER_TOO_LARGE, DEFAULT_ANSWER_MAX_BYTES, NETWORK_ERROR, UNDECODABLE_ANSWER
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.htx.client import SYMBOL_LIST_MAX_BYTES, HtxClient
from shared.adapters.htx.models import NewOrder
from shared.adapters.request_signing import LocalHmacSigner
from tests.adapters.htx.hostile import drip, fixed, gzip_bomb, hostile_htx

CREDENTIALS = ExchangeCredentials("abcd1234-efgh5678-ijkl9012-mnop3", LocalHmacSigner(SecretStr("s3cr3t-d0-n0t-l34k")))
SIXTY_MB = 60 * 1024 * 1024
# Time for the loop and the sockets beyond a deadline, on a loaded 2-core machine.
SLACK_S = 0.75


async def failure_of(call: Awaitable[object]) -> tuple[ExchangeError, float]:
    """The ExchangeError call ends with (nothing else may escape) and the seconds it took."""
    started = time.monotonic()
    with pytest.raises(ExchangeError) as caught:
        await call
    return caught.value, time.monotonic() - started


def impatient(base_url: str) -> HtxClient:
    """Per-read timeout 1 s, retries within 1 s: every call over within 2 s."""
    return HtxClient(base_url, timeout_s=1.0, retry_budget_s=1.0, backoff_base_s=0.05, backoff_cap_s=0.1)


# ---- one total deadline ----------------------------------------------------------------------------------


@pytest.mark.parametrize("in_headers", [False, True], ids=["body", "headers"])
async def test_a_drip_ends_at_the_call_deadline_not_one_read_timeout_at_a_time(in_headers):
    async with hostile_htx(drip(0.3, in_headers=in_headers)) as htx, impatient(htx.base_url) as client:
        error, elapsed = await failure_of(client.uid(CREDENTIALS))
    assert isinstance(error, ExchangeTransientError) and (error.kind, error.code) == (ExchangeErrorKind.UNAVAILABLE,
                                                                                NETWORK_ERROR)
    assert "within 2 s" in error.message
    assert 2.0 <= elapsed < 2.0 + SLACK_S
    assert htx.body_bytes_sent > 3  # the drip did get through, a byte at a time: no per-read timeout fired


async def test_an_order_under_a_drip_is_not_sent_twice_and_ends_at_the_deadline():
    order = NewOrder(account_id=1, symbol="btcusdt", type="buy-limit", amount=Decimal("0.001"), price=Decimal("3e4"))
    async with hostile_htx(drip(0.3)) as htx, impatient(htx.base_url) as client:
        error, elapsed = await failure_of(client.place_order(CREDENTIALS, order))
    assert error.code == NETWORK_ERROR and elapsed < 2.0 + SLACK_S
    assert htx.requests == 1


async def test_an_outer_timeout_cuts_a_drip_as_the_validator_relies_on():
    # services/validator/handlers.py bounds a whole inspection with asyncio.timeout(htx_deadline_s): a drip
    # must not hold the read past it, whatever the client's own (longer) deadline.
    async with hostile_htx(drip(0.1)) as htx, HtxClient(htx.base_url, timeout_s=5.0, retry_budget_s=20.0) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.5):
                await client.uid(CREDENTIALS)
    assert time.monotonic() - started < 0.5 + SLACK_S


# ---- size caps -------------------------------------------------------------------------------------------


async def test_sixty_megabytes_are_not_read_past_the_symbol_list_cap_nor_asked_for_again():
    body = b'{"status":"ok","data":[' + b" " * SIXTY_MB + b"]}"
    async with hostile_htx(fixed(body, declare_length=False)) as htx, impatient(htx.base_url) as client:
        tracemalloc.start()
        try:
            error, elapsed = await failure_of(client.market_symbols())
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert (error.kind, error.code, error.transient) == (ExchangeErrorKind.UNREADABLE_ANSWER, ANSWER_TOO_LARGE, False)
    assert htx.requests == 1
    assert peak < 2 * SYMBOL_LIST_MAX_BYTES
    # Reading stopped at the cap: the server could not push the rest (socket buffers hold a few MB at most).
    assert htx.body_bytes_sent < SIXTY_MB / 2
    assert elapsed < 2.0


async def test_a_declared_length_past_the_cap_is_refused_before_reading():
    body = b'{"code":200,"data":' + b" " * (DEFAULT_ANSWER_MAX_BYTES * 4) + b"1}"
    async with hostile_htx(fixed(body)) as htx, impatient(htx.base_url) as client:
        error, _ = await failure_of(client.uid(CREDENTIALS))
    assert (error.kind, error.code) == (ExchangeErrorKind.UNREADABLE_ANSWER, ANSWER_TOO_LARGE)
    assert htx.requests == 1


async def test_a_gzip_bomb_is_inflated_no_further_than_the_cap():
    bomb = gzip_bomb(SIXTY_MB)
    async with hostile_htx(fixed(bomb, "Content-Encoding: gzip")) as htx, impatient(htx.base_url) as client:
        tracemalloc.start()
        try:
            error, _ = await failure_of(client.uid(CREDENTIALS))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert (error.kind, error.code) == (ExchangeErrorKind.UNREADABLE_ANSWER, ANSWER_TOO_LARGE)
    assert peak < 1024 * 1024
    assert htx.requests == 1


async def test_a_gzip_answer_within_the_cap_is_read():
    body = gzip.compress(json.dumps({"code": 200, "data": 63628520}).encode())
    async with hostile_htx(fixed(body, "Content-Encoding: gzip")) as htx, impatient(htx.base_url) as client:
        assert await client.uid(CREDENTIALS) == 63628520


# ---- decoding --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        (b"this is not gzip at all", "gzip"),
        (gzip.compress(b'{"code":200,"data":1}')[:-12], "gzip"),  # cut short
        (b'{"code":200,"data":1}', "br"),  # never asked for
        (b'{"code":200,"data":1}', "gzip, gzip"),
    ],
    ids=["garbage", "truncated", "unrequested", "stacked"],
)
async def test_an_undecodable_body_is_a_typed_error_asked_for_once(body, encoding):
    async with hostile_htx(fixed(body, f"Content-Encoding: {encoding}")) as htx, impatient(htx.base_url) as client:
        error, _ = await failure_of(client.uid(CREDENTIALS))
    assert (error.kind, error.code, error.transient) == (ExchangeErrorKind.UNREADABLE_ANSWER, UNDECODABLE_ANSWER, False)
    assert htx.requests == 1


@pytest.mark.parametrize(
    ("body", "kind", "code"),
    [
        (b"[" * 100_000, ExchangeErrorKind.UNAVAILABLE, "http-200"),
        (b'{"code":200,"data":' + b"[" * 60_000 + b"]" * 60_000 + b"}", ExchangeErrorKind.UNAVAILABLE, "http-200"),
        (b'{"code":200,"data":' + b"[" * 900 + b"]" * 900 + b"}", ExchangeErrorKind.UNAVAILABLE, "unexpected-answer"),
        (b'{"code":200,"data":' + b"7" * 5000 + b"}", ExchangeErrorKind.UNAVAILABLE, "http-200"),
        (b'{"status":"error","err-code":' + b"[" * 900 + b"]" * 900 + b',"err-msg":"x"}', ExchangeErrorKind.BAD_REQUEST,
         ""),
        (b'{"status":"error","err-code":"x","err-msg":"' + b"A" * 50_000 + b'"}', ExchangeErrorKind.BAD_REQUEST, "x"),
    ],
    ids=["nested-100k", "nested-data-60k", "nested-data-900", "long-int", "nested-code", "long-message"],
)
async def test_json_built_to_break_the_parser_is_a_typed_error(body, kind, code):
    async with hostile_htx(fixed(body)) as htx, impatient(htx.base_url) as client:
        # The symbol list: the one answer large enough to carry these.
        error, elapsed = await failure_of(client.market_symbols())
    assert (error.kind, error.code) == (kind, code)
    assert len(str(error)) < 1000
    assert elapsed < 2.0 + SLACK_S
