"""`hash7`'s commands: bind an exchange key (an OKX key with its passphrase), set a whitelist, revoke, ask for a
key-health sweep, and read a user's statuses, the audit and the dead letters as tables, or as JSON lines with
--output json.

Configuration comes from the HASH7_* environment (shared.runtime.config.Settings). Tables and JSON go to stdout;
progress and errors go to stderr (shared/clients/console.py).
"""

from collections.abc import AsyncGenerator, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import click
from pydantic import Field

from shared.clients.binding_client import BindingClient
from shared.clients.cli.plumbing import await_outcome, load_settings, read_passphrase, read_secret
from shared.clients.cli.tables import AUDIT, DEAD_LETTERS, USER_TIMELINE, TableView, report_skipped, show_records
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
    Waiting,
    output_format,
    print_json_line,
    program_options,
    run,
    stderr,
    stdout,
)
from shared.contracts.events import MAX_TRADING_PAIRS, AccessKey, Label, TradingPair
from shared.contracts.exchanges import ExchangeName
from shared.contracts.routing import ROUTES, Party, Topic
from shared.contracts.secrets import mask_access_key
from shared.contracts.states import BIND_OUTCOME, REVOKE_OUTCOME, WHITELIST_OUTCOME, RequestOutcome
from shared.runtime.config import Settings

PROGRAM = "hash7"
EXIT_CODES_HELP = f"""\b
Exit codes:
  {EXIT_OK}  done: the request ended well, or was sent with --no-wait
     (bind: awaiting_whitelist, active or expiring;
      whitelist: active or awaiting_whitelist; revoke: revoked)
  {EXIT_FAILED}  could not finish: Kafka or Vault unreachable, no AppRole
     credentials, bad HASH7_* settings (one line names the variable),
     or no final status in --timeout
  {EXIT_USAGE}  bad input on the command line
  {EXIT_REFUSED}  refused: the request ended rejected or invalid (the
     reasons say what to change)
  {EXIT_INTERRUPTED}  interrupted with Ctrl-C"""

DEFAULT_TIMEOUT_S = 90.0

T = TypeVar("T")


class PairList(ContractValue):
    """Comma-separated trading pairs, e.g. btcusdt,ethusdt or BTC/USDT (any exchange's spelling: normalised)."""

    def __init__(self) -> None:
        super().__init__("PAIRS", Annotated[list[TradingPair], Field(max_length=MAX_TRADING_PAIRS)])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            value = [pair.strip().lower() for pair in value.split(",") if pair.strip()]
        return super().convert(value, param, ctx)


ACCESS_KEY = ContractValue("ACCESS_KEY", AccessKey)
LABEL = ContractValue("LABEL", Label)
PAIRS = PairList()


def wait_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
                           default=DEFAULT_TIMEOUT_S, show_default=True, metavar="SECONDS",
                           help="How long to wait for the final status.")(command)
    return click.option("--no-wait", is_flag=True,
                        help="Print the request id and exit without waiting for the services.")(command)


async def send_and_await(settings: Settings, send: Callable[[BindingClient], Coroutine[Any, Any, str]], *,
                         outcome: RequestOutcome, no_wait: bool, timeout_s: float) -> int:
    async with BindingClient(settings) as client:
        with Waiting(f"Sending the request (Vault at {settings.vault_addr}, "
                     f"Kafka at {settings.kafka_bootstrap_servers})…"):
            request_id = await send(client)
        if no_wait:
            print_request_id(request_id)
            return EXIT_OK
        stderr.print(f"Request {request_id} sent.", style="dim")
        return await await_outcome(settings, client, request_id, outcome, timeout_s)


def print_request_id(request_id: str) -> None:
    if output_format() == JSON:
        print_json_line({"request_id": request_id})
    else:
        stdout.print(request_id)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODES_HELP)
@program_options(PROGRAM)
def cli() -> None:
    """Hash7 key binding: bind exchange API keys (HTX, Bybit, OKX) and watch what the services make of them.

    Configuration comes from HASH7_* environment variables (Kafka, Vault, topic prefix, run directory).
    """


@cli.command(context_settings={"allow_extra_args": True}, epilog=EXIT_CODES_HELP)
@click.option("--user", "user_id", type=USER_ID, required=True, help="Hash7 user id.")
@click.option("--access-key", type=ACCESS_KEY, required=True, help="The API key's Access Key (shown only masked).")
@click.option("--label", type=LABEL, default="", help="A name for the binding.")
@click.option("--pairs", type=PAIRS, help="Trading pairs to whitelist, comma-separated, e.g. btcusdt,ethusdt.")
@click.option("--replaces", "replaces_binding_id", type=ID, metavar="BINDING_ID",
              help="The binding this key replaces (key rotation).")
@click.option("--exchange", type=click.Choice([name.value for name in ExchangeName]), default=ExchangeName.HTX.value,
              show_default=True, help="The exchange the key is from.")
@click.option("--secret-stdin", is_flag=True,
              help="Read the Secret Key from stdin's first line (and an OKX key's Passphrase from its second) instead "
                   "of hidden prompts.")
@wait_options
@click.pass_context
def bind(ctx: click.Context, user_id: str, access_key: str, label: str, pairs: list[str] | None,
         replaces_binding_id: str | None, exchange: str, secret_stdin: bool, no_wait: bool, timeout_s: float) -> None:
    """Bind an exchange API key (HTX, Bybit or OKX) to a user.

    The Secret Key is read from a hidden prompt, or from stdin with --secret-stdin; it is never accepted
    on the command line. An OKX key's Passphrase is read the same way: from a second hidden prompt, or from
    stdin's second line with --secret-stdin (the Secret Key on the first). Both are sealed with Vault Transit
    for this user before they leave this process. Then the command waits for the binding's final status and
    prints its timeline.
    """
    if ctx.args:
        # Not echoed: a stray argument here is most likely the secret key itself.
        raise click.UsageError("bind takes no arguments; the secret key is never taken from the command line, "
                               "type it at the prompt or pipe it with --secret-stdin")
    settings = load_settings()
    run(settings, _preflight(settings))
    chosen = ExchangeName(exchange)
    secret_key = read_secret(secret_stdin, chosen)
    passphrase = read_passphrase(secret_stdin, chosen) if chosen.needs_passphrase else None
    stderr.print(f"Binding {chosen.display_name} access key {mask_access_key(access_key)} for user {user_id}.",
                 style="dim", markup=False)
    run(settings, send_and_await(
        settings,
        lambda client: client.bind(user_id, access_key, secret_key, exchange=chosen.value, label=label,
                                   trading_pairs=pairs, replaces_binding_id=replaces_binding_id,
                                   passphrase=passphrase),
        outcome=BIND_OUTCOME, no_wait=no_wait, timeout_s=timeout_s,
    ))


async def _preflight(settings: Settings) -> None:
    # Before the prompt: nobody should type a secret only to learn that Vault or Kafka is down.
    async with BindingClient(settings) as client:
        with Waiting("Connecting…") as waiting:
            await client.preflight(on_step=waiting.update)


@cli.command(epilog=EXIT_CODES_HELP)
@click.option("--user", "user_id", type=USER_ID, required=True, help="Hash7 user id.")
@click.option("--binding", "binding_id", type=ID, required=True, help="The binding whose whitelist to set.")
@click.option("--pairs", type=PAIRS, required=True,
              help="The whole whitelist, comma-separated, e.g. btcusdt,ethusdt (\"\" clears it).")
@wait_options
def whitelist(user_id: str, binding_id: str, pairs: list[str], no_wait: bool, timeout_s: float) -> None:
    """Set the trading pairs the bot may trade with a binding."""
    settings = load_settings()
    run(settings, send_and_await(
        settings, lambda client: client.set_whitelist(user_id, binding_id, pairs),
        outcome=WHITELIST_OUTCOME, no_wait=no_wait, timeout_s=timeout_s,
    ))


@cli.command(epilog=EXIT_CODES_HELP)
@click.option("--user", "user_id", type=USER_ID, required=True, help="Hash7 user id.")
@click.option("--binding", "binding_id", type=ID, required=True, help="The binding to revoke.")
@wait_options
def revoke(user_id: str, binding_id: str, no_wait: bool, timeout_s: float) -> None:
    """Revoke a binding: its credentials are deleted and the bot stops using the key."""
    settings = load_settings()
    run(settings, send_and_await(
        settings, lambda client: client.revoke(user_id, binding_id),
        outcome=REVOKE_OUTCOME, no_wait=no_wait, timeout_s=timeout_s,
    ))


@cli.command()
def sweep() -> None:
    """Re-check every stored binding against its exchange now (key health), instead of waiting for the schedule."""
    settings = load_settings()

    async def request() -> None:
        async with BindingClient(settings) as client:
            with Waiting(f"Sending the request (Kafka at {settings.kafka_bootstrap_servers})…"):
                request_id = await client.request_sweep()
        if output_format() == JSON:
            print_request_id(request_id)
            return
        stdout.print(f"Key-health sweep requested (request {request_id}). Its progress shows in `hash7 audit` "
                     "(health_sweep: page_requested for each page, finished at the end; sweep_running instead when "
                     "another sweep is still running; `--output json` has the counts); bindings whose key changed show "
                     "up in `hash7 timeline --user …`.", markup=False)

    run(settings, request())


@cli.command()
@click.option("--user", "user_id", type=USER_ID, required=True, help="Hash7 user id.")
@click.option("--request", "request_id", type=ID, help="Only this request's statuses.")
@click.option("--binding", "binding_id", type=ID, help="Only this binding's statuses.")
@click.option("--follow", is_flag=True, help="Keep printing new statuses until interrupted (Ctrl-C).")
def timeline(user_id: str, request_id: str | None, binding_id: str | None, follow: bool) -> None:
    """Print a user's binding statuses, oldest first."""

    _print_topic(Topic.BINDING_STATUS, USER_TIMELINE, lambda client, caught_up: client.statuses(
        user_id=user_id, request_id=request_id, binding_id=binding_id, follow=follow, on_caught_up=caught_up),
        follow=follow)


@cli.command()
@click.option("--follow", is_flag=True, help="Keep printing new events until interrupted (Ctrl-C).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many of the newest events to print first.")
def audit(follow: bool, limit: int) -> None:
    """Print the audit stream: every decision the services made, newest last."""

    _print_topic(Topic.AUDIT, AUDIT, lambda client, caught_up: client.audit_events(
        follow=follow, on_caught_up=caught_up), follow=follow, limit=limit)


@cli.command("dead-letters")
@click.option("--follow", is_flag=True, help="Keep printing new dead letters until interrupted (Ctrl-C).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many of the newest dead letters to print first.")
def dead_letters(follow: bool, limit: int) -> None:
    """Print the messages the services could not process, and why (bodies are shown redacted)."""

    _print_topic(Topic.DEAD_LETTER, DEAD_LETTERS, lambda client, caught_up: client.dead_letters(
        follow=follow, on_caught_up=caught_up), follow=follow, limit=limit)


def _print_topic(topic: Topic, view: TableView[T], reader: Callable[[BindingClient, Callable[[], None]],
                                                                    AsyncGenerator[T, None]], *,
                 follow: bool, limit: int | None = None) -> None:
    """What `timeline`, `audit` and `dead-letters` do: print a topic's records as a table (or JSON lines), then
    say what was skipped (forged, or not valid events)."""
    settings = load_settings()

    # The app reads its statuses; audit events and dead letters are ops' to read (the routing table's consumers).
    reading_party = Party.APP if Party.APP in ROUTES[topic].consumers else Party.OPS

    async def show() -> None:
        async with BindingClient(settings, reader=reading_party) as client:
            await show_records(view, lambda caught_up: reader(client, caught_up), follow=follow, limit=limit,
                               source=f"{settings.topic(topic)} at Kafka {settings.kafka_bootstrap_servers}",
                               output=output_format())
            report_skipped(client, topic)

    run(settings, show())


def main() -> None:
    cli(prog_name=PROGRAM)
