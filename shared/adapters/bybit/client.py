"""Bybit (v5) as an `Exchange` (shared/adapters/exchange/port.py): query-api, spot instruments and order creation
over the shared transport (shared/adapters/exchange/http.py: deadlines, retries, rate limiting, capped answers),
signed with HMAC-SHA256 in the `X-BAPI-*` headers, Bybit's rate-limit headers honoured, its clock followed.

One client serves many users' keys, so credentials travel with each call. The client never holds a secret: it hands
the text to sign to the credentials' signer (shared/adapters/request_signing.py), which in the services signs inside
Vault.
"""

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, Unpack

from pydantic import TypeAdapter

from shared.adapters.bybit.errors import parse_response
from shared.adapters.bybit.models import ApiKeyInfo, InstrumentsPage, OrderRequest, OrderResult, ServerTime
from shared.adapters.bybit.signing import DEFAULT_RECV_WINDOW_MS, encode_signature, pre_sign_text, signed_headers
from shared.adapters.exchange.errors import ExchangeError, ExchangeErrorKind
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
from shared.adapters.exchange.port import (
    ClientOrderIdRule,
    ExchangeCredentials,
    KeyDescription,
    KeyEntry,
    KeyStatus,
    Permission,
    PlacedOrder,
    SpotOrder,
    TradingPair,
)
from shared.contracts.secrets import mask_access_key

EXCHANGE: Final = "bybit"
# shared/adapters/bybit/README.md#orders: `orderLinkId` is at most 36 characters (documented); which characters is
# our choice, the letters, digits, '-' and '_' Bybit's examples use.
CLIENT_ORDER_IDS: Final = ClientOrderIdRule(r"[A-Za-z0-9_-]{1,36}", "1 to 36 letters, digits, '-' or '_'")
TIME_PATH: Final = "/v5/market/time"
INSTRUMENTS_PATH: Final = "/v5/market/instruments-info"
QUERY_API_PATH: Final = "/v5/user/query-api"
ORDER_CREATE_PATH: Final = "/v5/order/create"

# shared/adapters/bybit/README.md#rate-limits
LIMIT_STATUS_HEADER: Final = "X-Bapi-Limit-Status"
LIMIT_HEADER: Final = "X-Bapi-Limit"
LIMIT_RESET_HEADER: Final = "X-Bapi-Limit-Reset-Timestamp"
RATE_LIMITS: Final[Mapping[str, RateLimit]] = {
    QUERY_API_PATH: RateLimit(10, 1.0),
    ORDER_CREATE_PATH: RateLimit(20, 1.0),
}
# Market endpoints: 10 per second (ccxt's cost table), well inside the per-IP 600 per 5 s.
DEFAULT_RATE_LIMIT: Final = RateLimit(10, 1.0)
# The spot list is Bybit's largest answer we read (hundreds of symbols, ~0.5 KB each); the rest are a few KB.
ANSWER_CAPS: Final[Mapping[str, int]] = {INSTRUMENTS_PATH: 4 * 1024 * 1024}
# How old the clock measurement may be before a signed call measures it again: Bybit refuses a timestamp more than
# 1 s ahead of its clock (shared/adapters/bybit/README.md#clock), so ours must follow it closely.
CLOCK_MAX_AGE_S: Final = 300.0

T = TypeVar("T")


_SERVER_TIME = TypeAdapter(ServerTime)
_KEY_INFO = TypeAdapter(ApiKeyInfo)
_INSTRUMENTS = TypeAdapter(InstrumentsPage)
_ORDER_RESULT = TypeAdapter(OrderResult)


def parse_rate_limit_headers(headers: Mapping[str, str], now: float) -> tuple[int, float] | None:
    """(remaining, epoch seconds when the window resets) from Bybit's headers, if both are there and numbers. The
    reset header is an epoch time in ms (the current time while the limit is not exceeded)."""
    remaining = finite_number(headers.get(LIMIT_STATUS_HEADER))
    reset_ms = finite_number(headers.get(LIMIT_RESET_HEADER))
    if remaining is None or reset_ms is None:
        return None
    return announced_reset(int(remaining), reset_ms / 1000, now)


class BybitExchange:
    """Bybit's spot endpoints used by Hash7, as the neutral `Exchange`. Every call raises `ExchangeError` (or
    `ExchangeTransientError` once the retry budget is spent)."""

    name = EXCHANGE

    def __init__(self, base_url: str, *, rate_limits: Mapping[str, RateLimit] = RATE_LIMITS,
                 recv_window_ms: int = DEFAULT_RECV_WINDOW_MS, clock: Clock = time.time,
                 **transport: Unpack[TransportOptions]) -> None:
        """transport: ExchangeHttp's own options (timeouts, retry budget, backoff, an httpx transport, sleep, rng),
        passed on unchanged."""
        dialect = Dialect(name=EXCHANGE, parse_response=parse_response,
                          rate_limit_from_headers=parse_rate_limit_headers, rate_limits=rate_limits,
                          default_rate_limit=DEFAULT_RATE_LIMIT, answer_caps=ANSWER_CAPS)
        self._http = ExchangeHttp(base_url, dialect, clock=clock, **transport)
        self._recv_window_ms = recv_window_ms
        self._clock = clock

    def client_order_id_problem(self, client_order_id: str) -> str | None:
        return CLIENT_ORDER_IDS.problem("Bybit", client_order_id)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def server_time_ms(self) -> int:
        """`GET /v5/market/time` (shared/adapters/bybit/README.md#clock)."""
        return (await self._call("GET", TIME_PATH, _SERVER_TIME)).epoch_ms

    async def describe_key(self, credentials: ExchangeCredentials) -> KeyDescription:
        """`GET /v5/user/query-api` (shared/adapters/bybit/README.md#key-info). READ holds whenever it answers:
        every Bybit key may read. The account is reported able to trade: query-api names no account state, and a
        banned account is refused here with 10027, raised as ACCOUNT_RESTRICTED (#what-cannot-be-proved there)."""
        info = await self._call("GET", QUERY_API_PATH, _KEY_INFO, credentials=credentials)
        granted = {Permission.READ}
        granted |= {Permission.TRADE} if info.can_trade_spot else set()
        granted |= {Permission.WITHDRAW} if info.can_withdraw else set()
        granted |= {Permission.TRANSFER} if info.can_transfer else set()
        valid_days = info.valid_days(datetime.fromtimestamp(self._clock() + self._http.clock_offset_s, UTC))
        expired = valid_days == 0
        entry = KeyEntry(
            permissions=frozenset(granted),
            listed_permissions=(f"readOnly:{info.read_only}", *info.listed_permissions),
            bound_ips=info.bound_ips,
            valid_days=valid_days,
            status=KeyStatus.EXPIRED if expired else KeyStatus.NORMAL,
            # Bybit has no status word; these are ours.
            status_text="expired" if expired else "normal",
        )
        return KeyDescription(owner_uid=str(info.user_id), sub_account=info.sub_account, key=entry,
                              trading_account_id=None, needs_trading_account=False, account_problem=None)

    async def trading_pairs(self) -> list[TradingPair]:
        """shared/adapters/bybit/README.md#instruments: pair = base + quote in lower case; tradable when Trading."""
        page = await self._call("GET", INSTRUMENTS_PATH, _INSTRUMENTS, params={"category": "spot"})
        return [TradingPair(pair=(i.base_coin + i.quote_coin).lower(), symbol=i.symbol, tradable=i.tradable)
                for i in page.entries]

    async def place_order(self, credentials: ExchangeCredentials, order: SpotOrder,
                          trading_account_id: str | None) -> PlacedOrder:
        """`POST /v5/order/create` (shared/adapters/bybit/README.md#orders). Bybit names a spot symbol as its
        coins upper-cased (BTCUSDT for btcusdt); no account is named (`trading_account_id` is ignored). A market
        Buy's qty is read by Bybit in the quote coin, as HTX reads a market buy's amount."""
        request = OrderRequest(
            symbol=order.pair.upper(), side="Buy" if order.side == "buy" else "Sell",
            order_type="Limit" if order.kind == "limit" else "Market", qty=_decimal_text(order.amount),
            price=None if order.price is None else _decimal_text(order.price), order_link_id=order.client_order_id)
        placed = await self._call("POST", ORDER_CREATE_PATH, _ORDER_RESULT, credentials=credentials,
                                  body=request.body())
        return PlacedOrder(order_id=placed.order_id, client_order_id=placed.order_link_id or None)

    async def _call(self, method: str, path: str, shape: TypeAdapter[T], *,
                    credentials: ExchangeCredentials | None = None, params: Mapping[str, str] | None = None,
                    body: Mapping[str, Any] | None = None) -> T:
        """The answer's `result`, read as shape. A signed call first brings the clock measurement up to date, and
        once more when Bybit still finds its timestamp out of the window (our clock jumped since): a 10002 refusal
        is made before Bybit acts, so even an order is safe to send again."""
        if credentials is None:
            document = await self._http.call(method, path, params=params, body=body)
            return read_data(document, "result", shape, path)
        await self._http.sync_clock_if_older_than(CLOCK_MAX_AGE_S, self.server_time_ms)
        try:
            document = await self._signed(method, path, credentials, params, body)
        except ExchangeError as error:
            if error.kind is not ExchangeErrorKind.TIMESTAMP_OUT_OF_WINDOW:
                raise
            await self._http.sync_clock(self.server_time_ms)
            document = await self._signed(method, path, credentials, params, body)
        return read_data(document, "result", shape, path)

    async def _signed(self, method: str, path: str, credentials: ExchangeCredentials,
                      params: Mapping[str, str] | None, body: Mapping[str, Any] | None) -> dict[str, Any]:
        return await self._http.call(method, path, params=params, body=body, authorise=self._authorise(credentials),
                                     principal=rate_limit_principal(credentials),
                                     access_key_masked=mask_access_key(credentials.access_key))

    def _authorise(self, credentials: ExchangeCredentials) -> Authorise:
        """shared/adapters/bybit/README.md#signing: the signed text over the query or body exactly as sent."""

        async def authorise(request: OutgoingRequest) -> Authorised:
            timestamp_ms = int(request.now.timestamp() * 1000)
            payload = request.query_string if request.method == "GET" else request.body
            [digest] = await credentials.signer.sign(
                [pre_sign_text(timestamp_ms, credentials.access_key, self._recv_window_ms, payload)])
            return Authorised(headers=signed_headers(credentials.access_key, timestamp_ms, self._recv_window_ms,
                                                     encode_signature(digest)))

        return authorise


def _decimal_text(value: object) -> str:
    # Plain notation: Decimal("1E-7") must go as "0.0000001", never in exponent form.
    return format(value, "f")
