import asyncio

from pydantic import SecretStr

from services.validator.handlers import ValidatorDeps, handle_binding_accepted
from services.validator.inspection import KeyInspection
from services.validator.verdict import KeyVerdict
from shared.adapters.htx.errors import HtxErrorKind, HtxTransientError
from shared.contracts.events import BindingAccepted, HtxKeyFacts, derived_event_id, utc_now
from shared.contracts.reasons import ReasonCode, reason
from shared.contracts.routing import Topic
from shared.contracts.states import BindingState
from tests.builders import topic_of
from tests.fakes import AT, InMemoryVault, fake_seal

FACTS = HtxKeyFacts(uid=7, spot_account_id=10, permissions=["readOnly", "trade"], ip_addresses=["203.0.113.10"],
                    valid_days=-1, key_status="normal")


def accepted(secret="s3cret", sealed_for="u1"):
    return BindingAccepted(event_id=derived_event_id("accepted", "u1", "r1"), binding_id="b1", request_id="r1",
                           user_id="u1", exchange="htx", label="", access_key="ak-000000000001",
                           secret_key_sealed=fake_seal(secret, sealed_for), trading_pairs=["btcusdt"],
                           requested_at=utc_now(), accepted_at=utc_now())


def inspector(result=None, error=None, seen=None):
    async def inspect(credentials):
        if seen is not None:
            seen.append(credentials)
        if error:
            raise error
        return result
    return inspect


async def no_wait():
    return None


def deps(**kwargs):
    return ValidatorDeps(vault=InMemoryVault(), inspect=inspector(**kwargs), htx_deadline_s=2.0, pace_recheck=no_wait,
                         inspection_turns=asyncio.Semaphore(4))


def by_topic(outgoing):
    return {topic_of(m): m for m in outgoing}


async def test_a_good_key_is_validated_with_htx_facts_and_the_secret_stays_sealed():
    seen = []
    event = accepted()
    good = KeyInspection(KeyVerdict(), FACTS)
    out = by_topic(await handle_binding_accepted(event, deps(result=good, seen=seen), at=AT))
    assert seen[0].secret_key == SecretStr("s3cret") and seen[0].access_key == "ak-000000000001"
    validated = out[Topic.BINDING_VALIDATED]
    assert validated.htx == FACTS and validated.secret_key_sealed == event.secret_key_sealed
    assert "s3cret" not in validated.model_dump_json()
    assert out[Topic.BINDING_STATUS].state == BindingState.VALIDATED


async def test_every_rejection_and_warning_is_reported():
    verdict = KeyVerdict(rejections=[reason(ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN),
                                      reason(ReasonCode.IP_BINDING_MISSING)],
                         warnings=[reason(ReasonCode.KEY_EXPIRING, valid_days=7)])
    out = by_topic(await handle_binding_accepted(accepted(), deps(result=KeyInspection(verdict, FACTS)), at=AT))
    assert Topic.BINDING_VALIDATED not in out
    assert out[Topic.BINDING_STATUS].reason_codes == [
        ReasonCode.PERMISSION_WITHDRAW_FORBIDDEN, ReasonCode.IP_BINDING_MISSING, ReasonCode.KEY_EXPIRING]


async def test_a_secret_sealed_for_another_user_is_unreadable_and_htx_is_not_called():
    seen = []
    out = by_topic(await handle_binding_accepted(accepted(sealed_for="u2"), deps(result=None, seen=seen), at=AT))
    assert out[Topic.BINDING_STATUS].reason_codes == [ReasonCode.SECRET_UNREADABLE] and not seen


async def test_htx_trouble_tells_the_user_to_retry_not_to_fix_the_key():
    error = HtxTransientError(HtxErrorKind.UNAVAILABLE, "gateway-internal-error", "Failed to load data.")
    out = by_topic(await handle_binding_accepted(accepted(), deps(error=error), at=AT))
    assert out[Topic.BINDING_STATUS].reason_codes == [ReasonCode.EXCHANGE_UNAVAILABLE]
    assert "do not need to change the key" in out[Topic.BINDING_STATUS].reasons[0].hint


async def test_a_key_waiting_for_its_turn_at_htx_does_not_spend_its_deadline_waiting():
    """A restart's burst: keys beyond the turns wait, and each one's HTX deadline counts from its own turn."""

    async def slow_but_in_time(credentials):
        await asyncio.sleep(0.3)
        return KeyInspection(KeyVerdict(), FACTS)

    one_turn = ValidatorDeps(vault=InMemoryVault(), inspect=slow_but_in_time, htx_deadline_s=0.5,
                             pace_recheck=no_wait, inspection_turns=asyncio.Semaphore(1))
    burst = await asyncio.gather(*(handle_binding_accepted(accepted(), one_turn, at=AT) for _ in range(3)))
    assert all(Topic.BINDING_VALIDATED in by_topic(out) for out in burst)
