"""How the Kafka runtime treats a failure: transient ones are retried in place (never dead-lettered);
anything else is retried a bounded number of times, then dead-lettered."""


class TransientError(Exception):
    """Trouble expected to pass by itself (a server down, a timeout): retry, never dead-letter."""


class ClientError(Exception):
    """A failure a client (the app's BindingClient, a trading engine) can explain in one line; the message is
    safe to show a person."""
