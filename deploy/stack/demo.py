"""The first minute of `make run`: bind every key of the sandbox's demo scenario, one demo user per key,
and print each binding's status timeline, so a newcomer sees every verdict at once."""

import json
from pathlib import Path

from pydantic import SecretStr
from rich.console import Console

from shared.clients.binding_client import BindingClient
from shared.clients.cli.tables import REQUEST_TIMELINE
from shared.contracts.states import BIND_OUTCOME
from shared.runtime.config import Settings

DEMO_PAIRS = ["btcusdt", "ethusdt"]
ANSWER_TIMEOUT_S = 60.0


async def bind_demo_keys(settings: Settings, scenario_path: Path, console: Console) -> None:
    scenario = json.loads(scenario_path.read_text())
    keys = [key for user in scenario["users"] for key in user["api_keys"]]
    async with BindingClient(settings) as client:
        await client.preflight()
        # Fixed request ids: a second `make run` replays them (idempotently) instead of piling up bindings.
        requests = {
            key["note"]: await client.bind(f"demo-{key['note']}", key["access_key"], SecretStr(key["secret_key"]),
                                           label=key["note"], trading_pairs=DEMO_PAIRS,
                                           request_id=f"demo-{key['note']}")
            for key in keys
        }
        with console.status(f"Binding the {len(requests)} demo keys…"):
            timelines = {note: await client.wait_for(request_id, BIND_OUTCOME.final, ANSWER_TIMEOUT_S)
                         for note, request_id in requests.items()}
    for note, timeline in timelines.items():
        console.print(f"\n[bold]demo key '{note}'[/bold] → user demo-{note}, final state "
                      f"[bold]{timeline[-1].state.value}[/bold]")
        console.print(REQUEST_TIMELINE.table(timeline))
