"""Async HTX REST client: HTX's endpoints as typed calls over the shared exchange transport
(shared/adapters/exchange/http.py: deadlines, retries, rate limiting, capped answers), signed with Signature
Version 2, HTX's rate-limit headers honoured.

One client serves many users' keys, so credentials travel with each call as `ExchangeCredentials`: the access key
and the signer that signs with its secret (shared/adapters/request_signing.py). The client never holds a secret:
it hands the text to sign to the signer, which in the services signs inside Vault.
"""

import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, TypeVar, Unpack

from pydantic import TypeAdapter

from shared.adapters.exchange.http import (
    Authorise,
    Authorised,
    Clock,
    Dialect,
    ExchangeHttp,
    OutgoingRequest,
    RateLimit,
    TransportOptions,
    announced_reset,
    finite_number,
    rate_limit_principal,
    read_data,
)
from shared.adapters.exchange.port import ExchangeCredentials
from shared.adapters.htx.errors import parse_response
from shared.adapters.htx.models import (
    Account,
    ApiKeyInfo,
    MarketStatus,
    MarketSymbol,
    NewOrder,
    SymbolV1,
    SymbolV2,
)
from shared.adapters.htx.signing import SIGNATURE_PARAM, encode_signature, pre_sign_text, unsigned_query
from shared.contracts.secrets import mask_access_key

EXCHANGE: Final = "htx"

# shared/adapters/htx/README.md#rate-limits: header names HTX sends on rate-limited endpoints.
REMAINING_HEADER: Final = "X-HB-RateLimit-Requests-Remain"
EXPIRE_HEADER: Final = "X-HB-RateLimit-Requests-Expire"

# shared/adapters/htx/README.md#answer-limits: the symbol lists are HTX's largest answers; everything else we call
# answers a few KB at most (DEFAULT_ANSWER_MAX_BYTES).
SYMBOL_LIST_MAX_BYTES: Final = 4 * 1024 * 1024
ANSWER_MAX_BYTES: Final[Mapping[str, int]] = {
    "/v1/common/symbols": SYMBOL_LIST_MAX_BYTES,
    "/v2/settings/common/symbols": SYMBOL_LIST_MAX_BYTES,
    "/v1/settings/common/market-symbols": SYMBOL_LIST_MAX_BYTES,
}

# shared/adapters/htx/README.md#rate-limits: the limits HTX marks (per UID and endpoint) for the endpoints we call.
DOCUMENTED_RATE_LIMITS: Final[Mapping[str, RateLimit]] = {
    "/v1/account/accounts": RateLimit(100, 2.0),
    "/v1/order/orders/place": RateLimit(100, 2.0),
}
# shared/adapters/htx/README.md#rate-limits: unmarked endpoints fall under the legacy rule, 10 requests per second
# per key (or per IP).
LEGACY_RATE_LIMIT: Final = RateLimit(10, 1.0)

T = TypeVar("T")


def parse_rate_limit_headers(headers: Mapping[str, str], now: float) -> tuple[int, float] | None:
    """(remaining requests, epoch seconds when the window resets) from HTX's headers, if present.

    The unit of `-Expire` is undocumented (shared/adapters/htx/README.md#rate-limits, #unknowns); third parties
    read it either as an epoch time in ms or as ms until the window resets. A value that can only be an epoch
    time (>= 1e12) is read as one.
    """
    remaining, expire_ms = headers.get(REMAINING_HEADER), finite_number(headers.get(EXPIRE_HEADER))
    if remaining is None or expire_ms is None:
        return None
    try:
        remaining_count = int(remaining)
    except ValueError:
        return None
    return announced_reset(remaining_count, expire_ms / 1000 if expire_ms >= 1e12 else now + expire_ms / 1000, now)


# The `data` of each answer. HTX sends ids as numbers or as numeric strings (an order id), both read as int.
_INT = TypeAdapter(int)
_MARKET_STATUS = TypeAdapter(MarketStatus)
_API_KEYS = TypeAdapter(list[ApiKeyInfo])
_ACCOUNTS = TypeAdapter(list[Account])
_SYMBOLS_V1 = TypeAdapter(list[SymbolV1])
_SYMBOLS_V2 = TypeAdapter(list[SymbolV2])
_MARKET_SYMBOLS = TypeAdapter(list[MarketSymbol])


class HtxClient:
    """HTX's spot REST endpoints used by Hash7. Every call raises `ExchangeError` (or `ExchangeTransientError`,
    once the retry budget is spent) instead of returning an error envelope; retries and deadlines are the
    transport's (shared/adapters/exchange/http.py)."""

    def __init__(
        self,
        base_url: str,
        *,
        rate_limits: Mapping[str, RateLimit] = DOCUMENTED_RATE_LIMITS,
        default_rate_limit: RateLimit = LEGACY_RATE_LIMIT,
        clock: Clock = time.time,
        **transport: Unpack[TransportOptions],
    ) -> None:
        dialect = Dialect(name=EXCHANGE, parse_response=parse_response,
                          rate_limit_from_headers=parse_rate_limit_headers, rate_limits=rate_limits,
                          default_rate_limit=default_rate_limit, answer_caps=ANSWER_MAX_BYTES)
        self._http = ExchangeHttp(base_url, dialect, clock=clock, **transport)
        # The signed host is the Host header httpx sends: lower-case, with the port unless it is the
        # scheme's default (shared/adapters/htx/README.md#signing).
        self._signed_host = self._http.base_url.netloc.decode()

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
        """Sign with HTX's time from now on (the timestamp window, shared/adapters/htx/README.md#signing); returns
        the offset in seconds."""
        return await self._http.sync_clock(self.server_time_ms)

    async def sync_clock_if_older_than(self, max_age_s: float) -> float | None:
        """`sync_clock` when the last measurement is older than max_age_s (or there is none); else None."""
        return await self._http.sync_clock_if_older_than(max_age_s, self.server_time_ms)

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

    async def uid(self, credentials: ExchangeCredentials) -> int:
        """`GET /v2/user/uid`: the key's owner; proves key, signature and IP binding valid
        (shared/adapters/htx/README.md#user-uid)."""
        return await self._call("GET", "/v2/user/uid", _INT, credentials=credentials)

    async def api_key(self, credentials: ExchangeCredentials, uid: int) -> ApiKeyInfo | None:
        """`GET /v2/user/api-key` for this very key, or None when HTX lists no such key under uid.

        Always sends `uid` and `accessKey` and still matches the entry by access key, since without
        `accessKey` HTX returns every key of the UID. Parent users only: a sub-user key is refused with HTTP 403
        (`ExchangeErrorKind.FORBIDDEN`). See shared/adapters/htx/README.md#api-key-query, #other-errors.
        """
        params = {"uid": str(uid), "accessKey": credentials.access_key}
        entries = await self._call("GET", "/v2/user/api-key", _API_KEYS, credentials=credentials, params=params)
        return next((entry for entry in entries if entry.access_key == credentials.access_key), None)

    async def accounts(self, credentials: ExchangeCredentials) -> list[Account]:
        """`GET /v1/account/accounts` (shared/adapters/htx/README.md#accounts)."""
        return await self._call("GET", "/v1/account/accounts", _ACCOUNTS, credentials=credentials)

    async def place_order(self, credentials: ExchangeCredentials, order: NewOrder) -> int:
        """`POST /v1/order/orders/place`: only the auth parameters are signed, the order is the JSON body
        (shared/adapters/htx/README.md#signing, #order-placement). Returns the new order's id."""
        return await self._call("POST", "/v1/order/orders/place", _INT, credentials=credentials, body=order.to_body())

    # ---- transport -------------------------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        shape: TypeAdapter[T],
        *,
        credentials: ExchangeCredentials | None = None,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
    ) -> T:
        """The answer's `data`, read as shape; an answer not shaped as documented is an ExchangeError."""
        authorise = self._authorise(method, path, credentials, params) if credentials else None
        masked = mask_access_key(credentials.access_key) if credentials else None
        document = await self._http.call(method, path, params=params, body=body, authorise=authorise,
                                         principal=rate_limit_principal(credentials), access_key_masked=masked)
        return read_data(document, "data", shape, path)

    def _authorise(self, method: str, path: str, credentials: ExchangeCredentials,
                   params: Mapping[str, str] | None) -> Authorise:
        """Signature Version 2: the auth parameters and the signature, added to the query."""

        async def authorise(request: OutgoingRequest) -> Authorised:
            signed = unsigned_query(
                access_key=credentials.access_key, timestamp=request.now,
                # shared/adapters/htx/README.md#signing: a POST signs only the auth parameters.
                params=params if method == "GET" else None,
            )
            [digest] = await credentials.signer.sign([pre_sign_text(method, self._signed_host, path, signed.items())])
            auth = {name: value for name, value in signed.items() if name not in (params or {})}
            return Authorised(extra_query=[*auth.items(), (SIGNATURE_PARAM, encode_signature(digest))])

        return authorise
