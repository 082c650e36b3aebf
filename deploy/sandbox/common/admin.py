"""The admin API every sandbox serves under `/_sandbox` (a path no supported exchange uses), so one client
(deploy/sandbox/common/admin_client.py) drives them all: the generic handlers (health, reset, faults, rate limits,
orders, request counts) and the pieces each exchange's own handlers are made of. JSON in, JSON out; 422 for a bad
payload, 404 for an unknown user, key or account."""

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, create_model
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from deploy.sandbox.common.state import (
    ALL_ENDPOINTS,
    EndpointRateLimit,
    Fault,
    SandboxBooks,
    StrictModel,
    UnknownEntity,
)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]


class ResetRequest(StrictModel):
    seed: int | None = None


class RateLimitRequest(EndpointRateLimit):
    endpoint: str = Field(min_length=1)


class AdminError(Exception):
    def __init__(self, http_status: int, detail: str) -> None:
        super().__init__(detail)
        self.http_status = http_status
        self.detail = detail


def books(request: Request) -> SandboxBooks:
    state: SandboxBooks = request.app.state.sandbox
    return state


async def read_payload(request: Request, model: type[M]) -> M:
    """The request's JSON body as model (an empty body as {}), or a 422."""
    body = await request.body()
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise AdminError(422, str(exc)) from None


def done(**extra: Any) -> JSONResponse:
    return JSONResponse({"status": "ok", **extra})


def guarded(handler: Handler) -> Handler:
    """handler, with AdminError and UnknownEntity answered as JSON errors."""

    async def guarded_handler(request: Request) -> Response:
        try:
            return await handler(request)
        except AdminError as error:
            return JSONResponse({"error": error.detail}, status_code=error.http_status)
        except UnknownEntity as error:
            return JSONResponse({"error": str(error)}, status_code=404)

    return guarded_handler


def changing(apply: Callable[[], M]) -> M:
    """apply()'s result; a change the entity's model refuses is a 422."""
    try:
        return apply()
    except ValidationError as exc:
        raise AdminError(422, str(exc)) from None


def entity_putter(model: type[M], store: Callable[[Any, dict[str, Any], M], None],
                  path_id: str | None = None) -> Handler:
    """A PUT handler: the body read as model (its `path_id` field, if named, must equal the path's), then
    store(state, path parameters, entity)."""

    async def put(request: Request) -> Response:
        entity = await read_payload(request, model)
        if path_id is not None and getattr(entity, path_id) != request.path_params[path_id]:
            raise AdminError(422, f"the body's {path_id} differs from the path's")
        store(request.app.state.sandbox, request.path_params, entity)
        return done()

    return put


def key_patcher(changes_model: type[BaseModel], update: Callable[[Any, str, dict[str, Any]], BaseModel], path_id: str,
                secrets: set[str], *, null_sets: bool = False) -> Handler:
    """A PATCH handler for the key named by the path's path_id: only the fields sent change (a null changes
    nothing, or with null_sets sets the field to null); answers the updated key without its secrets."""

    async def patch(request: Request) -> Response:
        payload = await read_payload(request, changes_model)
        changes = payload.model_dump(exclude_unset=True) if null_sets else payload.model_dump(exclude_none=True)
        key = changing(lambda: update(request.app.state.sandbox, request.path_params[path_id], changes))
        return done(key=key.model_dump(exclude=secrets))

    return patch


def key_deleter(delete: Callable[[Any, str], None], path_id: str) -> Handler:
    """A DELETE handler for the key named by the path's path_id: delete(state, key id)."""

    async def delete_key(request: Request) -> Response:
        delete(request.app.state.sandbox, request.path_params[path_id])
        return done()

    return delete_key


async def health(_request: Request) -> Response:
    return done()


async def reset(request: Request) -> Response:
    """Reload the scenario file: users, keys, symbols as on start; no faults, orders or counts."""
    payload = await read_payload(request, ResetRequest)
    request.app.state.reload(payload.seed)
    return done()


def fault_setter(fault_model: type[Fault]) -> Handler:
    """PUT /faults for a sandbox whose faults are fault_model: the body is one, plus the `endpoint` it applies to
    (the exchange's path, or "*" for every endpoint without a fault of its own)."""
    request_model: type[Fault] = create_model("FaultRequest", __base__=fault_model,
                                              endpoint=(str, Field(min_length=1)))

    async def put_fault(request: Request) -> Response:
        fault = await read_payload(request, request_model)
        endpoint: str = getattr(fault, "endpoint")
        books(request).faults[endpoint] = fault_model.model_validate(fault.model_dump(exclude={"endpoint"}))
        return done()

    return put_fault


async def clear_faults(request: Request) -> Response:
    books(request).faults.clear()
    return done()


async def put_rate_limit(request: Request) -> Response:
    limit = await read_payload(request, RateLimitRequest)
    if limit.endpoint == ALL_ENDPOINTS:
        raise AdminError(422, "rate limits are set per endpoint")
    books(request).rate_limits[limit.endpoint] = EndpointRateLimit(requests=limit.requests, window_ms=limit.window_ms)
    return done()


async def get_orders(request: Request) -> Response:
    return JSONResponse({"orders": books(request).orders})


async def get_request_counts(request: Request) -> Response:
    return JSONResponse({"requests": books(request).request_count_report()})


def admin_routes(exchange_routes: Iterable[tuple[str, str, Handler]], fault_model: type[Fault] = Fault) -> list[Route]:
    """The generic routes and the exchange's own (path, method, handler), each guarded."""
    generic = [
        ("/health", "GET", health),
        ("/reset", "POST", reset),
        ("/faults", "PUT", fault_setter(fault_model)),
        ("/faults", "DELETE", clear_faults),
        ("/rate-limits", "PUT", put_rate_limit),
        ("/orders", "GET", get_orders),
        ("/requests", "GET", get_request_counts),
    ]
    return [Route(path, guarded(handler), methods=[method]) for path, method, handler in [*generic, *exchange_routes]]
