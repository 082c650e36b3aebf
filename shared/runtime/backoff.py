"""Retrying in place, with one backoff: capped exponential with full jitter (tenacity's wait_random_exponential).
Before the n-th retry the wait is drawn uniformly from [0, min(cap, 0.2 s × 2^(n-1))], so instances retrying the
same outage spread out instead of coming back together.

The first attempt runs without tenacity, which costs tens of microseconds a call, more than the rest of a
record's processing: almost every attempt succeeds. Only a failure starts tenacity, which is handed that
failure as its first attempt, so the attempts, waits and reports are those of tenacity from the start. Each
failure builds a fresh AsyncRetrying: tenacity keeps a retry's state on the instance (per thread, not per task),
so one instance shared by concurrent lanes would mix their attempts."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt, wait_random_exponential

BASE_DELAY_S = 0.2

X = TypeVar("X", bound=Exception)
T = TypeVar("T")
Attempt = Callable[[], Awaitable[T]]


def full_jitter(cap_s: float) -> wait_random_exponential:
    return wait_random_exponential(multiplier=BASE_DELAY_S, max=cap_s)


async def retry_while_raising(attempt: Attempt[T], error: type[X], cap_s: float,
                              on_retry: Callable[[X, float], None]) -> T:
    """Run attempt again for as long as it raises `error`, with no limit; on_retry(error, delay_s) before each
    wait. Any other exception is raised at once."""

    def before_sleep(state: RetryCallState) -> None:
        failure = _failure(state)
        if isinstance(failure, error):
            on_retry(failure, state.upcoming_sleep)

    try:
        return await attempt()
    except error as failure:
        retrying = AsyncRetrying(retry=retry_if_exception_type(error), wait=full_jitter(cap_s),
                                 before_sleep=before_sleep, reraise=True)
        return await retrying(_replaying(failure, attempt))


async def retry_up_to(attempt: Attempt[T], attempts: int, cap_s: float,
                      on_failure: Callable[[Exception, int], None]) -> T:
    """Run attempt again when it raises any Exception, `attempts` attempts in all, then raise the last failure;
    on_failure(error, attempt number) after each failed attempt, the last included."""

    def after(state: RetryCallState) -> None:
        failure = _failure(state)
        if isinstance(failure, Exception):
            on_failure(failure, state.attempt_number)

    try:
        return await attempt()
    except Exception as failure:  # noqa: BLE001 — what to retry is the caller's choice: anything unexpected
        retrying = AsyncRetrying(stop=stop_after_attempt(attempts), wait=full_jitter(cap_s), after=after,
                                 reraise=True)
        return await retrying(_replaying(failure, attempt))


def _replaying(failure: Exception, attempt: Attempt[T]) -> Attempt[T]:
    """attempt, except that its first call raises the failure already met instead of trying again."""
    pending = [failure]

    async def replay_then_attempt() -> T:
        if pending:
            raise pending.pop()
        return await attempt()

    return replay_then_attempt


def _failure(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome is not None else None
