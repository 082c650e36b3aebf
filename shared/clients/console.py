"""What every Hash7 command line (`hash7`, `hash7-engine`) shares: exit codes, the two consoles, command-line
values checked against the event contract, settings from the HASH7_* environment, and running a command's
async work so that an expected failure is one red line and an exit code, never a traceback.
"""

import asyncio
import sys
from collections.abc import Coroutine
from typing import IO, Any, TypeVar

import click
from hvac import exceptions as hvac_errors
from pydantic import TypeAdapter, ValidationError
from rich.console import Console
from rich.text import Text

from shared.adapters.vault.client import VaultDenied, VaultUnavailable
from shared.clients.binding_client import StatusTimeout
from shared.contracts.events import Identifier
from shared.runtime.config import Settings
from shared.runtime.errors import ClientError
from shared.runtime.logging import configure_logging, redact, terminal_safe

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


def shown(value: object, style: str = "") -> Text:
    """A value from a topic, Vault or HTX as text on screen: redacted (a service bug must not put a secret on
    screen), its control characters escaped (ESC, the 8-bit CSI, bidi overrides: a record must not clear the
    screen, retitle the window or reorder what is read) and never read as rich markup. Every such value is
    printed through here."""
    if value is None or value == "":
        return Text("—", style="dim")
    return Text(terminal_safe(str(redact(str(value)))), style=style)


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
