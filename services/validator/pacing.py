"""Pacing for key-health re-checks (the validator's own pure-ish logic; clock and sleep injectable)."""

import asyncio
import time
from collections.abc import Awaitable, Callable


class Pacer:
    """Lets at most `rate_per_s` callers through per second, evenly spaced, so a sweep of many bindings is
    spread over time instead of arriving at the exchanges (and ahead of users binding keys) all at once."""

    def __init__(self, rate_per_s: float, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._interval = 1.0 / rate_per_s
        self._clock = clock
        self._sleep = sleep
        self._next_start = 0.0

    async def wait(self) -> None:
        now = self._clock()
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        if start > now:
            await self._sleep(start - now)
