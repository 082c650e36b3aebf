from datetime import timedelta

import pytest

from services.whitelist.catalog import CatalogNotLoaded, Catalogs
from services.whitelist.handlers import (
    MAX_PENDING_WHITELISTS,
    WhitelistDeps,
    handle_binding_stored,
    handle_whitelist_requested,
)
from shared.adapters.exchange.port import TradingPair
from shared.adapters.vault.layout import binding_path, exchange_key, revocation_path, whitelist_path
from shared.adapters.vault.records import BindingRecord, KeyRef
from shared.adapters.vault.stores import BindingExchanges, ConcurrentWrite
from shared.contracts.events import BindingStatus, WhitelistRequested
from shared.contracts.exchanges import ExchangeName
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from tests.builders import stored, topic_of, validated
from tests.fakes import AT, CountingVault, InMemoryVault, RacingVault


def catalog():
    """HTX's list loaded (the one exchange of these tests' bindings), the other exchanges' lists not yet."""
    loaded = Catalogs(ExchangeName)
    loaded[ExchangeName.HTX].replace([
        TradingPair("btcusdt", "btcusdt", tradable=True),
        TradingPair("ethusdt", "ethusdt", tradable=True),
        TradingPair("oldusdt", "oldusdt", tradable=False),
        TradingPair("apioffusdt", "apioffusdt", tradable=False),
        TradingPair("cdusdt", "cdusdt", tradable=False),
    ])
    return loaded


async def vault_holding_binding(vault=None):
    """The whitelist service only acts for a binding that is stored in Vault."""
    vault = InMemoryVault() if vault is None else vault
    await store_binding(vault)
    return vault


async def store_binding(vault, user_id="u1", binding_id="b1"):
    """A binding record as the vault-writer writes it (an HTX key)."""
    record = BindingRecord.of(validated(user_id=user_id, binding_id=binding_id),
                              KeyRef(exchange_key(user_id, binding_id), 1), AT)
    await vault.write(binding_path(user_id, binding_id), record.to_vault(), cas=0)


def status_of(outgoing):
    [status] = [m for m in outgoing if topic_of(m) == Topic.BINDING_STATUS]
    return status


async def test_stored_binding_with_valid_pairs_becomes_active_and_whitelist_is_saved():
    vault = await vault_holding_binding()
    status = status_of(await handle_binding_stored(stored(), WhitelistDeps(vault, catalog()), at=AT))
    assert status.state == BindingState.ACTIVE
    assert vault.versions[whitelist_path("u1", "b1")][0]["pairs"] == ["btcusdt"]


async def test_stored_binding_without_pairs_awaits_a_whitelist():
    status = status_of(await handle_binding_stored(
        stored(pairs=None), WhitelistDeps(await vault_holding_binding(), catalog()), at=AT))
    assert status.state == BindingState.AWAITING_WHITELIST and status.reason_codes == [ReasonCode.WHITELIST_EMPTY]


async def test_unknown_and_untradable_pairs_are_all_reported():
    pairs = ("btcusdt", "nosuchusdt", "oldusdt", "apioffusdt", "cdusdt")
    status = status_of(await handle_binding_stored(
        stored(pairs=pairs), WhitelistDeps(await vault_holding_binding(), catalog()), at=AT))
    assert status.state == BindingState.AWAITING_WHITELIST
    assert status.reason_codes == [ReasonCode.PAIR_UNKNOWN, ReasonCode.PAIR_NOT_TRADABLE]
    assert "nosuchusdt" in status.reasons[0].message and "oldusdt, apioffusdt, cdusdt" in status.reasons[1].message


async def test_whitelist_before_binding_is_kept_and_used_when_the_binding_is_stored():
    vault, cat = InMemoryVault(), catalog()
    early = await handle_whitelist_requested(
        WhitelistRequested(request_id="w1", user_id="u1", binding_id="b1", trading_pairs=["ETH/USDT"]),
        WhitelistDeps(vault, cat), at=AT)
    assert status_of(early).state == BindingState.RECEIVED and status_of(early).details["waiting_for"] == "binding"
    await store_binding(vault, "u1", "b1")
    status = status_of(await handle_binding_stored(stored(pairs=None), WhitelistDeps(vault, cat), at=AT))
    assert status.state == BindingState.ACTIVE and status.details["pairs"] == ["ethusdt"]


async def test_a_whitelist_requested_before_the_binding_wins_over_the_pairs_of_the_bind_request():
    vault, cat = InMemoryVault(), catalog()
    early = WhitelistRequested(request_id="w1", user_id="u1", binding_id="b1", trading_pairs=["ETH/USDT"])
    await handle_whitelist_requested(early, WhitelistDeps(vault, cat), at=AT)
    await store_binding(vault, "u1", "b1")
    status = status_of(await handle_binding_stored(stored(pairs=("btcusdt",)), WhitelistDeps(vault, cat), at=AT))
    assert status.state == BindingState.ACTIVE and status.details["pairs"] == ["ethusdt"]
    assert vault.versions[whitelist_path("u1", "b1")][-1]["pairs"] == ["ethusdt"]


async def test_a_new_binding_with_valid_pairs_costs_three_vault_calls_the_binding_check_its_exchange_and_a_write():
    vault = CountingVault()
    await store_binding(vault, "u1", "b1")
    vault.calls.clear()
    status = status_of(await handle_binding_stored(stored(), WhitelistDeps(vault, catalog()), at=AT))
    assert status.state == BindingState.ACTIVE and vault.calls == ["read_metadata", "read", "write"]


async def test_whitelist_after_binding_activates_it_and_a_bad_one_changes_nothing():
    vault, cat = await vault_holding_binding(), catalog()
    await handle_binding_stored(stored(pairs=None), WhitelistDeps(vault, cat), at=AT)
    ok = await handle_whitelist_requested(
        WhitelistRequested(request_id="w1", user_id="u1", binding_id="b1", trading_pairs=["btcusdt"]),
        WhitelistDeps(vault, cat), at=AT)
    assert status_of(ok).state == BindingState.ACTIVE
    bad = await handle_whitelist_requested(
        WhitelistRequested(request_id="w2", user_id="u1", binding_id="b1", trading_pairs=[]),
        WhitelistDeps(vault, cat), at=AT)
    assert status_of(bad).state == BindingState.REJECTED and status_of(bad).reason_codes == [ReasonCode.WHITELIST_EMPTY]
    # The binding's own write (no pairs yet), then the good request's; the bad one wrote nothing.
    assert [v["pairs"] for v in vault.versions[whitelist_path("u1", "b1")]] == [[], ["btcusdt"]]


def two_exchanges():
    """HTX lists btcusdt; Bybit lists solusdt and btcusdt, the latter not trading."""
    cat = catalog()
    cat[ExchangeName.BYBIT].replace([TradingPair("solusdt", "SOLUSDT", tradable=True),
                                     TradingPair("btcusdt", "BTCUSDT", tradable=False)])
    return cat


@pytest.mark.parametrize("event_says", ["bybit", "htx"])
async def test_a_stored_bindings_pairs_are_judged_by_the_exchange_vault_notes_for_it(event_says):
    vault, cat = InMemoryVault(), two_exchanges()
    await BindingExchanges(vault).note_once("u1", "b1", "bybit")
    await store_binding(vault)
    # Whatever binding.stored says, Vault's note decides.
    said = stored(pairs=("solusdt",)).model_copy(update={"exchange": event_says})
    judged = status_of(await handle_binding_stored(said, WhitelistDeps(vault, cat), at=AT))
    assert judged.state == BindingState.ACTIVE and judged.exchange == "bybit"
    refused = status_of(await handle_whitelist_requested(
        WhitelistRequested(request_id="w2", user_id="u1", binding_id="b1", trading_pairs=["btcusdt"]),
        WhitelistDeps(vault, cat), at=AT))
    assert refused.state == BindingState.REJECTED and refused.reason_codes == [ReasonCode.PAIR_NOT_TRADABLE]
    assert refused.exchange == "bybit" and "Bybit does not allow API trading on btcusdt" in refused.reasons[0].message


async def test_pending_pairs_wait_for_any_exchange_and_a_binding_stored_before_bybit_and_okx_is_htxs():
    vault, cat = InMemoryVault(), two_exchanges()
    pending = await handle_whitelist_requested(
        WhitelistRequested(request_id="w1", user_id="u1", binding_id="b1", trading_pairs=["solusdt"]),
        WhitelistDeps(vault, cat), at=AT)
    # Not stored yet: a pair some exchange lists waits for the binding.
    assert status_of(pending).state == BindingState.RECEIVED and status_of(pending).exchange is None
    # Stored with no note: a binding stored before Bybit and OKX, so HTX's, which lists no solusdt.
    await store_binding(vault)
    judged = status_of(await handle_binding_stored(stored(pairs=None), WhitelistDeps(vault, cat), at=AT))
    assert judged.state == BindingState.AWAITING_WHITELIST and judged.reason_codes == [ReasonCode.PAIR_UNKNOWN]
    assert judged.exchange == "htx" and "HTX has no spot trading pair solusdt" in judged.reasons[0].message
    again = status_of(await handle_whitelist_requested(
        WhitelistRequested(request_id="w2", user_id="u1", binding_id="b1", trading_pairs=["solusdt"]),
        WhitelistDeps(vault, cat), at=AT))
    assert again.state == BindingState.REJECTED and again.reason_codes == [ReasonCode.PAIR_UNKNOWN]


async def test_redelivered_whitelist_request_writes_no_second_version():
    vault, cat = InMemoryVault(), catalog()
    request = WhitelistRequested(request_id="w1", user_id="u1", binding_id="b1", trading_pairs=["btcusdt"])
    await handle_whitelist_requested(request, WhitelistDeps(vault, cat), at=AT)
    await handle_whitelist_requested(request, WhitelistDeps(vault, cat), at=AT)
    assert len(vault.versions[whitelist_path("u1", "b1")]) == 1


async def test_a_second_copy_of_stored_arriving_later_repeats_the_identical_status():
    vault, cat = await vault_holding_binding(), catalog()
    first = status_of(await handle_binding_stored(stored(), WhitelistDeps(vault, cat), at=AT))
    again = status_of(await handle_binding_stored(stored(), WhitelistDeps(vault, cat), at=AT + timedelta(seconds=5)))
    assert first.state == BindingState.ACTIVE and again.to_bytes() == first.to_bytes()


async def test_a_stored_binding_revoked_before_its_redelivery_gets_no_whitelist_and_no_status():
    vault = await vault_holding_binding()
    await vault.delete_all(binding_path("u1", "b1"))  # what the vault-writer's revocation does
    out = await handle_binding_stored(stored(), WhitelistDeps(vault, catalog()), at=AT)
    assert [(topic_of(m), m.outcome) for m in out] == [(Topic.AUDIT, "already_revoked")]
    assert whitelist_path("u1", "b1") not in vault.versions


async def test_an_expiring_key_is_reported_as_expiring_not_active():
    warning = reason(ReasonCode.KEY_EXPIRING, "htx", valid_days=5)
    status = status_of(await handle_binding_stored(
        stored(warnings=[warning]), WhitelistDeps(await vault_holding_binding(), catalog()), at=AT))
    assert status.state == BindingState.EXPIRING and "5 day" in status.reasons[0].message


async def test_pairs_are_not_judged_before_the_symbol_list_is_loaded():
    with pytest.raises(CatalogNotLoaded):
        await handle_binding_stored(stored(), WhitelistDeps(await vault_holding_binding(), Catalogs(ExchangeName)),
                                    at=AT)


async def test_a_whitelist_write_that_loses_to_another_request_is_tried_again_from_a_fresh_read():
    vault, cat = RacingVault(), catalog()
    await store_binding(vault, "u1", "b1")
    request = WhitelistRequested(request_id="w2", user_id="u1", binding_id="b1", trading_pairs=["ethusdt"])
    vault.race(whitelist_path("u1", "b1"), {"pairs": ["btcusdt"], "health": "invalid", "request_id": "w1",
                                           "updated_at": AT.isoformat()})
    with pytest.raises(ConcurrentWrite):
        await handle_whitelist_requested(request, WhitelistDeps(vault, cat), at=AT)
    # The runtime retries it in place (a TransientError); the retry keeps what the other request wrote.
    retried = status_of(await handle_whitelist_requested(request, WhitelistDeps(vault, cat), at=AT))
    assert retried.state == BindingState.INVALID
    assert [(v["request_id"], v["health"]) for v in vault.versions[whitelist_path("u1", "b1")]] == [
        ("w1", "invalid"), ("w2", "invalid")]


async def test_whitelists_for_bindings_that_never_come_cannot_pile_up():
    # Another user's binding id, or made-up ones: each would leave a record under the sender's user path.
    vault, cat = InMemoryVault(), catalog()
    deps = WhitelistDeps(vault, cat)
    answers = [await handle_whitelist_requested(WhitelistRequested(
        request_id=f"w{n}", user_id="u1", binding_id=f"someone-elses-{n}", trading_pairs=["btcusdt"]), deps, at=AT)
        for n in range(MAX_PENDING_WHITELISTS + 3)]
    states = [[m.state for m in out if isinstance(m, BindingStatus)] for out in answers]
    assert states == [[BindingState.RECEIVED]] * MAX_PENDING_WHITELISTS + [[BindingState.REJECTED]] * 3
    assert len(await deps.whitelists.binding_ids("u1")) == MAX_PENDING_WHITELISTS
    # A binding of the user's own, once stored, still gets its pairs set.
    await store_binding(vault, "u1", "b-own")
    [own] = [m for m in await handle_whitelist_requested(WhitelistRequested(
        request_id="w-own", user_id="u1", binding_id="b-own", trading_pairs=["btcusdt"]), deps, at=AT)
        if isinstance(m, BindingStatus)]
    assert own.state == BindingState.ACTIVE


async def test_a_whitelist_request_for_a_revoked_binding_leaves_nothing_waiting():
    # A request sent again after the revocation, or an old one replayed: no binding will ever come for it.
    vault = InMemoryVault()
    await vault.write(revocation_path("u1", "b-revoked"), {"request_id": "rv", "access_key_masked": "ak-0…0001",
                                                           "revoked_at": AT.isoformat()}, cas=0)
    out = await handle_whitelist_requested(WhitelistRequested(
        request_id="w-late", user_id="u1", binding_id="b-revoked", trading_pairs=["btcusdt"]),
        WhitelistDeps(vault, catalog()), at=AT)
    [answer] = [m for m in out if isinstance(m, BindingStatus)]
    assert answer.state == BindingState.REJECTED and answer.reason_codes == [ReasonCode.BINDING_UNKNOWN]
    assert whitelist_path("u1", "b-revoked") not in vault.versions
