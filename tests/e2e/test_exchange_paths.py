"""The whole path of a Bybit and of an OKX key on the real stack, past the verdict: its whitelist judged against that
exchange's live symbol list (changed at run time through the sandbox's admin API), key-health sweeps that follow the
key as its user changes it on the exchange, the order gate placing an order on that exchange's sandbox signed inside
Vault, and revocation. HTX's own path is tests/e2e/test_binding_pipeline.py, test_key_health.py and
tests/clients/trading/test_engine_stack.py; the verdicts themselves are tests/e2e/test_exchange_verdicts.py."""

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest

from shared.adapters.vault.layout import TRANSIT_MOUNT, exchange_key
from shared.clients.trading import OrderRefusalReason, OrderRefused, OrderRequest, order_gate
from shared.contracts.exchanges import ExchangeName
from shared.contracts.pairs import normalise_pairs
from shared.contracts.reasons import API_PAGES, ReasonCode
from shared.contracts.secrets import mask_access_key
from shared.contracts.states import BindingState
from shared.runtime.config import EngineSettings
from tests.clients.trading.test_engine_stack import active_binding, order_audits
from tests.e2e.helpers import TERMINAL, WAIT_S, Key, bind, fresh_bybit_key, fresh_okx_key, new_user, states
from tests.e2e.test_key_health import bind_active, sweep_and_collect
from tests.vault_admin import audit_responses

pytestmark = pytest.mark.stack
S = BindingState
R = ReasonCode
BUY_BTC = OrderRequest("BTC/USDT", "buy", "limit", Decimal("0.001"), Decimal("30000"))
BUY_ETH = OrderRequest("ETH/USDT", "buy", "limit", Decimal("0.01"), Decimal("2000"))
# The whitelist service reloads every exchange's list each HASH7_SYMBOL_REFRESH_S (1 s in the tests' pipeline,
# tests/fixtures/pipeline.py): a change on the exchange is followed well within this.
FOLLOWS_WITHIN_S = 15.0


@dataclass(frozen=True)
class Venue:
    """One exchange's sandbox as these tests drive it: its keys, its symbol list and its orders, each in the
    exchange's own shapes (deploy/sandbox/bybit/scenario.py, deploy/sandbox/okx/scenario.py)."""

    name: ExchangeName
    sandbox: Any
    # A new good key on a new exchange user of its own: both exchanges limit calls per user, and a sweep re-checks
    # every binding of the session, so keys sharing the demo user would share its windows
    # (shared/adapters/okx/README.md#rate-limits: 5 account-config calls per 2 s).
    fresh_key: Callable[[], Key]
    # (base coin, tradable) -> the symbol entry the sandbox's admin API takes.
    symbol_entry: Callable[[str, bool], dict[str, Any]]
    put_symbol: Callable[[dict[str, Any]], None]
    # (allowed) -> the key's changes that grant or drop the Withdraw permission.
    withdraw: Callable[[bool], dict[str, Any]]
    # (bound) -> the key's changes that link it to Hash7's IPs, or to none.
    ip_binding: Callable[[bool], dict[str, Any]]
    # The sandbox's order record: its id's and its instrument's fields, and the instrument of BTC/USDT.
    order_id_field: str
    order_symbol_field: str
    btc_usdt: str

    def list_pair(self, base: str, *, tradable: bool) -> str:
        """List base/USDT on this exchange alone (or change its state there); the pair as the app writes it."""
        self.put_symbol(self.symbol_entry(base, tradable))
        return f"{base}/USDT"

    def change_key(self, key: Key, changes: dict[str, Any]) -> None:
        self.sandbox.admin.update_key(key.access_key, **changes)

    def orders_of(self, key: Key) -> list[dict[str, Any]]:
        return [order for order in self.sandbox.admin.orders() if order["api_key"] == key.access_key]


def _bybit(sandbox: Any) -> Venue:
    good = sandbox.key_entry("good")
    return Venue(
        ExchangeName.BYBIT, sandbox, lambda: fresh_bybit_key(sandbox, user={}),
        lambda base, tradable: {"symbol": f"{base}USDT", "base_coin": base, "quote_coin": "USDT",
                                "status": "Trading" if tradable else "Closed"},
        sandbox.admin.put_symbol,
        lambda allowed: {"permissions": {**good["permissions"], **({"Wallet": ["Withdraw"]} if allowed else {})}},
        lambda bound: {"ips": good["ips"] if bound else ["*"]},
        "order_id", "symbol", "BTCUSDT")


def _okx(sandbox: Any) -> Venue:
    _, good = sandbox.entry("good")
    return Venue(
        ExchangeName.OKX, sandbox, lambda: fresh_okx_key(sandbox, user={}),
        lambda base, tradable: {"inst_id": f"{base}-USDT", "base_ccy": base, "quote_ccy": "USDT",
                                "state": "live" if tradable else "suspend"},
        sandbox.admin.put_instrument,
        lambda allowed: {"perm": good["perm"] + (",withdraw" if allowed else "")},
        lambda bound: {"ip": good["ip"] if bound else ""},
        "ord_id", "inst_id", "BTC-USDT")


VENUES = {ExchangeName.BYBIT: ("bybit_sandbox", _bybit), ExchangeName.OKX: ("okx_sandbox", _okx)}


def venue_of(request: pytest.FixtureRequest, name: ExchangeName) -> Venue:
    fixture, make = VENUES[name]
    return make(request.getfixturevalue(fixture))


@pytest.fixture(params=list(VENUES), ids=str)
def venue(request: pytest.FixtureRequest) -> Venue:
    return venue_of(request, request.param)


@pytest.fixture
def other_venue(request: pytest.FixtureRequest, venue: Venue) -> Venue:
    """The other of Bybit and OKX."""
    [other] = set(VENUES) - {venue.name}
    return venue_of(request, other)


@pytest.fixture
def engine_settings(pipeline, sandbox_urls) -> EngineSettings:
    urls = {f"{name.value}_base_url": url for name, url in sandbox_urls.items()}
    return EngineSettings(**pipeline.settings.model_dump(exclude=set(urls)), **urls)


@pytest.fixture
async def gate(engine_settings) -> AsyncIterator[Any]:
    async with order_gate(engine_settings) as order_gate_:
        yield order_gate_


def new_base() -> str:
    """A coin no exchange lists yet (each test's own, as the sandboxes live for the whole session)."""
    return f"Q{secrets.token_hex(4).upper()}"


def assert_names_exchange(status, venue: Venue) -> None:
    assert status.exchange == venue.name, status
    assert all(venue.name.display_name in f"{r.message} {r.hint}" for r in status.reasons), status.reasons


async def whitelist_until(client, user: str, binding_id: str, pairs: list[str], state: BindingState):
    """Ask for the whitelist until it ends in state (the service's next symbol-list refresh), for up to
    FOLLOWS_WITHIN_S; the last answer."""
    deadline = asyncio.get_running_loop().time() + FOLLOWS_WITHIN_S
    while True:
        timeline = await client.wait_for(await client.set_whitelist(user, binding_id, pairs), TERMINAL, WAIT_S)
        if timeline[-1].state == state or asyncio.get_running_loop().time() > deadline:
            return timeline[-1]
        await asyncio.sleep(0.5)


# ---- the whitelist, against the exchange's live list ------------------------------------------------------------


async def test_the_whitelist_is_judged_by_the_exchanges_own_live_list_and_follows_its_changes(
        client, venue: Venue, other_venue: Venue):
    user = new_user()
    bound = await bind(client, user, venue.fresh_key())
    assert states(bound)[-1] == S.AWAITING_WHITELIST and bound[-1].reason_codes == [R.WHITELIST_EMPTY]
    assert bound[-1].exchange == venue.name  # whitelist_empty's words are the same on every exchange
    binding_id = bound[0].binding_id

    # Listed at run time: a pair only this exchange lists, one only the other lists, one this exchange halts.
    only_here = venue.list_pair(new_base(), tradable=True)
    only_there = other_venue.list_pair(new_base(), tradable=True)
    halted = venue.list_pair(new_base(), tradable=False)
    active = await whitelist_until(client, user, binding_id, [only_here], S.ACTIVE)
    assert active.state == S.ACTIVE, active.reasons
    assert active.exchange == venue.name

    refused = await whitelist_until(client, user, binding_id, [only_here, only_there, halted], S.REJECTED)
    assert refused.state == S.REJECTED and refused.reason_codes == [R.PAIR_UNKNOWN, R.PAIR_NOT_TRADABLE]
    [there, halt] = normalise_pairs([only_there, halted])
    assert refused.reasons[0].message == f"{venue.name.display_name} has no spot trading pair {there}."
    assert refused.reasons[1].message == f"{venue.name.display_name} does not allow API trading on {halt} right now."
    assert refused.exchange == venue.name

    # The exchange halts trading in the pair the binding trades: the next whitelist naming it is refused.
    venue.list_pair(only_here.split("/")[0], tradable=False)
    now_halted = await whitelist_until(client, user, binding_id, [only_here], S.REJECTED)
    assert now_halted.state == S.REJECTED and now_halted.reason_codes == [R.PAIR_NOT_TRADABLE], now_halted.reasons
    # And the other exchange's pair becomes this one's too once it lists it.
    venue.list_pair(only_there.split("/")[0], tradable=True)
    assert (await whitelist_until(client, user, binding_id, [only_there], S.ACTIVE)).state == S.ACTIVE


# ---- key-health sweeps ------------------------------------------------------------------------------------------


async def test_sweeps_find_a_key_changed_on_the_exchange_invalid_and_active_again_once_restored(
        client, venue: Venue):
    keys = {"withdraw": venue.fresh_key(), "no_ip": venue.fresh_key(), "unchanged": venue.fresh_key()}
    bindings = {name: await bind_active(client, key) for name, key in keys.items()}

    venue.change_key(keys["withdraw"], venue.withdraw(True))
    venue.change_key(keys["no_ip"], venue.ip_binding(False))
    first = await sweep_and_collect(client, bindings.values())
    for name, code in (("withdraw", R.PERMISSION_WITHDRAW_FORBIDDEN), ("no_ip", R.IP_BINDING_MISSING)):
        status = first.get(bindings[name])
        assert status is not None, f"the sweep said nothing of the {name} key"
        assert status.state == S.INVALID and code in status.reason_codes, (name, status.state, status.reason_codes)
        assert_names_exchange(status, venue)
    assert bindings["unchanged"] not in first

    venue.change_key(keys["withdraw"], venue.withdraw(False))
    venue.change_key(keys["no_ip"], venue.ip_binding(True))
    second = await sweep_and_collect(client, bindings.values())
    assert {name for name, binding in bindings.items() if binding in second} == {"withdraw", "no_ip"}
    assert all(second[bindings[name]].state == S.ACTIVE for name in ("withdraw", "no_ip"))
    assert all(second[bindings[name]].exchange == venue.name for name in ("withdraw", "no_ip"))


# ---- the order gate ---------------------------------------------------------------------------------------------


async def test_the_order_gate_places_a_whitelisted_order_on_the_exchange_signed_in_vault_and_refuses_others(
        client, gate, venue: Venue, pipeline, bootstrapped_stack):
    user, key = new_user(), venue.fresh_key()
    binding_id = await active_binding(client, user, key)

    # Accepted by the sandbox, which checks the signature with the key's secret (and OKX's passphrase) as the
    # exchange does: Vault signed with the very secret the user bound.
    placed = await gate.place(user, binding_id, BUY_BTC)
    [order] = venue.orders_of(key)
    assert order[venue.order_symbol_field] == venue.btc_usdt
    assert str(order[venue.order_id_field]) == placed.order_id

    with pytest.raises(OrderRefused) as refused:
        await gate.place(user, binding_id, BUY_ETH)
    assert refused.value.reason is OrderRefusalReason.PAIR_NOT_WHITELISTED
    assert len(venue.orders_of(key)) == 1

    placed_audit, refused_audit = await order_audits(gate, pipeline.settings, binding_id)
    assert (placed_audit.outcome, placed_audit.access_key_masked) == ("order_placed", mask_access_key(key.access_key))
    assert placed_audit.details["exchange"] == venue.name and placed_audit.details["order_id"] == placed.order_id
    assert (refused_audit.outcome, refused_audit.details["reason"]) == ("order_refused", "pair_not_whitelisted")
    # Signed by Vault with the binding's own Transit key, as the trading engine.
    answered = audit_responses(bootstrapped_stack.run_dir)
    [sign_request_id] = placed_audit.details["vault_sign_request_ids"]
    signed = answered[sign_request_id]
    assert signed["request"]["path"] == f"{TRANSIT_MOUNT}/hmac/{exchange_key(user, binding_id)}/sha2-256"
    assert "trading-engine" in signed["auth"]["policies"] and not signed.get("error")


# ---- revocation -------------------------------------------------------------------------------------------------


async def test_a_revoked_binding_is_refused_by_the_gate_and_its_user_sent_to_the_exchanges_api_page(
        client, gate, venue: Venue):
    user, key = new_user(), venue.fresh_key()
    binding_id = await active_binding(client, user, key)
    await gate.place(user, binding_id, BUY_BTC)

    revoked = await client.wait_for(await client.revoke(user, binding_id), TERMINAL, WAIT_S)
    assert revoked[-1].state == S.REVOKED and revoked[-1].exchange == venue.name
    page = API_PAGES[venue.name]
    assert f"{page[0].lower()}{page[1:]}" in revoked[-1].details["next_step"]
    assert mask_access_key(key.access_key) in revoked[-1].details["next_step"]

    with pytest.raises(OrderRefused) as refused:
        await gate.place(user, binding_id, BUY_BTC)
    assert refused.value.reason is OrderRefusalReason.BINDING_REVOKED
    assert len(venue.orders_of(key)) == 1
