"""`hash7-admin`: what ops reach for, with an admin Vault token (HASH7_VAULT_TOKEN, or the embedded stack's root
token): dead-letter replay, emergency revocation, Vault backup and restore, key rotation, and the Kafka ACLs the
routing table grants. Each command lives in its own module of this package and registers itself on `cli`; every read
command takes `--output json`."""

import sys
from urllib.parse import urlsplit

import click
import hvac
import requests
from hvac import exceptions as hvac_errors

from deploy.bootstrap.progress import BootstrapError
from shared.clients.console import program_options
from shared.runtime.program import BadSettings, settings_from_environment

PROGRAM = "hash7-admin"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, help=__doc__)
@program_options(PROGRAM)
def cli() -> None:
    pass


def admin_vault() -> hvac.Client:
    """An hvac client with the admin token (HASH7_VAULT_TOKEN, else the embedded stack's root token)."""
    # Imported here: the bootstrap's settings and token lookup (deploy/bootstrap/run.py) import modules that
    # import this package's helpers.
    from deploy.bootstrap.run import BootstrapSettings, admin_token
    from shared.adapters.vault.client import hvac_client

    settings = settings_from_environment(BootstrapSettings)
    return hvac_client(settings.vault_connection(), admin_token(settings))


def main() -> None:
    # The command modules register their commands on `cli` when imported.
    from deploy.admin import commands  # noqa: F401

    run_admin_program(cli, PROGRAM)


def run_admin_program(group: click.Group, program: str) -> None:
    """Run an admin command line (`hash7-admin`, `hash7-keys`): whatever stops it is one line and an exit code,
    never a traceback."""
    try:
        # Outside standalone mode click returns a command's exit code (click.exceptions.Exit) instead of exiting.
        sys.exit(group.main(standalone_mode=False, prog_name=program))
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except (BootstrapError, BadSettings, hvac_errors.VaultError) as error:
        click.echo(f"{program}: {error}", err=True)
        sys.exit(1)
    except requests.ConnectionError as error:
        click.echo(f"{program}: cannot reach Vault{_at_server(error)} (HASH7_VAULT_ADDR): is it running?", err=True)
        sys.exit(1)


def _at_server(error: requests.ConnectionError) -> str:
    """' at scheme://host:port' of the request that could not connect (its path and query left out)."""
    url = urlsplit(error.request.url or "") if error.request is not None else None
    return f" at {url.scheme}://{url.netloc}" if url and url.netloc else ""
