
import asyncio
import uuid
from datetime import timedelta

from pydantic import SecretStr

from services.validator.handlers import ValidatorDeps, handle_recheck_requested
from services.validator.inspection import KeyInspection
from services.validator.pacing import Pacer
from services.validator.verdict import KeyVerdict
from services.vault_writer.handlers import VaultWriterDeps, handle_binding_validated, handle_sweep_requested
from services.whitelist.handlers import (
    WhitelistDeps,
    handle_binding_rechecked,
    handle_binding_stored,
    handle_whitelist_requested,
)
from shared.adapters.request_signing import LocalHmacSigner
from shared.adapters.vault.layout import binding_path, whitelist_path
from shared.contracts.events import BindingRechecked, SweepRequested, WhitelistRequested, utc_now
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from tests.builders import SECRET, stored, topic_of, validated
from tests.fakes import AT, InMemoryVault
from tests.services.whitelist.test_handlers import catalog, store_binding


def of(outgoing, topic):
    return [m for m in outgoing if topic_of(m) == topic]


def sweep(request_id="s1", sweep_id="manual-1"):
    return SweepRequested(request_id=request_id, sweep_id=sweep_id, requested_at=utc_now())


async def test_a_sweep_asks_to_recheck_every_stored_binding_by_name_only():
    vault = InMemoryVault()
    for user, binding, key in (("u1", "b1", "ak-000000000001"), ("u1", "b2", "ak-000000000002"),
                               ("u2", "b3", "ak-000000000003")):
        await handle_binding_validated(validated(user_id=user, binding_id=binding, request_id=binding, access_key=key),
                                       VaultWriterDeps(vault), at=AT)
    rechecks = of(await handle_sweep_requested(sweep(), VaultWriterDeps(vault), at=AT), Topic.BINDING_RECHECK_REQUESTED)
    assert sorted((r.user_id, r.binding_id) for r in rechecks) == [("u1", "b1"), ("u1", "b2"), ("u2", "b3")]
    assert all("secret" not in r.model_dump_json() and "access_key" not in r.model_dump_json() for r in rechecks)


async def test_a_sweep_runs_once_however_many_instances_ask():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    first = await handle_sweep_requested(sweep("from-instance-a", "scheduled-7"), VaultWriterDeps(vault), at=AT)
    other = await handle_sweep_requested(sweep("from-instance-b", "scheduled-7"), VaultWriterDeps(vault), at=AT)
    redelivered = await handle_sweep_requested(sweep("from-instance-a", "scheduled-7"), VaultWriterDeps(vault), at=AT)
    assert len(of(first, Topic.BINDING_RECHECK_REQUESTED)) == 1
    assert of(other, Topic.BINDING_RECHECK_REQUESTED) == [] and of(other, Topic.AUDIT)[0].outcome == "already_claimed"
    assert of(redelivered, Topic.BINDING_RECHECK_REQUESTED) == of(first, Topic.BINDING_RECHECK_REQUESTED)


async def test_the_validator_rechecks_with_the_same_verdict_and_concludes_nothing_when_htx_is_down():
    vault = InMemoryVault()
    await handle_binding_validated(validated(), VaultWriterDeps(vault), at=AT)
    [recheck] = of(await handle_sweep_requested(sweep(), VaultWriterDeps(vault), at=AT),
                   Topic.BINDING_RECHECK_REQUESTED)
    paced = []

    async def pace():
        paced.append(1)

    async def withdraw_enabled(exchange, credentials):
        # Signed inside Vault with the binding's key, as the stored secret would sign.
        assert await credentials.signer.sign(["GET"]) == await LocalHmacSigner(SecretStr(SECRET)).sign(["GET"])
        return KeyInspection(KeyVerdict(rejections=[reason(ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN, "htx")]), None)

    checking = ValidatorDeps(vault, withdraw_enabled, 2.0, pace, asyncio.Semaphore(4))
    [result] = of(await handle_recheck_requested(recheck, checking, at=AT), Topic.BINDING_RECHECKED)
    assert result.checked and [r.code for r in result.rejections] == [ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN]
    assert paced == [1]

    async def down(exchange, credentials):
        raise TimeoutError

    htx_down = ValidatorDeps(vault, down, 2.0, pace, asyncio.Semaphore(4))
    [unknown] = of(await handle_recheck_requested(recheck, htx_down, at=AT), Topic.BINDING_RECHECKED)
    assert not unknown.checked and unknown.rejections == []


def rechecked(rejections=(), warnings=(), sweep_request_id="s1", sweep_started_at=None):
    return BindingRechecked(event_id=uuid.uuid4(), sweep_request_id=sweep_request_id, user_id="u1",
                            binding_id="b1", exchange="htx", access_key_masked="ak-0…0001", checked=True,
                            sweep_started_at=sweep_started_at or utc_now(), rejections=list(rejections),
                            warnings=list(warnings), checked_at=utc_now())


async def active_binding():
    vault, cat = InMemoryVault(), catalog()
    await store_binding(vault)
    await handle_binding_stored(stored(), WhitelistDeps(vault, cat), at=AT)
    return WhitelistDeps(vault, cat)


async def test_health_changes_drive_invalid_expiring_and_back_to_active_and_nothing_else_emits():
    deps = await active_binding()
    assert of(await handle_binding_rechecked(rechecked(), deps, at=AT), Topic.BINDING_STATUS) == []
    key_invalid = reason(ReasonCode.KEY_INVALID, "htx")
    [invalid] = of(await handle_binding_rechecked(rechecked([key_invalid], sweep_request_id="s2"),
                                                  deps, at=AT),
                   Topic.BINDING_STATUS)
    assert invalid.state == BindingState.INVALID and invalid.reason_codes == [ReasonCode.KEY_INVALID]
    assert of(await handle_binding_rechecked(rechecked([reason(ReasonCode.KEY_INVALID, "htx")], sweep_request_id="s3"),
                                             deps, at=AT),
              Topic.BINDING_STATUS) == []
    [expiring] = of(await handle_binding_rechecked(
        rechecked(warnings=[reason(ReasonCode.KEY_EXPIRING, "htx", valid_days=3)], sweep_request_id="s4"), deps, at=AT),
        Topic.BINDING_STATUS)
    assert expiring.state == BindingState.EXPIRING and "3 day" in expiring.reasons[0].message
    [recovered] = of(await handle_binding_rechecked(rechecked(sweep_request_id="s5"), deps, at=AT),
                     Topic.BINDING_STATUS)
    assert recovered.state == BindingState.ACTIVE
    assert (await deps.vault.read(whitelist_path("u1", "b1"))).data["pairs"] == ["btcusdt"]


async def test_a_recheck_of_a_binding_revoked_meanwhile_changes_nothing():
    deps = await active_binding()
    await deps.vault.delete_all(binding_path("u1", "b1"))
    assert await handle_binding_rechecked(rechecked([reason(ReasonCode.KEY_INVALID, "htx")]), deps, at=AT) == []


async def test_the_pacer_spaces_callers_evenly():
    now, slept = [0.0], []

    async def sleep(seconds):
        slept.append(round(seconds, 3))
        now[0] += seconds

    pacer = Pacer(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        await pacer.wait()
    assert slept == [0.25, 0.25]


async def test_a_copy_of_binding_stored_never_heals_a_key_a_sweep_found_invalid():
    # Another instance, which did not see the first copy, handles the second one (at-least-once delivery).
    deps = await active_binding()
    await handle_binding_rechecked(rechecked([reason(ReasonCode.KEY_INVALID, "htx")]), deps, at=AT)
    fresh_instance = WhitelistDeps(deps.vault, catalog())
    out = await handle_binding_stored(stored(), fresh_instance, at=AT)
    assert of(out, Topic.BINDING_STATUS) == [] and [a.outcome for a in of(out, Topic.AUDIT)] == ["superseded"]
    assert (await deps.vault.read(whitelist_path("u1", "b1"))).data["health"] == "invalid"


async def test_a_genuine_old_recheck_sent_again_does_not_undo_a_newer_one():
    deps = await active_binding()
    healthy_then = rechecked(sweep_request_id="s1")
    invalid_now = rechecked([reason(ReasonCode.KEY_INVALID, "htx")], sweep_request_id="s2")
    await handle_binding_rechecked(healthy_then, deps, at=AT)
    [invalid] = of(await handle_binding_rechecked(invalid_now, deps, at=AT), Topic.BINDING_STATUS)
    assert invalid.state == BindingState.INVALID
    replayed = await handle_binding_rechecked(healthy_then, deps, at=AT)
    assert of(replayed, Topic.BINDING_STATUS) == [] and of(replayed, Topic.AUDIT)[0].outcome == "stale_recheck_ignored"
    assert (await deps.vault.read(whitelist_path("u1", "b1"))).data["health"] == "invalid"


async def test_a_sweep_that_started_before_the_key_was_stored_says_nothing_about_it():
    started_before = utc_now()
    deps = await active_binding()
    key_invalid = reason(ReasonCode.KEY_INVALID, "htx")
    late = await handle_binding_rechecked(rechecked([key_invalid], sweep_started_at=started_before),
                                          deps, at=AT)
    assert of(late, Topic.BINDING_STATUS) == []
    assert (await deps.vault.read(whitelist_path("u1", "b1"))).data["health"] == "healthy"


async def test_a_binding_stored_about_a_version_rotated_away_changes_nothing():
    deps = await active_binding()
    await deps.vault.write(binding_path("u1", "b1"), {"access_key": "rotated"}, cas=1)
    out = await handle_binding_stored(stored(), WhitelistDeps(deps.vault, catalog()), at=AT)
    assert of(out, Topic.BINDING_STATUS) == [] and of(out, Topic.AUDIT)[0].outcome == "superseded"


async def test_a_recheck_that_gives_no_sweep_start_is_ordered_after_nothing_and_changes_nothing():
    deps = await active_binding()
    unordered = rechecked([reason(ReasonCode.KEY_INVALID, "htx")]).model_copy(update={"sweep_started_at": None})
    out = await handle_binding_rechecked(unordered, deps, at=AT)
    assert of(out, Topic.BINDING_STATUS) == [] and of(out, Topic.AUDIT)[0].outcome == "stale_recheck_ignored"


async def test_a_copy_of_binding_stored_after_a_whitelist_change_says_nothing_new():
    deps = await active_binding()
    await handle_whitelist_requested(WhitelistRequested(request_id="w1", user_id="u1", binding_id="b1",
                                                        trading_pairs=["ethusdt"], requested_at=utc_now()),
                                     deps, at=AT)
    out = await handle_binding_stored(stored(), WhitelistDeps(deps.vault, catalog()), at=AT + timedelta(minutes=5))
    assert of(out, Topic.BINDING_STATUS) == [] and of(out, Topic.AUDIT)[0].outcome == "already_applied"
    assert (await deps.vault.read(whitelist_path("u1", "b1"))).data["pairs"] == ["ethusdt"]


async def test_a_whitelist_request_without_its_time_cannot_overrule_one_that_gave_it():
    deps = await active_binding()
    await handle_whitelist_requested(WhitelistRequested(request_id="w1", user_id="u1", binding_id="b1",
                                                        trading_pairs=["ethusdt"], requested_at=utc_now()),
                                     deps, at=AT)
    out = await handle_whitelist_requested(WhitelistRequested(request_id="w0", user_id="u1", binding_id="b1",
                                                              trading_pairs=["btcusdt"]), deps, at=AT)
    assert [a.outcome for a in of(out, Topic.AUDIT)] == ["superseded"]
    assert (await deps.vault.read(whitelist_path("u1", "b1"))).data["pairs"] == ["ethusdt"]


async def test_a_recheck_that_reaches_the_whitelist_before_its_binding_s_store_leaves_the_bind_its_pairs_and_status():
    """A sweep started as the key was stored: its re-check may come first. The bind still gets its pairs and its
    final status, with the re-check's judgement of the key; a copy of binding.stored after that says nothing new."""
    vault, cat = InMemoryVault(), catalog()
    await store_binding(vault)
    deps = WhitelistDeps(vault, cat)
    expiring = [reason(ReasonCode.KEY_EXPIRING, "htx", valid_days=3)]
    [early] = of(await handle_binding_rechecked(rechecked(warnings=expiring), deps, at=AT), Topic.BINDING_STATUS)
    assert early.state == BindingState.AWAITING_WHITELIST
    [bound] = of(await handle_binding_stored(stored(), deps, at=AT), Topic.BINDING_STATUS)
    assert (bound.state, bound.request_id) == (BindingState.EXPIRING, "r1")
    assert (await vault.read(whitelist_path("u1", "b1"))).data["pairs"] == ["btcusdt"]
    again = await handle_binding_stored(stored(), deps, at=AT + timedelta(minutes=1))
    assert of(again, Topic.BINDING_STATUS) in ([], [bound])
