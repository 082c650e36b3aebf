"""Intake's own pure logic: the binding id, the per-user attempt limit, replay memory."""

import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable

from shared.contracts.events import BindingStatus
from shared.contracts.states import BIND_OUTCOME, RequestKind

SUPPORTED_EXCHANGES = frozenset({"htx"})


def binding_id_for(user_id: str, request_id: str) -> str:
    """Stable: the same request always maps to the same binding, however often it is delivered."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hash7:binding:{user_id}:{request_id}"))


class AttemptLimiter:
    """At most `limit` binding attempts per user in any sliding minute."""

    def __init__(self, limit: int, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = limit
        self._window = window_s
        self._clock = clock
        self._attempts: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, user_id: str) -> bool:
        now = self._clock()
        attempts = self._attempts[user_id]
        while attempts and now - attempts[0] >= self._window:
            attempts.popleft()
        if len(attempts) >= self._limit:
            return False
        attempts.append(now)
        return True


class RequestHistory:
    """The latest status of every binding request, as read back from the status topic (the source of truth).
    Only statuses that answer a binding request count: the app chooses request ids, so a whitelist or revoke
    request may carry the id of a binding request, and its status must not pass for the binding's."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, str], BindingStatus] = {}

    def record(self, status: BindingStatus) -> None:
        """Keep the request's newest status; a final one is never replaced (a status sent again later, or
        replayed, must not reopen a request that ended)."""
        if status.request_id is None or status.request_kind is not RequestKind.BIND:
            return
        key = (status.user_id, status.request_id)
        kept = self._latest.get(key)
        if kept is None or (kept.state not in BIND_OUTCOME.final and status.occurred_at >= kept.occurred_at):
            self._latest[key] = status

    def latest(self, user_id: str, request_id: str) -> BindingStatus | None:
        return self._latest.get((user_id, request_id))
