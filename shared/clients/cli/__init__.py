"""`hash7`: the binding flow for people. Bind an exchange key, set a whitelist, revoke, follow a user's statuses,
and read the audit and dead-letter topics as tables.

commands.py holds the click commands, tables.py the rich tables, plumbing.py settings, the secret prompt and
the wait for an outcome; what `hash7-engine` shares with it is in shared/clients/console.py.
"""

from shared.clients.cli.commands import cli, main

__all__ = ["cli", "main"]
