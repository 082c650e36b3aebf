"""The OKX sandbox's admin API, under `/_sandbox` (a path OKX does not use), shaped like the HTX sandbox's
(deploy/sandbox/admin.py), whose generic handlers (health, reset, faults, rate limits, orders, request counts) it
serves as they are. Only users, keys and instruments are OKX's own. JSON in, JSON out; 422 for a bad payload, 404 for
an unknown user or key."""

from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel, SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploy.sandbox.admin import ADMIN_ROUTES as HTX_ADMIN_ROUTES
from deploy.sandbox.admin import AdminError, _done, _guarded, _Payload, _payload
from deploy.sandbox.okx.scenario import OkxApiKey, OkxInstrument, OkxSandboxState, OkxUser

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[Request], Awaitable[Response]]


class KeyChanges(_Payload):
    label: str | None = None
    perm: str | None = None
    ip: str | None = None
    demo: bool | None = None
    frozen: bool | None = None
    secret_key: SecretStr | None = None
    passphrase: SecretStr | None = None


def _state(request: Request) -> OkxSandboxState:
    state: OkxSandboxState = request.app.state.sandbox
    return state


def _put(model: type[M], path_param: str, store: Callable[[OkxSandboxState, int | str, M], None]) -> Handler:
    """PUT of one entity named in the path; a body naming another is refused."""
    async def handler(request: Request) -> Response:
        entity = await _payload(request, model)
        named = request.path_params[path_param]
        if path_param in type(entity).model_fields and getattr(entity, path_param) != named:
            raise AdminError(422, f"the body's {path_param} differs from the path's")
        store(_state(request), named, entity)
        return _done()
    return handler


put_user = _put(OkxUser, "uid", lambda state, _uid, user: state.upsert_user(user))
put_key = _put(OkxApiKey, "uid", lambda state, uid, key: state.upsert_key(int(uid), key))
put_instrument = _put(OkxInstrument, "inst_id", lambda state, _id, instrument: state.upsert_instrument(instrument))


async def patch_key(request: Request) -> Response:
    changes = (await _payload(request, KeyChanges)).model_dump(exclude_none=True)
    try:
        key = _state(request).update_key(request.path_params["api_key"], changes)
    except ValidationError as exc:
        raise AdminError(422, str(exc)) from None
    return _done(key=key.model_dump(exclude={"secret_key", "passphrase", "handed_secret_key", "handed_passphrase"}))


# The HTX sandbox's generic routes, served as they are (they read the state's faults, rate limits, orders and counts).
_SHARED_PATHS = {"/health", "/reset", "/faults", "/rate-limits", "/orders", "/requests"}
ADMIN_ROUTES = [
    *(route for route in HTX_ADMIN_ROUTES if isinstance(route, Route) and route.path in _SHARED_PATHS),
    Route("/users/{uid:int}", _guarded(put_user), methods=["PUT"]),
    Route("/users/{uid:int}/keys", _guarded(put_key), methods=["PUT"]),
    Route("/keys/{api_key}", _guarded(patch_key), methods=["PATCH"]),
    Route("/instruments/{inst_id}", _guarded(put_instrument), methods=["PUT"]),
]
