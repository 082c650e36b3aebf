"""The first minute of `make run`: bind every key of each sandbox's demo scenario, one demo user per key, and print
each binding's status timeline, so a newcomer sees every verdict on every exchange at once."""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from rich.console import Console

from shared.clients.binding_client import BindingClient
from shared.clients.cli.tables import REQUEST_TIMELINE
from shared.contracts.exchanges import ExchangeName
from shared.contracts.states import BIND_OUTCOME
from shared.runtime.config import Settings

# Listed as tradable by every demo scenario.
DEMO_PAIRS = ["btcusdt", "ethusdt"]
ANSWER_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DemoKey:
    """A demo key as its user hands it to Hash7."""

    exchange: ExchangeName
    name: str
    access_key: str
    secret_key: SecretStr = field(repr=False)
    passphrase: SecretStr | None = field(default=None, repr=False)

    @property
    def user_id(self) -> str:
        return f"demo-{self.exchange.value}-{self.name}"


def demo_keys(exchange: ExchangeName, scenario_path: Path) -> list[DemoKey]:
    """Every key of an exchange's demo scenario. Each sandbox spells its keys in its exchange's words
    (deploy/sandbox/<exchange>/scenario.py); OKX's may carry what its user mistyped (`handed_*`)."""
    scenario = json.loads(scenario_path.read_text())
    return [_demo_key(exchange, key) for user in scenario["users"] for key in user["api_keys"]]


def _demo_key(exchange: ExchangeName, key: Mapping[str, Any]) -> DemoKey:
    if exchange is ExchangeName.HTX:
        return DemoKey(exchange, key["note"], key["access_key"], SecretStr(key["secret_key"]))
    if exchange is ExchangeName.BYBIT:
        return DemoKey(exchange, key["note"], key["api_key"], SecretStr(key["secret"]))
    return DemoKey(exchange, key["label"], key["api_key"],
                   SecretStr(key.get("handed_secret_key") or key["secret_key"]),
                   SecretStr(key.get("handed_passphrase") or key["passphrase"]))


async def bind_demo_keys(settings: Settings, scenarios: Mapping[ExchangeName, Path], console: Console) -> None:
    keys = [key for exchange, path in scenarios.items() for key in demo_keys(exchange, path)]
    async with BindingClient(settings) as client:
        await client.preflight()
        # Fixed request ids: a second `make run` replays them (idempotently) instead of piling up bindings.
        requests = {
            key: await client.bind(key.user_id, key.access_key, key.secret_key, exchange=key.exchange,
                                   passphrase=key.passphrase, label=key.name, trading_pairs=DEMO_PAIRS,
                                   request_id=key.user_id)
            for key in keys
        }
        with console.status(f"Binding the {len(requests)} demo keys…"):
            timelines = {key: await client.wait_for(request_id, BIND_OUTCOME.final, ANSWER_TIMEOUT_S)
                         for key, request_id in requests.items()}
    for key, timeline in timelines.items():
        console.print(f"\n[bold]{key.exchange.display_name} demo key '{key.name}'[/bold] → user {key.user_id}, "
                      f"final state [bold]{timeline[-1].state.value}[/bold]")
        console.print(REQUEST_TIMELINE.table(timeline))
