"""The HTTP transport every exchange adapter sends through: one shared connection pool, deadline-bounded retries
with full-jitter backoff, a client-side rate limiter per (principal, path) that honours the exchange's rate-limit
headers, capped and gzip-safe reading of answers, a clock that follows the exchange's, metrics and a trace span
per attempt.

What differs between exchanges is a `Dialect` (how answers read, which headers report the rate limit, the limits
and answer caps) and an `Authorise` per signed request (how the request is signed). An exchange's answers are
untrusted input (shared/adapters/htx/README.md#answer-limits): each call has one total deadline, each answer a size
cap, and whatever comes back ends as a value or an `ExchangeError`, never another exception.
"""

import asyncio
import json
import math
import random
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypedDict, TypeVar
from urllib.parse import quote, urlencode

import httpx
import structlog
from pydantic import TypeAdapter, ValidationError

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, exchange_error
from shared.adapters.exchange.port import ExchangeCredentials
from shared.runtime.metrics import EXCHANGE_ERRORS, EXCHANGE_RATE_LIMIT_REMAINING, EXCHANGE_SECONDS
from shared.runtime.tracing import calling

log = structlog.get_logger()

# A network failure before the request left us: safe to retry even a non-idempotent POST.
NETWORK_UNREACHABLE: Final = "network-unreachable"
# A network failure after the request may have reached the exchange (read/write error, timeout waiting for it).
NETWORK_ERROR: Final = "network-error"
# The code of a request refused by our own HTTP stack before it left (a header it cannot carry).
REQUEST_UNSENDABLE: Final = "request-unsendable"
# Our own limiter refused to send within the retry budget.
CLIENT_RATE_LIMIT: Final = "client-rate-limit"
# The exchange answered success, but its data is not shaped as documented.
UNEXPECTED_ANSWER: Final = "unexpected-answer"
# The answer is larger than its path's cap.
ANSWER_TOO_LARGE: Final = "answer-too-large"
# The answer's Content-Encoding is not one we asked for, or its compressed body is corrupt or cut short.
UNDECODABLE_ANSWER: Final = "undecodable-answer"

# Every answer we read is a few KB, except the symbol lists, whose dialects raise their caps.
DEFAULT_ANSWER_MAX_BYTES: Final = 64 * 1024
# The only compression we ask for (Accept-Encoding), as zlib's wbits for a gzip stream.
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
# Exchanges' rate-limit windows last seconds: a reset announced further ahead than this is not believed beyond
# it, so one lying header cannot stall a key for good.
MAX_ANNOUNCED_RESET_S: Final = 60.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


@dataclass(frozen=True)
class RateLimit:
    requests: int
    window_s: float


@dataclass(frozen=True)
class OutgoingRequest:
    """A request as it will be sent, for its authoriser to sign."""

    method: str
    path: str
    # Exactly the query sent, already encoded ("" when none).
    query_string: str
    # Exactly the body sent ("" when none): compact JSON.
    body: str
    # The exchange's clock as the transport estimates it.
    now: datetime


@dataclass(frozen=True)
class Authorised:
    headers: Mapping[str, str] = field(default_factory=dict)
    # Appended to the query after signing (HTX's auth parameters and Signature).
    extra_query: Sequence[tuple[str, str]] = ()


Authorise = Callable[[OutgoingRequest], Awaitable[Authorised]]
RateLimitReading = Callable[[Mapping[str, str], float], tuple[int, float] | None]


@dataclass(frozen=True)
class Dialect:
    """What differs between exchanges' HTTP APIs."""

    # For metrics, traces and logs.
    name: str
    # The success document of an answer (HTTP status, body); otherwise raises the ExchangeError it carries.
    parse_response: Callable[[int, bytes], dict[str, Any]]
    # (remaining requests, epoch seconds when the window resets) from an answer's headers, if they say.
    rate_limit_from_headers: RateLimitReading
    # Per path, per principal.
    rate_limits: Mapping[str, RateLimit]
    default_rate_limit: RateLimit
    # Bytes read at most, per path; DEFAULT_ANSWER_MAX_BYTES for the others.
    answer_caps: Mapping[str, int] = field(default_factory=dict)


RateLimitKey = tuple[str, str]


class TransportOptions(TypedDict, total=False):
    """ExchangeHttp's keyword options other than the clock, which each adapter passes on unchanged."""

    timeout_s: float
    retry_budget_s: float
    backoff_base_s: float
    backoff_cap_s: float
    transport: httpx.AsyncBaseTransport | None
    sleep: Sleep
    rng: random.Random | None


@dataclass
class _Window:
    sent_at: deque[float] = field(default_factory=deque)
    # What the exchange's headers last said about this window, if anything.
    server_remaining: int | None = None
    server_resets_at: float | None = None


class RateLimiter:
    """Sliding-window limits per (principal, path), tightened by what the exchange's headers report.

    Not locked: `delay` and `record` never await, so on one event loop a check and its record are atomic.
    """

    _SWEEP_ABOVE = 1024

    def __init__(self, limits: Mapping[str, RateLimit], default: RateLimit, clock: Clock) -> None:
        self._limits = dict(limits)
        self._default = default
        self._clock = clock
        self._windows: dict[RateLimitKey, _Window] = {}

    def delay(self, key: RateLimitKey) -> float:
        """Seconds to wait before the next request under key may be sent (0: send now)."""
        now = self._clock()
        window = self._window(key, now)
        limit = self._limits.get(key[1], self._default)
        local_wait = window.sent_at[0] + limit.window_s - now if len(window.sent_at) >= limit.requests else 0.0
        server_wait = 0.0
        if window.server_remaining is not None and window.server_remaining <= 0 and window.server_resets_at:
            server_wait = window.server_resets_at - now
        return max(local_wait, server_wait, 0.0)

    def record(self, key: RateLimitKey) -> None:
        """A request under key is being sent now."""
        now = self._clock()
        window = self._window(key, now)
        window.sent_at.append(now)
        if window.server_remaining is not None:
            # Count our own request until the exchange's next answer says otherwise, so concurrent callers do not
            # all pass on one stale "remaining" figure.
            window.server_remaining -= 1
        if len(self._windows) > self._SWEEP_ABOVE:
            self._sweep(now)

    def observe(self, key: RateLimitKey, remaining: int, resets_at: float) -> None:
        window = self._window(key, self._clock())
        window.server_remaining = remaining
        window.server_resets_at = resets_at

    def _window(self, key: RateLimitKey, now: float) -> _Window:
        window = self._windows.setdefault(key, _Window())
        limit = self._limits.get(key[1], self._default)
        while window.sent_at and window.sent_at[0] <= now - limit.window_s:
            window.sent_at.popleft()
        if window.server_resets_at is not None and window.server_resets_at <= now:
            window.server_remaining = window.server_resets_at = None
        return window

    def _sweep(self, now: float) -> None:
        for key in list(self._windows):
            window = self._window(key, now)
            if not window.sent_at and window.server_resets_at is None:
                del self._windows[key]


def announced_reset(remaining: int, resets_at: float, now: float) -> tuple[int, float]:
    """A rate-limit reading with its reset believed at most MAX_ANNOUNCED_RESET_S ahead."""
    return remaining, min(resets_at, now + MAX_ANNOUNCED_RESET_S)


def finite_number(text: str | None) -> float | None:
    """A header's number, or None when it is absent or not a finite number (headers are untrusted input)."""
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


@asynccontextmanager
async def answered_within(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound everything inside to seconds in all (connect, send, every read, every retry), however slowly the
    exchange drips its answer; past that, raise `ExchangeTransientError` `network-error`, since a request in flight
    may have reached the exchange (shared/adapters/htx/README.md#answer-limits)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise exchange_error(ExchangeErrorKind.UNAVAILABLE, NETWORK_ERROR,
                             f"no complete answer to {what} within {seconds:g} s") from None


class _CappedBody:
    """An answer's body as it arrives, decoded here rather than by httpx, and refused once past cap bytes.

    Own decoding because httpx inflates each network chunk whole: one 64 KiB gzip chunk can become tens of MB
    before any cap sees it, where zlib's max_length stops at the cap."""

    def __init__(self, path: str, content_encoding: str, cap: int) -> None:
        self._path = path
        self._cap = cap
        self._body = bytearray()
        encoding = content_encoding.strip().lower()
        if encoding not in ("", "identity", "gzip"):
            raise self._undecodable(f"an encoding we did not ask for ({encoding[:40]!r})")
        self._inflater = zlib.decompressobj(_GZIP_WBITS) if encoding == "gzip" else None

    def refuse_declared(self, content_length: str | None) -> None:
        """Refuse before reading when the declared length is already past the cap."""
        if content_length is not None and content_length.isdigit() and int(content_length) > self._cap:
            raise self._too_large()

    def add(self, chunk: bytes) -> None:
        if self._inflater is None:
            self._body += chunk
        else:
            try:
                self._body += self._inflater.decompress(chunk, self._cap + 1 - len(self._body))
            except zlib.error:
                raise self._undecodable("a corrupt gzip body") from None
        if len(self._body) > self._cap:
            raise self._too_large()

    def finish(self) -> bytes:
        if self._inflater is not None and not self._inflater.eof:
            raise self._undecodable("a gzip body cut short")
        return bytes(self._body)

    def _too_large(self) -> ExchangeError:
        return exchange_error(ExchangeErrorKind.UNREADABLE_ANSWER, ANSWER_TOO_LARGE,
                              f"{self._path} answered more than {self._cap} bytes")

    def _undecodable(self, what: str) -> ExchangeError:
        return exchange_error(ExchangeErrorKind.UNREADABLE_ANSWER, UNDECODABLE_ANSWER, f"{self._path} answered {what}")


def rate_limit_principal(credentials: ExchangeCredentials | None) -> str:
    """Whom a request counts against: every exchange here limits signed calls per user (HTX per UID, Bybit per user,
    OKX per User ID; their READMEs' #rate-limits), so per owner once the key's owner is known, per key before; and
    public calls per caller IP, i.e. ours."""
    if credentials is None:
        return "public"
    return f"uid:{credentials.owner_uid}" if credentials.owner_uid is not None else f"key:{credentials.access_key}"


def read_data(document: Mapping[str, Any], key: str, shape: TypeAdapter[T], path: str) -> T:
    """document[key] read as shape; an answer not shaped as documented is an `ExchangeTransientError`."""
    try:
        return shape.validate_python(document.get(key))
    except ValidationError as exc:
        problem = f"{path} answered data not shaped as documented ({exc.error_count()} problem(s))"
        raise exchange_error(ExchangeErrorKind.UNAVAILABLE, UNEXPECTED_ANSWER, problem) from None


class ExchangeHttp:
    """Sends one exchange's requests. Every call raises `ExchangeError` (or `ExchangeTransientError`, once the
    retry budget is spent) instead of returning an error envelope.

    Retries: transient failures are retried with full-jitter exponential backoff while the next attempt can start
    within `retry_budget_s` of the call's start. `timeout_s` bounds each network operation (connect, a write, a read)
    and the last attempt: a call ends, whatever the exchange sends, within `retry_budget_s + timeout_s`. A POST is
    retried only when the exchange certainly did not act on it (connection never made, rate limit, maintenance).
    An answer past its size cap is refused, read no further, not asked for again.
    """

    def __init__(
        self,
        base_url: str,
        dialect: Dialect,
        *,
        timeout_s: float = 5.0,
        retry_budget_s: float = 20.0,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = httpx.URL(base_url)
        self.dialect = dialect
        # gzip only: the one encoding _CappedBody decodes.
        self._http = httpx.AsyncClient(base_url=self.base_url, transport=transport, timeout=timeout_s,
                                       headers={"Accept-Encoding": "gzip", **(default_headers or {})})
        self._retry_budget_s = retry_budget_s
        self._deadline_s = retry_budget_s + timeout_s
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        # Wall-clock time: signatures carry it, and rate-limit headers may name epoch times.
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._limiter = RateLimiter(dialect.rate_limits, dialect.default_rate_limit, clock)
        self._clock_offset_s = 0.0
        self._clock_synced_at: float | None = None
        self._clock_sync = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def clock_offset_s(self) -> float:
        return self._clock_offset_s

    async def sync_clock(self, server_time_ms: Callable[[], Awaitable[int]]) -> float:
        """Measure the exchange's clock against ours and sign with the exchange's time from now on, as a client
        whose clock drifted would otherwise fail every signed call. Returns the offset in seconds."""
        sent = self._clock()
        server_s = await server_time_ms() / 1000
        received = self._clock()
        self._clock_offset_s = server_s - (sent + received) / 2
        self._clock_synced_at = received
        return self._clock_offset_s

    async def sync_clock_if_older_than(self, max_age_s: float,
                                       server_time_ms: Callable[[], Awaitable[int]]) -> float | None:
        """`sync_clock` when the last measurement is older than max_age_s (or there is none); else None.

        One measurement at a time: callers that find it stale together wait for it, rather than each asking the
        exchange's clock (an unsigned call, rate-limited per IP) — a burst of keys after a restart once spent its
        whole retry budget queueing for that limit."""
        async with self._clock_sync:
            if self._clock_synced_at is not None and self._clock() - self._clock_synced_at < max_age_s:
                return None
            return await self.sync_clock(server_time_ms)

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        authorise: Authorise | None = None,
        principal: str = "public",
        access_key_masked: str | None = None,
    ) -> dict[str, Any]:
        """The exchange's success document for one request; see the class docstring for retries and deadlines.
        principal keys the rate limiter; access_key_masked names the key in the log of a refusal."""
        async with answered_within(self._deadline_s, f"{method} {path}"):
            return await self._call_with_retries(method, path, params, body, authorise, principal, access_key_masked)

    async def _call_with_retries(self, method: str, path: str, params: Mapping[str, str] | None,
                                 body: Mapping[str, Any] | None, authorise: Authorise | None,
                                 principal: str, access_key_masked: str | None) -> dict[str, Any]:
        deadline = self._clock() + self._retry_budget_s
        limiter_key = (principal, path)
        query_string = urlencode(list((params or {}).items()), quote_via=quote)
        body_text = json.dumps(body, separators=(",", ":")) if body is not None else ""
        attempt = 0
        last_error: ExchangeError | None = None
        while True:
            if not await self._wait_for_slot(limiter_key, deadline):
                # Retrying has run into our own rate limit: the exchange's last answer says more than the limiter.
                raise last_error or exchange_error(ExchangeErrorKind.RATE_LIMITED, CLIENT_RATE_LIMIT,
                                                   f"no request slot for {path} within the retry budget")
            try:
                return await self._send(method, path, query_string, body_text, authorise, limiter_key)
            except ExchangeError as error:
                last_error = error
                wait = self._backoff(method, error, attempt, deadline)
                if wait is None:
                    log.info("exchange.refused", exchange=self.dialect.name, method=method, path=path,
                             kind=error.kind, code=error.code, http_status=error.http_status, attempts=attempt + 1,
                             access_key_masked=access_key_masked)
                    raise
                attempt += 1
                log.warning("exchange.retrying", exchange=self.dialect.name, method=method, path=path,
                            kind=error.kind, code=error.code, attempt=attempt, wait_s=round(wait, 3))
                await self._sleep(wait)

    async def _wait_for_slot(self, key: RateLimitKey, deadline: float) -> bool:
        """Wait until the rate limit lets a request under key go, and count it; False if not by deadline."""
        while (wait := self._limiter.delay(key)) > 0:
            if self._clock() + wait > deadline:
                return False
            await self._sleep(wait)
        self._limiter.record(key)
        return True

    async def _send(self, method: str, path: str, query_string: str, body: str, authorise: Authorise | None,
                    limiter_key: RateLimitKey) -> dict[str, Any]:
        headers: dict[str, str] = {"Content-Type": "application/json"} if body else {}
        url = path
        extra: Sequence[tuple[str, str]] = ()
        if authorise is not None:
            now = datetime.fromtimestamp(self._clock() + self._clock_offset_s, UTC)
            authorised = await authorise(OutgoingRequest(method, path, query_string, body, now))
            headers.update(authorised.headers)
            extra = authorised.extra_query
        query = "&".join(part for part in (query_string, urlencode(list(extra), quote_via=quote)) if part)
        if query:
            url = f"{path}?{query}"
        started = time.monotonic()
        try:
            with calling(self.dialect.name, f"{method} {path}"):
                return await self._exchange(method, path, url, headers, body, limiter_key)
        except ExchangeError as error:
            EXCHANGE_ERRORS.labels(self.dialect.name, path, error.kind.value).inc()
            raise
        finally:
            EXCHANGE_SECONDS.labels(self.dialect.name, path).observe(time.monotonic() - started)

    async def _exchange(self, method: str, path: str, url: str, headers: Mapping[str, str], body: str,
                        limiter_key: RateLimitKey) -> dict[str, Any]:
        """One request and its answer; what the exchange says of the rate limit left is noted on the way."""
        try:
            # The URL is sent as built: the exchange verifies the signature over the very query string it receives.
            request = self._http.build_request(method, url, headers=headers, content=body.encode() if body else None)
        except (httpx.InvalidURL, ValueError) as exc:
            # A UnicodeEncodeError (a non-ASCII header value) is a ValueError.
            raise _unsendable(exc) from exc
        try:
            response = await self._http.send(request, stream=True)
            try:
                limits = self.dialect.rate_limit_from_headers(response.headers, self._clock())
                if limits is not None:
                    self._limiter.observe(limiter_key, *limits)
                    EXCHANGE_RATE_LIMIT_REMAINING.labels(self.dialect.name, path).set(limits[0])
                content = await self._read_capped(response, path)
            finally:
                await response.aclose()
        except (httpx.LocalProtocolError, httpx.UnsupportedProtocol) as exc:
            # h11 refuses a header value with a line break or a control character before writing a byte.
            raise _unsendable(exc) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise exchange_error(ExchangeErrorKind.UNAVAILABLE, NETWORK_UNREACHABLE, _describe(exc)) from exc
        except httpx.TransportError as exc:
            raise exchange_error(ExchangeErrorKind.UNAVAILABLE, NETWORK_ERROR, _describe(exc)) from exc
        return self.dialect.parse_response(response.status_code, content)

    async def _read_capped(self, response: httpx.Response, path: str) -> bytes:
        """The body, decoded, never more than path's cap: reading stops at the first byte past it."""
        body = _CappedBody(path, response.headers.get("content-encoding", ""),
                           self.dialect.answer_caps.get(path, DEFAULT_ANSWER_MAX_BYTES))
        body.refuse_declared(response.headers.get("content-length"))
        async for chunk in response.aiter_raw():
            body.add(chunk)
        return body.finish()

    def _backoff(self, method: str, error: ExchangeError, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before retrying after error (full jitter), or None when it must be raised now."""
        if not error.transient or (method != "GET" and not _exchange_did_not_act(error)):
            return None
        wait = self._rng.uniform(0, min(self._backoff_cap_s, self._backoff_base_s * 2**attempt))
        return wait if self._clock() + wait <= deadline else None


def _exchange_did_not_act(error: ExchangeError) -> bool:
    """Whether the exchange certainly did nothing with the request: it never left us, or it was refused up front."""
    return error.code == NETWORK_UNREACHABLE or error.kind in (ExchangeErrorKind.RATE_LIMITED,
                                                               ExchangeErrorKind.MAINTENANCE)


def _unsendable(exc: Exception) -> ExchangeError:
    """A request our HTTP stack refuses to build or send: never sent, and asking again would fail the same way, so
    not transient. Named by the failure's class only: its message may quote a header, and a header may be a secret."""
    return exchange_error(ExchangeErrorKind.BAD_REQUEST, REQUEST_UNSENDABLE, f"the request could not be sent "
                          f"({type(exc).__name__})")


def _describe(exc: httpx.TransportError) -> str:
    # httpx's messages name the failure, not the URL (which may carry a signature).
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
