"""OkxExchange against the real OKX sandbox over HTTP: describe_key for every verdict the demo scenario holds, the
refusals as typed errors, trading pairs, orders, the clock, demo trading and retries on injected faults."""

from decimal import Decimal

import pytest
from pydantic import SecretStr

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.exchange.port import ExchangeCredentials, Permission, SpotOrder, TradingPair
from shared.adapters.okx.client import ACCOUNT_CONFIG_PATH, OkxExchange
from shared.adapters.request_signing import LocalHmacSigner

pytestmark = pytest.mark.stack

K = ExchangeErrorKind
P = Permission
EGRESS = ("203.0.113.10", "203.0.113.11")


@pytest.fixture
def sandbox(clean_okx_sandbox):
    return clean_okx_sandbox


@pytest.fixture
async def okx(sandbox):
    exchange = OkxExchange(sandbox.base_url, timeout_s=2.0, retry_budget_s=1.0, backoff_base_s=0.02,
                           backoff_cap_s=0.1)
    yield exchange
    await exchange.aclose()


async def refusal(call) -> ExchangeError:
    with pytest.raises(ExchangeError) as caught:
        await call
    return caught.value


# ---- describe_key: one case per verdict ------------------------------------------------------------------


async def test_the_good_key_is_described(okx, sandbox):
    user, _ = sandbox.entry("good")
    description = await okx.describe_key(sandbox.credentials("good"))
    assert (description.owner_uid, description.sub_account, description.trading_account_id,
            description.needs_trading_account, description.account_problem) == (str(user["uid"]), False, None, False,
                                                                                 None)
    key = description.key
    assert key is not None
    assert (key.permissions, key.listed_permissions, key.bound_ips, key.valid_days) == (
        frozenset({P.READ, P.TRADE}), ("read_only", "trade"), EGRESS, None)


@pytest.mark.parametrize(
    ("label", "permissions", "bound_ips"),
    [
        ("with-withdraw", {P.READ, P.TRADE, P.WITHDRAW}, EGRESS),
        ("read-only", {P.READ}, EGRESS),
        ("no-ip", {P.READ, P.TRADE}, ()),
        ("ip-incomplete", {P.READ, P.TRADE}, ("203.0.113.10",)),
        ("ip-range", {P.READ, P.TRADE}, ("203.0.113.0/24",)),
    ],
)
async def test_each_key_is_described_as_it_is(okx, sandbox, label, permissions, bound_ips):
    key = (await okx.describe_key(sandbox.credentials(label))).key
    assert key is not None
    assert (key.permissions, key.bound_ips) == (frozenset(permissions), bound_ips)


async def test_a_sub_account_key_is_described_as_one(okx, sandbox):
    user, _ = sandbox.entry("sub-account")
    description = await okx.describe_key(sandbox.credentials("sub-account"))
    assert (description.owner_uid, description.sub_account) == (str(user["uid"]), True)


@pytest.mark.parametrize(
    ("label", "kind", "code"),
    [
        ("ip-foreign", K.IP_NOT_BOUND, "50110"),
        ("frozen", K.ABNORMAL_USER, "50100"),
        ("wrong-passphrase", K.SIGNATURE_MISMATCH, "50105"),
        ("secret-mismatch", K.SIGNATURE_MISMATCH, "50113"),
        ("demo", K.UNKNOWN_ACCESS_KEY, "50101"),
    ],
)
async def test_refused_keys_raise_typed_errors(okx, sandbox, label, kind, code):
    error = await refusal(okx.describe_key(sandbox.credentials(label)))
    assert (error.kind, error.code) == (kind, code)


async def test_the_ip_refusal_names_the_caller(okx, sandbox):
    error = await refusal(okx.describe_key(sandbox.credentials("ip-foreign")))
    assert error.caller_ip == "203.0.113.10"


async def test_an_unknown_key_is_refused(okx):
    credentials = ExchangeCredentials("00000000-0000-0000-0000-000000000000", LocalHmacSigner(SecretStr("x")),
                                      passphrase=SecretStr("y"))
    error = await refusal(okx.describe_key(credentials))
    assert (error.kind, error.code, error.http_status) == (K.UNKNOWN_ACCESS_KEY, "50111", 401)


async def test_a_key_without_its_passphrase_is_not_sent(okx, sandbox):
    api_key, secret, _ = sandbox.handed("good")
    error = await refusal(okx.describe_key(ExchangeCredentials(api_key, LocalHmacSigner(SecretStr(secret)))))
    assert (error.kind, error.code) == (K.LOGIN_REQUIRED, "passphrase-missing")
    assert f"GET {ACCOUNT_CONFIG_PATH}" not in sandbox.admin.request_counts()


async def test_the_passphrase_stays_out_of_reprs_and_errors(okx, sandbox):
    credentials = sandbox.credentials("secret-mismatch")
    _, _, passphrase = sandbox.handed("secret-mismatch")
    error = await refusal(okx.describe_key(credentials))
    assert passphrase not in repr(credentials) and passphrase not in str(error)


async def test_demo_trading_sends_the_demo_header(sandbox):
    demo = OkxExchange(sandbox.base_url, demo=True, retry_budget_s=0.5)
    try:
        assert (await demo.describe_key(sandbox.credentials("demo"))).key is not None
        assert (await refusal(demo.describe_key(sandbox.credentials("good")))).code == "50101"
    finally:
        await demo.aclose()


# ---- clock, pairs, orders --------------------------------------------------------------------------------


async def test_the_clock_follows_okx(okx):
    offset = await okx.sync_clock_if_older_than(0)
    assert offset is not None and abs(offset) < 2.0
    assert await okx.sync_clock_if_older_than(3600) is None


async def test_trading_pairs_name_pair_symbol_and_tradability(okx):
    pairs = await okx.trading_pairs()
    assert set(pairs) == {TradingPair("btcusdt", "BTC-USDT", True), TradingPair("ethusdt", "ETH-USDT", True),
                          TradingPair("lunausdt", "LUNA-USDT", False), TradingPair("newusdt", "NEW-USDT", False)}


async def test_an_order_is_placed_in_cash_mode(okx, sandbox):
    placed = await okx.place_order(sandbox.credentials("good"), SpotOrder(
        pair="btcusdt", side="buy", kind="limit", amount=Decimal("0.00100"), price=Decimal("3E+4"),
        client_order_id="h7order1"), None)
    [recorded] = sandbox.admin.orders()
    assert (placed.order_id, placed.client_order_id) == (recorded["ord_id"], "h7order1")
    assert (recorded["inst_id"], recorded["td_mode"], recorded["side"], recorded["ord_type"], recorded["sz"],
            recorded["px"]) == ("BTC-USDT", "cash", "buy", "limit", "0.001", "30000")


async def test_a_refused_order_raises_its_scode(okx, sandbox):
    order = SpotOrder(pair="lunausdt", side="sell", kind="market", amount=Decimal("1"))
    error = await refusal(okx.place_order(sandbox.credentials("good"), order, None))
    assert (error.kind, error.code, error.message) == (
        K.BAD_REQUEST, "51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist.")
    assert sandbox.admin.orders() == []


async def test_an_unlisted_pair_is_refused_before_sending(okx, sandbox):
    order = SpotOrder(pair="dogeusdt", side="buy", kind="market", amount=Decimal("5"))
    error = await refusal(okx.place_order(sandbox.credentials("good"), order, None))
    assert (error.kind, error.code) == (K.BAD_REQUEST, "unknown-pair")


async def test_a_read_only_key_cannot_place_orders(okx, sandbox):
    order = SpotOrder(pair="btcusdt", side="buy", kind="market", amount=Decimal("5"))
    error = await refusal(okx.place_order(sandbox.credentials("read-only"), order, None))
    assert (error.kind, error.code) == (K.NO_PERMISSION, "50120")


# ---- faults ----------------------------------------------------------------------------------------------


async def test_a_transient_fault_is_retried(okx, sandbox):
    sandbox.admin.set_fault(ACCOUNT_CONFIG_PATH, fail_next=1)
    assert (await okx.describe_key(sandbox.credentials("good"))).key is not None
    counts = sandbox.admin.request_counts()[f"GET {ACCOUNT_CONFIG_PATH}"]
    assert (counts["50026"], counts["ok"]) == (1, 1)


async def test_maintenance_past_the_budget_is_transient(okx, sandbox):
    sandbox.admin.set_fault(ACCOUNT_CONFIG_PATH, maintenance=True)
    error = await refusal(okx.describe_key(sandbox.credentials("good")))
    assert (error.kind, error.code, error.transient) == (K.MAINTENANCE, "50001", True)


async def test_the_rate_limit_answer_is_transient(okx, sandbox):
    sandbox.admin.set_rate_limit(ACCOUNT_CONFIG_PATH, requests=1, window_ms=60_000)
    await okx.describe_key(sandbox.credentials("good"))
    error = await refusal(okx.describe_key(sandbox.credentials("good")))
    assert (error.kind, error.code, error.http_status) == (K.RATE_LIMITED, "50011", 429)
