"""The headers of a dead letter (topic dead-letter, shared/contracts/routing.py): where the record it carries came
from and why it failed. Written by shared/runtime/dead_letters.py, read by shared/clients/binding_client.py; the
body is the original record's bytes, secrets scrubbed."""

ORIGINAL_TOPIC = "x-dlq-original-topic"
ORIGINAL_PARTITION = "x-dlq-original-partition"
ORIGINAL_OFFSET = "x-dlq-original-offset"
EXCEPTION_TYPE = "x-dlq-exception-type"
EXCEPTION_MESSAGE = "x-dlq-exception-message"
SERVICE = "x-dlq-service"
FAILED_AT = "x-dlq-failed-at"

# Each header with what it means, for the published contract (shared/contracts/asyncapi.py).
DESCRIPTIONS: dict[str, str] = {
    ORIGINAL_TOPIC: "The full name of the topic the record was read from (with its prefix).",
    ORIGINAL_PARTITION: "The record's partition on that topic, in decimal.",
    ORIGINAL_OFFSET: "The record's offset in that partition, in decimal: with the topic and partition, where to "
                     "replay it from.",
    EXCEPTION_TYPE: "The class name of the error that stopped the record (MalformedEvent for a record that could "
                    "not be parsed).",
    EXCEPTION_MESSAGE: "The error's message, redacted and cut to a thousand characters.",
    SERVICE: "The service that gave up on the record.",
    FAILED_AT: "When it gave up, as an ISO 8601 timestamp with its UTC offset.",
}
