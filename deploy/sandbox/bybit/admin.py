"""The Bybit sandbox's admin API: the generic routes of deploy/sandbox/common/admin.py (faults as BybitFault), plus
Bybit's users, keys and symbols, with the paths and payload shapes the other sandboxes use, so
deploy/sandbox/common/admin_client.py drives them all. JSON in, JSON out; 422 for a bad payload, 404 for an unknown
user or key."""


from pydantic import SecretStr

from deploy.sandbox.bybit.scenario import BybitApiKey, BybitFault, BybitSymbol, BybitUser
from deploy.sandbox.common.admin import admin_routes, entity_putter, key_deleter, key_patcher
from deploy.sandbox.common.state import StrictModel


class KeyChanges(StrictModel):
    """Only the fields sent are changed; `valid_days: null` makes a key non-expiring."""

    secret: SecretStr | None = None
    note: str | None = None
    read_only: int | None = None
    permissions: dict[str, list[str]] | None = None
    ips: list[str] | None = None
    valid_days: int | None = None


ADMIN_ROUTES = admin_routes([
    ("/users/{uid:int}", "PUT", entity_putter(BybitUser, lambda state, _, user: state.put_member(user), "uid")),
    ("/users/{uid:int}/keys", "PUT",
     entity_putter(BybitApiKey, lambda state, path, key: state.put_key(path["uid"], key))),
    # `valid_days: null` makes a key non-expiring, so a null sent is a change.
    ("/keys/{api_key}", "PATCH",
     key_patcher(KeyChanges, lambda state, api_key, changes: state.change_key(api_key, changes), "api_key",
                 {"secret", "offered_secret"}, null_sets=True)),
    ("/keys/{api_key}", "DELETE", key_deleter(lambda state, api_key: state.drop_key(api_key), "api_key")),
    ("/symbols/{symbol}", "PUT",
     entity_putter(BybitSymbol, lambda state, _, symbol: state.put_symbol(symbol), "symbol")),
], fault_model=BybitFault)
