from datetime import timedelta

import pytest

from services.intake.handlers import IntakeDeps, handle_binding_requested, on_malformed
from services.intake.rules import AttemptLimiter, RequestHistory, binding_id_for
from shared.contracts.events import BindingAccepted, BindingRequested, MalformedEvent, utc_now
from shared.contracts.outcomes import status
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import Party, Topic, route_of
from shared.contracts.states import BindingState, RequestKind
from tests.builders import SECRET, topic_of
from tests.fakes import AT, fake_seal, fake_seal_text


def deps(limit=10, clock=None):
    return IntakeDeps(RequestHistory(clock=lambda: AT), AttemptLimiter(limit, clock=clock or (lambda: 0.0)))


def request(**overrides):
    fields = dict(request_id="r1", user_id="u1", exchange="htx", access_key="ak-000000000001",
                  secret_key_sealed=fake_seal(SECRET, "u1"), trading_pairs=["BTC/USDT"], requested_at=utc_now())
    return BindingRequested(**(fields | overrides))


def by_topic(outgoing):
    found = {}
    for message in outgoing:
        found.setdefault(topic_of(message), []).append(message)
    return found


async def test_a_good_request_is_accepted_normalised_with_a_stable_binding_id():
    out = by_topic(await handle_binding_requested(request(), deps(), at=AT))
    accepted: BindingAccepted = out[Topic.BINDING_ACCEPTED][0]
    assert accepted.binding_id == binding_id_for("u1", "r1") == (
        (await handle_binding_requested(request(), deps(), at=AT))[0].binding_id
    )
    assert accepted.trading_pairs == ["btcusdt"]
    assert out[Topic.BINDING_STATUS][0].state == BindingState.RECEIVED
    assert out[Topic.AUDIT][0].outcome == "accepted"


async def test_every_message_is_keyed_by_user():
    messages = await handle_binding_requested(request(), deps(), at=AT)
    assert {route_of(m, Party.INTAKE).key_of(m) for m in messages} == {"u1"}


async def test_plaintext_secret_is_rejected_and_not_forwarded():
    plaintext = "c405c550-6fa0583b-fb4bc38e-d317e"
    out = await handle_binding_requested(request(secret_key_sealed=plaintext), deps(), at=AT)
    assert Topic.BINDING_ACCEPTED not in by_topic(out)
    status = by_topic(out)[Topic.BINDING_STATUS][0]
    assert status.state == BindingState.REJECTED and status.reason_codes == [ReasonCode.SECRET_NOT_SEALED]
    assert all(plaintext not in m.model_dump_json() for m in out)


async def test_unsupported_exchange_and_unsealed_secret_are_reported_together():
    out = await handle_binding_requested(request(exchange="binance", secret_key_sealed="plain"), deps(), at=AT)
    assert by_topic(out)[Topic.BINDING_STATUS][0].reason_codes == [
        ReasonCode.UNSUPPORTED_EXCHANGE, ReasonCode.SECRET_NOT_SEALED]


async def test_attempts_are_limited_per_user_per_minute():
    now = [0.0]
    shared = deps(limit=2, clock=lambda: now[0])
    results = [by_topic(await handle_binding_requested(request(request_id=f"r{i}"), shared, at=AT)) for i in range(3)]
    assert [r[Topic.BINDING_STATUS][0].state for r in results] == [BindingState.RECEIVED] * 2 + [BindingState.REJECTED]
    assert results[2][Topic.BINDING_STATUS][0].reason_codes == [ReasonCode.TOO_MANY_ATTEMPTS]
    other_request = request(request_id="x", user_id="u2", secret_key_sealed=fake_seal(SECRET, "u2"))
    other_user = by_topic(await handle_binding_requested(other_request, shared, at=AT))
    assert other_user[Topic.BINDING_STATUS][0].state == BindingState.RECEIVED
    now[0] = 60.0
    later = by_topic(await handle_binding_requested(request(request_id="r9"), shared, at=AT))
    assert later[Topic.BINDING_STATUS][0].state == BindingState.RECEIVED


async def test_bad_attempts_count_towards_the_limit_too():
    shared = deps(limit=2)
    for i in range(2):
        await handle_binding_requested(request(request_id=f"bad{i}", exchange="nope"), shared, at=AT)
    out = by_topic(await handle_binding_requested(request(request_id="good"), shared, at=AT))
    assert out[Topic.BINDING_STATUS][0].reason_codes == [ReasonCode.TOO_MANY_ATTEMPTS]


async def test_a_replay_re_emits_the_latest_status_and_does_no_work():
    shared = deps()
    first = by_topic(await handle_binding_requested(request(), shared, at=AT))
    later_status = first[Topic.BINDING_STATUS][0].model_copy(update={"state": BindingState.ACTIVE})
    shared.history.record(later_status)
    replay = by_topic(await handle_binding_requested(request(), shared, at=AT))
    assert Topic.BINDING_ACCEPTED not in replay
    assert replay[Topic.BINDING_STATUS] == [later_status]
    assert replay[Topic.AUDIT][0].outcome == "replayed"


async def test_a_request_still_received_is_accepted_again_identically():
    # Our status went out but maybe not its binding.accepted (a crash in between): accepting again must
    # repeat the very same events, whenever the request comes again.
    shared, bind = deps(), request()
    first = await handle_binding_requested(bind, shared, at=AT)
    shared.history.record(by_topic(first)[Topic.BINDING_STATUS][0])
    again = await handle_binding_requested(bind, shared, at=AT + timedelta(seconds=30))
    assert [m.to_bytes() for m in again if topic_of(m) != Topic.AUDIT] == \
        [m.to_bytes() for m in first if topic_of(m) != Topic.AUDIT]


async def test_a_request_id_whose_latest_status_answers_another_kind_of_request_is_checked_in_full():
    # The app chooses request ids: a whitelist request may carry a binding request's. Its `received` must not
    # let a later binding request with that id skip the checks.
    shared = deps()
    shared.history.record(status(
        exchange="htx", user_id="u1", state=BindingState.RECEIVED, request_id="r1", binding_id="b1",
        occurred_at=AT, kind=RequestKind.WHITELIST))
    plaintext = request(secret_key_sealed="the-plaintext-secret", exchange="binance")
    out = by_topic(await handle_binding_requested(plaintext, shared, at=AT))
    assert Topic.BINDING_ACCEPTED not in out
    assert out[Topic.BINDING_STATUS][0].reason_codes == [ReasonCode.UNSUPPORTED_EXCHANGE, ReasonCode.SECRET_NOT_SEALED]


async def test_a_request_still_received_is_checked_again_before_it_is_accepted_again():
    shared = deps()
    first = await handle_binding_requested(request(), shared, at=AT)
    shared.history.record(by_topic(first)[Topic.BINDING_STATUS][0])
    # The same request id, now with what the first copy's checks would have refused.
    swapped = by_topic(await handle_binding_requested(request(secret_key_sealed="plain"), shared, at=AT))
    assert Topic.BINDING_ACCEPTED not in swapped
    assert swapped[Topic.BINDING_STATUS][0].reason_codes == [ReasonCode.SECRET_NOT_SEALED]


async def test_rotation_keeps_the_binding_id_it_replaces():
    out = by_topic(await handle_binding_requested(request(replaces_binding_id="b-old"), deps(), at=AT))
    assert out[Topic.BINDING_ACCEPTED][0].binding_id == "b-old"


def test_malformed_request_from_a_known_user_is_answered_and_audited():
    out = by_topic(on_malformed(MalformedEvent("access_key: Field required", user_id="u1", request_id="r1"), at=AT))
    status = out[Topic.BINDING_STATUS][0]
    assert status.state == BindingState.REJECTED and status.reason_codes == [ReasonCode.MALFORMED_REQUEST]
    assert "access_key" in status.reasons[0].message


def test_malformed_request_from_nobody_known_is_audited_only():
    out = by_topic(on_malformed(MalformedEvent("body is not JSON"), at=AT))
    assert list(out) == [Topic.AUDIT]


@pytest.mark.parametrize("pairs", [None, []])
async def test_absent_and_empty_pairs_are_kept_distinct(pairs):
    out = by_topic(await handle_binding_requested(request(trading_pairs=pairs), deps(), at=AT))
    accepted = out[Topic.BINDING_ACCEPTED][0]
    assert accepted.trading_pairs == pairs


def test_a_status_sent_again_or_replayed_never_reopens_a_request_that_ended():
    history = RequestHistory(clock=lambda: AT)
    received = status(
        exchange="htx", user_id="u1", state=BindingState.RECEIVED, request_id="r1", binding_id="b1", occurred_at=AT,
        kind=RequestKind.BIND)
    rejected = status(exchange="htx", user_id="u1", state=BindingState.REJECTED, request_id="r1", binding_id="b1",
                      occurred_at=AT + timedelta(seconds=2), kind=RequestKind.BIND)
    for arriving in (received, rejected, received):  # the genuine `received` again, after the end
        history.record(arriving)
    assert history.latest("u1", "r1") == rejected


# ---- the passphrase some exchanges' keys come with (OKX) ------------------------------------------------------

PASSPHRASE = "Hash7-okx-Passphrase!"


def okx_request(**overrides):
    return request(**({"exchange": "okx", "passphrase_sealed": fake_seal_text(PASSPHRASE, "u1")} | overrides))


async def test_an_okx_request_with_its_sealed_passphrase_is_accepted_and_the_passphrase_forwarded_sealed():
    sent = okx_request()
    accepted: BindingAccepted = by_topic(await handle_binding_requested(sent, deps(), at=AT))[Topic.BINDING_ACCEPTED][0]
    assert accepted.passphrase_sealed is not None
    assert accepted.passphrase_sealed.get_secret_value() == sent.passphrase_sealed.get_secret_value()


async def test_an_okx_request_without_its_passphrase_is_malformed_and_not_forwarded():
    out = by_topic(await handle_binding_requested(okx_request(passphrase_sealed=None), deps(), at=AT))
    assert Topic.BINDING_ACCEPTED not in out
    status = out[Topic.BINDING_STATUS][0]
    assert status.state == BindingState.REJECTED and status.reason_codes == [ReasonCode.MALFORMED_REQUEST]
    assert "an OKX key needs its passphrase" in status.reasons[0].message


@pytest.mark.parametrize("exchange", ["htx", "bybit"])
async def test_a_passphrase_for_an_exchange_that_needs_none_is_malformed_and_never_forwarded(exchange):
    sealed = fake_seal_text(PASSPHRASE, "u1")
    out = await handle_binding_requested(okx_request(exchange=exchange, passphrase_sealed=sealed), deps(), at=AT)
    assert Topic.BINDING_ACCEPTED not in by_topic(out)
    assert by_topic(out)[Topic.BINDING_STATUS][0].reason_codes == [ReasonCode.MALFORMED_REQUEST]
    assert all(sealed not in m.model_dump_json() for m in out)


async def test_a_plaintext_passphrase_is_refused_as_not_sealed_and_never_forwarded():
    out = await handle_binding_requested(okx_request(passphrase_sealed=PASSPHRASE), deps(), at=AT)
    assert Topic.BINDING_ACCEPTED not in by_topic(out)
    assert by_topic(out)[Topic.BINDING_STATUS][0].reason_codes == [ReasonCode.SECRET_NOT_SEALED]
    assert all(PASSPHRASE not in m.model_dump_json() and PASSPHRASE not in repr(m) for m in out)


async def test_a_plaintext_secret_and_passphrase_are_one_reason():
    out = await handle_binding_requested(okx_request(secret_key_sealed="plain", passphrase_sealed=PASSPHRASE), deps(),
                                         at=AT)
    assert by_topic(out)[Topic.BINDING_STATUS][0].reason_codes == [ReasonCode.SECRET_NOT_SEALED]


async def test_an_htx_request_without_a_passphrase_forwards_none():
    accepted = by_topic(await handle_binding_requested(request(), deps(), at=AT))[Topic.BINDING_ACCEPTED][0]
    assert accepted.passphrase_sealed is None
