"""intake's replay memory and attempt limit, bounded (services/intake/rules.py): what is kept, what is forgotten,
and that a request whose answer may have been forgotten is refused, never done a second time."""

from datetime import timedelta

from services.intake import app
from services.intake.handlers import IntakeDeps, handle_binding_requested
from services.intake.rules import CLOCK_SKEW, AttemptLimiter, RequestHistory, binding_id_for
from shared.contracts.outcomes import status
from shared.contracts.reasons import ReasonCode
from shared.contracts.routing import ROUTES, Topic
from shared.contracts.states import BindingState, RequestKind
from shared.runtime.config import IntakeSettings
from tests.builders import SECRET, topic_of
from tests.fakes import AT, InMemoryVault, fake_seal
from tests.services.intake.test_handlers import request

MAX_AGE = timedelta(days=7)


def active(request_id: str, at=AT, user_id: str = "u1"):
    return status(exchange="htx", user_id=user_id, state=BindingState.ACTIVE, request_id=request_id,
                  binding_id=binding_id_for(user_id, request_id), occurred_at=at, kind=RequestKind.BIND)


def history(max_requests: int = 1000, now=AT) -> RequestHistory:
    return RequestHistory(max_requests, MAX_AGE, clock=lambda: now)


def test_past_its_count_the_least_recently_updated_request_is_forgotten_and_the_horizon_follows_it():
    kept = history(max_requests=3)
    for n in range(5):
        kept.record(active(f"r{n}", AT - timedelta(minutes=10 - n)))

    assert len(kept) == 3
    assert [kept.latest("u1", f"r{n}") is not None for n in range(5)] == [False, False, True, True, True]
    assert kept.horizon == AT - timedelta(minutes=9)


def test_a_request_updated_again_is_kept_before_older_ones():
    kept = history(max_requests=2)
    kept.record(status(exchange="htx", user_id="u1", state=BindingState.RECEIVED, request_id="r0",
                       binding_id=binding_id_for("u1", "r0"), occurred_at=AT - timedelta(minutes=3),
                       kind=RequestKind.BIND))
    kept.record(active("r1", AT - timedelta(minutes=2)))
    kept.record(active("r0", AT - timedelta(minutes=1)))
    kept.record(active("r2", AT))

    assert (kept.latest("u1", "r0"), kept.latest("u1", "r1")) == (active("r0", AT - timedelta(minutes=1)), None)


def test_statuses_older_than_the_age_are_not_kept_and_kept_ones_age_out():
    now = [AT]
    kept = RequestHistory(1000, MAX_AGE, clock=lambda: now[0])
    kept.record(active("old", AT - MAX_AGE))
    kept.record(active("young", AT - MAX_AGE + timedelta(hours=1)))
    assert (kept.latest("u1", "old"), len(kept)) == (None, 1)

    now[0] = AT + timedelta(hours=2)
    kept.record(active("new", now[0]))

    assert (kept.latest("u1", "young"), len(kept)) == (None, 1)
    assert kept.horizon == now[0] - MAX_AGE + CLOCK_SKEW


def test_memory_age_is_the_retention_of_the_topic_requests_are_redelivered_from():
    # A record redelivered from binding.requested is never older than the memory; only the count can shorten it.
    from deploy.bootstrap.kafka_topics import RETENTION_MS
    from shared.runtime.config import IntakeSettings

    retention_s = RETENTION_MS[ROUTES[Topic.BINDING_REQUESTED].retention] / 1000
    assert IntakeSettings().intake_replay_memory_max_age_s == retention_s


def by_topic(outgoing):
    found: dict[Topic, list] = {}
    for message in outgoing:
        found.setdefault(topic_of(message), []).append(message)
    return found


async def test_a_replay_of_a_forgotten_request_is_refused_and_changes_no_binding():
    kept = history(max_requests=1)
    limiter = AttemptLimiter(1, clock=lambda: 0.0)
    deps = IntakeDeps(kept, limiter)
    bind = request(request_id="r1", requested_at=AT - timedelta(minutes=30))
    kept.record(active("r1", AT - timedelta(minutes=29)))
    kept.record(active("r2", AT - timedelta(minutes=1)))  # r1 is pushed out

    out = by_topic(await handle_binding_requested(bind, deps, at=AT))

    assert Topic.BINDING_ACCEPTED not in out
    [refusal] = out[Topic.BINDING_STATUS]
    assert (refusal.state, refusal.reason_codes, refusal.binding_id) == (
        BindingState.REJECTED, [ReasonCode.REQUEST_EXPIRED], None)
    assert out[Topic.AUDIT][0].outcome == "rejected"
    # Not an attempt: the user's one attempt a minute is still there.
    assert limiter.allow("u1")


async def test_a_request_older_than_the_memory_stamped_by_a_fast_clock_is_still_refused():
    kept = history()
    ahead = request(request_id="r1", requested_at=AT - MAX_AGE + CLOCK_SKEW - timedelta(seconds=1))

    out = by_topic(await handle_binding_requested(ahead, IntakeDeps(kept, AttemptLimiter(10)), at=AT))

    assert out[Topic.BINDING_STATUS][0].reason_codes == [ReasonCode.REQUEST_EXPIRED]


async def test_at_its_count_the_memory_still_takes_requests_made_after_what_it_forgot():
    kept = history(max_requests=1)
    kept.record(active("r1", AT - timedelta(seconds=2)))
    kept.record(active("r2", AT - timedelta(seconds=1)))
    just_made = request(request_id="r3", requested_at=AT - timedelta(seconds=1))

    out = by_topic(await handle_binding_requested(just_made, IntakeDeps(kept, AttemptLimiter(10)), at=AT))

    assert Topic.BINDING_ACCEPTED in out


async def test_a_new_request_after_the_horizon_is_accepted_whatever_was_forgotten():
    kept = history(max_requests=1)
    kept.record(active("r1", AT - timedelta(minutes=29)))
    kept.record(active("r2", AT - timedelta(minutes=1)))
    fresh = request(request_id="r3", requested_at=AT, secret_key_sealed=fake_seal(SECRET, "u1"))

    out = by_topic(await handle_binding_requested(fresh, IntakeDeps(kept, AttemptLimiter(10)), at=AT))

    assert out[Topic.BINDING_ACCEPTED][0].binding_id == binding_id_for("u1", "r3")


async def test_a_replay_still_in_memory_is_answered_from_it_however_old_its_request():
    kept = history()
    kept.record(active("r1", AT - timedelta(days=6)))
    replay = request(request_id="r1", requested_at=AT - timedelta(days=6, minutes=1))

    out = by_topic(await handle_binding_requested(replay, IntakeDeps(kept, AttemptLimiter(10)), at=AT))

    assert out[Topic.BINDING_STATUS] == [active("r1", AT - timedelta(days=6))]


def test_the_attempt_limit_holds_only_the_users_of_the_last_window():
    now = [0.0]
    limiter = AttemptLimiter(2, clock=lambda: now[0])
    for user in ("u1", "u2", "u3"):
        assert limiter.allow(user)
    assert (limiter.allow("u1"), limiter.allow("u1"), limiter.users()) == (True, False, 3)

    now[0] = 61.0
    assert limiter.allow("u4")

    assert limiter.users() == 1


def test_a_partition_that_moves_gives_its_users_a_fresh_window_on_the_instance_taking_it():
    # The limit is counted where the user's partition is (requests are keyed by user id), so a rebalance that
    # moves it lets a user make up to `limit` more attempts within that minute: 2 x limit at most per move.
    assert ROUTES[Topic.BINDING_REQUESTED].key_field == "user_id"
    before_the_move, after_the_move = AttemptLimiter(3, clock=lambda: 0.0), AttemptLimiter(3, clock=lambda: 1.0)

    allowed = [before_the_move.allow("u1") for _ in range(4)] + [after_the_move.allow("u1") for _ in range(4)]

    assert allowed.count(True) == 6


def test_intake_reads_the_status_topic_back_from_as_far_as_its_memory_keeps(monkeypatch):
    followed = []
    monkeypatch.setattr(app, "follow", lambda *arguments: followed.append(arguments))
    app.build(IntakeSettings(intake_replay_memory_max_age_s=3600), vault=InMemoryVault())

    [(_, _, topic, on_event, _, max_age)] = followed
    assert (topic, max_age) == (Topic.BINDING_STATUS, timedelta(hours=1))
    assert on_event.__self__.max_age == timedelta(hours=1)
