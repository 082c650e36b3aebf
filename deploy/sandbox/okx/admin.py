"""The OKX sandbox's admin API: the generic routes of deploy/sandbox/common/admin.py (health, reset, faults, rate
limits, orders, request counts), plus OKX's users, keys and instruments. JSON in, JSON out; 422 for a bad payload,
404 for an unknown user or key."""

from pydantic import SecretStr

from deploy.sandbox.common.admin import admin_routes, entity_putter, key_patcher
from deploy.sandbox.common.state import StrictModel
from deploy.sandbox.okx.scenario import OkxApiKey, OkxInstrument, OkxUser


class KeyChanges(StrictModel):
    label: str | None = None
    perm: str | None = None
    ip: str | None = None
    demo: bool | None = None
    frozen: bool | None = None
    secret_key: SecretStr | None = None
    passphrase: SecretStr | None = None


ADMIN_ROUTES = admin_routes([
    ("/users/{uid:int}", "PUT", entity_putter(OkxUser, lambda state, _, user: state.upsert_user(user), "uid")),
    ("/users/{uid:int}/keys", "PUT",
     entity_putter(OkxApiKey, lambda state, path, key: state.upsert_key(path["uid"], key))),
    ("/keys/{api_key}", "PATCH",
     key_patcher(KeyChanges, lambda state, api_key, changes: state.update_key(api_key, changes), "api_key",
                 {"secret_key", "passphrase", "handed_secret_key", "handed_passphrase"})),
    ("/instruments/{inst_id}", "PUT",
     entity_putter(OkxInstrument, lambda state, _, instrument: state.upsert_instrument(instrument), "inst_id")),
])
