"""The HTX sandbox's admin API: the generic routes of deploy/sandbox/common/admin.py, plus HTX's users, keys,
accounts, symbols and market status. JSON in, JSON out; 422 for a bad payload, 404 for an unknown user, key or
account."""

from starlette.requests import Request
from starlette.responses import Response

from deploy.sandbox.common.admin import (
    admin_routes,
    changing,
    done,
    entity_putter,
    key_deleter,
    key_patcher,
    read_payload,
)
from deploy.sandbox.common.state import StrictModel
from deploy.sandbox.htx.scenario import (
    HtxSandboxState,
    ScenarioAccount,
    ScenarioApiKey,
    ScenarioMarketStatus,
    ScenarioSymbol,
    ScenarioUser,
)


class KeyChanges(StrictModel):
    note: str | None = None
    permission: str | None = None
    ip_addresses: str | None = None
    valid_days: int | None = None
    status: str | None = None


class AccountChanges(StrictModel):
    state: str


def _state(request: Request) -> HtxSandboxState:
    state: HtxSandboxState = request.app.state.sandbox
    return state


async def patch_account(request: Request) -> Response:
    changes = await read_payload(request, AccountChanges)
    account = changing(lambda: _state(request).set_account_state(request.path_params["account_id"], changes.state))
    return done(account=account.model_dump())


async def put_market_status(request: Request) -> Response:
    _state(request).market_status = await read_payload(request, ScenarioMarketStatus)
    return done()


ADMIN_ROUTES = admin_routes([
    ("/users/{uid:int}", "PUT", entity_putter(ScenarioUser, lambda state, _, user: state.upsert_user(user), "uid")),
    ("/users/{uid:int}/keys", "PUT",
     entity_putter(ScenarioApiKey, lambda state, path, key: state.upsert_key(path["uid"], key))),
    ("/users/{uid:int}/accounts", "PUT",
     entity_putter(ScenarioAccount, lambda state, path, account: state.upsert_account(path["uid"], account))),
    ("/keys/{access_key}", "PATCH",
     key_patcher(KeyChanges, lambda state, access_key, changes: state.update_key(access_key, changes), "access_key",
                 {"secret_key"})),
    ("/keys/{access_key}", "DELETE", key_deleter(lambda state, access_key: state.delete_key(access_key), "access_key")),
    ("/accounts/{account_id:int}", "PATCH", patch_account),
    ("/symbols/{symbol}", "PUT",
     entity_putter(ScenarioSymbol, lambda state, _, symbol: state.upsert_symbol(symbol), "symbol")),
    ("/market-status", "PUT", put_market_status),
])
