"""Async HTX REST client: one shared httpx connection pool, credentials per call, signed requests,
deadline-bounded retries with full-jitter backoff, and a client-side rate limiter per (UID or access key,
endpoint) that honours HTX's rate-limit headers.

HTX's answers are untrusted input (shared/adapters/htx/README.md#answer-limits): each call has one total deadline,
each answer a size cap, and whatever HTX sends ends as a value or an `ExchangeError`, never another exception.

One client serves many users' keys, so credentials travel with each call as `HtxCredentials`: the access key and
the signer that signs with its secret (shared/adapters/request_signing.py). The client never holds a secret: it
hands the text to sign to the signer, which in the services signs inside Vault.
"""

import asyncio
import math
import random
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import httpx
import structlog
from pydantic import TypeAdapter, ValidationError

from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind, exchange_error
from shared.adapters.htx.errors import parse_response
from shared.adapters.htx.models import (
    Account,
    ApiKeyInfo,
    MarketStatus,
    MarketSymbol,
    NewOrder,
    PlacedOrder,
    SymbolV1,
    SymbolV2,
)
from shared.adapters.htx.signing import SIGNATURE_PARAM, encode_signature, pre_sign_text, unsigned_query
from shared.adapters.request_signing import RequestSigner
from shared.contracts.secrets import mask_access_key
from shared.runtime.metrics import HTX_ERRORS, HTX_RATE_LIMIT_REMAINING, HTX_SECONDS
from shared.runtime.tracing import calling

log = structlog.get_logger()

# shared/adapters/htx/README.md#rate-limits: header names HTX sends on rate-limited endpoints.
REMAINING_HEADER: Final = "X-HB-RateLimit-Requests-Remain"
EXPIRE_HEADER: Final = "X-HB-RateLimit-Requests-Expire"

# A network failure before the request left us: safe to retry even a non-idempotent POST.
NETWORK_UNREACHABLE: Final = "network-unreachable"
# A network failure after the request may have reached HTX (read/write error, timeout waiting for the answer).
NETWORK_ERROR: Final = "network-error"
# Our own limiter refused to send within the retry budget.
CLIENT_RATE_LIMIT: Final = "client-rate-limit"
# HTX answered success, but its data is not shaped as documented.
UNEXPECTED_ANSWER: Final = "unexpected-answer"
# The answer is larger than its endpoint's cap (ANSWER_MAX_BYTES).
ANSWER_TOO_LARGE: Final = "answer-too-large"
# The answer's Content-Encoding is not one we asked for, or its compressed body is corrupt or cut short.
UNDECODABLE_ANSWER: Final = "undecodable-answer"

# shared/adapters/htx/README.md#answer-limits: the largest answer read, per endpoint. The symbol lists are HTX's
# largest answers; everything else we call answers a few KB at most.
SYMBOL_LIST_MAX_BYTES: Final = 4 * 1024 * 1024
DEFAULT_ANSWER_MAX_BYTES: Final = 64 * 1024
ANSWER_MAX_BYTES: Final[Mapping[str, int]] = {
    "/v1/common/symbols": SYMBOL_LIST_MAX_BYTES,
    "/v2/settings/common/symbols": SYMBOL_LIST_MAX_BYTES,
    "/v1/settings/common/market-symbols": SYMBOL_LIST_MAX_BYTES,
}
# The only compression we ask for (Accept-Encoding), as zlib's wbits for a gzip stream.
_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
# HTX's rate-limit windows last seconds (shared/adapters/htx/README.md#rate-limits): a reset announced further
# ahead than this is not believed beyond it, so one lying header cannot stall a key for good.
MAX_ANNOUNCED_RESET_S: Final = 60.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class HtxCredentials:
    """One user's HTX API key: the access key and what signs with its secret. `uid`, once known, keys the rate
    limiter as HTX does: per UID (shared/adapters/htx/README.md#rate-limits)."""

    access_key: str
    # Out of comparisons too: a signer is a service (a Vault client, a call log), not a value.
    signer: RequestSigner = field(repr=False, compare=False)
    uid: int | None = None

    def with_uid(self, uid: int) -> "HtxCredentials":
        return replace(self, uid=uid)

    def __repr__(self) -> str:
        return f"HtxCredentials(access_key={mask_access_key(self.access_key)!r}, uid={self.uid!r})"


@dataclass(frozen=True)
class RateLimit:
    requests: int
    window_s: float


# shared/adapters/htx/README.md#rate-limits: the limits HTX marks (per UID and endpoint) for the endpoints we call.
DOCUMENTED_RATE_LIMITS: Final[Mapping[str, RateLimit]] = {
    "/v1/account/accounts": RateLimit(100, 2.0),
    "/v1/order/orders/place": RateLimit(100, 2.0),
}
# shared/adapters/htx/README.md#rate-limits: unmarked endpoints fall under the legacy rule, 10 requests per second
# per key (or per IP).
LEGACY_RATE_LIMIT: Final = RateLimit(10, 1.0)

RateLimitKey = tuple[str, str]


@dataclass
class _Window:
    sent_at: deque[float] = field(default_factory=deque)
    # What HTX's headers last said about this window (shared/adapters/htx/README.md#rate-limits), if anything.
    server_remaining: int | None = None
    server_resets_at: float | None = None


class RateLimiter:
    """Sliding-window limits per (principal, endpoint), tightened by what HTX's headers report.

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
            # Count our own request until HTX's next answer says otherwise, so concurrent callers do not all
            # pass on one stale "remaining" figure.
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


def parse_rate_limit_headers(headers: Mapping[str, str], now: float) -> tuple[int, float] | None:
    """(remaining requests, epoch seconds when the window resets) from HTX's headers, if present.

    The unit of `-Expire` is undocumented (shared/adapters/htx/README.md#rate-limits, #unknowns); third parties
    read it either as an epoch time in ms or as ms until the window resets. A value that can only be an epoch
    time (>= 1e12) is read as one.
    """
    remaining, expire = headers.get(REMAINING_HEADER), headers.get(EXPIRE_HEADER)
    if remaining is None or expire is None:
        return None
    try:
        remaining_count, expire_ms = int(remaining), float(expire)
    except ValueError:
        return None
    if not math.isfinite(expire_ms):
        return None
    resets_at = expire_ms / 1000 if expire_ms >= 1e12 else now + expire_ms / 1000
    return remaining_count, min(resets_at, now + MAX_ANNOUNCED_RESET_S)


@asynccontextmanager
async def answered_within(seconds: float, what: str) -> AsyncIterator[None]:
    """Bound everything inside to seconds in all (connect, send, every read, every retry), however slowly HTX
    drips its answer; past that, raise `ExchangeTransientError` `network-error`, since a request in flight may have
    reached HTX (shared/adapters/htx/README.md#answer-limits)."""
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


T = TypeVar("T")

# The `data` of each answer. HTX sends ids as numbers or as numeric strings (an order id), both read as int.
_INT = TypeAdapter(int)
_MARKET_STATUS = TypeAdapter(MarketStatus)
_API_KEYS = TypeAdapter(list[ApiKeyInfo])
_ACCOUNTS = TypeAdapter(list[Account])
_SYMBOLS_V1 = TypeAdapter(list[SymbolV1])
_SYMBOLS_V2 = TypeAdapter(list[SymbolV2])
_MARKET_SYMBOLS = TypeAdapter(list[MarketSymbol])


class HtxClient:
    """HTX's spot REST endpoints used by Hash7. Every call raises `ExchangeError` (or `ExchangeTransientError`, once
    the retry budget is spent) instead of returning an error envelope.

    Retries: transient failures are retried with full-jitter exponential backoff while the next attempt
    can start within `retry_budget_s` of the call's start. `timeout_s` bounds each network operation (connect,
    a write, a read) and the last attempt: a call ends, whatever HTX sends, within `retry_budget_s + timeout_s`.
    A POST is retried only when HTX certainly did not act on it (connection never made, rate limit,
    maintenance). An answer past its size cap (ANSWER_MAX_BYTES) is refused, read no further, not asked for again.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 5.0,
        retry_budget_s: float = 20.0,
        backoff_base_s: float = 0.2,
        backoff_cap_s: float = 5.0,
        rate_limits: Mapping[str, RateLimit] = DOCUMENTED_RATE_LIMITS,
        default_rate_limit: RateLimit = LEGACY_RATE_LIMIT,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        url = httpx.URL(base_url)
        # The signed host is the Host header httpx sends: lower-case, with the port unless it is the
        # scheme's default (shared/adapters/htx/README.md#signing).
        self._signed_host = url.netloc.decode()
        # gzip only: the one encoding _CappedBody decodes.
        self._http = httpx.AsyncClient(base_url=url, transport=transport, timeout=timeout_s,
                                       headers={"Accept-Encoding": "gzip"})
        self._retry_budget_s = retry_budget_s
        self._deadline_s = retry_budget_s + timeout_s
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        # Wall-clock time: signatures carry it, and HTX's Expire header may be an epoch time.
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._limiter = RateLimiter(rate_limits, default_rate_limit, clock)
        self._clock_offset_s = 0.0
        self._clock_synced_at: float | None = None
        self._clock_sync = asyncio.Lock()

    async def __aenter__(self) -> "HtxClient":
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- public endpoints ------------------------------------------------------------------------------

    async def server_time_ms(self) -> int:
        """`GET /v1/common/timestamp`: HTX's clock, epoch ms
        (shared/adapters/htx/README.md#clock-and-market-status)."""
        return await self._call("GET", "/v1/common/timestamp", _INT)

    async def sync_clock(self) -> float:
        """Measure HTX's clock against ours and sign with HTX's time from now on, as a client whose clock
        drifted would otherwise fail every signed call (the timestamp window, shared/adapters/htx/README.md#signing).
        Returns the offset in seconds."""
        sent = self._clock()
        server_s = await self.server_time_ms() / 1000
        received = self._clock()
        self._clock_offset_s = server_s - (sent + received) / 2
        self._clock_synced_at = received
        return self._clock_offset_s

    async def sync_clock_if_older_than(self, max_age_s: float) -> float | None:
        """`sync_clock` when the last measurement is older than max_age_s (or there is none); else None.

        One measurement at a time: callers that find it stale together wait for it, rather than each asking
        HTX's clock (an unsigned call, 10 a second per IP) — a burst of keys after a restart once spent
        its whole retry budget queueing for that limit."""
        async with self._clock_sync:
            if self._clock_synced_at is not None and self._clock() - self._clock_synced_at < max_age_s:
                return None
            return await self.sync_clock()

    async def symbols(self) -> list[SymbolV1]:
        """`GET /v1/common/symbols` (shared/adapters/htx/README.md#v1-symbols)."""
        return await self._call("GET", "/v1/common/symbols", _SYMBOLS_V1)

    async def symbols_v2(self) -> list[SymbolV2]:
        """`GET /v2/settings/common/symbols` (shared/adapters/htx/README.md#v2-settings-symbols)."""
        return await self._call("GET", "/v2/settings/common/symbols", _SYMBOLS_V2)

    async def market_symbols(self, symbols: Sequence[str] = ()) -> list[MarketSymbol]:
        """`GET /v1/settings/common/market-symbols`, all symbols or only those named
        (shared/adapters/htx/README.md#market-symbols)."""
        params = {"symbols": ",".join(symbols)} if symbols else None
        return await self._call("GET", "/v1/settings/common/market-symbols", _MARKET_SYMBOLS, params=params)

    async def market_status(self) -> MarketStatus:
        """`GET /v2/market-status` (shared/adapters/htx/README.md#clock-and-market-status)."""
        return await self._call("GET", "/v2/market-status", _MARKET_STATUS)

    # ---- signed endpoints ------------------------------------------------------------------------------

    async def uid(self, credentials: HtxCredentials) -> int:
        """`GET /v2/user/uid`: the key's owner; proves key, signature and IP binding valid
        (shared/adapters/htx/README.md#user-uid)."""
        return await self._call("GET", "/v2/user/uid", _INT, credentials=credentials)

    async def api_key(self, credentials: HtxCredentials, uid: int) -> ApiKeyInfo | None:
        """`GET /v2/user/api-key` for this very key, or None when HTX lists no such key under uid.

        Always sends `uid` and `accessKey` and still matches the entry by access key, since without
        `accessKey` HTX returns every key of the UID. Parent users only: a sub-user key is refused with HTTP 403
        (`ExchangeErrorKind.FORBIDDEN`). See shared/adapters/htx/README.md#api-key-query, #other-errors.
        """
        params = {"uid": str(uid), "accessKey": credentials.access_key}
        entries = await self._call("GET", "/v2/user/api-key", _API_KEYS, credentials=credentials, params=params)
        return next((entry for entry in entries if entry.access_key == credentials.access_key), None)

    async def accounts(self, credentials: HtxCredentials) -> list[Account]:
        """`GET /v1/account/accounts` (shared/adapters/htx/README.md#accounts)."""
        return await self._call("GET", "/v1/account/accounts", _ACCOUNTS, credentials=credentials)

    async def place_order(self, credentials: HtxCredentials, order: NewOrder) -> PlacedOrder:
        """`POST /v1/order/orders/place`: only the auth parameters are signed, the order is the JSON body
        (shared/adapters/htx/README.md#signing, #order-placement)."""
        order_id = await self._call(
            "POST", "/v1/order/orders/place", _INT, credentials=credentials, body=order.to_body()
        )
        return PlacedOrder(order_id=order_id, client_order_id=order.client_order_id)

    # ---- transport -------------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        shape: TypeAdapter[T],
        *,
        credentials: HtxCredentials | None = None,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> T:
        """The answer's `data`, read as shape; an answer not shaped as documented is an ExchangeError."""
        async with answered_within(self._deadline_s, f"{method} {path}"):
            document = await self._call_with_retries(method, path, credentials, params, body)
        try:
            return shape.validate_python(document.get("data"))
        except ValidationError as exc:
            raise exchange_error(ExchangeErrorKind.UNAVAILABLE, UNEXPECTED_ANSWER,
                            f"{path} answered data not shaped as documented ({exc.error_count()} problem(s))") from None

    async def _call_with_retries(
        self,
        method: str,
        path: str,
        credentials: HtxCredentials | None,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        deadline = self._clock() + self._retry_budget_s
        limiter_key = (self._principal(credentials), path)
        attempt = 0
        last_error: ExchangeError | None = None
        while True:
            if not await self._wait_for_slot(limiter_key, deadline):
                # Retrying has run into our own rate limit: HTX's last answer says more than the limiter.
                raise last_error or exchange_error(
                    ExchangeErrorKind.RATE_LIMITED, CLIENT_RATE_LIMIT,
                    f"no request slot for {path} within the retry budget")
            try:
                return await self._send(method, path, credentials, params, body, limiter_key)
            except ExchangeError as error:
                last_error = error
                wait = self._backoff(method, error, attempt, deadline)
                if wait is None:
                    log.info("htx.refused", method=method, path=path, kind=error.kind, code=error.code,
                             http_status=error.http_status, attempts=attempt + 1,
                             access_key_masked=mask_access_key(credentials.access_key) if credentials else None)
                    raise
                attempt += 1
                log.warning("htx.retrying", method=method, path=path, kind=error.kind, code=error.code,
                            attempt=attempt, wait_s=round(wait, 3))
                await self._sleep(wait)

    async def _wait_for_slot(self, key: RateLimitKey, deadline: float) -> bool:
        """Wait until the rate limit lets a request under key go, and count it; False if not by deadline."""
        while (wait := self._limiter.delay(key)) > 0:
            if self._clock() + wait > deadline:
                return False
            await self._sleep(wait)
        self._limiter.record(key)
        return True

    async def _send(
        self,
        method: str,
        path: str,
        credentials: HtxCredentials | None,
        params: Mapping[str, str] | None,
        body: Mapping[str, Any] | None,
        limiter_key: RateLimitKey,
    ) -> dict[str, Any]:
        query = dict(params or {})
        if credentials is not None:
            query = unsigned_query(
                access_key=credentials.access_key,
                timestamp=datetime.fromtimestamp(self._clock() + self._clock_offset_s, UTC),
                # shared/adapters/htx/README.md#signing: a POST signs only the auth parameters.
                params=query if method == "GET" else None,
            )
            [digest] = await credentials.signer.sign([pre_sign_text(method, self._signed_host, path, query.items())])
            query[SIGNATURE_PARAM] = encode_signature(digest)
        started = time.monotonic()
        try:
            with calling("htx", f"{method} {path}"):
                return await self._exchange(method, path, query, body, limiter_key)
        except ExchangeError as error:
            HTX_ERRORS.labels(path, error.kind.value).inc()
            raise
        finally:
            HTX_SECONDS.labels(path).observe(time.monotonic() - started)

    async def _exchange(self, method: str, path: str, query: Mapping[str, str], body: Mapping[str, Any] | None,
                        limiter_key: RateLimitKey) -> dict[str, Any]:
        """One request and its answer; what HTX says of the rate limit left is noted on the way."""
        try:
            async with self._http.stream(method, path, params=query, json=body) as response:
                limits = parse_rate_limit_headers(response.headers, self._clock())
                if limits is not None:
                    self._limiter.observe(limiter_key, *limits)
                    HTX_RATE_LIMIT_REMAINING.labels(path).set(limits[0])
                content = await _read_capped(response, path)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise exchange_error(ExchangeErrorKind.UNAVAILABLE, NETWORK_UNREACHABLE, _describe(exc)) from exc
        except httpx.TransportError as exc:
            raise exchange_error(ExchangeErrorKind.UNAVAILABLE, NETWORK_ERROR, _describe(exc)) from exc
        return parse_response(response.status_code, content)

    def _backoff(self, method: str, error: ExchangeError, attempt: int, deadline: float) -> float | None:
        """Seconds to wait before retrying after error (full jitter), or None when it must be raised now."""
        if not error.transient or (method != "GET" and not _htx_did_not_act(error)):
            return None
        wait = self._rng.uniform(0, min(self._backoff_cap_s, self._backoff_base_s * 2**attempt))
        return wait if self._clock() + wait <= deadline else None

    @staticmethod
    def _principal(credentials: HtxCredentials | None) -> str:
        # HTX limits per UID; before the UID is known, per key; public calls per caller IP, i.e. ours
        # (shared/adapters/htx/README.md#rate-limits).
        if credentials is None:
            return "public"
        return f"uid:{credentials.uid}" if credentials.uid is not None else f"key:{credentials.access_key}"


async def _read_capped(response: httpx.Response, path: str) -> bytes:
    """The body, decoded, never more than path's cap: reading stops at the first byte past it."""
    body = _CappedBody(path, response.headers.get("content-encoding", ""),
                       ANSWER_MAX_BYTES.get(path, DEFAULT_ANSWER_MAX_BYTES))
    body.refuse_declared(response.headers.get("content-length"))
    async for chunk in response.aiter_raw():
        body.add(chunk)
    return body.finish()


def _htx_did_not_act(error: ExchangeError) -> bool:
    """Whether HTX certainly did nothing with the request: it never left us, or HTX refused it up front."""
    return error.code == NETWORK_UNREACHABLE or error.kind in (ExchangeErrorKind.RATE_LIMITED,
                                                               ExchangeErrorKind.MAINTENANCE)


def _describe(exc: httpx.TransportError) -> str:
    # httpx's messages name the failure, not the URL (which carries the signature).
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
