"""The Bybit sandbox's admin API: the generic routes of deploy/sandbox/common/admin.py (faults as BybitFault), plus
Bybit's users, keys and symbols, with the paths and payload shapes the other sandboxes use, so
deploy/sandbox/common/admin_client.py drives them all. JSON in, JSON out; 422 for a bad payload, 404 for an unknown
user or key."""


from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from deploy.sandbox.bybit.scenario import BybitApiKey, BybitFault, BybitSandboxState, BybitSymbol, BybitUser
from deploy.sandbox.common.admin import admin_routes, done, entity_putter, key_patcher
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


async def delete_key(request: Request) -> Response:
    _state(request).drop_key(request.path_params["api_key"])
    return done()


ADMIN_ROUTES = admin_routes([
    ("/users/{uid:int}", "PUT", entity_putter(BybitUser, lambda state, _, user: state.put_member(user), "uid")),
    ("/users/{uid:int}/keys", "PUT",
     entity_putter(BybitApiKey, lambda state, path, key: state.put_key(path["uid"], key))),
    # `valid_days: null` makes a key non-expiring, so a null sent is a change.
    ("/keys/{api_key}", "PATCH",
     key_patcher(KeyChanges, lambda state, api_key, changes: state.change_key(api_key, changes), "api_key",
                 {"secret", "offered_secret"}, null_sets=True)),
    ("/keys/{api_key}", "DELETE", delete_key),
    ("/symbols/{symbol}", "PUT",
     entity_putter(BybitSymbol, lambda state, _, symbol: state.put_symbol(symbol), "symbol")),
], fault_model=BybitFault)
