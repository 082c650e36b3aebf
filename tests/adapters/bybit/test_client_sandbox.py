"""BybitExchange (shared/adapters/bybit/client.py) against the real Bybit sandbox: each demo key described as the
verdict needs it, each refusal raised as its neutral kind, pairs, orders, the clock followed and Bybit's rate-limit
headers honoured."""

import time
from decimal import Decimal

import httpx
import pytest
from pydantic import SecretStr

from services.validator.verdict import KeyPolicy, verdict_for
from shared.adapters.bybit.client import BybitExchange, parse_rate_limit_headers
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, ExchangeTransientError
from shared.adapters.exchange.port import ExchangeCredentials, KeyStatus, Permission, PlacedOrder, SpotOrder
from shared.adapters.request_signing import LocalHmacSigner

pytestmark = pytest.mark.stack

K = ExchangeErrorKind
P = Permission
EGRESS = ("203.0.113.10", "203.0.113.11")
BUY = SpotOrder(pair="btcusdt", side="buy", kind="limit", amount=Decimal("0.001"), price=Decimal("30000"),
                client_order_id="h7-client-1")


@pytest.fixture
def sandbox(clean_bybit_sandbox):
    return clean_bybit_sandbox


@pytest.fixture
async def bybit(sandbox):
    exchange = BybitExchange(sandbox.base_url, timeout_s=2.0, retry_budget_s=1.0)
    yield exchange
    await exchange.aclose()


async def refused(call) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        await call
    return caught.value


@pytest.mark.parametrize(
    ("note", "permissions", "bound_ips", "valid_days", "sub_account"),
    [
        ("good", {P.READ, P.TRADE}, EGRESS, None, False),
        ("with-withdraw", {P.READ, P.TRADE, P.WITHDRAW}, EGRESS, None, False),
        ("with-transfer", {P.READ, P.TRADE, P.TRANSFER}, EGRESS, None, False),
        ("read-only", {P.READ}, EGRESS, None, False),
        ("no-spot-trade", {P.READ}, EGRESS, None, False),
        ("no-ip", {P.READ, P.TRADE}, (), 90, False),
        ("ip-incomplete", {P.READ, P.TRADE}, ("203.0.113.10",), None, False),
        ("ip-wide-cidr", {P.READ, P.TRADE}, (*EGRESS, "203.0.113.0/24"), None, False),
        ("expiring-soon", {P.READ, P.TRADE}, EGRESS, 3, False),
        ("sub-account", {P.READ, P.TRADE, P.TRANSFER}, EGRESS, None, True),
    ],
)
async def test_each_verdict_key_is_described(sandbox, bybit, note, permissions, bound_ips, valid_days, sub_account):
    described = await bybit.describe_key(sandbox.bybit_credentials(note))
    assert described.owner_uid == str(sandbox.user(note)["uid"])
    assert (described.sub_account, described.account_problem, described.needs_trading_account,
            described.trading_account_id) == (sub_account, None, False, None)
    assert described.key is not None
    assert (described.key.permissions, described.key.bound_ips, described.key.valid_days, described.key.status) == (
        permissions, bound_ips, valid_days, KeyStatus.NORMAL)
    assert described.key.listed_permissions[0] == f"readOnly:{1 if note == 'read-only' else 0}"


@pytest.mark.parametrize(
    ("note", "kind", "code"),
    [
        ("ip-foreign", K.IP_NOT_BOUND, "10010"),
        ("expired", K.KEY_EXPIRED, "33004"),
        ("banned", K.ACCOUNT_RESTRICTED, "10027"),
        ("secret-mismatch", K.SIGNATURE_MISMATCH, "10004"),
    ],
)
async def test_refused_keys_raise_their_kind(sandbox, bybit, note, kind, code):
    error = await refused(bybit.describe_key(sandbox.bybit_credentials(note)))
    assert (error.kind, error.code, error.http_status) == (kind, code, 200)


@pytest.mark.parametrize(
    ("ips", "bound_ips", "codes"),
    [
        (["*"], (), ["ip_binding_missing"]),
        (["*", *EGRESS], ("*", *EGRESS), ["ip_binding_foreign"]),
    ],
)
async def test_a_star_among_our_ips_is_a_foreign_binding(sandbox, bybit, ips, bound_ips, codes):
    sandbox.admin.update_key(sandbox.api_key("good"), ips=ips)
    described = await bybit.describe_key(sandbox.bybit_credentials("good"))
    assert described.key is not None and described.key.bound_ips == bound_ips
    verdict = verdict_for(described, KeyPolicy(egress_ips=EGRESS, expiry_warning_days=7), "bybit")
    assert [r.code for r in verdict.rejections] == codes


async def test_an_unknown_key(bybit):
    credentials = ExchangeCredentials("H7SBXNOSUCHKEY0000", LocalHmacSigner(SecretStr("x")))
    assert (await refused(bybit.describe_key(credentials))).kind is K.UNKNOWN_ACCESS_KEY


async def test_trading_pairs(bybit):
    pairs = {(p.pair, p.symbol, p.tradable) for p in await bybit.trading_pairs()}
    assert pairs == {("btcusdt", "BTCUSDT", True), ("ethusdt", "ETHUSDT", True), ("arbusdt", "ARBUSDT", False),
                     ("lunausdt", "LUNAUSDT", False)}


async def test_orders_are_placed_and_refused(sandbox, bybit):
    placed = await bybit.place_order(sandbox.bybit_credentials("good"), BUY, None)
    [recorded] = sandbox.admin.orders()
    assert placed == PlacedOrder(order_id=recorded["order_id"], client_order_id="h7-client-1")
    assert (recorded["symbol"], recorded["side"], recorded["order_type"], recorded["qty"], recorded["price"]) == (
        "BTCUSDT", "Buy", "Limit", "0.001", "30000")
    market = SpotOrder(pair="ethusdt", side="sell", kind="market", amount=Decimal("1E-7"))
    await bybit.place_order(sandbox.bybit_credentials("good"), market, None)
    assert sandbox.admin.orders()[1]["qty"] == "0.0000001"
    assert (await refused(bybit.place_order(sandbox.bybit_credentials("read-only"), BUY, None))).kind is (
        K.NO_PERMISSION)
    not_trading = SpotOrder(pair="arbusdt", side="buy", kind="market", amount=Decimal("10"))
    error = await refused(bybit.place_order(sandbox.bybit_credentials("good"), not_trading, None))
    assert (error.kind, error.message) == (K.BAD_REQUEST, "params error: symbol invalid")
    assert len(sandbox.admin.orders()) == 2


async def test_the_client_signs_with_bybit_clock(sandbox):
    # Our clock 30 s ahead: without following Bybit's, every timestamp would be refused as out of the window.
    skewed = BybitExchange(sandbox.base_url, clock=lambda: time.time() + 30, retry_budget_s=1.0)
    try:
        described = await skewed.describe_key(sandbox.bybit_credentials("good"))
        assert described.owner_uid == "70000001"
    finally:
        await skewed.aclose()
    counts = sandbox.admin.request_counts()
    assert counts["GET /v5/market/time"]["ok"] == 1 and counts["GET /v5/user/query-api"] == {"total": 1, "ok": 1}


async def test_a_clock_jump_after_the_measurement_is_caught_up_once(sandbox):
    skew = [0.0]
    jumpy = BybitExchange(sandbox.base_url, clock=lambda: time.time() + skew[0], retry_budget_s=1.0)
    try:
        await jumpy.describe_key(sandbox.bybit_credentials("good"))
        skew[0] = 30.0  # our clock jumps; the last measurement is still fresh, so no new one is taken up front
        await jumpy.describe_key(sandbox.bybit_credentials("good"))
    finally:
        await jumpy.aclose()
    assert sandbox.admin.request_counts()["GET /v5/user/query-api"] == {"total": 3, "ok": 2, "10002": 1}
    assert sandbox.admin.request_counts()["GET /v5/market/time"] == {"total": 2, "ok": 2}


async def test_bybit_rate_limit_is_honoured(sandbox, bybit):
    sandbox.admin.set_rate_limit("/v5/user/query-api", requests=2, window_ms=60_000)
    credentials = sandbox.bybit_credentials("good")
    await bybit.describe_key(credentials)
    await bybit.describe_key(credentials)
    error = await refused(bybit.describe_key(credentials))
    assert isinstance(error, ExchangeTransientError)
    assert (error.kind, error.code) == (K.RATE_LIMITED, "10006")
    # The refusal's headers told the client the window ends a minute away: it asked no more within its budget.
    assert sandbox.admin.request_counts()["GET /v5/user/query-api"] == {"total": 3, "ok": 2, "10006": 1}


async def test_transient_faults_are_retried(sandbox, bybit):
    sandbox.admin.set_fault("/v5/market/instruments-info", fail_next=2)
    assert len(await bybit.trading_pairs()) == 4
    assert sandbox.admin.request_counts()["GET /v5/market/instruments-info"] == {"total": 3, "ok": 1, "10016": 2}


async def test_an_answer_not_shaped_as_documented_is_transient(sandbox):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=httpx.ByteStream(b'{"retCode":0,"retMsg":"OK","result":{"category":"spot"}}'))

    exchange = BybitExchange("http://bybit.invalid", transport=httpx.MockTransport(handler), retry_budget_s=0.0)
    try:
        error = await refused(exchange.trading_pairs())
    finally:
        await exchange.aclose()
    assert (error.kind, error.code) == (K.UNAVAILABLE, "unexpected-answer")


@pytest.mark.parametrize(
    ("headers", "reading"),
    [
        ({"X-Bapi-Limit-Status": "3", "X-Bapi-Limit-Reset-Timestamp": "1700000000500"}, (3, 1700000000.5)),
        ({"X-Bapi-Limit-Status": "0", "X-Bapi-Limit-Reset-Timestamp": "99999999999999"}, (0, 1700000060.0)),
        ({"X-Bapi-Limit-Status": "x", "X-Bapi-Limit-Reset-Timestamp": "1"}, None),
        ({"X-Bapi-Limit-Status": "1"}, None),
        ({"X-Bapi-Limit-Status": "nan", "X-Bapi-Limit-Reset-Timestamp": "inf"}, None),
    ],
)
def test_rate_limit_headers(headers, reading):
    assert parse_rate_limit_headers(headers, 1_700_000_000.0) == reading
