"""`hash7-engine`: an example trading engine on shared.clients.trading. It reads a binding from Vault as the
`trading-engine` AppRole and places orders on the binding's exchange (or its sandbox) through the order gate.

    hash7-engine show --user U --binding B
    hash7-engine order --user U --binding B --symbol btcusdt --side buy --type limit --amount 0.001 --price 30000

Same conventions as `hash7` (shared/clients/console.py): HASH7_* configuration, tables (or JSON lines with
--output json) on stdout, one line and an exit code for anything that goes wrong, never a traceback; the access
key only masked, the secret never.
"""

from decimal import Decimal
from typing import Annotated, Literal

import click
from pydantic import Field
from rich import box
from rich.table import Table
from rich.text import Text

from shared.adapters.exchange.errors import ExchangeError
from shared.clients.console import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    ID,
    JSON,
    USER_ID,
    ContractValue,
    load_program_settings,
    output_format,
    print_json_line,
    program_options,
    run,
    shown,
    stdout,
)
from shared.clients.trading.credentials import BindingNotFound, BindingStore, TradingBinding
from shared.clients.trading.gate import OrderRefused, OrderRequest, order_gate
from shared.contracts.events import TradingPair
from shared.contracts.routing import Party
from shared.runtime.config import EngineSettings
from shared.runtime.errors import ClientError

PROGRAM = "hash7-engine"
EXIT_CODES_HELP = f"""\b
Exit codes:
  {EXIT_OK}  done: the binding was shown, or the order placed
  {EXIT_FAILED}  could not finish: Vault, Kafka or the exchange unreachable, no AppRole
     credentials, or bad HASH7_* settings
  {EXIT_USAGE}  bad input on the command line
  {EXIT_REFUSED}  refused: by the order gate (binding revoked or invalid, pair not
     whitelisted) or by the exchange; also: no such binding (show)
  {EXIT_INTERRUPTED}  interrupted with Ctrl-C"""

SYMBOL = ContractValue("SYMBOL", TradingPair)
QUANTITY = ContractValue("DECIMAL", Annotated[Decimal, Field(gt=0)])


# What `show` prints of a binding, by JSON field and table heading: the access key only masked.
_SHOWN_FIELDS = {
    "binding_id": "Binding",
    "user_id": "User",
    "access_key_masked": "Access key",
    "exchange": "Exchange",
    "owner_uid": "Exchange UID",
    "trading_account_id": "Spot account",
    "whitelist": "Whitelist",
    "health": "Health",
    "version": "Vault version",
}


def print_binding(binding: TradingBinding) -> None:
    fields = {name: getattr(binding, name) for name in _SHOWN_FIELDS}
    if output_format() == JSON:
        print_json_line(fields)
        return
    table = Table(box=box.SIMPLE_HEAD, show_header=False, show_edge=False, padding=(0, 2, 0, 0), pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, heading in _SHOWN_FIELDS.items():
        value = fields[name]
        table.add_row(heading, shown(", ".join(value) if name == "whitelist" else value))
    stdout.print(table)


def print_refusal(reason: str, message: str) -> None:
    if output_format() == JSON:
        print_json_line({"refused": reason, "message": message})
    else:
        stdout.print(Text.assemble(("Refused", "bold red"), f" ({reason}): ", shown(message)))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODES_HELP)
@program_options(PROGRAM)
def cli() -> None:
    """An example trading engine: read a binding's credentials from Vault and trade within its whitelist.

    Configuration comes from HASH7_* environment variables (Vault, exchanges, Kafka, run directory,
    HASH7_ENGINE_CACHE_TTL_S).
    """


@cli.command(epilog=EXIT_CODES_HELP)
@click.option("--user", "user_id", type=USER_ID, required=True, help="Hash7 user id.")
@click.option("--binding", "binding_id", type=ID, required=True, help="The binding to read.")
def show(user_id: str, binding_id: str) -> None:
    """Print what the engine reads for a binding: exchange, masked access key, exchange UID, spot account,
    whitelist."""
    settings = load_program_settings(EngineSettings, PROGRAM, Party.TRADING_ENGINE)

    async def read() -> int:
        try:
            binding = await BindingStore.from_settings(settings).get(user_id, binding_id)
        except BindingNotFound as exc:
            print_refusal("binding_not_found", str(exc))
            return EXIT_REFUSED
        print_binding(binding)
        return EXIT_OK

    run(settings, read())


@cli.command(epilog=EXIT_CODES_HELP)
@click.option("--user", "user_id", type=USER_ID, required=True, help="Hash7 user id.")
@click.option("--binding", "binding_id", type=ID, required=True, help="The binding whose key trades.")
@click.option("--symbol", type=SYMBOL, required=True, help="The pair, e.g. btcusdt (or BTC/USDT).")
@click.option("--side", type=click.Choice(["buy", "sell"]), required=True)
@click.option("--type", "order_type", type=click.Choice(["limit", "market"]), required=True)
@click.option("--amount", type=QUANTITY, required=True, help="Base currency amount (quote amount for a market buy).")
@click.option("--price", type=QUANTITY, help="Limit price; a market order takes none.")
@click.option("--client-order-id", type=ID, help="Your own id for the order.")
def order(user_id: str, binding_id: str, symbol: str, side: Literal["buy", "sell"],
          order_type: Literal["limit", "market"], amount: Decimal,
          price: Decimal | None, client_order_id: str | None) -> None:
    """Place an order with the binding's key, through the order gate: only for a pair in its whitelist."""
    if (order_type == "limit") != (price is not None):
        raise click.UsageError("a limit order needs --price, a market order takes none")
    settings = load_program_settings(EngineSettings, PROGRAM, Party.TRADING_ENGINE)
    request = OrderRequest(symbol, side, order_type, amount, price, client_order_id)

    async def place() -> int:
        async with order_gate(settings) as gate:
            try:
                placed = await gate.place(user_id, binding_id, request)
            except OrderRefused as refused:
                print_refusal(refused.reason.value, str(refused))
                return EXIT_REFUSED
            except ExchangeError as exc:
                if exc.transient:
                    raise ClientError(f"the binding's exchange could not take the order ({exc})") from None
                print_refusal("exchange", f"the exchange refused the order: {exc}")
                return EXIT_REFUSED
            # The gate has just read the binding: this comes from memory (unless the cache TTL is 0).
            binding = await gate.bindings.get(user_id, binding_id)
        if output_format() == JSON:
            print_json_line({"order_id": placed.order_id, "user_id": user_id, "binding_id": binding_id,
                             "order": request})
            return EXIT_OK
        print_binding(binding)
        at_price = f" at {price}" if price is not None else ""
        stdout.print(Text.assemble(("Placed", "bold green"), " order ", shown(placed.order_id),
                                   f": {side}-{order_type} {amount} {symbol}{at_price}."))
        return EXIT_OK

    run(settings, place())


def main() -> None:
    cli(prog_name=PROGRAM)
