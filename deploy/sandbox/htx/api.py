"""HTX's endpoints as the sandbox serves them, and the pipeline every request to them goes through:
route (405 for an unknown path), GET body (403), injected faults, then for signed endpoints
authentication, permission and the per-UID rate limit, then the endpoint itself."""

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from deploy.sandbox.common.envelopes import Refusal
from deploy.sandbox.common.pipeline import counted, endure
from deploy.sandbox.common.state import Fault
from deploy.sandbox.htx.auth import Caller, ReceivedRequest, authenticate, authorize
from deploy.sandbox.htx.envelopes import (
    HtxRefusal,
    OrderFailure,
    bad_gateway,
    forbidden,
    gateway_internal_error,
    invalid_parameter,
    maintenance,
    method_not_allowed,
    rate_limited,
    request_timeout,
    v1_ok,
    v2_error,
    v2_ok,
)
from deploy.sandbox.htx.scenario import HtxSandboxState, ScenarioSymbol
from shared.adapters.htx.client import EXPIRE_HEADER, REMAINING_HEADER


@dataclass(frozen=True)
class Call:
    """One request as an endpoint handler sees it."""

    state: HtxSandboxState
    caller: Caller | None
    query: dict[str, str]
    body: bytes
    content_type: str
    now_ms: int

    @property
    def signer(self) -> Caller:
        if self.caller is None:
            raise RuntimeError("a signed endpoint's handler runs only after authentication")
        return self.caller


Handler = Callable[[Call], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    handler: Handler
    # The key permission the endpoint needs (shared/adapters/htx/README.md#endpoints, #key-rules); None for a
    # public endpoint.
    permission: str | None = None
    parent_only: bool = False


# ---- public endpoints ------------------------------------------------------------------------------------


def server_time(call: Call) -> dict[str, Any]:
    return v1_ok(call.now_ms)  # shared/adapters/htx/README.md#clock-and-market-status


def symbols_v1(call: Call) -> dict[str, Any]:
    # shared/adapters/htx/README.md#v1-symbols. The v1 list documents four states; the sandbox shows the other
    # settings states as they are.
    return v1_ok([_render_symbol_v1(s) for s in call.state.symbols.values()])


def symbols_v2(call: Call) -> dict[str, Any]:
    # shared/adapters/htx/README.md#v2-settings-symbols. The incremental `ts` parameter is ignored: every answer
    # is the full list (`full: 1`).
    return v1_ok([_render_symbol_v2(s) for s in call.state.symbols.values()], ts=str(call.now_ms), full=1)


def market_symbols(call: Call) -> dict[str, Any]:
    # shared/adapters/htx/README.md#market-symbols: `symbols` is an optional comma list.
    wanted = {s.strip() for s in call.query.get("symbols", "").split(",") if s.strip()}
    listed = [s for s in call.state.symbols.values() if not wanted or s.symbol in wanted]
    return v1_ok([_render_market_symbol(s) for s in listed], ts=str(call.now_ms), full=1)


def market_status(call: Call) -> dict[str, Any]:
    status = call.state.market_status
    data: dict[str, Any] = {"marketStatus": status.market_status}
    if status.market_status != 1:
        data |= {"haltStartTime": status.halt_start_time, "haltEndTime": status.halt_end_time,
                 "haltReason": status.halt_reason, "affectedSymbols": status.affected_symbols}
    return v2_ok(data, message="success")  # shared/adapters/htx/README.md#clock-and-market-status


# ---- signed endpoints ------------------------------------------------------------------------------------


def user_uid(call: Call) -> dict[str, Any]:
    return v2_ok(call.signer.user.uid)  # shared/adapters/htx/README.md#user-uid


def api_keys(call: Call) -> dict[str, Any]:
    """A parent's own keys or a sub-user's; `accessKey` narrows to one key
    (shared/adapters/htx/README.md#api-key-query)."""
    raw_uid = call.query.get("uid", "")
    if not raw_uid.isdigit():
        # v2 code 2002 "invalid field value" (shared/adapters/htx/README.md#envelopes); the exact text for this
        # field is not documented.
        raise HtxRefusal(v2_error(2002, 'invalid field value in "uid"'))
    owner = call.state.users.get(int(raw_uid))
    caller_uid = call.signer.user.uid
    if owner is None or caller_uid not in (owner.uid, owner.parent_uid):
        # HTX's answer for a foreign uid is unknown (shared/adapters/htx/README.md#unknowns); v2 1002 `forbidden` is
        # the documented code.
        raise HtxRefusal(v2_error(1002, "forbidden"))
    access_key = call.query.get("accessKey")
    entries = [
        {"accessKey": key.access_key, "status": key.status, "note": key.note, "permission": key.permission,
         "ipAddresses": key.ip_addresses, "validDays": key.valid_days, "createTime": key.create_time,
         "updateTime": key.update_time or key.create_time}
        for key in owner.api_keys
        if not access_key or key.access_key == access_key
    ]
    return v2_ok(entries, message="success", ok=True)


def accounts(call: Call) -> dict[str, Any]:
    # shared/adapters/htx/README.md#accounts
    return v1_ok([account.model_dump() for account in call.signer.user.accounts])


def place_order(call: Call) -> dict[str, Any]:
    """A JSON body (otherwise `gateway-internal-error`); the account must be the caller's and working; the
    symbol must exist, be online, trade-enabled and open to API trading
    (shared/adapters/htx/README.md#transport, #other-errors)."""
    if "application/json" not in call.content_type:
        raise gateway_internal_error()
    try:
        order = json.loads(call.body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise gateway_internal_error() from None
    if not isinstance(order, dict):
        raise gateway_internal_error()
    for field in ("account-id", "symbol", "type", "amount"):
        if not order.get(field):
            raise invalid_parameter(f"invalid {field}")
    account = next((a for a in call.signer.user.accounts if str(a.id) == str(order["account-id"])), None)
    if account is None:
        raise OrderFailure.ACCOUNT_UNKNOWN.refusal()
    if account.state != "working":
        raise OrderFailure.OPERATION_FORBIDDEN.refusal()
    symbol = call.state.symbols.get(str(order["symbol"]))
    if symbol is None:
        raise OrderFailure.SYMBOL_INVALID.refusal()
    if symbol.state == "pre-online":
        raise OrderFailure.SYMBOL_PENDING.refusal()
    if symbol.state != "online" or not symbol.trade_enabled:
        raise OrderFailure.SYMBOL_TRADE_DISABLED.refusal()
    if symbol.api_trading != "enabled":
        raise OrderFailure.OPERATION_FORBIDDEN.refusal()
    order_id = call.state.take_order_id()
    call.state.orders.append({
        "order_id": order_id,
        "uid": call.signer.user.uid,
        "account_id": account.id,
        "symbol": symbol.symbol,
        "type": order["type"],
        "amount": str(order["amount"]),
        "price": None if order.get("price") is None else str(order["price"]),
        "source": order.get("source"),
        "client_order_id": order.get("client-order-id"),
        "created_at_ms": call.now_ms,
    })
    return v1_ok(str(order_id))


ENDPOINTS: dict[tuple[str, str], Endpoint] = {
    ("GET", "/v1/common/timestamp"): Endpoint(server_time),
    ("GET", "/v1/common/symbols"): Endpoint(symbols_v1),
    # Documented as Read, but HTX serves it unsigned: ccxt and HTX's own tools call it so
    # (shared/adapters/htx/README.md#v2-settings-symbols).
    ("GET", "/v2/settings/common/symbols"): Endpoint(symbols_v2),
    ("GET", "/v1/settings/common/market-symbols"): Endpoint(market_symbols),
    ("GET", "/v2/market-status"): Endpoint(market_status),
    ("GET", "/v2/user/uid"): Endpoint(user_uid, permission="readOnly"),
    ("GET", "/v2/user/api-key"): Endpoint(api_keys, permission="readOnly", parent_only=True),
    ("GET", "/v1/account/accounts"): Endpoint(accounts, permission="readOnly"),
    ("POST", "/v1/order/orders/place"): Endpoint(place_order, permission="trade"),
}


# ---- the pipeline ----------------------------------------------------------------------------------------


async def _answer(request: Request, body: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    state: HtxSandboxState = request.app.state.sandbox
    endpoint = ENDPOINTS.get((request.method, request.url.path))
    if endpoint is None:
        raise method_not_allowed()  # shared/adapters/htx/README.md#transport
    if request.method == "GET" and body:
        raise forbidden()  # shared/adapters/htx/README.md#transport: a GET must not carry a body
    fault = state.fault_for(request.url.path)
    if fault is not None:
        await _suffer(fault, state)
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    caller, headers = None, {}
    if endpoint.permission is not None:
        received = ReceivedRequest(
            method=request.method,
            path=request.url.path,
            query_string=request.scope["query_string"].decode("latin-1"),
            host=request.headers.get("host", ""),
            client_ip=request.client.host if request.client else "",
        )
        caller = authenticate(received, state, now)
        authorize(caller, endpoint.permission, endpoint.parent_only)
        headers = _spend_rate_slot(state, caller.user.uid, request.url.path, now_ms)
    call = Call(state=state, caller=caller, query=dict(request.query_params), body=body,
                content_type=request.headers.get("content-type", ""), now_ms=now_ms)
    return endpoint.handler(call), headers


def _spend_rate_slot(state: HtxSandboxState, uid: int, path: str, now_ms: int) -> dict[str, str]:
    """Per UID and endpoint, with HTX's headers on every answer (shared/adapters/htx/README.md#rate-limits). The
    unit of Expire is undocumented (#unknowns there); the sandbox sends the window's end as epoch ms."""
    slot = state.take_rate_slot(uid, path, now_ms)
    headers = {REMAINING_HEADER: str(slot.remaining), EXPIRE_HEADER: str(slot.expires_at_ms)}
    if not slot.allowed:
        raise rate_limited(headers)
    return headers


async def _suffer(fault: Fault, state: HtxSandboxState) -> None:
    """An injected fault in HTX's words (shared/adapters/htx/README.md#other-errors)."""
    await endure(fault, state.rng, maintenance=maintenance, timeout=request_timeout,
                 error=lambda: _injected_error(fault))


def _injected_error(fault: Fault) -> Refusal:
    return gateway_internal_error() if fault.error_kind == "gateway-internal-error" else bad_gateway()


# ---- symbol lists, with HTX's field names ----------------------------------------------------------------


def _render_symbol_v1(s: ScenarioSymbol) -> dict[str, Any]:
    return {
        "base-currency": s.base, "quote-currency": s.quote, "symbol": s.symbol, "state": s.state,
        "price-precision": s.price_precision, "amount-precision": s.amount_precision,
        "value-precision": s.value_precision, "symbol-partition": s.partition,
        "min-order-value": float(s.min_order_value), "limit-order-min-order-amt": float(s.min_order_amount),
        "limit-order-max-order-amt": float(s.max_order_amount), "api-trading": s.api_trading, "tags": s.tags,
    }


def _render_symbol_v2(s: ScenarioSymbol) -> dict[str, Any]:
    return {
        "sc": s.symbol, "dn": f"{s.base.upper()}/{s.quote.upper()}", "bc": s.base, "qc": s.quote,
        "bcdn": s.base.upper(), "qcdn": s.quote.upper(), "state": s.state, "te": s.trade_enabled,
        "whe": False, "cd": False, "toa": 1514779200000, "sp": s.partition, "w": 999400000,
        "ttp": s.value_precision, "tap": s.amount_precision, "tpp": s.price_precision, "fp": 8, "tags": s.tags,
    }


def _render_market_symbol(s: ScenarioSymbol) -> dict[str, Any]:
    return {
        "symbol": s.symbol, "bc": s.base, "qc": s.quote, "state": s.state, "sp": s.partition, "tags": s.tags,
        "pp": s.price_precision, "ap": s.amount_precision, "vp": s.value_precision,
        "minoa": float(s.min_order_amount), "maxoa": float(s.max_order_amount), "minov": float(s.min_order_value),
        "at": s.api_trading,
    }


# Every answer is counted by its outcome (deploy/sandbox/common/pipeline.py).
serve_htx = counted(_answer)
