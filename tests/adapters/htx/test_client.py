"""HtxClient against a scripted transport and an injected clock: request shape, retries, rate limiting,
secrecy. (Behaviour against the real sandbox over HTTP is in test_client_sandbox.py.)"""

import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
import structlog
from pydantic import SecretStr

import shared.adapters.exchange.http as http_module
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, ExchangeTransientError
from shared.adapters.exchange.http import CLIENT_RATE_LIMIT, NETWORK_ERROR, NETWORK_UNREACHABLE, RateLimit
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.htx.client import EXPIRE_HEADER, REMAINING_HEADER, HtxClient, parse_rate_limit_headers
from shared.adapters.htx.models import NewOrder
from shared.adapters.htx.signing import compute_signature, format_timestamp, pre_sign_text
from shared.adapters.request_signing import LocalHmacSigner
from shared.adapters.vault.client import KeyMissing, VaultUnavailable
from tests.adapters.htx.scripted import (
    BAD_GATEWAY,
    BASE_URL,
    GATEWAY_ERROR,
    START,
    FakeTime,
    ScriptedHtx,
    StreamingTransport,
    client_for,
    ok,
    v1_error,
)

SECRET = "s3cr3t-d0-n0t-l34k"
ACCESS_KEY = "abcd1234-efgh5678-ijkl9012-mnop3"
CREDENTIALS = ExchangeCredentials(ACCESS_KEY, LocalHmacSigner(SecretStr(SECRET)))


class CountingSigner:
    """Signs as LocalHmacSigner does, or fails with failure from call number fail_from on; keeps the texts of every
    call, one list per call."""

    def __init__(self, failure: Exception | None = None, fail_from: int = 1) -> None:
        self.calls: list[list[str]] = []
        self._local = LocalHmacSigner(SecretStr(SECRET))
        self._failure = failure
        self._fail_from = fail_from

    async def sign(self, texts: Sequence[str]) -> list[bytes]:
        self.calls.append(list(texts))
        if self._failure is not None and len(self.calls) >= self._fail_from:
            raise self._failure
        return await self._local.sign(texts)


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


# ---- request shape ---------------------------------------------------------------------------------------


async def test_a_signed_get_signs_the_host_as_sent_with_its_port(time):
    htx = ScriptedHtx(ok())
    async with client_for(htx, time) as client:
        assert await client.uid(CREDENTIALS) == 63628520
    request = htx.requests[0]
    params = dict(request.url.params)
    assert request.headers["host"] == "127.0.0.1:8930"
    assert params["AccessKeyId"] == CREDENTIALS.access_key
    assert (params["SignatureMethod"], params["SignatureVersion"]) == ("HmacSHA256", "2")
    assert params["Timestamp"] == format_timestamp(datetime.fromtimestamp(START, UTC))
    signed = [(k, v) for k, v in request.url.params.multi_items() if k != "Signature"]
    expected = compute_signature(SecretStr(SECRET), pre_sign_text("GET", "127.0.0.1:8930", "/v2/user/uid", signed))
    assert params["Signature"] == expected


async def test_api_key_sends_uid_and_access_key_and_picks_the_entry_by_access_key(time):
    entry = {"accessKey": CREDENTIALS.access_key, "permission": "readOnly,trade", "ipAddresses": "203.0.113.10",
             "validDays": -1, "status": "normal"}
    other = entry | {"accessKey": "someone-else"}
    htx = ScriptedHtx(ok([other, entry]), ok([other]))
    async with client_for(htx, time) as client:
        found = await client.api_key(CREDENTIALS, 63628520)
        missing = await client.api_key(CREDENTIALS, 63628520)
    assert found is not None and found.access_key == CREDENTIALS.access_key and found.bound_ips == ["203.0.113.10"]
    assert missing is None
    params = htx.requests[0].url.params
    assert (params["uid"], params["accessKey"]) == ("63628520", CREDENTIALS.access_key)


async def test_a_post_sends_json_and_signs_only_the_auth_parameters(time):
    htx = ScriptedHtx(httpx.Response(200, json={"status": "ok", "data": "356501383558845"}))
    order = NewOrder(account_id=10000001, symbol="btcusdt", type="buy-limit", amount=Decimal("0.001"),
                     price=Decimal("30000"), client_order_id="abc123")
    async with client_for(htx, time) as client:
        order_id = await client.place_order(CREDENTIALS, order)
    assert order_id == 356501383558845
    request = htx.requests[0]
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.content) == {"account-id": "10000001", "symbol": "btcusdt", "type": "buy-limit",
                                           "amount": "0.001", "price": "30000", "client-order-id": "abc123"}
    assert set(request.url.params) == {"AccessKeyId", "SignatureMethod", "SignatureVersion", "Timestamp", "Signature"}


async def test_public_calls_are_not_signed(time):
    htx = ScriptedHtx(httpx.Response(200, json={"status": "ok", "data": 1629715504949}))
    async with client_for(htx, time) as client:
        assert await client.server_time_ms() == 1629715504949
    assert not htx.requests[0].url.params


async def test_sync_clock_signs_with_htx_time(time):
    htx = ScriptedHtx(httpx.Response(200, json={"status": "ok", "data": int((START + 120) * 1000)}), ok())
    async with client_for(htx, time) as client:
        assert await client.sync_clock() == pytest.approx(120)
        await client.uid(CREDENTIALS)
    assert htx.requests[1].url.params["Timestamp"] == format_timestamp(datetime.fromtimestamp(START + 120, UTC))


async def test_keys_checked_together_share_one_clock_measurement(time):
    htx = ScriptedHtx(httpx.Response(200, json={"status": "ok", "data": int((START + 120) * 1000)}))
    # Answering after a while, as a real HTX would: the other callers run meanwhile.
    transport = StreamingTransport(htx, answer_after_s=0.01)
    async with HtxClient(BASE_URL, transport=transport, clock=time.clock, sleep=time.sleep) as client:
        offsets = await asyncio.gather(*(client.sync_clock_if_older_than(60) for _ in range(20)))
    assert len(htx.requests) == 1
    assert offsets.count(None) == 19 and pytest.approx(120) in offsets


# ---- signing ---------------------------------------------------------------------------------------------


def signed_text_of(request: httpx.Request, method: str) -> str:
    """The pre-sign text of what was sent: every query parameter but `Signature`."""
    sent = [(k, v) for k, v in request.url.params.multi_items() if k != "Signature"]
    return pre_sign_text(method, "127.0.0.1:8930", request.url.path, sent)


async def test_every_attempt_of_a_retried_get_is_signed_afresh_by_the_signer_given(time):
    signer = CountingSigner()
    htx = ScriptedHtx(GATEWAY_ERROR, BAD_GATEWAY, ok())
    async with client_for(htx, time) as client:
        assert await client.uid(ExchangeCredentials(ACCESS_KEY, signer)) == 63628520
    assert len(htx.requests) == 3
    # One call per attempt, one text per call, the text of that very request, and its signature sent with it.
    assert signer.calls == [[signed_text_of(request, "GET")] for request in htx.requests]
    assert [request.url.params["Signature"] for request in htx.requests] == [
        compute_signature(SecretStr(SECRET), text) for [text] in signer.calls]


async def test_an_order_is_signed_once_over_its_auth_parameters_only(time):
    signer = CountingSigner()
    htx = ScriptedHtx(httpx.Response(200, json={"status": "ok", "data": "7"}))
    order = NewOrder(account_id=1, symbol="btcusdt", type="buy-market", amount=Decimal("5"))
    async with client_for(htx, time) as client:
        await client.place_order(ExchangeCredentials(ACCESS_KEY, signer), order)
    [[text]] = signer.calls
    assert text == signed_text_of(htx.requests[0], "POST") and "btcusdt" not in text


@pytest.mark.parametrize("failure", [VaultUnavailable("Vault is sealed"), KeyMissing("exchange-key-x has no v2")])
async def test_a_signer_that_fails_stops_the_call_before_anything_is_sent(time, failure):
    htx = ScriptedHtx(ok())
    order = NewOrder(account_id=1, symbol="btcusdt", type="buy-market", amount=Decimal("5"))
    async with client_for(htx, time) as client:
        with pytest.raises(type(failure)) as on_get:
            await client.uid(ExchangeCredentials(ACCESS_KEY, CountingSigner(failure)))
        with pytest.raises(type(failure)) as on_order:
            await client.place_order(ExchangeCredentials(ACCESS_KEY, CountingSigner(failure)), order)
    # The signer's own error, not an ExchangeError the caller would read as HTX's verdict on the key.
    assert on_get.value is failure and on_order.value is failure
    assert htx.requests == [] and time.sleeps == []


async def test_a_signer_failing_on_a_retry_ends_the_call_with_its_error(time):
    signer = CountingSigner(KeyMissing("exchange-key-x was deleted"), fail_from=2)
    htx = ScriptedHtx(GATEWAY_ERROR, ok())
    async with client_for(htx, time) as client:
        with pytest.raises(KeyMissing):
            await client.uid(ExchangeCredentials(ACCESS_KEY, signer))
    assert len(htx.requests) == 1 and len(signer.calls) == 2


# ---- retries ---------------------------------------------------------------------------------------------


async def test_transient_failures_are_retried_with_full_jitter_then_succeed(time):
    htx = ScriptedHtx(BAD_GATEWAY, GATEWAY_ERROR, httpx.ConnectError("refused"), ok())
    async with client_for(htx, time) as client:
        assert await client.uid(CREDENTIALS) == 63628520
    assert len(htx.requests) == 4
    assert [0 <= wait <= 0.1 * 2**n for n, wait in enumerate(time.sleeps)] == [True, True, True]


async def test_when_the_retry_budget_is_spent_the_last_transient_error_is_raised(time):
    htx = ScriptedHtx(GATEWAY_ERROR)
    async with client_for(htx, time, retry_budget_s=1.0) as client:
        with pytest.raises(ExchangeTransientError) as caught:
            await client.uid(CREDENTIALS)
    assert (caught.value.kind, caught.value.code) == (ExchangeErrorKind.UNAVAILABLE, "gateway-internal-error")
    assert len(htx.requests) > 2
    assert sum(time.sleeps) <= 1.0


async def test_maintenance_is_retried_then_raised(time):
    htx = ScriptedHtx(v1_error("system-maintenance", "System is in maintenance!"))
    async with client_for(htx, time, retry_budget_s=0.5) as client:
        with pytest.raises(ExchangeTransientError) as caught:
            await client.server_time_ms()
    assert caught.value.kind is ExchangeErrorKind.MAINTENANCE
    assert len(htx.requests) > 1


async def test_refusals_about_the_key_are_not_retried(time):
    htx = ScriptedHtx(v1_error("api-signature-not-valid", "Signature not valid: Incorrect Access key [Access key错误]"))
    async with client_for(htx, time) as client:
        with pytest.raises(ExchangeError) as caught:
            await client.uid(CREDENTIALS)
    assert caught.value.kind is ExchangeErrorKind.UNKNOWN_ACCESS_KEY and not caught.value.transient
    assert len(htx.requests) == 1 and time.sleeps == []


@pytest.mark.parametrize(
    ("failure", "code"),
    [(httpx.ConnectError("refused"), NETWORK_UNREACHABLE), (httpx.ReadTimeout("slow"), NETWORK_ERROR)],
)
async def test_network_failures_are_transient(time, failure, code):
    htx = ScriptedHtx(failure)
    async with client_for(htx, time, retry_budget_s=0) as client:
        with pytest.raises(ExchangeTransientError) as caught:
            await client.uid(CREDENTIALS)
    assert (caught.value.kind, caught.value.code) == (ExchangeErrorKind.UNAVAILABLE, code)


@pytest.mark.parametrize("failure", [httpx.ReadTimeout("slow"), BAD_GATEWAY, GATEWAY_ERROR])
async def test_an_order_that_may_have_reached_htx_is_not_sent_twice(time, failure):
    htx = ScriptedHtx(failure, httpx.Response(200, json={"status": "ok", "data": "1"}))
    order = NewOrder(account_id=1, symbol="btcusdt", type="buy-market", amount=Decimal("5"))
    async with client_for(htx, time) as client:
        with pytest.raises(ExchangeTransientError):
            await client.place_order(CREDENTIALS, order)
    assert len(htx.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), v1_error("system-maintenance", "System is in maintenance!"),
     v1_error("base-request-exceed-frequency-limit", "Frequency of requests has exceeded the limit")],
)
async def test_an_order_htx_never_acted_on_is_retried(time, failure):
    htx = ScriptedHtx(failure, httpx.Response(200, json={"status": "ok", "data": "42"}))
    order = NewOrder(account_id=1, symbol="btcusdt", type="buy-market", amount=Decimal("5"))
    async with client_for(htx, time) as client:
        assert await client.place_order(CREDENTIALS, order) == 42
    assert len(htx.requests) == 2


# ---- rate limiting ---------------------------------------------------------------------------------------


def limit_headers(remaining: int, resets_at_s: float) -> dict[str, str]:
    return {REMAINING_HEADER: str(remaining), EXPIRE_HEADER: str(int(resets_at_s * 1000))}


async def test_an_exhausted_window_holds_the_next_request_until_it_resets(time):
    htx = ScriptedHtx(ok(headers=limit_headers(0, START + 1.5)), ok())
    async with client_for(htx, time) as client:
        await client.uid(CREDENTIALS)
        await client.uid(CREDENTIALS)
    assert htx.sent_at[1] >= START + 1.5
    assert len(htx.requests) == 2


async def test_a_rate_limited_answer_waits_for_the_window_then_succeeds(time):
    limited = v1_error("base-request-exceed-frequency-limit", "Frequency of requests has exceeded the limit",
                       headers=limit_headers(0, START + 0.8))
    htx = ScriptedHtx(limited, ok())
    async with client_for(htx, time) as client:
        assert await client.uid(CREDENTIALS) == 63628520
    assert htx.sent_at[1] >= START + 0.8


async def test_a_wait_beyond_the_budget_is_refused_without_asking_htx(time):
    htx = ScriptedHtx(ok(headers=limit_headers(0, START + 10)))
    async with client_for(htx, time, retry_budget_s=1.0) as client:
        await client.uid(CREDENTIALS)
        with pytest.raises(ExchangeTransientError) as caught:
            await client.uid(CREDENTIALS)
    assert (caught.value.kind, caught.value.code) == (ExchangeErrorKind.RATE_LIMITED, CLIENT_RATE_LIMIT)
    assert len(htx.requests) == 1


async def test_the_local_window_is_per_principal_and_endpoint(time):
    htx = ScriptedHtx(ok())
    other = ExchangeCredentials("zzzz1234-efgh5678-ijkl9012-mnop3", LocalHmacSigner(SecretStr("x")))
    async with client_for(htx, time, rate_limits={"/v2/user/uid": RateLimit(2, 1.0)}) as client:
        for _ in range(2):
            await client.uid(CREDENTIALS)
        await client.uid(other)
        assert time.sleeps == []
        await client.uid(CREDENTIALS)
    assert time.sleeps == [pytest.approx(1.0)]


async def test_the_uid_keys_the_window_once_known(time):
    htx = ScriptedHtx(ok())
    async with client_for(htx, time, rate_limits={"/v2/user/uid": RateLimit(1, 1.0)}) as client:
        await client.uid(CREDENTIALS)
        await client.uid(CREDENTIALS.with_owner("63628520"))
        assert time.sleeps == []
        await client.uid(ExchangeCredentials("another-key", LocalHmacSigner(SecretStr("y")), owner_uid="63628520"))
    assert time.sleeps == [pytest.approx(1.0)]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({REMAINING_HEADER: "99", EXPIRE_HEADER: "1700000001500"}, (99, 1_700_000_001.5)),
        ({REMAINING_HEADER: "3", EXPIRE_HEADER: "250"}, (3, START + 0.25)),
        ({REMAINING_HEADER: "3"}, None),
        ({REMAINING_HEADER: "x", EXPIRE_HEADER: "1"}, None),
    ],
)
def test_rate_limit_headers_are_read_as_epoch_or_relative_ms(headers, expected):
    assert parse_rate_limit_headers(headers, START) == expected


# ---- secrecy ---------------------------------------------------------------------------------------------


def test_credentials_never_show_the_secret():
    text = repr(CREDENTIALS) + str(CREDENTIALS) + repr(CREDENTIALS.with_owner("1"))
    assert SECRET not in text and CREDENTIALS.access_key not in text and "abcd…nop3" in text
    assert "signer" not in text


async def test_no_secret_signature_or_access_key_reaches_logs_or_errors(time, monkeypatch):
    # A logger of our own: the process-wide structlog configuration may cache loggers, defeating capture_logs.
    logs = structlog.testing.CapturingLogger()
    monkeypatch.setattr(http_module, "log", structlog.wrap_logger(logs, processors=[]))
    mismatch = v1_error("api-signature-not-valid", "Signature not valid: Verification failure [校验失败]")
    htx = ScriptedHtx(GATEWAY_ERROR, mismatch)
    async with client_for(htx, time) as client:
        with pytest.raises(ExchangeError) as caught:
            await client.uid(CREDENTIALS)
    signature = htx.requests[-1].url.params["Signature"]
    seen = repr(logs.calls) + str(caught.value) + repr(caught.value.args)
    assert [call.kwargs["event"] for call in logs.calls] == ["exchange.retrying", "exchange.refused"]
    assert logs.calls[1].kwargs["access_key_masked"] == "abcd…nop3"
    for leaked in (SECRET, signature, CREDENTIALS.access_key):
        assert leaked not in seen


async def test_retries_stopped_by_our_own_limit_raise_htx_last_answer(time):
    htx = ScriptedHtx(GATEWAY_ERROR)
    async with client_for(htx, time, rate_limits={"/v2/user/uid": RateLimit(2, 60.0)}) as client:
        with pytest.raises(ExchangeTransientError) as caught:
            await client.uid(CREDENTIALS)
    assert (caught.value.kind, caught.value.code) == (ExchangeErrorKind.UNAVAILABLE, "gateway-internal-error")
    assert len(htx.requests) == 2


async def test_data_not_shaped_as_documented_is_an_htx_error(time):
    htx = ScriptedHtx(ok(data={"uid": "not a number"}))
    async with client_for(htx, time) as client:
        with pytest.raises(ExchangeError) as caught:
            await client.uid(CREDENTIALS)
    assert (caught.value.kind, caught.value.code) == (ExchangeErrorKind.UNAVAILABLE, "unexpected-answer")
    assert "/v2/user/uid" in caught.value.message
