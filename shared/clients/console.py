"""What every Hash7 command line (`hash7`, `hash7-engine`) shares: exit codes, the two consoles, the options
every one of them has (--version, --output), command-line values checked against the event contract, records
as JSON lines, the spinner shown while waiting, settings from the HASH7_* environment, and running a command's
async work so that an expected failure is one red line and an exit code, never a traceback.
"""

import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import IO, Any, Self, TypeVar

import click
from hvac import exceptions as hvac_errors
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.text import Text

from shared.adapters.vault.client import VaultDenied, VaultUnavailable
from shared.clients.binding_client import StatusTimeout
from shared.contracts.events import Identifier
from shared.contracts.routing import Party
from shared.runtime.config import Settings
from shared.runtime.errors import ClientError
from shared.runtime.logging import configure_logging, redact, terminal_safe
from shared.runtime.program import DISTRIBUTION, BadSettings, settings_from_environment
from shared.runtime.tracing import TracingMisconfigured, configure_tracing

S = TypeVar("S", bound=Settings)

EXIT_OK = 0
EXIT_FAILED = 1  # could not finish: a server unreachable, credentials missing, timed out
EXIT_USAGE = 2  # click's own code for bad command-line input
EXIT_REFUSED = 3  # the request was answered, and the answer is no
EXIT_INTERRUPTED = 130  # the shell's convention for Ctrl-C, the usual end of --follow

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
        # The message may quote a server (Vault, Kafka, HTX): its control characters are shown, not obeyed.
        stderr.print(f"Error: {terminal_safe(self.message)}", style="bold red", markup=False)


class ContractValue(click.ParamType[Any, Any]):
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


USER_ID = ContractValue("USER", Identifier)
ID = ContractValue("ID", Identifier)

TABLE, JSON = "table", "json"


def program_options(program: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command group's --version, and its --output, which its commands receive as the context's obj."""

    def remember_output(context: click.Context, _param: click.Parameter, output: str) -> str:
        context.obj = output
        return output

    def decorate(group: Callable[..., Any]) -> Callable[..., Any]:
        group = click.option(
            "--output", type=click.Choice([TABLE, JSON]), default=TABLE, show_default=True, expose_value=False,
            callback=remember_output,
            help="table for people; json for machines: one JSON document per record, a line each (JSON Lines).",
        )(group)
        return click.version_option(package_name=DISTRIBUTION, prog_name=program)(group)

    return decorate


def output_format() -> str:
    """The --output the running command's group was given."""
    return str(click.get_current_context().find_root().obj or TABLE)


def print_json_line(record: object) -> None:
    """record on stdout as one JSON document on one line: its fields as the contract dumps them
    (model_dump(mode="json")), redacted as the tables show them. ensure_ascii makes every control, format and
    non-ASCII character a JSON escape, so no record can act on a terminal."""
    click.echo(json.dumps(redact(to_jsonable_python(record)), ensure_ascii=True))


class Waiting:
    """A spinner on stderr saying what is awaited and for how long: rich refreshes the elapsed time on its
    own, so a server that never answers still shows the seconds pass. Shown only on a terminal."""

    def __init__(self, what: str) -> None:
        # Disabled off a terminal, where rich would leave an empty line behind.
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}", markup=False),
                                  TimeElapsedColumn(), console=stderr, transient=True, disable=not stderr.is_terminal)
        self._task = self._progress.add_task(what, total=None)

    def __enter__(self) -> Self:
        self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def update(self, what: str) -> None:
        self._progress.update(self._task, description=what)

    def stop(self) -> None:
        self._progress.stop()


def shown(value: object, style: str = "") -> Text:
    """A value from a topic, Vault or HTX as text on screen: redacted (a service bug must not put a secret on
    screen), its control characters escaped (ESC, the 8-bit CSI, bidi overrides: a record must not clear the
    screen, retitle the window or reorder what is read) and never read as rich markup. Every such value is
    printed through here."""
    if value is None or value == "":
        return Text("—", style="dim")
    return Text(terminal_safe(str(redact(str(value)))), style=style)


def load_program_settings(settings_class: type[S], program: str, party: Party) -> S:
    """settings_class from the HASH7_* environment, with logging configured for a command-line program, and
    tracing as party when the OTEL_* environment asks for it (shared/runtime/tracing.py); a bad setting is one
    line naming the variable."""
    try:
        settings = settings_from_environment(settings_class)
        configure_tracing(party)
    except (BadSettings, TracingMisconfigured) as exc:
        raise Failure(str(exc)) from None
    # A command line speaks in tables and one-line errors; library logs (aiokafka's connection errors, say)
    # show only when asked for with HASH7_LOG_LEVEL.
    level = settings.log_level if "log_level" in settings.model_fields_set else "CRITICAL"
    configure_logging(program, settings.log_format, level)
    return settings


def run(settings: Settings, work: Coroutine[Any, Any, int | None]) -> None:
    """Run one command's async work; a failure becomes one red line and exit code 1, a returned code the
    process's exit code."""
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
