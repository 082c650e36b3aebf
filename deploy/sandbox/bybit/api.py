"""Bybit's endpoints as the sandbox serves them, and the pipeline every request to them goes through: route (404
for an unknown path), GET body (403), injected faults, then for signed endpoints authentication, permission and the
per-UID rate limit (with Bybit's rate-limit headers on every signed answer), then the endpoint itself."""

import json
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from starlette.requests import Request

from deploy.sandbox.bybit.auth import Caller, ReceivedRequest, authenticate, require_spot_trade
from deploy.sandbox.bybit.envelopes import (
    RetCode,
    bad_gateway,
    get_with_body,
    ip_rate_limited,
    maintenance,
    not_found,
    ok,
)
from deploy.sandbox.bybit.scenario import (
    BybitFault,
    BybitSandboxState,
    BybitSymbol,
)
from deploy.sandbox.common.pipeline import counted, endure
from deploy.sandbox.common.state import Fault
from shared.adapters.bybit.client import (
    INSTRUMENTS_PATH,
    LIMIT_HEADER,
    LIMIT_RESET_HEADER,
    LIMIT_STATUS_HEADER,
    ORDER_CREATE_PATH,
    QUERY_API_PATH,
    TIME_PATH,
)


@dataclass(frozen=True)
class Call:
    """What every handler reads; signed handlers also get the authenticated Caller."""

    state: BybitSandboxState
    now_ms: int
    params: dict[str, str]
    body: bytes


PublicHandler = Callable[[Call], Any]
SignedHandler = Callable[[Call, Caller], Any]


# ---- endpoints -----------------------------------------------------------------------------------------------


def server_time(call: Call) -> dict[str, Any]:
    # shared/adapters/bybit/README.md#clock
    nanos = call.now_ms * 1_000_000
    return {"timeSecond": str(nanos // 1_000_000_000), "timeNano": str(nanos)}


def instruments(call: Call) -> dict[str, Any]:
    """shared/adapters/bybit/README.md#instruments: spot only; every listed symbol whatever its status unless
    `status` filters (a choice, so the adapter's tradable rule is exercised); `symbol` narrows to one."""
    if call.params.get("category") != "spot":
        # Bybit's text for a category the sandbox does not serve is undocumented: a choice.
        raise RetCode.PARAMS.refusal(call.now_ms, message="Illegal category")
    wanted_symbol, wanted_status = call.params.get("symbol"), call.params.get("status")
    listed = [s for s in call.state.instruments.values()
              if (not wanted_symbol or s.symbol == wanted_symbol) and (not wanted_status or s.status == wanted_status)]
    return {"category": "spot", "list": [_render_instrument(s) for s in listed]}


def query_api(call: Call, caller: Caller) -> dict[str, Any]:
    """shared/adapters/bybit/README.md#key-info: the calling key, as query-api lists it."""
    user, key = caller.user, caller.key
    expires = key.expires_at(datetime.fromtimestamp(call.now_ms / 1000, UTC))
    return {
        "id": str(zlib.crc32(key.api_key.encode()) % 10**8), "note": key.note, "apiKey": key.api_key,
        "readOnly": key.read_only, "secret": "", "permissions": _all_groups(key.permissions), "ips": key.ips,
        "type": key.type,
        # shared/adapters/bybit/README.md#key-info: -1 and "" for a key that does not expire are a choice.
        "deadlineDay": -1 if key.valid_days is None else key.valid_days,
        "expiredAt": "" if expires is None else expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "createdAt": key.created_at, "unified": 0, "uta": user.uta, "userID": user.uid, "inviterID": 0,
        "vipLevel": "No VIP", "mktMakerLevel": "0", "affiliateID": 0, "rsaPublicKey": "",
        "isMaster": user.parent_uid is None, "parentUid": str(user.parent_uid or 0),
        "kycLevel": "LEVEL_DEFAULT", "kycRegion": "",
    }


def create_order(call: Call, caller: Caller) -> dict[str, Any]:
    """shared/adapters/bybit/README.md#orders. Texts of parameter refusals are not documented: each is 10001 with a
    message naming the field (a choice)."""
    require_spot_trade(caller, call.now_ms)
    try:
        order = json.loads(call.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        order = None
    if not isinstance(order, dict):
        raise RetCode.PARAMS.refusal(call.now_ms)
    if order.get("category") != "spot":
        raise RetCode.PARAMS.refusal(call.now_ms, message="params error: category invalid")
    symbol = call.state.instruments.get(str(order.get("symbol", "")))
    if symbol is None or symbol.status != "Trading":
        raise RetCode.PARAMS.refusal(call.now_ms, message="params error: symbol invalid")
    if order.get("side") not in ("Buy", "Sell"):
        raise RetCode.PARAMS.refusal(call.now_ms, message="params error: side invalid")
    if order.get("orderType") not in ("Limit", "Market"):
        raise RetCode.PARAMS.refusal(call.now_ms, message="params error: orderType invalid")
    if not _positive(order.get("qty")):
        raise RetCode.PARAMS.refusal(call.now_ms, message="params error: qty invalid")
    if order["orderType"] == "Limit" and not _positive(order.get("price")):
        raise RetCode.PARAMS.refusal(call.now_ms, message="params error: price invalid")
    link_id = str(order.get("orderLinkId") or "")
    if len(link_id) > 36:
        raise RetCode.PARAMS.refusal(call.now_ms, message="params error: orderLinkId invalid")
    order_id = str(call.state.take_order_id())
    call.state.orders.append({
        "order_id": order_id, "uid": caller.user.uid, "api_key": caller.key.api_key,
        "symbol": symbol.symbol, "side": order["side"], "order_type": order["orderType"], "qty": str(order["qty"]),
        "price": None if order.get("price") is None else str(order["price"]), "order_link_id": link_id,
        "created_at_ms": call.now_ms,
    })
    return {"orderId": order_id, "orderLinkId": link_id}


ENDPOINTS: dict[tuple[str, str], PublicHandler | tuple[SignedHandler]] = {
    ("GET", TIME_PATH): server_time,
    ("GET", INSTRUMENTS_PATH): instruments,
    # Signed endpoints are wrapped in a 1-tuple. shared/adapters/bybit/README.md#key-info: any permission may call
    # query-api; orders check theirs in the handler.
    ("GET", QUERY_API_PATH): (query_api,),
    ("POST", ORDER_CREATE_PATH): (create_order,),
}


# ---- the pipeline --------------------------------------------------------------------------------------------


async def _answer(request: Request, body: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    state: BybitSandboxState = request.app.state.sandbox
    endpoint = ENDPOINTS.get((request.method, request.url.path))
    if endpoint is None:
        raise not_found()  # shared/adapters/bybit/README.md#envelopes
    if request.method == "GET" and body:
        raise get_with_body()  # shared/adapters/bybit/README.md#envelopes
    fault = state.fault_for(request.url.path)
    if fault is not None:
        await _suffer(fault, state)
    now_ms = int(time.time() * 1000)
    call = Call(state=state, now_ms=now_ms, params=dict(request.query_params), body=body)
    if not isinstance(endpoint, tuple):
        return ok(endpoint(call), now_ms), {}
    received = ReceivedRequest(method=request.method, headers=request.headers,
                               query_string=request.scope["query_string"].decode("latin-1"), body=body,
                               client_ip=request.client.host if request.client else "")
    caller = authenticate(received, state, now_ms)
    headers = _spend_rate_slot(state, caller.user.uid, request.url.path, now_ms)
    return ok(endpoint[0](call, caller), now_ms), headers


def _spend_rate_slot(state: BybitSandboxState, uid: int, path: str, now_ms: int) -> dict[str, str]:
    """shared/adapters/bybit/README.md#rate-limits: per UID and endpoint. The reset header is the window's end once
    the limit is exceeded, else the current time, as Bybit documents. The window is fixed, not rolling (a choice:
    the generic limiter's)."""
    slot = state.take_rate_slot(uid, path, now_ms)
    limit = state.rate_limit_for(path).requests
    headers = {LIMIT_STATUS_HEADER: str(max(slot.remaining, 0)), LIMIT_HEADER: str(limit),
               LIMIT_RESET_HEADER: str(now_ms if slot.allowed else slot.expires_at_ms)}
    if not slot.allowed:
        raise RetCode.RATE_LIMIT.refusal(now_ms, headers=headers)
    return headers


async def _suffer(fault: Fault, state: BybitSandboxState) -> None:
    """Injected trouble, Bybit's way (deploy/sandbox/bybit/scenario.py BybitFault)."""
    if isinstance(fault, BybitFault) and fault.ip_rate_limited and not fault.maintenance:
        raise ip_rate_limited()
    await endure(fault, state.rng, maintenance=maintenance,
                 timeout=lambda: RetCode.SERVER_TIMEOUT.refusal(int(time.time() * 1000)),
                 error=lambda: bad_gateway() if fault.error_kind == "bad-gateway" else RetCode.SERVER_ERROR.refusal(
                     int(time.time() * 1000)))


# ---- rendering -----------------------------------------------------------------------------------------------


def _all_groups(granted: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every group query-api lists, empty unless granted (shared/adapters/bybit/README.md#key-info)."""
    groups = ("ContractTrade", "Spot", "Wallet", "Options", "Derivatives", "CopyTrading", "BlockTrade", "Exchange",
              "NFT", "Affiliate", "Earn")
    return {group: list(granted.get(group, [])) for group in groups} | granted


def _render_instrument(s: BybitSymbol) -> dict[str, Any]:
    return {
        "symbol": s.symbol, "baseCoin": s.base_coin, "quoteCoin": s.quote_coin, "innovation": "0",
        "status": s.status, "marginTrading": "none", "stTag": "0",
        "lotSizeFilter": {"basePrecision": s.base_precision, "quotePrecision": s.quote_precision,
                          "minOrderQty": s.min_order_qty, "maxOrderQty": s.max_order_qty,
                          "minOrderAmt": "1", "maxOrderAmt": "4000000"},
        "priceFilter": {"tickSize": s.tick_size},
        "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
    }


def _positive(value: object) -> bool:
    try:
        return isinstance(value, str | int | float) and not isinstance(value, bool) and Decimal(str(value)) > 0
    except InvalidOperation:
        return False


# Every answer is counted by its outcome (deploy/sandbox/common/pipeline.py).
serve_bybit = counted(_answer)
