"""Failures shared across packages.

- For the Kafka runtime: transient ones are retried in place (never dead-lettered); anything else is retried
  a bounded number of times, then dead-lettered.
- For clients (the app's BindingClient, trading engines): failures explained to a person in one line.
"""


class TransientError(Exception):
    """Trouble expected to pass by itself (a server down, a timeout): retry, never dead-letter."""


class ClientError(Exception):
    """A failure a client (the app's BindingClient, a trading engine) can explain in one line; the message is
    safe to show a person."""


class CredentialsMissing(ClientError):
    """No credentials for the client's identity: its AppRole, so it cannot log in to Vault, or its Kafka user."""
