"""The sandbox's admin API: changes at run time are what HTX then answers; bad payloads are refused."""

import httpx
import pytest
from pydantic import SecretStr

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.htx.client import HtxClient
from shared.adapters.request_signing import LocalHmacSigner

pytestmark = pytest.mark.stack

NEW_KEY = {"access_key": "n3wk3y00-00000000-00000000-00001", "secret_key": "new-secret", "note": "new",
           "permission": "readOnly,trade", "ip_addresses": "203.0.113.10,203.0.113.11"}
NEW_CREDENTIALS = ExchangeCredentials(NEW_KEY["access_key"], LocalHmacSigner(SecretStr(NEW_KEY["secret_key"])))


@pytest.fixture
def sandbox(clean_htx_sandbox):
    return clean_htx_sandbox


@pytest.fixture
async def client(sandbox):
    async with HtxClient(sandbox.base_url, retry_budget_s=0.0) as htx:
        yield htx


def admin_status(sandbox, method: str, path: str, payload=None) -> int:
    return httpx.request(method, f"{sandbox.base_url}/_sandbox{path}", json=payload, timeout=5).status_code


def test_health(sandbox):
    assert sandbox.admin.health() == {"status": "ok"}


async def test_a_new_user_and_key_are_served(sandbox, client):
    sandbox.admin.put_user({"uid": 777, "accounts": [{"id": 7770001, "type": "spot", "state": "working"}],
                            "api_keys": [NEW_KEY]})
    assert await client.uid(NEW_CREDENTIALS) == 777
    assert [a.id for a in await client.accounts(NEW_CREDENTIALS)] == [7770001]


async def test_putting_a_user_again_replaces_its_keys(sandbox, client):
    sandbox.admin.put_user(sandbox.user("good") | {"api_keys": [NEW_KEY]})
    assert await client.uid(NEW_CREDENTIALS) == 63628520
    with pytest.raises(ExchangeError) as caught:
        await client.uid(sandbox.credentials("good"))
    assert caught.value.kind is ExchangeErrorKind.UNKNOWN_ACCESS_KEY


async def test_a_key_moves_to_the_user_it_is_put_under(sandbox, client):
    sandbox.admin.put_key(sandbox.user("good")["uid"], NEW_KEY)
    assert await client.uid(NEW_CREDENTIALS) == sandbox.user("good")["uid"]
    sandbox.admin.put_key(sandbox.user("withdraw")["uid"], NEW_KEY)
    assert await client.uid(NEW_CREDENTIALS) == sandbox.user("withdraw")["uid"]


async def test_key_fields_change_and_a_deleted_key_is_unknown(sandbox, client):
    good = sandbox.credentials("good")
    updated = sandbox.admin.update_key(good.access_key, permission="readOnly", ip_addresses="", valid_days=5)
    assert (updated["permission"], updated["ip_addresses"], updated["valid_days"]) == ("readOnly", "", 5)
    assert "secret_key" not in updated
    entry = await client.api_key(good, 63628520)
    assert entry is not None and (entry.permission, entry.bound_ips, entry.valid_days) == ("readOnly", [], 5)
    sandbox.admin.delete_key(good.access_key)
    with pytest.raises(ExchangeError) as caught:
        await client.uid(good)
    assert caught.value.kind is ExchangeErrorKind.UNKNOWN_ACCESS_KEY


async def test_accounts_are_added_and_locked(sandbox, client):
    good = sandbox.credentials("good")
    sandbox.admin.put_account(63628520, {"id": 10000019, "type": "margin", "subtype": "btcusdt", "state": "working"})
    sandbox.admin.set_account_state(10000011, "lock")
    states = {a.id: a.state for a in await client.accounts(good)}
    assert states == {10000011: "lock", 10000012: "working", 10000019: "working"}


async def test_symbols_are_added_and_changed(sandbox, client):
    sandbox.admin.put_symbol({"symbol": "newusdt", "base": "new", "quote": "usdt", "state": "pre-online"})
    sandbox.admin.put_symbol({"symbol": "btcusdt", "base": "btc", "quote": "usdt", "state": "suspend"})
    states = {s.symbol: s.state for s in await client.market_symbols(["newusdt", "btcusdt"])}
    assert states == {"newusdt": "pre-online", "btcusdt": "suspend"}


@pytest.mark.parametrize(
    ("method", "path", "payload", "status"),
    [
        ("PATCH", "/keys/nope", {"status": "normal"}, 404),
        ("DELETE", "/keys/nope", None, 404),
        ("PATCH", "/accounts/1", {"state": "lock"}, 404),
        ("PUT", "/users/1/keys", NEW_KEY, 404),
        ("PATCH", "/keys/01d3m0k3-hash7sbx-good0000-00001", {"status": "gone"}, 422),
        ("PATCH", "/keys/01d3m0k3-hash7sbx-good0000-00001", {"secret_key": "x"}, 422),
        ("PATCH", "/accounts/10000011", {"state": "frozen"}, 422),
        ("PUT", "/users/5", {"uid": 6}, 422),
        ("PUT", "/symbols/abcusdt", {"symbol": "xyzusdt", "base": "xyz", "quote": "usdt"}, 422),
        ("PUT", "/symbols/abcusdt", {"symbol": "abcusdt", "base": "abc", "quote": "usdt", "state": "listed"}, 422),
        ("PUT", "/faults", {"endpoint": "*", "error_rate": 2}, 422),
        ("PUT", "/faults", {"endpoint": "*", "explode": True}, 422),
        ("PUT", "/rate-limits", {"endpoint": "*", "requests": 1, "window_ms": 1}, 422),
        ("PUT", "/rate-limits", {"endpoint": "/v2/user/uid", "requests": 0, "window_ms": 1}, 422),
    ],
)
def test_bad_admin_requests_are_refused(sandbox, method, path, payload, status):
    assert admin_status(sandbox, method, path, payload) == status


async def test_reset_restores_the_scenario_and_forgets_what_happened(sandbox, client):
    good = sandbox.credentials("good")
    sandbox.admin.delete_key(good.access_key)
    sandbox.admin.set_fault("*", maintenance=True)
    sandbox.admin.reset()
    assert await client.uid(good) == 63628520
    assert sandbox.admin.request_counts() == {"GET /v2/user/uid": {"total": 1, "ok": 1}}
    assert sandbox.admin.orders() == []


async def test_injected_error_rates_follow_the_seed(sandbox, client):
    def outcomes() -> list[str]:
        sandbox.admin.reset(seed=42)
        sandbox.admin.set_fault("/v1/common/timestamp", error_rate=0.5)
        answers = [httpx.get(f"{sandbox.base_url}/v1/common/timestamp", timeout=5).json()["status"] for _ in range(12)]
        return answers

    first = outcomes()
    assert first == outcomes()
    assert {"ok", "error"} == set(first)


def test_a_fault_of_an_endpoint_overrides_the_one_for_all(sandbox):
    sandbox.admin.set_fault("*", maintenance=True)
    sandbox.admin.set_fault("/v1/common/timestamp", latency_ms=0)
    assert httpx.get(f"{sandbox.base_url}/v1/common/timestamp", timeout=5).json()["status"] == "ok"
    assert httpx.get(f"{sandbox.base_url}/v2/market-status", timeout=5).json()["err-code"] == "system-maintenance"
