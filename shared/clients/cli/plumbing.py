"""What `hash7`'s commands do besides parsing their options: load the settings, read the secret key (and an OKX
key's passphrase), and
wait for a request's outcome, showing its progress."""

import getpass
import sys

import click
from pydantic import SecretStr
from rich.text import Text

from shared.clients.binding_client import BindingClient, StatusTimeout
from shared.clients.cli.tables import REQUEST_TIMELINE, shown_state
from shared.clients.console import (
    EXIT_OK,
    EXIT_REFUSED,
    JSON,
    Waiting,
    load_program_settings,
    output_format,
    print_json_line,
    shown,
    stdout,
)
from shared.contracts.events import BindingStatus
from shared.contracts.exchanges import ExchangeName
from shared.contracts.routing import Party, Topic
from shared.contracts.states import RequestOutcome
from shared.runtime.config import Settings

PROGRAM = "hash7-cli"


def load_settings() -> Settings:
    return load_program_settings(Settings, PROGRAM, Party.APP)


def _stdin_is_terminal() -> bool:
    return sys.stdin.isatty()


def read_secret(from_stdin: bool, exchange: ExchangeName = ExchangeName.HTX) -> SecretStr:
    """The exchange secret key, from a hidden prompt or from stdin's first line; never from the command line, where
    shell history and the process list would keep it."""
    secret = _read_hidden(from_stdin, f"{exchange.display_name} Secret Key (hidden): ", "secret key").strip()
    if not secret:
        raise click.UsageError("--secret-stdin was given but stdin holds no secret key" if from_stdin
                               else "no secret key was typed")
    return SecretStr(secret)


def read_passphrase(from_stdin: bool, exchange: ExchangeName) -> SecretStr:
    """The passphrase the key was created with (OKX), from a second hidden prompt or from stdin's second line (after
    the secret key's). Kept as typed but for the line's end: our choice, as a passphrase is the user's own text and
    OKX compares it exactly (shared/adapters/okx/README.md#signing)."""
    passphrase = _read_hidden(from_stdin, f"{exchange.display_name} Passphrase (hidden): ", "passphrase")
    passphrase = passphrase.rstrip("\r\n")
    if not passphrase:
        raise click.UsageError(f"--secret-stdin was given but stdin holds no passphrase on its second line (an "
                               f"{exchange.display_name} key needs one)" if from_stdin else "no passphrase was typed")
    return SecretStr(passphrase)


def _read_hidden(from_stdin: bool, prompt: str, what: str) -> str:
    if from_stdin:
        return sys.stdin.readline()
    if not _stdin_is_terminal():
        raise click.UsageError(f"stdin is not a terminal, so there is no hidden prompt: pipe the {what} "
                               "with --secret-stdin")
    try:
        return getpass.getpass(prompt)
    except EOFError:
        return ""


async def await_outcome(settings: Settings, client: BindingClient, request_id: str, outcome: RequestOutcome,
                        timeout_s: float) -> int:
    """Show what is awaited, where, and for how long until the request's final status, then its timeline;
    returns the exit code."""
    awaited = (f"Waiting for request {request_id}'s final status on {settings.topic(Topic.BINDING_STATUS)} "
               f"(Kafka at {settings.kafka_bootstrap_servers})")
    with Waiting(f"{awaited}…") as waiting:
        try:
            timeline = await client.wait_for(
                request_id, outcome.final, timeout_s,
                on_status=lambda status: waiting.update(f"{awaited}… now {status.state.value}"),
            )
        except StatusTimeout as exc:
            waiting.stop()
            print_timeline(exc.timeline)
            raise
    print_timeline(timeline)
    final = timeline[-1]
    if output_format() == JSON:
        return EXIT_OK if final.state in outcome.succeeded else EXIT_REFUSED
    subject = f"Binding {final.binding_id}" if final.binding_id else f"Request {request_id}"
    if final.state in outcome.succeeded:
        stdout.print(Text.assemble(shown(subject), " is ", shown_state(final.state), "."))
        return EXIT_OK
    codes = ", ".join(final.reason_codes) or "no reason given"
    stdout.print(Text.assemble(shown(subject), " ended ", shown_state(final.state), " (", shown(codes), ")."))
    return EXIT_REFUSED


def print_timeline(timeline: list[BindingStatus]) -> None:
    """A request's statuses: a table, or a JSON line each (the last one says how it ended)."""
    if output_format() == JSON:
        for status in timeline:
            print_json_line(status)
    elif timeline:
        stdout.print(REQUEST_TIMELINE.table(timeline))
