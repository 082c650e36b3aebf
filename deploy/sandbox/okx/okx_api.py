"""OKX's endpoints as the OKX sandbox serves them, and the pipeline every request to them goes through: route (404
for an unknown path, 50115 for another method), injected faults, then for private endpoints authentication,
permission and the per-user rate limit, then the endpoint itself."""

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request

from deploy.sandbox.common.pipeline import counted, endure
from deploy.sandbox.common.state import Fault
from deploy.sandbox.okx.auth import ReceivedRequest, authenticate
from deploy.sandbox.okx.envelopes import Failure, bad_gateway, not_found, ok, order_refused, parameter_empty
from deploy.sandbox.okx.scenario import (
    ACCOUNT_CONFIG_PATH,
    ORDER_PATH,
    OkxApiKey,
    OkxInstrument,
    OkxSandboxState,
    OkxUser,
)

# A public endpoint's handler: (state, query, now_ms) → the success document.
PublicHandler = Callable[[OkxSandboxState, Mapping[str, str], int], dict[str, Any]]
# A private endpoint's handler: (state, the authenticated user and key, body, now_ms) → the success document.
PrivateHandler = Callable[[OkxSandboxState, OkxUser, OkxApiKey, bytes, int], dict[str, Any]]


# ---- public endpoints ------------------------------------------------------------------------------------


def system_time(_state: OkxSandboxState, _query: Mapping[str, str], now_ms: int) -> dict[str, Any]:
    return ok([{"ts": str(now_ms)}])  # shared/adapters/okx/README.md#clock


def instruments(state: OkxSandboxState, query: Mapping[str, str], _now_ms: int) -> dict[str, Any]:
    """shared/adapters/okx/README.md#instruments. The sandbox lists spot only: another instType lists nothing."""
    inst_type = query.get("instType", "")
    if not inst_type:
        raise parameter_empty("instType")
    wanted = query.get("instId")
    listed = [i for i in state.instruments.values() if inst_type == "SPOT" and wanted in (None, i.inst_id)]
    return ok([_render_instrument(i) for i in listed])


# ---- private endpoints -----------------------------------------------------------------------------------


def account_config(_state: OkxSandboxState, user: OkxUser, key: OkxApiKey, _body: bytes, _now_ms: int
                   ) -> dict[str, Any]:
    """shared/adapters/okx/README.md#account-config: the calling key's own configuration."""
    return ok([{
        "uid": str(user.uid), "mainUid": str(user.main_uid or user.uid), "type": user.type, "acctLv": user.acct_lv,
        "kycLv": user.kyc_lv, "label": key.label, "perm": key.perm, "ip": key.ip, "level": "Lv1",
        "posMode": "net_mode", "autoLoan": False, "acctStpMode": "cancel_maker", "greeksType": "PA",
        "ctIsoMode": "automatic", "mgnIsoMode": "automatic", "levelTmp": "", "liquidationGear": "-1",
        "opAuth": "0", "roleType": "0", "spotRoleType": "0", "traderInsts": [], "spotTraderInsts": [],
        "enableSpotBorrow": False, "spotBorrowAutoRepay": False,
    }])


_REQUIRED_ORDER_FIELDS = ("instId", "tdMode", "side", "ordType", "sz")


def place_order(state: OkxSandboxState, user: OkxUser, key: OkxApiKey, body: bytes, now_ms: int) -> dict[str, Any]:
    """shared/adapters/okx/README.md#orders. Parameter faults are the envelope's (50000, 50002, 50014); an order the
    exchange refuses is code "1" with its sCode. The sandbox's sCodes: 51001 for an unknown instrument and for one
    not live (OKX's code for the latter is not documented), 51000 for a bad tdMode, side, ordType or a limit order
    without px."""
    if not body.strip():
        raise Failure.BODY_EMPTY.refusal()
    try:
        order = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise Failure.JSON_SYNTAX.refusal() from None
    if not isinstance(order, dict):
        raise Failure.JSON_SYNTAX.refusal()
    for field in _REQUIRED_ORDER_FIELDS:
        if order.get(field) in (None, ""):
            raise parameter_empty(field)
    instrument = state.instruments.get(str(order["instId"]))
    if instrument is None or instrument.state != "live":
        raise order_refused(order, "51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist.")
    for field, allowed in (("tdMode", ("cash",)), ("side", ("buy", "sell")), ("ordType", ("limit", "market"))):
        if order[field] not in allowed:
            raise order_refused(order, "51000", f"Parameter {field} error")
    if order["ordType"] == "limit" and order.get("px") in (None, ""):
        raise order_refused(order, "51000", "Parameter px error")
    order_id = str(state.take_order_id())
    state.orders.append({
        "ord_id": order_id, "uid": user.uid, "api_key": key.api_key,
        "inst_id": instrument.inst_id, "td_mode": order["tdMode"], "side": order["side"],
        "ord_type": order["ordType"], "sz": str(order["sz"]),
        "px": None if order.get("px") is None else str(order["px"]),
        "cl_ord_id": order.get("clOrdId"), "tag": order.get("tag"), "created_at_ms": now_ms,
    })
    item = {"clOrdId": str(order.get("clOrdId", "")), "ordId": order_id, "tag": str(order.get("tag", "")),
            "ts": str(now_ms), "sCode": "0", "sMsg": "Order placed", "subCode": ""}
    return ok([item], inTime=str(now_ms * 1000), outTime=str(now_ms * 1000))


# path → (method, handler, the key permission a private endpoint needs: shared/adapters/okx/README.md#account-config,
# #orders).
PUBLIC_ENDPOINTS: dict[str, PublicHandler] = {
    "/api/v5/public/time": system_time,
    "/api/v5/public/instruments": instruments,
}
PRIVATE_ENDPOINTS: dict[str, tuple[str, PrivateHandler, str]] = {
    ACCOUNT_CONFIG_PATH: ("GET", account_config, "read_only"),
    ORDER_PATH: ("POST", place_order, "trade"),
}


# ---- the pipeline ----------------------------------------------------------------------------------------


async def _answer(request: Request, body: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    state: OkxSandboxState = request.app.state.sandbox
    path = request.url.path
    method = "GET" if path in PUBLIC_ENDPOINTS else PRIVATE_ENDPOINTS[path][0] if path in PRIVATE_ENDPOINTS else None
    if method is None:
        raise not_found()
    if request.method != method:
        raise Failure.INVALID_METHOD.refusal()
    fault = state.fault_for(path)
    if fault is not None:
        await _suffer(fault, state)
    now = datetime.now(UTC)
    now_ms = int(now.timestamp() * 1000)
    if path in PUBLIC_ENDPOINTS:
        return PUBLIC_ENDPOINTS[path](state, request.query_params, now_ms), {}
    _, handler, permission = PRIVATE_ENDPOINTS[path]
    received = ReceivedRequest(method=request.method, path=path,
                               query_string=request.scope["query_string"].decode("latin-1"),
                               headers=request.headers, body=body,
                               client_ip=request.client.host if request.client else "")
    user, key = authenticate(received, state, now)
    if permission not in key.permissions:
        raise Failure.NO_PERMISSION.refusal()  # shared/adapters/okx/README.md#what-cannot-be-proved: 50120
    # shared/adapters/okx/README.md#rate-limits: per User ID, no headers.
    if not state.take_rate_slot(user.uid, path, now_ms).allowed:
        raise Failure.RATE_LIMITED.refusal()
    return handler(state, user, key, body, now_ms), {}


async def _suffer(fault: Fault, state: OkxSandboxState) -> None:
    """The generic fault (deploy/sandbox/common/state.py) in OKX's words: maintenance is 50001 (HTTP 503), a held
    request ends in 50004, an injected error is 50026 (HTTP 500; the fault's `gateway-internal-error`) or a bare
    502 (`bad-gateway`)."""
    await endure(fault, state.rng, maintenance=Failure.SERVICE_UNAVAILABLE.refusal,
                 timeout=Failure.ENDPOINT_TIMEOUT.refusal,
                 error=lambda: Failure.SYSTEM_ERROR.refusal() if fault.error_kind == "gateway-internal-error"
                 else bad_gateway())


def _render_instrument(i: OkxInstrument) -> dict[str, Any]:
    return {
        "instType": "SPOT", "instId": i.inst_id, "baseCcy": i.base_ccy, "quoteCcy": i.quote_ccy, "state": i.state,
        "minSz": i.min_sz, "lotSz": i.lot_sz, "tickSz": i.tick_sz, "settleCcy": "", "ctVal": "", "ctMult": "",
        "ctValCcy": "", "ctType": "", "uly": "", "instFamily": "", "listTime": "1606468572000", "expTime": "",
        "lever": "", "maxLmtSz": "9999999999", "maxMktSz": "1000000", "ruleType": "normal", "alias": "",
    }


# Every answer is counted by its outcome (deploy/sandbox/common/pipeline.py); OKX sends no rate-limit headers.
serve_okx = counted(_answer)
