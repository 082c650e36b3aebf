"""The Bybit sandbox's admin API: the generic routes of deploy/sandbox/common/admin.py (faults as BybitFault), plus
Bybit's users, keys and symbols, with the paths and payload shapes the other sandboxes use, so
deploy/sandbox/common/admin_client.py drives them all. JSON in, JSON out; 422 for a bad payload, 404 for an unknown
user or key."""

from typing import Any

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from deploy.sandbox.bybit.scenario import BybitApiKey, BybitFault, BybitSandboxState, BybitSymbol, BybitUser
from deploy.sandbox.common.admin import admin_routes, changing, done, entity_putter, read_payload
from deploy.sandbox.common.state import StrictModel


class KeyChanges(StrictModel):
    """Only the fields sent are changed; `valid_days: null` makes a key non-expiring."""

    secret: SecretStr | None = None
    note: str | None = None
    read_only: int | None = None
    permissions: dict[str, list[str]] | None = None
    ips: list[str] | None = None
    valid_days: int | None = None


def _state(request: Request) -> BybitSandboxState:
    state: BybitSandboxState = request.app.state.sandbox
    return state


async def patch_key(request: Request) -> Response:
    changes: dict[str, Any] = (await read_payload(request, KeyChanges)).model_dump(exclude_unset=True)
    key = changing(lambda: _state(request).change_key(request.path_params["api_key"], changes))
    return done(key=key.model_dump(exclude={"secret", "offered_secret"}))


async def delete_key(request: Request) -> Response:
    _state(request).drop_key(request.path_params["api_key"])
    return done()


ADMIN_ROUTES = admin_routes([
    ("/users/{uid:int}", "PUT", entity_putter(BybitUser, lambda state, _, user: state.put_member(user), "uid")),
    ("/users/{uid:int}/keys", "PUT",
     entity_putter(BybitApiKey, lambda state, path, key: state.put_key(path["uid"], key))),
    ("/keys/{api_key}", "PATCH", patch_key),
    ("/keys/{api_key}", "DELETE", delete_key),
    ("/symbols/{symbol}", "PUT",
     entity_putter(BybitSymbol, lambda state, _, symbol: state.put_symbol(symbol), "symbol")),
], fault_model=BybitFault)
