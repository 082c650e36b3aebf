"""OKX as an `Exchange` (shared/adapters/exchange/port.py): OKX's v5 endpoints as typed calls over the shared
transport (shared/adapters/exchange/http.py: deadlines, retries, rate limiting, capped answers), signed with OKX's
headers (shared/adapters/okx/README.md#signing).

One client serves many users' keys: credentials travel with each call. The client never holds a secret: the signer
returns the digest (in the services, from Vault), and the passphrase is revealed only into its header.
"""

import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final, TypeVar, Unpack

from pydantic import TypeAdapter

from shared.adapters.exchange.errors import ExchangeErrorKind, exchange_error
from shared.adapters.exchange.http import (
    Authorise,
    Authorised,
    Clock,
    Dialect,
    ExchangeHttp,
    OutgoingRequest,
    RateLimit,
    TransportOptions,
    rate_limit_principal,
    read_data,
)
from shared.adapters.exchange.port import (
    ClientOrderIdRule,
    ExchangeCredentials,
    KeyDescription,
    KeyEntry,
    KeyStatus,
    PlacedOrder,
    SpotOrder,
    TradingPair,
)
from shared.adapters.okx.errors import SUCCESS, parse_response, refused_item_error
from shared.adapters.okx.models import (
    PERMISSION_BY_NAME,
    AccountConfig,
    Instrument,
    OrderRequest,
    OrderResult,
    SystemTime,
)
from shared.adapters.okx.signing import (
    ACCESS_KEY_HEADER,
    PASSPHRASE_HEADER,
    SIGNATURE_HEADER,
    SIMULATED_TRADING_HEADER,
    TIMESTAMP_HEADER,
    encode_signature,
    format_timestamp,
    passphrase_is_sendable,
    pre_sign_text,
    request_path,
)
from shared.contracts.secrets import mask_access_key

EXCHANGE: Final = "okx"
# shared/adapters/okx/README.md#orders: `clOrdId` is 1 to 32 letters or digits.
CLIENT_ORDER_IDS: Final = ClientOrderIdRule(r"[A-Za-z0-9]{1,32}", "1 to 32 letters or digits")
TIME_PATH: Final = "/api/v5/public/time"
INSTRUMENTS_PATH: Final = "/api/v5/public/instruments"
ACCOUNT_CONFIG_PATH: Final = "/api/v5/account/config"
ORDER_PATH: Final = "/api/v5/trade/order"

# shared/adapters/okx/README.md#rate-limits: the documented limits of the endpoints we call (private ones per User
# ID, public ones per IP: ours). OKX sends no rate-limit headers, so these are all the limiter knows.
DOCUMENTED_RATE_LIMITS: Final[Mapping[str, RateLimit]] = {
    ACCOUNT_CONFIG_PATH: RateLimit(5, 2.0),
    ORDER_PATH: RateLimit(60, 2.0),
    INSTRUMENTS_PATH: RateLimit(20, 2.0),
    TIME_PATH: RateLimit(10, 2.0),
}
# Our choice for an endpoint without a documented limit: the strictest of those above, per 2 s.
DEFAULT_RATE_LIMIT: Final = RateLimit(5, 2.0)
# The spot instrument list is OKX's largest answer we read (about a kilobyte per instrument, several hundred
# instruments); every other answer is a few KB (the transport's default cap).
ANSWER_MAX_BYTES: Final[Mapping[str, int]] = {INSTRUMENTS_PATH: 4 * 1024 * 1024}
# Signed calls re-measure OKX's clock when the last measurement is older than this: the window is 30 s
# (shared/adapters/okx/README.md#clock).
CLOCK_MAX_AGE_S: Final = 300.0

T = TypeVar("T")
_CONFIGS = TypeAdapter(list[AccountConfig])
_TIMES = TypeAdapter(list[SystemTime])
_INSTRUMENTS = TypeAdapter(list[Instrument])
_ORDER_RESULTS = TypeAdapter(list[OrderResult])


def no_rate_limit_headers(_headers: Mapping[str, str], _now: float) -> None:
    """OKX reports no rate limit in its headers (shared/adapters/okx/README.md#rate-limits)."""
    return None


class OkxExchange:
    """OKX's spot REST endpoints used by Hash7, as the neutral `Exchange`. `demo` sends every request to OKX's demo
    trading (shared/adapters/okx/README.md#demo-trading)."""

    name = EXCHANGE

    def __init__(
        self,
        base_url: str,
        *,
        demo: bool = False,
        clock: Clock = time.time,
        **transport: Unpack[TransportOptions],
    ) -> None:
        dialect = Dialect(name=EXCHANGE, parse_response=parse_response, rate_limit_from_headers=no_rate_limit_headers,
                          rate_limits=DOCUMENTED_RATE_LIMITS, default_rate_limit=DEFAULT_RATE_LIMIT,
                          answer_caps=ANSWER_MAX_BYTES)
        self._http = ExchangeHttp(base_url, dialect, clock=clock,
                                  default_headers={SIMULATED_TRADING_HEADER: "1"} if demo else None, **transport)
        # Hash7's pair name → OKX's instId, from the last instrument list (an order names its pair only).
        self._symbols: dict[str, str] = {}

    def client_order_id_problem(self, client_order_id: str) -> str | None:
        return CLIENT_ORDER_IDS.problem("OKX", client_order_id)

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- public endpoints ------------------------------------------------------------------------------

    async def server_time_ms(self) -> int:
        """`GET /api/v5/public/time`: OKX's clock, epoch ms (shared/adapters/okx/README.md#clock)."""
        return (await self._first("GET", TIME_PATH, _TIMES)).ts

    async def sync_clock_if_older_than(self, max_age_s: float) -> float | None:
        """Sign with OKX's time from now on, when the last measurement is older than max_age_s; the offset in
        seconds, or None when the last one is recent enough."""
        return await self._http.sync_clock_if_older_than(max_age_s, self.server_time_ms)

    async def instruments(self) -> list[Instrument]:
        """`GET /api/v5/public/instruments?instType=SPOT` (shared/adapters/okx/README.md#instruments)."""
        return await self._call("GET", INSTRUMENTS_PATH, _INSTRUMENTS, params={"instType": "SPOT"})

    async def trading_pairs(self) -> list[TradingPair]:
        listed = [i for i in await self.instruments() if i.inst_type == "SPOT"]
        self._symbols = {i.pair: i.inst_id for i in listed}
        return [TradingPair(pair=i.pair, symbol=i.inst_id, tradable=i.tradable) for i in listed]

    # ---- signed endpoints ------------------------------------------------------------------------------

    async def account_config(self, credentials: ExchangeCredentials) -> AccountConfig:
        """`GET /api/v5/account/config`: the calling key and its account; succeeding proves the key, its secret,
        its passphrase, the caller's IP and the key not frozen (shared/adapters/okx/README.md#account-config)."""
        return await self._first("GET", ACCOUNT_CONFIG_PATH, _CONFIGS, credentials=credentials)

    async def describe_key(self, credentials: ExchangeCredentials) -> KeyDescription:
        """The key as account/config tells it (shared/adapters/okx/README.md#account-config,
        #what-cannot-be-proved).

        - valid_days None: OKX has no expiry field, and only keys without IPs expire (after 14 days unused), which
          Hash7 refuses anyway for their empty IP list.
        - account_problem None: a frozen key (50100, ABNORMAL_USER) or a blocked account (50007, 50009, 50012,
          ACCOUNT_RESTRICTED) never gets this far, and OKX names no account state here.
        - Permission names other than read_only, trade and withdraw are kept in listed_permissions only.
        """
        config = await self.account_config(credentials)
        listed = tuple(config.permissions)
        key = KeyEntry(
            permissions=frozenset(PERMISSION_BY_NAME[name] for name in listed if name in PERMISSION_BY_NAME),
            listed_permissions=listed, bound_ips=tuple(config.bound_ips), valid_days=None,
            status=KeyStatus.NORMAL, status_text="normal",
        )
        return KeyDescription(owner_uid=config.uid, sub_account=config.sub_account, key=key, trading_account_id=None,
                              needs_trading_account=False, account_problem=None)

    async def place_order(self, credentials: ExchangeCredentials, order: SpotOrder,
                          trading_account_id: str | None = None) -> PlacedOrder:
        """`POST /api/v5/trade/order` in cash mode (shared/adapters/okx/README.md#orders); OKX needs no account id.
        A refused order raises its own sCode and sMsg. A market buy's amount is in the quote currency, OKX's
        default for spot market buys."""
        if order.pair not in self._symbols:
            await self.trading_pairs()
        symbol = self._symbols.get(order.pair)
        if symbol is None:
            raise exchange_error(ExchangeErrorKind.BAD_REQUEST, "unknown-pair", f"OKX lists no spot pair {order.pair}")
        body = OrderRequest(inst_id=symbol, side=order.side, ord_type=order.kind, sz=_decimal_text(order.amount),
                            px=None if order.price is None else _decimal_text(order.price),
                            cl_ord_id=order.client_order_id)
        result = await self._first("POST", ORDER_PATH, _ORDER_RESULTS, credentials=credentials,
                                   body=body.model_dump(by_alias=True, exclude_none=True))
        if result.s_code != SUCCESS:
            raise refused_item_error(result.model_dump(by_alias=True))
        return PlacedOrder(order_id=result.ord_id, client_order_id=result.cl_ord_id or None)

    # ---- transport -------------------------------------------------------------------------------------

    async def _first(self, method: str, path: str, shape: TypeAdapter[list[T]], **options: Any) -> T:
        """The one entry OKX's `data` array holds for this call."""
        entries = await self._call(method, path, shape, **options)
        if not entries:
            raise exchange_error(ExchangeErrorKind.UNAVAILABLE, "unexpected-answer", f"{path} answered no data")
        return entries[0]

    async def _call(self, method: str, path: str, shape: TypeAdapter[T], *,
                    credentials: ExchangeCredentials | None = None, params: Mapping[str, str] | None = None,
                    body: Mapping[str, Any] | None = None) -> T:
        authorise = None
        if credentials is not None:
            await self.sync_clock_if_older_than(CLOCK_MAX_AGE_S)
            authorise = _authorise(credentials)
        document = await self._http.call(
            method, path, params=params, body=body, authorise=authorise, principal=rate_limit_principal(credentials),
            access_key_masked=mask_access_key(credentials.access_key) if credentials else None)
        return read_data(document, "data", shape, path)


def _authorise(credentials: ExchangeCredentials) -> Authorise:
    """OKX's four headers over the request exactly as the transport sends it (shared/adapters/okx/README.md#signing)."""

    async def authorise(request: OutgoingRequest) -> Authorised:
        if credentials.passphrase is None:
            raise exchange_error(ExchangeErrorKind.LOGIN_REQUIRED, "passphrase-missing",
                                 "an OKX key needs the passphrase chosen with it")
        if not passphrase_is_sendable(credentials.passphrase.get_secret_value()):
            # A passphrase OKX could never have matched: the same mistake to the user as a wrong one (50105). The text
            # is fixed: the value is a secret.
            raise exchange_error(ExchangeErrorKind.SIGNATURE_MISMATCH, "passphrase-unsendable",
                                 "the passphrase holds characters other than printable ASCII")
        timestamp = format_timestamp(request.now)
        text = pre_sign_text(timestamp, request.method, request_path(request.path, request.query_string), request.body)
        [digest] = await credentials.signer.sign([text])
        return Authorised(headers={
            ACCESS_KEY_HEADER: credentials.access_key,
            SIGNATURE_HEADER: encode_signature(digest),
            TIMESTAMP_HEADER: timestamp,
            PASSPHRASE_HEADER: credentials.passphrase.get_secret_value(),
        })

    return authorise


def _decimal_text(value: Decimal) -> str:
    """A decimal as OKX's string numbers: plain notation, no exponent, no trailing zeros."""
    return format(value.normalize(), "f")
