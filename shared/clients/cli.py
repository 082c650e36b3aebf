"""`hash7`: the binding flow for people. Bind an HTX key, set a whitelist, revoke, follow a user's statuses,
and read the audit and dead-letter topics as tables.

Configuration comes from the HASH7_* environment (shared.runtime.config.Settings). Tables go to stdout; progress
and errors go to stderr. An expected failure is one red line and an exit code, never a traceback.
"""

import asyncio
import getpass
import heapq
import itertools
import sys
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Annotated, Any, Generic, TypeVar

import click
from hvac import exceptions as hvac_errors
from pydantic import Field, SecretStr, TypeAdapter, ValidationError
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.clients.binding_client import BindingClient, ClientError, DeadLetterRecord, StatusTimeout
from shared.runtime.config import Settings
from shared.contracts.events import (
    MAX_TRADING_PAIRS,
    AccessKey,
    AuditEvent,
    BindingStatus,
    Identifier,
    Label,
    TradingPair,
)
from shared.contracts.states import BindingState
from shared.contracts.routing import Topic
from shared.runtime.logging import configure_logging, redact
from shared.contracts.secrets import mask_access_key
from shared.adapters.vault.client import VaultDenied, VaultUnavailable

T = TypeVar("T")
S = TypeVar("S", bound=Settings)

EXIT_OK = 0
EXIT_FAILED = 1  # could not finish: a server unreachable, credentials missing, timed out
EXIT_USAGE = 2  # click's own code for bad command-line input
EXIT_REFUSED = 3  # the request was answered, and the answer is no
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C, the usual end of --follow

EXIT_CODES_HELP = f"""\b
Exit codes:
  {EXIT_OK}  done: the request ended well, or was sent with --no-wait
     (bind: awaiting_whitelist, active or expiring;
      whitelist: active or awaiting_whitelist; revoke: revoked)
  {EXIT_FAILED}  could not finish: Kafka or Vault unreachable, no AppRole
     credentials, bad HASH7_* settings, or no final status in --timeout
  {EXIT_USAGE}  bad input on the command line
  {EXIT_REFUSED}  refused: the request ended rejected or invalid (the
     reasons say what to change)
  {EXIT_INTERRUPTED}  interrupted with Ctrl-C"""

DEFAULT_TIMEOUT_S = 90.0
# Failures whose messages explain themselves; they are shown (redacted) as they are.
_VAULT_FAILURES = (VaultUnavailable, VaultDenied, hvac_errors.VaultError)
_CLIENT_FAILURES = (ClientError, StatusTimeout)

# Piped into a file or a pager, rows are not folded at rich's default of 80 columns.
stdout = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
# Errors and progress lines are never folded: an error is one line, however long.
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class Failure(click.ClickException):
    """One red line on stderr and exit code 1."""

    exit_code = EXIT_FAILED

    def show(self, file: IO[Any] | None = None) -> None:
        stderr.print(f"Error: {self.message}", style="bold red", markup=False)


# ---- command-line value types ---------------------------------------------------------------------------


class ContractValue(click.ParamType):
    """A value checked against the event contract's own type, so the CLI refuses what the services would."""

    def __init__(self, name: str, annotation: Any) -> None:
        self.name = name
        self._adapter: TypeAdapter[Any] = TypeAdapter(annotation)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return self._adapter.validate_python(value)
        except ValidationError as exc:
            # The message names the rule, never the value: an access key or a mistyped secret stays off screen.
            problems = "; ".join(error["msg"] for error in exc.errors(include_input=False, include_url=False))
            self.fail(problems, param, ctx)


class PairList(ContractValue):
    """Comma-separated trading pairs, e.g. btcusdt,ethusdt; HTX symbols are lower case."""

    def __init__(self) -> None:
        super().__init__("PAIRS", Annotated[list[TradingPair], Field(max_length=MAX_TRADING_PAIRS)])

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str):
            value = [pair.strip().lower() for pair in value.split(",") if pair.strip()]
        return super().convert(value, param, ctx)


USER_ID = ContractValue("USER", Identifier)
ID = ContractValue("ID", Identifier)
ACCESS_KEY = ContractValue("ACCESS_KEY", AccessKey)
LABEL = ContractValue("LABEL", Label)
PAIRS = PairList()


# ---- tables ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column(Generic[T]):
    header: str
    cell: Callable[[T], Text]
    # The layout of rows printed one at a time while following a topic: a fixed width or a share of the
    # rest, never sized by content, so that each row lines up under the header printed first.
    width: int | None = None
    ratio: int | None = None


@dataclass(frozen=True)
class TableView(Generic[T]):
    """How one kind of record is shown: its columns, and its time for ordering."""

    title: str
    columns: Sequence[Column[T]]
    time: Callable[[T], datetime]

    def table(self, rows: Iterable[T], *, header: bool = True, fixed_layout: bool = False) -> Table:
        """Columns sized by their content, or with fixed_layout sized the same whatever the rows hold."""
        table = Table(box=box.SIMPLE_HEAD, show_header=header, show_edge=False, expand=fixed_layout,
                      header_style="bold", padding=(0, 2, 0, 0), pad_edge=False)
        for column in self.columns:
            table.add_column(column.header, overflow="fold", no_wrap=column.width is not None,
                             width=column.width if fixed_layout else None,
                             ratio=column.ratio if fixed_layout else None)
        for row in rows:
            table.add_row(*(column.cell(row) for column in self.columns))
        return table


def shown(value: object) -> Text:
    """A value from a topic as a cell: redacted (a service bug must not put a secret on screen) and never
    read as rich markup."""
    if value is None or value == "":
        return Text("—", style="dim")
    return Text(str(redact(str(value))))


def shown_time(moment: datetime) -> Text:
    return Text(moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"))


_STATE_STYLES = {
    BindingState.ACTIVE: "bold green",
    BindingState.AWAITING_WHITELIST: "green",
    BindingState.EXPIRING: "yellow",
    BindingState.REJECTED: "bold red",
    BindingState.INVALID: "bold red",
    BindingState.REVOKED: "magenta",
}


def shown_state(state: BindingState) -> Text:
    return Text(state.value, style=_STATE_STYLES.get(state, ""))


def shown_reasons(status: BindingStatus) -> Text:
    lines = []
    for reason in status.reasons:
        lines.append(Text.assemble((reason.code.value, "bold"), ": ", shown(reason.message)))
        lines.append(Text.assemble("  → ", (str(redact(reason.hint)), "italic")))
    return Text("\n").join(lines) if lines else shown(None)


_TIME = "Time (UTC)"
_TIME_WIDTH = 19

_STATUS_TIME = Column[BindingStatus](_TIME, lambda s: shown_time(s.occurred_at), width=_TIME_WIDTH)
_STATUS_STATE = Column[BindingStatus]("State", lambda s: shown_state(s.state), width=18)
_STATUS_BINDING = Column[BindingStatus]("Binding", lambda s: shown(s.binding_id), ratio=1)
_STATUS_REASONS = Column[BindingStatus]("Reasons", shown_reasons, ratio=4)

# One request's timeline, as `bind`, `whitelist` and `revoke` print it.
REQUEST_TIMELINE = TableView[BindingStatus](
    "statuses", [_STATUS_TIME, _STATUS_STATE, _STATUS_BINDING, _STATUS_REASONS], lambda s: s.occurred_at
)
# A user's timeline across requests, as `timeline` prints it.
USER_TIMELINE = TableView[BindingStatus](
    "statuses",
    [_STATUS_TIME, _STATUS_STATE, Column("Request", lambda s: shown(s.request_id), ratio=1), _STATUS_BINDING,
     _STATUS_REASONS],
    lambda s: s.occurred_at,
)
AUDIT = TableView[AuditEvent](
    "audit events",
    [
        Column(_TIME, lambda e: shown_time(e.occurred_at), width=_TIME_WIDTH),
        Column("Service", lambda e: shown(e.service), width=12),
        Column("Action", lambda e: shown(e.action), ratio=3),
        Column("Outcome", lambda e: shown(e.outcome), width=10),
        Column("User", lambda e: shown(e.user_id), ratio=2),
        Column("Binding", lambda e: shown(e.binding_id), ratio=3),
        Column("Key", lambda e: shown(e.access_key_masked), width=11),
        Column("Reasons", lambda e: shown("\n".join(e.reason_codes)), ratio=4),
    ],
    lambda e: e.occurred_at,
)
DEAD_LETTERS = TableView[DeadLetterRecord](
    "dead letters",
    [
        Column("Failed at (UTC)", lambda d: shown_time(d.failed_at), width=_TIME_WIDTH),
        Column("Original topic/partition/offset", lambda d: shown(
            f"{d.original_topic or '?'}/{d.original_partition if d.original_partition is not None else '?'}"
            f"/{d.original_offset if d.original_offset is not None else '?'}"), ratio=2),
        Column("Error", lambda d: shown(d.error_class), ratio=1),
        Column("Message", lambda d: shown(d.error_message), ratio=3),
        Column("Service", lambda d: shown(d.service), width=12),
        Column("Body (preview)", lambda d: shown(d.body_preview), ratio=4),
    ],
    lambda d: d.failed_at,
)


class Newest(Generic[T]):
    """The newest `limit` items by time (all of them when limit is None), holding no more than that."""

    def __init__(self, limit: int | None, time: Callable[[T], datetime]) -> None:
        self._limit = limit
        self._time = time
        self._heap: list[tuple[datetime, int, T]] = []
        # The arrival number breaks ties between equal times, so items themselves are never compared.
        self._arrivals = itertools.count()

    def add(self, item: T) -> None:
        entry = (self._time(item), next(self._arrivals), item)
        if self._limit is None or len(self._heap) < self._limit:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heappushpop(self._heap, entry)

    def oldest_first(self) -> list[T]:
        return [item for _, _, item in sorted(self._heap)]


async def show_records(view: TableView[T], open_reader: Callable[[Callable[[], None]], AsyncGenerator[T, None]], *,
                       follow: bool, limit: int | None = None) -> None:
    """Print what a topic holds now as one table (its newest `limit` rows); when following, then print each
    new row as it arrives, aligned under that table."""
    backlog: Newest[T] = Newest(limit, view.time)
    caught_up = False
    progress = stderr.status(f"Reading {view.title}…")

    def show_backlog() -> None:
        nonlocal caught_up
        caught_up = True
        progress.stop()
        rows = backlog.oldest_first()
        if rows or follow:
            stdout.print(view.table(rows, fixed_layout=follow))
        else:
            stderr.print(f"No {view.title}.", style="dim")

    progress.start()
    try:
        async with aclosing(open_reader(show_backlog)) as reader:
            async for record in reader:
                if caught_up:
                    stdout.print(view.table([record], header=False, fixed_layout=True))
                else:
                    backlog.add(record)
    finally:
        progress.stop()


def report_skipped(client: BindingClient, topic: Topic) -> None:
    if skipped := client.unparseable_records[topic]:
        stderr.print(f"Skipped {skipped} record(s) on {topic.value} that are not valid events.", style="yellow")


# ---- waiting for an outcome ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """Which states end a request, and which of those mean it worked."""

    succeeded: frozenset[BindingState]
    refused: frozenset[BindingState]

    @property
    def final(self) -> frozenset[BindingState]:
        return self.succeeded | self.refused


BIND_OUTCOME = Outcome(
    succeeded=frozenset({BindingState.AWAITING_WHITELIST, BindingState.ACTIVE, BindingState.EXPIRING}),
    refused=frozenset({BindingState.REJECTED, BindingState.INVALID}),
)
WHITELIST_OUTCOME = Outcome(
    # RECEIVED: saved, and waiting for its binding to be stored (the whitelist service's one answer).
    succeeded=frozenset({BindingState.ACTIVE, BindingState.AWAITING_WHITELIST, BindingState.RECEIVED}),
    refused=frozenset({BindingState.REJECTED, BindingState.INVALID}),
)
REVOKE_OUTCOME = Outcome(succeeded=frozenset({BindingState.REVOKED}), refused=frozenset({BindingState.REJECTED}))


async def await_outcome(client: BindingClient, request_id: str, outcome: Outcome, timeout_s: float) -> int:
    """Show progress until the request's final status, then its timeline; returns the exit code."""
    with stderr.status("Waiting for the services to answer…") as progress:
        try:
            timeline = await client.wait_for(
                request_id, outcome.final, timeout_s,
                on_status=lambda status: progress.update(f"Waiting for the services… now {status.state.value}"),
            )
        except StatusTimeout as exc:
            progress.stop()
            if exc.timeline:
                stdout.print(REQUEST_TIMELINE.table(exc.timeline))
            raise
    stdout.print(REQUEST_TIMELINE.table(timeline))
    final = timeline[-1]
    subject = f"Binding {final.binding_id}" if final.binding_id else f"Request {request_id}"
    if final.state in outcome.succeeded:
        stdout.print(Text.assemble(shown(subject), " is ", shown_state(final.state), "."))
        return EXIT_OK
    codes = ", ".join(final.reason_codes) or "no reason given"
    stdout.print(Text.assemble(shown(subject), " ended ", shown_state(final.state), f" ({codes})."))
    return EXIT_REFUSED


# ---- plumbing -------------------------------------------------------------------------------------------


def load_settings() -> Settings:
    return load_program_settings(Settings, "hash7-cli")


def load_program_settings(settings_class: type[S], program: str) -> S:
    """settings_class from the HASH7_* environment, with logging configured for a command-line program;
    a bad setting is one line naming the variable."""
    try:
        settings = settings_class()
    except ValidationError as exc:
        problems = "; ".join(
            f"HASH7_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise Failure(f"bad configuration: {problems}") from None
    # The CLI speaks in tables and one-line errors; library logs (aiokafka's connection errors, say) show
    # only when asked for with HASH7_LOG_LEVEL.
    level = settings.log_level if "log_level" in settings.model_fields_set else "CRITICAL"
    configure_logging(program, settings.log_format, level)
    return settings


def run(settings: Settings, work: Coroutine[Any, Any, int | None]) -> None:
    """Run one command's async work; a failure becomes one red line and exit code 1."""
    try:
        code = asyncio.run(work)
    except KeyboardInterrupt:
        raise click.exceptions.Exit(EXIT_INTERRUPTED) from None
    except _VAULT_FAILURES as exc:
        raise Failure(f"Vault at {settings.vault_addr}: {redact(str(exc))}") from None
    except _CLIENT_FAILURES as exc:
        raise Failure(str(redact(str(exc)))) from None
    except Exception as exc:  # noqa: BLE001 — a person gets one line, not a traceback, whatever went wrong
        raise Failure(f"unexpected {type(exc).__name__}: {redact(str(exc))}") from None
    if code:
        raise click.exceptions.Exit(code)


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def read_secret(from_stdin: bool) -> SecretStr:
    """The HTX secret key, from a hidden prompt or from stdin; never from the command line, where shell
    history and the process list would keep it."""
    if from_stdin:
        secret = sys.stdin.readline().strip()
        if not secret:
            raise click.UsageError("--secret-stdin was given but stdin holds no secret key")
    elif _stdin_is_terminal():
        try:
            secret = getpass.getpass("HTX Secret Key (hidden): ").strip()
        except EOFError:
            secret = ""
        if not secret:
            raise click.UsageError("no secret key was typed")
    else:
        raise click.UsageError("stdin is not a terminal, so there is no hidden prompt: pipe the secret key "
                               "with --secret-stdin")
    return SecretStr(secret)


def wait_options(command: Callable[..., Any]) -> Callable[..., Any]:
    command = click.option("--timeout", "timeout_s", type=click.FloatRange(min=0, min_open=True),
                           default=DEFAULT_TIMEOUT_S, show_default=True, metavar="SECONDS",
                           help="How long to wait for the final status.")(command)
    return click.option("--no-wait", is_flag=True,
                        help="Print the request id and exit without waiting for the services.")(command)


async def send_and_await(settings: Settings, send: Callable[[BindingClient], Coroutine[Any, Any, str]], *,
                         outcome: Outcome, no_wait: bool, timeout_s: float) -> int:
    async with BindingClient(settings) as client:
        with stderr.status("Sending the request…"):
            request_id = await send(client)
        if no_wait:
            stdout.print(request_id)
            return EXIT_OK
        stderr.print(f"Request {request_id} sent.", style="dim")
        return await await_outcome(client, request_id, outcome, timeout_s)


# ---- commands -------------------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODES_HELP)
def cli() -> None:
    """Hash7 key binding: bind HTX API keys and watch what the services make of them.

    Configuration comes from HASH7_* environment variables (Kafka, Vault, topic prefix, run directory).
    """


@cli.command(context_settings={"allow_extra_args": True}, epilog=EXIT_CODES_HELP)
@click.option("--user", "user_id", type=USER_ID, required=True, help="Hash7 user id.")
@click.option("--access-key", type=ACCESS_KEY, required=True, help="HTX Access Key (shown only masked).")
@click.option("--label", type=LABEL, default="", help="A name for the binding.")
@click.option("--pairs", type=PAIRS, help="Trading pairs to whitelist, comma-separated, e.g. btcusdt,ethusdt.")
@click.option("--replaces", "replaces_binding_id", type=ID, metavar="BINDING_ID",
              help="The binding this key replaces (key rotation).")
@click.option("--secret-stdin", is_flag=True, help="Read the Secret Key from stdin instead of a hidden prompt.")
@wait_options
@click.pass_context
def bind(ctx: click.Context, user_id: str, access_key: str, label: str, pairs: list[str] | None,
         replaces_binding_id: str | None, secret_stdin: bool, no_wait: bool, timeout_s: float) -> None:
    """Bind an HTX API key to a user.

    The Secret Key is read from a hidden prompt, or from stdin with --secret-stdin; it is never accepted
    on the command line. It is sealed with Vault Transit for this user before it leaves this process. Then
    the command waits for the binding's final status and prints its timeline.
    """
    if ctx.args:
        # Not echoed: a stray argument here is most likely the secret key itself.
        raise click.UsageError("bind takes no arguments; the secret key is never taken from the command line, "
                               "type it at the prompt or pipe it with --secret-stdin")
    settings = load_settings()
    run(settings, _preflight(settings))
    secret_key = read_secret(secret_stdin)
    stderr.print(f"Binding access key {mask_access_key(access_key)} for user {user_id}.", style="dim",
                 markup=False)
    run(settings, send_and_await(
        settings,
        lambda client: client.bind(user_id, access_key, secret_key, label=label, trading_pairs=pairs,
                                   replaces_binding_id=replaces_binding_id),
        outcome=BIND_OUTCOME, no_wait=no_wait, timeout_s=timeout_s,
    ))


async def _preflight(settings: Settings) -> None:
    # Before the prompt: nobody should type a secret only to learn that Vault or Kafka is down.
    async with BindingClient(settings) as client:
        with stderr.status("Connecting to Kafka and Vault…"):
            await client.preflight()


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
    """Re-check every stored binding against HTX now (key health), instead of waiting for the schedule."""
    settings = load_settings()

    async def request() -> None:
        async with BindingClient(settings) as client:
            request_id = await client.request_sweep()
        stdout.print(f"Key-health sweep requested (request {request_id}). Bindings whose key changed show up in "
                     "`hash7 timeline --user …` and `hash7 audit`.", markup=False)

    run(settings, request())


@cli.command()
@click.option("--user", "user_id", type=USER_ID, required=True, help="Hash7 user id.")
@click.option("--request", "request_id", type=ID, help="Only this request's statuses.")
@click.option("--binding", "binding_id", type=ID, help="Only this binding's statuses.")
@click.option("--follow", is_flag=True, help="Keep printing new statuses until interrupted (Ctrl-C).")
def timeline(user_id: str, request_id: str | None, binding_id: str | None, follow: bool) -> None:
    """Print a user's binding statuses, oldest first."""

    settings = load_settings()

    async def show() -> None:
        async with BindingClient(settings) as client:
            await show_records(
                USER_TIMELINE,
                lambda caught_up: client.statuses(user_id=user_id, request_id=request_id, binding_id=binding_id,
                                                  follow=follow, on_caught_up=caught_up),
                follow=follow,
            )
            report_skipped(client, Topic.BINDING_STATUS)

    run(settings, show())


@cli.command()
@click.option("--follow", is_flag=True, help="Keep printing new events until interrupted (Ctrl-C).")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True,
              help="How many of the newest events to print first.")
def audit(follow: bool, limit: int) -> None:
    """Print the audit stream: every decision the services made, newest last."""

    settings = load_settings()

    async def show() -> None:
        async with BindingClient(settings) as client:
            await show_records(
                AUDIT, lambda caught_up: client.audit_events(follow=follow, on_caught_up=caught_up),
                follow=follow, limit=limit,
            )
            report_skipped(client, Topic.AUDIT)

    run(settings, show())


@cli.command("dead-letters")
@click.option("--follow", is_flag=True, help="Keep printing new dead letters until interrupted (Ctrl-C).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many of the newest dead letters to print first.")
def dead_letters(follow: bool, limit: int) -> None:
    """Print the messages the services could not process, and why (bodies are shown redacted)."""

    settings = load_settings()

    async def show() -> None:
        async with BindingClient(settings) as client:
            await show_records(
                DEAD_LETTERS, lambda caught_up: client.dead_letters(follow=follow, on_caught_up=caught_up),
                follow=follow, limit=limit,
            )

    run(settings, show())


def main() -> None:
    cli(prog_name="hash7")
