"""The sandbox's admin API, under `/_sandbox` (a path HTX does not use): lets tests and benchmarks change
the world at run time and read what happened. JSON in, JSON out; 422 for a bad payload, 404 for an unknown
user, key or account."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy.sandbox.scenario import (
    ALL_ENDPOINTS,
    EndpointRateLimit,
    Fault,
    SandboxState,
    ScenarioAccount,
    ScenarioApiKey,
    ScenarioMarketStatus,
    ScenarioSymbol,
    ScenarioUser,
    UnknownEntity,
)

M = TypeVar("M", bound=BaseModel)


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ResetRequest(_Payload):
    seed: int | None = None


class KeyChanges(_Payload):
    note: str | None = None
    permission: str | None = None
    ip_addresses: str | None = None
    valid_days: int | None = None
    status: str | None = None


class AccountChanges(_Payload):
    state: str


class FaultRequest(Fault):
    # An HTX path such as "/v2/user/uid", or "*" for every endpoint without a fault of its own.
    endpoint: str = Field(min_length=1)


class RateLimitRequest(EndpointRateLimit):
    endpoint: str = Field(min_length=1)


class AdminError(Exception):
    def __init__(self, http_status: int, detail: str) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.detail = detail


def _state(request: Request) -> SandboxState:
    state: SandboxState = request.app.state.sandbox
    return state


async def _payload(request: Request, model: type[M]) -> M:
    body = await request.body()
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise AdminError(422, str(exc)) from None


def _done(**extra: Any) -> JSONResponse:
    return JSONResponse({"status": "ok", **extra})


async def health(_request: Request) -> Response:
    return _done()


async def reset(request: Request) -> Response:
    """Reload the scenario file: users, keys, symbols as on start; no faults, orders or counts."""
    payload = await _payload(request, ResetRequest)
    request.app.state.reload(payload.seed)
    return _done()


async def put_user(request: Request) -> Response:
    user = await _payload(request, ScenarioUser)
    if user.uid != request.path_params["uid"]:
        raise AdminError(422, "the body's uid differs from the path's")
    _state(request).upsert_user(user)
    return _done()


async def put_key(request: Request) -> Response:
    _state(request).upsert_key(request.path_params["uid"], await _payload(request, ScenarioApiKey))
    return _done()


async def patch_key(request: Request) -> Response:
    changes = (await _payload(request, KeyChanges)).model_dump(exclude_none=True)
    try:
        key = _state(request).update_key(request.path_params["access_key"], changes)
    except ValidationError as exc:
        raise AdminError(422, str(exc)) from None
    return _done(key=key.model_dump(exclude={"secret_key"}))


async def delete_key(request: Request) -> Response:
    _state(request).delete_key(request.path_params["access_key"])
    return _done()


async def put_account(request: Request) -> Response:
    _state(request).upsert_account(request.path_params["uid"], await _payload(request, ScenarioAccount))
    return _done()


async def patch_account(request: Request) -> Response:
    changes = await _payload(request, AccountChanges)
    try:
        account = _state(request).set_account_state(request.path_params["account_id"], changes.state)
    except ValidationError as exc:
        raise AdminError(422, str(exc)) from None
    return _done(account=account.model_dump())


async def put_symbol(request: Request) -> Response:
    symbol = await _payload(request, ScenarioSymbol)
    if symbol.symbol != request.path_params["symbol"]:
        raise AdminError(422, "the body's symbol differs from the path's")
    _state(request).upsert_symbol(symbol)
    return _done()


async def put_market_status(request: Request) -> Response:
    _state(request).market_status = await _payload(request, ScenarioMarketStatus)
    return _done()


async def put_fault(request: Request) -> Response:
    fault = await _payload(request, FaultRequest)
    _state(request).faults[fault.endpoint] = Fault.model_validate(fault.model_dump(exclude={"endpoint"}))
    return _done()


async def clear_faults(request: Request) -> Response:
    _state(request).faults.clear()
    return _done()


async def put_rate_limit(request: Request) -> Response:
    limit = await _payload(request, RateLimitRequest)
    if limit.endpoint == ALL_ENDPOINTS:
        raise AdminError(422, "rate limits are set per endpoint")
    _state(request).rate_limits[limit.endpoint] = EndpointRateLimit(requests=limit.requests, window_ms=limit.window_ms)
    return _done()


async def get_orders(request: Request) -> Response:
    return JSONResponse({"orders": _state(request).orders})


async def get_request_counts(request: Request) -> Response:
    return JSONResponse({"requests": _state(request).request_count_report()})


def _guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def guarded(request: Request) -> Response:
        try:
            return await handler(request)
        except AdminError as error:
            return JSONResponse({"error": error.detail}, status_code=error.http_status)
        except UnknownEntity as error:
            return JSONResponse({"error": str(error)}, status_code=404)

    return guarded


ADMIN_ROUTES = [
    Route(path, _guarded(handler), methods=[method])
    for path, method, handler in [
        ("/health", "GET", health),
        ("/reset", "POST", reset),
        ("/users/{uid:int}", "PUT", put_user),
        ("/users/{uid:int}/keys", "PUT", put_key),
        ("/users/{uid:int}/accounts", "PUT", put_account),
        ("/keys/{access_key}", "PATCH", patch_key),
        ("/keys/{access_key}", "DELETE", delete_key),
        ("/accounts/{account_id:int}", "PATCH", patch_account),
        ("/symbols/{symbol}", "PUT", put_symbol),
        ("/market-status", "PUT", put_market_status),
        ("/faults", "PUT", put_fault),
        ("/faults", "DELETE", clear_faults),
        ("/rate-limits", "PUT", put_rate_limit),
        ("/orders", "GET", get_orders),
        ("/requests", "GET", get_request_counts),
    ]
]
