"""The OKX sandbox's admin API: the generic routes of deploy/sandbox/common/admin.py (health, reset, faults, rate
limits, orders, request counts), plus OKX's users, keys and instruments. JSON in, JSON out; 422 for a bad payload,
404 for an unknown user or key."""

from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import Response

from deploy.sandbox.common.admin import admin_routes, changing, done, entity_putter, read_payload
from deploy.sandbox.common.state import StrictModel
from deploy.sandbox.okx.scenario import OkxApiKey, OkxInstrument, OkxSandboxState, OkxUser


class KeyChanges(StrictModel):
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


async def patch_key(request: Request) -> Response:
    changes = (await read_payload(request, KeyChanges)).model_dump(exclude_none=True)
    key = changing(lambda: _state(request).update_key(request.path_params["api_key"], changes))
    return done(key=key.model_dump(exclude={"secret_key", "passphrase", "handed_secret_key", "handed_passphrase"}))


ADMIN_ROUTES = admin_routes([
    ("/users/{uid:int}", "PUT", entity_putter(OkxUser, lambda state, _, user: state.upsert_user(user), "uid")),
    ("/users/{uid:int}/keys", "PUT",
     entity_putter(OkxApiKey, lambda state, path, key: state.upsert_key(path["uid"], key))),
    ("/keys/{api_key}", "PATCH", patch_key),
    ("/instruments/{inst_id}", "PUT",
     entity_putter(OkxInstrument, lambda state, _, instrument: state.upsert_instrument(instrument), "inst_id")),
])
