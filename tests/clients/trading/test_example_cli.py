"""`hash7-engine`, the example engine: its own input checks, then run as a person runs it against the real
stack (a key bound through the services, orders on the HTX sandbox)."""

import asyncio
import json
import re
import time

import pytest
from click.testing import CliRunner

from shared.adapters.vault.records import KeyHealth, KeyRef
from shared.clients import console
from shared.clients.binding_client import BindingClient
from shared.clients.console import EXIT_OK, EXIT_REFUSED, EXIT_USAGE
from shared.clients.trading import example
from shared.clients.trading.credentials import TradingBinding
from shared.contracts.secrets import mask_access_key
from shared.contracts.states import BindingState
from tests.clients.fakes import ACCESS_KEY, MASKED_ACCESS_KEY
from tests.clients.hash7_process import hash7_environment, run_hash7
from tests.e2e.helpers import bind, fresh_key, new_user

ORDER = ["order", "--user", "user-1", "--binding", "binding-1", "--symbol", "btcusdt", "--side", "buy",
         "--amount", "0.001"]


@pytest.mark.parametrize(("extra", "problem"), [
    (["--type", "limit"], "a limit order needs --price, a market order takes none"),
    (["--type", "market", "--price", "30000"], "a limit order needs --price, a market order takes none"),
    (["--type", "limit", "--price", "-1"], "Input should be greater than 0"),
    (["--type", "stop", "--price", "1"], "'stop' is not one of 'limit', 'market'"),
])
def test_an_order_the_command_line_cannot_describe_is_bad_usage(extra, problem):
    result = CliRunner().invoke(example.cli, ORDER + extra, prog_name="hash7-engine")
    assert result.exit_code == EXIT_USAGE and problem in result.output


# ---- against the stack ------------------------------------------------------------------------------------


@pytest.fixture
def engine_environment(pipeline, htx_sandbox):
    return hash7_environment(pipeline.settings, HASH7_HTX_BASE_URL=htx_sandbox.base_url, HASH7_LOG_FORMAT="json",
                             HASH7_LOG_LEVEL="INFO")


async def run_engine(pipeline, environment, *args):
    completed = await asyncio.to_thread(run_hash7, list(args), environment, module=example.__name__)
    # Its log lines join the services' logs, so the suite's final leak scan reads them too.
    (pipeline.log_dir / f"hash7-engine-{time.monotonic_ns()}.log").write_text(completed.stderr)
    return completed


@pytest.mark.stack
async def test_the_example_engine_shows_a_binding_places_a_whitelisted_order_and_is_refused_another(
        pipeline, htx_sandbox, engine_environment):
    user, key = new_user(), fresh_key(htx_sandbox)
    async with BindingClient(pipeline.settings) as client:
        timeline = await bind(client, user, key, trading_pairs=["btcusdt"])
    assert timeline[-1].state == BindingState.ACTIVE, timeline
    binding = ["--user", user, "--binding", timeline[-1].binding_id]
    order = ["order", *binding, "--side", "buy", "--type", "limit", "--amount", "0.001", "--price", "30000"]

    shown = await run_engine(pipeline, engine_environment, "show", *binding)
    placed = await run_engine(pipeline, engine_environment, *order, "--symbol", "btcusdt")
    orders_before_refusal = len(htx_sandbox.admin.orders())
    refused = await run_engine(pipeline, engine_environment, *order, "--symbol", "ethusdt")

    assert shown.returncode == EXIT_OK, shown.stdout + shown.stderr
    for value in (mask_access_key(key.access_key), str(key.uid), "btcusdt"):
        assert value in shown.stdout
    assert placed.returncode == EXIT_OK, placed.stdout + placed.stderr
    order_id = int(re.search(r"Placed order (\d+): buy-limit 0\.001 btcusdt at 30000\.", placed.stdout)[1])
    [sandbox_order] = [o for o in htx_sandbox.admin.orders() if o["order_id"] == order_id]
    assert sandbox_order["symbol"] == "btcusdt" and sandbox_order["uid"] == key.uid
    assert refused.returncode == EXIT_REFUSED
    assert refused.stdout.strip() == (f"Refused (pair_not_whitelisted): binding {timeline[-1].binding_id} may not "
                                      "trade ethusdt: it is not in its whitelist (btcusdt)")
    assert "Traceback" not in refused.stderr and len(htx_sandbox.admin.orders()) == orders_before_refusal
    for completed in (shown, placed, refused):
        output = completed.stdout + completed.stderr
        assert key.secret_key.get_secret_value() not in output and key.access_key not in output


@pytest.mark.stack
async def test_showing_a_binding_vault_does_not_hold_is_refused(pipeline, engine_environment):
    completed = await run_engine(pipeline, engine_environment, "show", "--user", new_user(), "--binding", "nope")
    assert completed.returncode == EXIT_REFUSED
    assert completed.stdout.startswith("Refused (binding_not_found): binding nope of user ")


# ---- --output json ----------------------------------------------------------------------------------------


def test_show_with_json_output_prints_the_binding_with_its_access_key_masked(monkeypatch):
    binding = TradingBinding(user_id="user-1", binding_id="binding-1", access_key=ACCESS_KEY,
                             signing_key=KeyRef("exchange-key-1", 1), exchange="htx", owner_uid="42",
                             trading_account_id="7",
                             whitelist=("btcusdt",), health=KeyHealth.HEALTHY, version=3)

    class OneBinding:
        @classmethod
        def from_settings(cls, settings):
            return cls()

        async def get(self, user_id, binding_id):
            return binding

    monkeypatch.setattr(example, "BindingStore", OneBinding)
    monkeypatch.setattr(console, "configure_logging", lambda *args: None)

    result = CliRunner().invoke(example.cli, ["--output", "json", "show", "--user", "user-1", "--binding",
                                              "binding-1"], prog_name="hash7-engine")

    assert result.exit_code == EXIT_OK, result.output
    assert json.loads(result.stdout) == {
        "binding_id": "binding-1", "user_id": "user-1", "access_key_masked": MASKED_ACCESS_KEY, "exchange": "htx",
        "owner_uid": "42", "trading_account_id": "7", "whitelist": ["btcusdt"], "health": "healthy", "version": 3}
    assert ACCESS_KEY not in result.stdout


@pytest.mark.stack
async def test_a_refusal_with_json_output_is_a_json_line(bootstrapped_stack):
    environment = hash7_environment(bootstrapped_stack.settings)

    completed = await asyncio.to_thread(run_hash7, ["--output", "json", "show", "--user", new_user(), "--binding",
                                                    "nope"], environment, module=example.__name__)

    assert completed.returncode == EXIT_REFUSED, completed.stderr
    refusal = json.loads(completed.stdout)
    assert refusal["refused"] == "binding_not_found" and refusal["message"].startswith("binding nope of user ")
