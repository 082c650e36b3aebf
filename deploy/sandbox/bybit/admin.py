"""The Bybit sandbox's admin API, under `/_sandbox` (a path Bybit does not use), with the HTX sandbox's paths and
payload shapes so `deploy/sandbox/admin_client.py` drives both. The generic handlers (health, reset, clearing
faults, rate limits, orders, request counts) are the HTX sandbox's own; users, keys, symbols and faults are
Bybit's. JSON in, JSON out; 422 for a bad payload, 404 for an unknown user or key."""

from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.sandbox.admin import (
    AdminError,
    M,
    _done,
    _guarded,
    _payload,
    clear_faults,
    get_orders,
    get_request_counts,
    health,
    put_rate_limit,
    reset,
)
from deploy.sandbox.bybit.scenario import BybitApiKey, BybitFault, BybitSandboxState, BybitSymbol, BybitUser


class KeyChanges(BaseModel):
    """Only the fields sent are changed; `valid_days: null` makes a key non-expiring."""

    model_config = ConfigDict(extra="forbid")

    secret: SecretStr | None = None
    note: str | None = None
    read_only: int | None = None
    permissions: dict[str, list[str]] | None = None
    ips: list[str] | None = None
    valid_days: int | None = None


class FaultRequest(BybitFault):
    # A Bybit path such as "/v5/user/query-api", or "*" for every endpoint without a fault of its own.
    endpoint: str = Field(min_length=1)


def _state(request: Request) -> BybitSandboxState:
    state: BybitSandboxState = request.app.state.sandbox
    return state


def _upsert(model: type[M], apply: Callable[[BybitSandboxState, dict[str, Any], M], None],
            path_id: str | None = None) -> Callable[[Request], Awaitable[Response]]:
    """A PUT handler: the body read as model (its `path_id` field must equal the path's), then applied."""

    async def handler(request: Request) -> Response:
        item = await _payload(request, model)
        if path_id is not None and getattr(item, path_id) != request.path_params[path_id]:
            raise AdminError(422, f"the body's {path_id} differs from the path's")
        apply(_state(request), request.path_params, item)
        return _done()

    return handler


async def patch_key(request: Request) -> Response:
    changes: dict[str, Any] = (await _payload(request, KeyChanges)).model_dump(exclude_unset=True)
    try:
        key = _state(request).change_key(request.path_params["api_key"], changes)
    except ValidationError as exc:
        raise AdminError(422, str(exc)) from None
    return _done(key=key.model_dump(exclude={"secret", "offered_secret"}))


async def delete_key(request: Request) -> Response:
    _state(request).drop_key(request.path_params["api_key"])
    return _done()


async def put_fault(request: Request) -> Response:
    fault = await _payload(request, FaultRequest)
    _state(request).faults[fault.endpoint] = BybitFault.model_validate(fault.model_dump(exclude={"endpoint"}))
    return _done()


ADMIN_ROUTES = [
    Route(path, _guarded(handler), methods=[method])
    for path, method, handler in [
        ("/health", "GET", health),
        ("/reset", "POST", reset),
        ("/users/{uid:int}", "PUT", _upsert(BybitUser, lambda state, _, user: state.put_member(user), "uid")),
        ("/users/{uid:int}/keys", "PUT",
         _upsert(BybitApiKey, lambda state, path, key: state.put_key(path["uid"], key))),
        ("/keys/{api_key}", "PATCH", patch_key),
        ("/keys/{api_key}", "DELETE", delete_key),
        ("/symbols/{symbol}", "PUT", _upsert(BybitSymbol, lambda state, _, symbol: state.put_symbol(symbol), "symbol")),
        ("/faults", "PUT", put_fault),
        ("/faults", "DELETE", clear_faults),
        ("/rate-limits", "PUT", put_rate_limit),
        ("/orders", "GET", get_orders),
        ("/requests", "GET", get_request_counts),
    ]
]
