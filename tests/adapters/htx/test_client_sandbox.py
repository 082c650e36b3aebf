"""HtxClient against the real sandbox over HTTP: public lists, refusals as typed errors, retries on
injected faults, rate limits, and order placement."""

import time
from decimal import Decimal

import pytest

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, ExchangeTransientError
from shared.adapters.exchange.http import RateLimit
from shared.adapters.htx.client import HtxClient
from shared.adapters.htx.models import MarketStatus, NewOrder

pytestmark = pytest.mark.stack

K = ExchangeErrorKind
SETTINGS_STATES = {"unknown", "not-online", "pre-online", "online", "suspend", "offline", "transfer-board", "fuse"}


@pytest.fixture
def sandbox(clean_htx_sandbox):
    return clean_htx_sandbox


@pytest.fixture
async def client(sandbox):
    async with HtxClient(sandbox.base_url, timeout_s=2.0, retry_budget_s=1.0, backoff_base_s=0.02,
                         backoff_cap_s=0.1) as htx:
        yield htx


async def refusal(call) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        await call
    return caught.value


# ---- public endpoints ------------------------------------------------------------------------------------


async def test_the_three_symbol_lists_cover_every_state(client):
    v1, v2, market = await client.symbols(), await client.symbols_v2(), await client.market_symbols()
    assert {s.state for s in v2} == SETTINGS_STATES
    assert {s.symbol for s in v1} == {s.symbol for s in v2} == {s.symbol for s in market}
    btc = next(s for s in market if s.symbol == "btcusdt")
    assert (btc.base_currency, btc.quote_currency, btc.state, btc.api_trading) == ("btc", "usdt", "online", "enabled")
    assert next(s for s in v1 if s.symbol == "xrpusdt").api_trading == "disabled"
    assert next(s for s in v2 if s.symbol == "trxusdt").trade_enabled is False


async def test_market_symbols_can_be_narrowed(client):
    assert [s.symbol for s in await client.market_symbols(["ethusdt", "nosuchusdt"])] == ["ethusdt"]


async def test_market_status_and_halts(sandbox, client):
    assert (await client.market_status()).market_status == MarketStatus.NORMAL
    sandbox.admin.set_market_status(market_status=2, halt_reason=3, halt_start_time=1, halt_end_time=2,
                                    affected_symbols="btcusdt,ethusdt")
    halted = await client.market_status()
    assert (halted.market_status, halted.halt_reason, halted.affected_symbols) == (2, 3, "btcusdt,ethusdt")


async def test_server_time_is_htx_time_in_ms(client):
    assert abs(await client.server_time_ms() - time.time() * 1000) < 5_000


# ---- refusals as typed errors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("note", "kind"),
    [
        ("ip-not-bound", K.IP_NOT_BOUND),
        ("expired", K.KEY_EXPIRED),
        ("abnormal-user", K.ABNORMAL_USER),
        ("no-read", K.NO_PERMISSION),
    ],
)
async def test_key_refusals_are_typed(sandbox, client, note, kind):
    error = await refusal(client.uid(sandbox.credentials(note)))
    assert (error.kind, error.code, error.transient) == (kind, "api-signature-not-valid", False)
    assert error.message.startswith("Signature not valid: ")


async def test_ip_refusal_carries_the_caller_ip(sandbox, client):
    assert (await refusal(client.uid(sandbox.credentials("ip-not-bound")))).caller_ip == "203.0.113.10"


async def test_a_sub_user_key_is_forbidden_on_the_api_key_endpoint(sandbox, client):
    credentials = sandbox.credentials("sub-user")
    uid = await client.uid(credentials)
    error = await refusal(client.api_key(credentials, uid))
    assert (error.kind, error.http_status) == (K.FORBIDDEN, 403)


async def test_a_drifted_clock_is_refused_until_synced(sandbox):
    async with HtxClient(sandbox.base_url, clock=lambda: time.time() - 600) as drifted:
        error = await refusal(drifted.uid(sandbox.credentials("good")))
        assert error.kind is K.TIMESTAMP_OUT_OF_WINDOW
        assert await drifted.sync_clock() == pytest.approx(600, abs=5)
        assert await drifted.uid(sandbox.credentials("good")) == 63628520


# ---- injected faults and retries -------------------------------------------------------------------------


@pytest.mark.parametrize("error_kind", ["gateway-internal-error", "bad-gateway"])
async def test_transient_failures_are_retried_until_success(sandbox, client, error_kind):
    sandbox.admin.set_fault("/v2/user/uid", fail_next=2, error_kind=error_kind)
    assert await client.uid(sandbox.credentials("good")) == 63628520
    counts = sandbox.admin.request_counts()["GET /v2/user/uid"]
    assert (counts["total"], counts["ok"]) == (3, 1)


async def test_a_spent_retry_budget_raises_the_transient_error(sandbox, client):
    sandbox.admin.set_fault("/v1/common/timestamp", error_rate=1.0)
    started = time.monotonic()
    error = await refusal(client.server_time_ms())
    assert isinstance(error, ExchangeTransientError)
    assert (error.kind, error.code) == (K.UNAVAILABLE, "gateway-internal-error")
    assert time.monotonic() - started < 1.0 + 2.0
    assert sandbox.admin.request_counts()["GET /v1/common/timestamp"]["total"] > 1


async def test_maintenance_is_transient(sandbox, client):
    sandbox.admin.set_fault("*", maintenance=True)
    error = await refusal(client.uid(sandbox.credentials("good")))
    assert (error.kind, error.transient) == (K.MAINTENANCE, True)


async def test_a_held_request_times_out_as_unavailable(sandbox):
    sandbox.admin.set_fault("/v1/common/timestamp", timeout_rate=1.0, timeout_hold_ms=3_000)
    async with HtxClient(sandbox.base_url, timeout_s=0.2, retry_budget_s=0.0) as impatient:
        error = await refusal(impatient.server_time_ms())
    assert (error.kind, error.code) == (K.UNAVAILABLE, "network-error")


async def test_latency_is_injected(sandbox, client):
    sandbox.admin.set_fault("/v2/market-status", latency_ms=150)
    started = time.monotonic()
    await client.market_status()
    assert time.monotonic() - started >= 0.15


async def test_an_unreachable_htx_is_unavailable():
    async with HtxClient("http://127.0.0.1:9", retry_budget_s=0.0) as nowhere:
        error = await refusal(nowhere.server_time_ms())
    assert (error.kind, error.code) == (K.UNAVAILABLE, "network-unreachable")


# ---- rate limits -----------------------------------------------------------------------------------------


async def test_the_client_spaces_requests_by_htx_headers_without_being_refused(sandbox, client):
    sandbox.admin.set_rate_limit("/v2/user/uid", requests=3, window_ms=400)
    credentials = sandbox.credentials("good")
    started = time.monotonic()
    for _ in range(5):
        assert await client.uid(credentials) == 63628520
    assert time.monotonic() - started >= 0.3
    counts = sandbox.admin.request_counts()["GET /v2/user/uid"]
    assert counts == {"total": 5, "ok": 5}


async def test_a_client_that_has_not_seen_the_headers_gets_rate_limited(sandbox, client):
    sandbox.admin.set_rate_limit("/v2/user/uid", requests=2, window_ms=60_000)
    credentials = sandbox.credentials("good")
    for _ in range(2):
        await client.uid(credentials)
    async with HtxClient(sandbox.base_url, retry_budget_s=0.0) as newcomer:
        error = await refusal(newcomer.uid(credentials))
        assert (error.kind, error.code) == (K.RATE_LIMITED, "base-request-exceed-frequency-limit")
        # Now it has seen them: it refuses by itself instead of asking HTX again.
        again = await refusal(newcomer.uid(credentials))
    assert (again.kind, again.code) == (K.RATE_LIMITED, "client-rate-limit")
    assert sandbox.admin.request_counts()["GET /v2/user/uid"]["total"] == 3


async def test_the_client_side_limit_holds_without_headers(sandbox):
    async with HtxClient(sandbox.base_url, rate_limits={"/v1/common/timestamp": RateLimit(2, 0.3)}) as limited:
        started = time.monotonic()
        for _ in range(3):
            await limited.server_time_ms()
    assert time.monotonic() - started >= 0.25


# ---- order placement -------------------------------------------------------------------------------------


def order(account_id: int, symbol: str = "btcusdt", **fields) -> NewOrder:
    return NewOrder(account_id=account_id, symbol=symbol, type="buy-limit", amount=Decimal("0.001"),
                    price=Decimal("30000"), **fields)


async def test_a_placed_order_is_visible_to_the_admin(sandbox, client):
    order_id = await client.place_order(sandbox.credentials("good"), order(10000011, client_order_id="hash7-1"))
    assert sandbox.admin.orders() == [{
        "order_id": order_id, "uid": 63628520, "account_id": 10000011, "symbol": "btcusdt",
        "type": "buy-limit", "amount": "0.001", "price": "30000", "source": None, "client_order_id": "hash7-1",
        "created_at_ms": sandbox.admin.orders()[0]["created_at_ms"],
    }]


@pytest.mark.parametrize(
    ("note", "account_id", "symbol", "kind", "code"),
    [
        ("read-only", 10000031, "btcusdt", K.NO_PERMISSION, "api-signature-not-valid"),
        ("good", 10000011, "nosuchusdt", K.BAD_REQUEST, "base-symbol-error"),
        ("good", 10000011, "lunausdt", K.BAD_REQUEST, "base-symbol-trade-disabled"),
        ("good", 10000011, "ltcusdt", K.BAD_REQUEST, "base-symbol-trade-disabled"),
        ("good", 10000011, "trxusdt", K.BAD_REQUEST, "base-symbol-trade-disabled"),
        ("good", 10000011, "arbusdt", K.BAD_REQUEST, "order-disabled"),
        ("good", 10000011, "xrpusdt", K.BAD_REQUEST, "base-operation-forbidden"),
        ("good", 10000021, "btcusdt", K.BAD_REQUEST, "account-account-id-inexistent"),
        ("locked-account", 10000091, "btcusdt", K.BAD_REQUEST, "base-operation-forbidden"),
    ],
    ids=["no-trade-permission", "unknown-symbol", "offline", "suspended", "trade-disabled", "pre-online",
         "api-trading-disabled", "foreign-account", "locked-account"],
)
async def test_orders_htx_refuses(sandbox, client, note, account_id, symbol, kind, code):
    error = await refusal(client.place_order(sandbox.credentials(note), order(account_id, symbol)))
    assert (error.kind, error.code) == (kind, code)
    assert sandbox.admin.orders() == []
