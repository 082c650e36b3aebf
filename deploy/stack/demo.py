"""The first minute of `make run`: bind every key of each sandbox's demo scenario, one demo user per key, and print
each binding's status timeline, so a newcomer sees every verdict on every exchange at once."""

from rich.console import Console

from deploy.stack.sandbox import SANDBOXES
from shared.clients.binding_client import BindingClient
from shared.clients.cli.tables import REQUEST_TIMELINE
from shared.contracts.states import BIND_OUTCOME
from shared.runtime.config import Settings

# Listed as tradable by every demo scenario.
DEMO_PAIRS = ["btcusdt", "ethusdt"]
ANSWER_TIMEOUT_S = 60.0


async def bind_demo_keys(settings: Settings, console: Console) -> None:
    keys = [(exchange, key) for exchange, program in SANDBOXES.items()
            for key in program.demo_keys(program.demo_scenario)]
    async with BindingClient(settings) as client:
        await client.preflight()
        # Fixed request ids (and users): a second `make run` replays them (idempotently) instead of piling up
        # bindings.
        requests = {}
        for exchange, key in keys:
            user_id = f"demo-{exchange.value}-{key.name}"
            requests[(exchange, key.name, user_id)] = await client.bind(
                user_id, key.access_key, key.secret_key, exchange=exchange, passphrase=key.passphrase,
                label=key.name, trading_pairs=DEMO_PAIRS, request_id=user_id)
        with console.status(f"Binding the {len(requests)} demo keys…"):
            timelines = {about: await client.wait_for(request_id, BIND_OUTCOME.final, ANSWER_TIMEOUT_S)
                         for about, request_id in requests.items()}
    for (exchange, name, user_id), timeline in timelines.items():
        console.print(f"\n[bold]{exchange.display_name} demo key '{name}'[/bold] → user {user_id}, final state "
                      f"[bold]{timeline[-1].state.value}[/bold]")
        console.print(REQUEST_TIMELINE.table(timeline))
