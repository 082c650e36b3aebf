"""`hash7-admin revoke-all` on the real stack: every binding of a user, or the binding of an access key, revoked in
one command and waited for; afterwards the trading engine can neither read the bindings nor sign with their keys.
Without --yes, a "no" revokes nothing."""

import json

import pytest
from hvac import exceptions as hvac_errors

from shared.adapters.vault.layout import KV_MOUNT, exchange_key, user_bindings_folder
from shared.clients.binding_client import BindingClient
from shared.clients.trading import BindingNotFound, BindingStore
from shared.contracts.states import BindingState
from shared.runtime.config import EngineSettings
from tests.clients.hash7_process import hash7_environment, run_hash7
from tests.e2e.helpers import bind, fresh_key, new_user
from tests.vault_admin import transit_key

pytestmark = pytest.mark.stack
ADMIN = "deploy.admin"


@pytest.fixture
async def client(pipeline):
    async with BindingClient(pipeline.settings) as binding_client:
        yield binding_client


@pytest.fixture
def engine_store(pipeline, htx_sandbox) -> BindingStore:
    settings = EngineSettings(**pipeline.settings.model_dump(exclude={"htx_base_url"}),
                              htx_base_url=htx_sandbox.base_url, engine_cache_ttl_s=0.1)
    return BindingStore.from_settings(settings)


async def active_binding(client, htx_sandbox, user: str):
    key = fresh_key(htx_sandbox)
    timeline = await bind(client, user, key, trading_pairs=["btcusdt"])
    assert timeline[-1].state == BindingState.ACTIVE, timeline
    return key, timeline[-1].binding_id


def revoke_all(settings, *args: str, stdin: str = ""):
    return run_hash7(["--output", "json", "revoke-all", *args], hash7_environment(settings), stdin=stdin,
                     module=ADMIN)


def stored_ids(vault_admin, user: str) -> list[str]:
    try:
        listed = vault_admin.secrets.kv.v2.list_secrets(path=user_bindings_folder(user), mount_point=KV_MOUNT)
    except hvac_errors.InvalidPath:
        return []
    return listed["data"]["keys"]


async def test_every_binding_of_a_user_is_revoked_and_the_engine_can_no_longer_use_them(
        client, pipeline, htx_sandbox, vault_admin, engine_store):
    user = new_user()
    bindings = [(await active_binding(client, htx_sandbox, user))[1] for _ in range(2)]
    assert {(await engine_store.get(user, binding_id)).binding_id for binding_id in bindings} == set(bindings)

    done = revoke_all(pipeline.settings, "--user", user, "--yes")

    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert sorted((row["binding_id"], row["state"]) for row in rows) == sorted(
        (binding_id, "revoked") for binding_id in bindings)
    assert stored_ids(vault_admin, user) == []
    for binding_id in bindings:
        with pytest.raises(BindingNotFound):
            await engine_store.refresh(user, binding_id)
        assert transit_key(vault_admin, exchange_key(user, binding_id)) is None


async def test_the_binding_of_an_access_key_is_revoked_and_a_no_revokes_nothing(
        client, pipeline, htx_sandbox, vault_admin):
    user = new_user()
    key, binding_id = await active_binding(client, htx_sandbox, user)

    declined = revoke_all(pipeline.settings, "--access-key", key.access_key, stdin="n\n")
    assert declined.returncode != 0 and not declined.stdout
    assert stored_ids(vault_admin, user) == [binding_id]

    done = revoke_all(pipeline.settings, "--access-key", key.access_key, "--yes")
    assert done.returncode == 0, done.stderr
    [row] = [json.loads(line) for line in done.stdout.splitlines()]
    assert (row["user_id"], row["binding_id"], row["state"]) == (user, binding_id, "revoked")
    assert transit_key(vault_admin, exchange_key(user, binding_id)) is None


def test_a_user_with_nothing_bound_has_nothing_revoked_and_one_of_user_or_access_key_is_required(pipeline):
    nothing = revoke_all(pipeline.settings, "--user", new_user(), "--yes")
    assert (nothing.returncode, nothing.stdout) == (0, "")
    assert "No stored binding" in nothing.stderr
    neither = revoke_all(pipeline.settings, "--yes")
    assert neither.returncode == 2 and "exactly one of --user and --access-key" in neither.stderr
