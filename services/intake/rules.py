"""Intake's own pure logic: the binding id, the per-user attempt limit, replay memory."""

import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import NamedTuple

from shared.contracts.events import BindingStatus, parse_event, utc_now
from shared.contracts.states import BIND_OUTCOME, RequestKind


def binding_id_for(user_id: str, request_id: str) -> str:
    """Stable: the same request always maps to the same binding, however often it is delivered."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hash7:binding:{user_id}:{request_id}"))


class AttemptLimiter:
    """At most `limit` binding attempts per user in any sliding minute, counted by this instance.

    Not shared between intake instances, on purpose: binding requests are keyed by user id (shared/contracts/
    routing.py), so all of one user's requests reach the one instance that holds their partition, and the count
    here is the user's whole count. Only a partition moving (a rebalance, a restart) starts its users' windows
    afresh, so within one minute a user gets at most `limit` more attempts per move. Holding the count in Vault
    would cost a write per request; a compacted topic would be a second, slower copy of what the partition
    already guarantees."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window_s
        self._clock = clock
        # Least recently attempting user first: users with no attempt left in the window are dropped from the
        # front, so memory holds only the users of the last window.
        self._attempts: OrderedDict[str, deque[float]] = OrderedDict()

    def allow(self, user_id: str) -> bool:
        now = self._clock()
        while self._attempts:
            oldest_user, oldest = next(iter(self._attempts.items()))
            if now - oldest[-1] < self._window:
                break
            del self._attempts[oldest_user]
        attempts = self._attempts.setdefault(user_id, deque())
        self._attempts.move_to_end(user_id)
        while attempts and now - attempts[0] >= self._window:
            attempts.popleft()
        if len(attempts) >= self._limit:
            return False
        attempts.append(now)
        return True

    def users(self) -> int:
        """How many users it holds attempts of."""
        return len(self._attempts)


class _Kept(NamedTuple):
    occurred_at: datetime
    final: bool
    status: bytes


# A request's time is the app's clock, the statuses' times intake's: the age limit also forgets requests stamped
# this much later, so that a fast app clock cannot slip a request older than the memory past the horizon. Not
# added to what the count forgot: that is often minutes old, and every new request would be refused.
CLOCK_SKEW = timedelta(minutes=5)


class RequestHistory:
    """The latest status of binding requests, as read back from the status topic (the source of truth), bounded:
    statuses older than max_age are not kept, and past max_requests the least recently updated request is
    forgotten. Everything forgotten lies before `horizon`: a request made before it that is not in memory may
    have been answered already, so intake refuses it (`forgotten`) rather than doing it a second time. The cap
    is a guard for memory, not the usual bound: a request it forgets within minutes of its status, stamped by an
    app clock running that far ahead, could pass the horizon.

    Only statuses that answer a binding request count: the app chooses request ids, so a whitelist or revoke
    request may carry the id of a binding request, and its status must not pass for the binding's."""

    def __init__(self, max_requests: int = 200_000, max_age: timedelta = timedelta(days=7),
                 clock: Callable[[], datetime] = utc_now) -> None:
        self._max_requests = max_requests
        self._max_age = max_age
        self._clock = clock
        # A status as its JSON: a third of the memory of the model, parsed again only to answer a replay.
        self._latest: OrderedDict[tuple[str, str], _Kept] = OrderedDict()
        self._evicted_until: datetime | None = None

    def record(self, status: BindingStatus) -> None:
        """Keep the request's newest status; a final one is never replaced (a status sent again later, or
        replayed, must not reopen a request that ended)."""
        if status.request_id is None or status.request_kind is not RequestKind.BIND:
            return
        oldest_kept = self._clock() - self._max_age
        if status.occurred_at <= oldest_kept:
            return  # before the horizon anyway: read back at a start, from a topic kept longer than the memory
        key = (status.user_id, status.request_id)
        kept = self._latest.get(key)
        if kept is None or (not kept.final and status.occurred_at >= kept.occurred_at):
            self._latest[key] = _Kept(status.occurred_at, status.state in BIND_OUTCOME.final, status.to_bytes())
            self._latest.move_to_end(key)
        while self._latest and (len(self._latest) > self._max_requests
                                or next(iter(self._latest.values())).occurred_at <= oldest_kept):
            _, evicted = self._latest.popitem(last=False)
            if self._evicted_until is None or evicted.occurred_at > self._evicted_until:
                self._evicted_until = evicted.occurred_at

    def latest(self, user_id: str, request_id: str) -> BindingStatus | None:
        kept = self._latest.get((user_id, request_id))
        return None if kept is None else parse_event(BindingStatus, kept.status)

    @property
    def max_age(self) -> timedelta:
        return self._max_age

    @property
    def horizon(self) -> datetime:
        """Requests made at or before this time may have been forgotten."""
        by_age = self._clock() - self._max_age + CLOCK_SKEW
        return by_age if self._evicted_until is None else max(by_age, self._evicted_until)

    def forgotten(self, user_id: str, request_id: str, requested_at: datetime) -> bool:
        """Whether a request unknown here may be one whose answer was forgotten."""
        return (user_id, request_id) not in self._latest and requested_at <= self.horizon

    def __len__(self) -> int:
        return len(self._latest)
