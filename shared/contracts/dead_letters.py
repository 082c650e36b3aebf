"""The headers of a dead letter (topic dead-letter, shared/contracts/routing.py): where the record it carries came
from and why it failed. Written by shared/runtime/dead_letters.py, read by shared/clients/binding_client.py; the
body is the original record's bytes, secrets scrubbed."""

ORIGINAL_TOPIC = "x-dlq-original-topic"
"""The full name of the topic the record was read from (with its prefix)."""

ORIGINAL_PARTITION = "x-dlq-original-partition"
"""The record's partition on that topic, in decimal."""

ORIGINAL_OFFSET = "x-dlq-original-offset"
"""The record's offset in that partition, in decimal: with the topic and partition, where to replay it from."""

EXCEPTION_TYPE = "x-dlq-exception-type"
"""The class name of the error that stopped the record (MalformedEvent for a record that could not be parsed)."""

EXCEPTION_MESSAGE = "x-dlq-exception-message"
"""The error's message, redacted and cut to a thousand characters."""

SERVICE = "x-dlq-service"
"""The service that gave up on the record."""

FAILED_AT = "x-dlq-failed-at"
"""When it gave up, as an ISO 8601 timestamp with its UTC offset."""
