"""The one error type an operator sees as a message instead of a traceback."""


class StackError(Exception):
    """An ops-facing failure. Its message says what is wrong and what to do, and never holds a secret."""
